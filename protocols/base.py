"""What every protocol is: settings, the datasets it writes, a generator of safe points, a summary.

A protocol sees the chip only through the ``SynapseArray`` interface. Its ``run(ctx)`` yields a
``Progress`` at every safe point; the run engine handles pause, stop, abort and checkpoints
there. A protocol that can resume keeps its position in ``state_dict()`` and continues from it
when ``run`` is called again after ``load_state_dict``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterator, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, field_validator

from labctl.chip import Envelope, SynapseArray
from labctl.engine import Progress, RunContext
from labctl.store import DatasetSpec


class Settings(BaseModel):
    """Base of protocol settings tables: unknown keys are errors, values are taken as written (no bool
    as a number, no 2.0 as an integer: pydantic strict mode), floats are finite, text holds no NUL."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text without NUL characters")
        return value


PulseQuantity = Literal["amplitude", "magnitude", "width", "read_bias"]
"""What a setting is to the envelope: ``amplitude`` (family unit, a value or a list), ``magnitude``
(an amplitude used with both signs), ``width`` (seconds), ``read_bias`` (volts, checked as |bias|)."""


class EnvelopeProblem(NamedTuple):
    """A setting that would put a pulse or bias outside the station's envelope."""

    key: str  # e.g. "settings.amplitude_stop"
    value: float  # the offending value, in ``unit``
    limit: str  # e.g. "above envelope.amplitude_max 0.012 T"
    unit: str = ""
    what: str = ""  # for a derived value, what it is (e.g. "the depression pulse it gives")

    def __str__(self) -> str:
        subject = f"{self.what} of {self.value:.6g} {self.unit}" if self.what else f"{self.value:.6g} {self.unit}"
        return f"key '{self.key}': {subject.strip()} is outside the station envelope: {self.limit}"


def check_value(key: str, value: float, quantity: PulseQuantity, envelope: Envelope, what: str = "") -> list[EnvelopeProblem]:
    """The problems of one pulse quantity against the envelope (empty if it is inside)."""
    if quantity == "magnitude":
        return check_value(key, value, "amplitude", envelope, what) or check_value(key, -value, "amplitude", envelope, what)
    if quantity == "amplitude":
        lo, hi, unit = envelope.amplitude_min, envelope.amplitude_max, envelope.amplitude_unit
        names = ("envelope.amplitude_min", "envelope.amplitude_max")
    elif quantity == "width":
        lo, hi, unit = envelope.width_min, envelope.width_max, "s"
        names = ("envelope.width_min", "envelope.width_max")
    else:
        lo, hi, unit = -envelope.read_bias_max, envelope.read_bias_max, "V"
        names = ("envelope.read_bias_max", "envelope.read_bias_max")
    if not math.isfinite(value):
        return [EnvelopeProblem(key, value, "not a finite number", unit, what)]
    if quantity == "read_bias" and abs(value) > hi:
        return [EnvelopeProblem(key, value, f"|bias| above {names[1]} {hi:.6g} {unit}", unit, what)]
    if value > hi:
        return [EnvelopeProblem(key, value, f"above {names[1]} {hi:.6g} {unit}", unit, what)]
    if value < lo:
        return [EnvelopeProblem(key, value, f"below {names[0]} {lo:.6g} {unit}", unit, what)]
    return []


class ChipProtocol(ABC):
    """Base class of labctl protocols.

    Class attributes: ``kind`` (the name used in protocol files), ``settings_model`` (the
    pydantic model of the ``[settings]`` table) and ``families`` (chip families it can run on).
    """

    kind: ClassVar[str]
    settings_model: ClassVar[type[Settings]]
    families: ClassVar[tuple[str, ...]]
    envelope_fields: ClassVar[dict[str, PulseQuantity]] = {}
    """Settings that reach the chip as pulse amplitudes, widths or read biases (a value, a list of
    values, or None = unused): declaring them is all a protocol needs for the envelope check."""

    @classmethod
    def derived_pulses(cls, settings: Settings) -> list[tuple[str, PulseQuantity, float, str]]:
        """Pulse quantities computed from settings (a sweep's ends, a schedule's voltages): (setting key,
        quantity, value, what it is). Default: none; override when a protocol computes pulses."""
        return []

    @classmethod
    def envelope_problems(cls, settings: Settings, envelope: Envelope) -> list[EnvelopeProblem]:
        """Every declared or derived pulse quantity of ``settings`` outside ``envelope`` (empty: all inside).

        Checked before a run is created or a chip is opened (``labctl.station.check_settings_against_envelope``).
        """
        problems: list[EnvelopeProblem] = []
        for name, quantity in cls.envelope_fields.items():
            value = getattr(settings, name)
            values = [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
            for v in values:  # the first offending entry of a list is enough to name the key
                found = check_value(f"settings.{name}", float(v), quantity, envelope)
                if found:
                    problems += found
                    break
        for name, quantity, value, what in cls.derived_pulses(settings):
            problems += check_value(f"settings.{name}", value, quantity, envelope, what)
        return problems

    def __init__(self, name: str, settings: Settings, chip: SynapseArray, seed: int = 0):
        if chip.family not in self.families:
            raise ValueError(
                f"protocol {name!r} ({self.kind}) runs on {', '.join(self.families)} chips, "
                f"but the station's chip is {chip.family}"
            )
        self.name = name
        self.settings = settings
        self.chip = chip
        self.seed = seed

    @abstractmethod
    def describe(self) -> dict[str, DatasetSpec]:
        """The datasets this protocol writes, declared before the run starts (SWMR needs them up front)."""

    @abstractmethod
    def run(self, ctx: RunContext) -> Iterator[Progress]:
        """Do the work, yielding at every safe point."""

    @abstractmethod
    def summary(self) -> dict[str, Any]:
        """Final metrics, for the run file, ``labctl info`` and the end-of-run table."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue from the last safe point (default: nothing to resume)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
