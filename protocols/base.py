"""What every protocol is: settings, the datasets it writes, a generator of safe points, a summary.

A protocol sees the chip only through the ``SynapseArray`` interface. Its ``run(ctx)`` yields a
``Progress`` at every safe point; the run engine handles pause, stop, abort and checkpoints
there. A protocol that can resume declares its resumable state once, in the class attribute
``resumable`` (attribute name -> :class:`Kind`); ``state_dict()`` and ``load_state_dict()``
follow from it here, and so does the progress total (``progress_total``). ``run`` continues from
the declared state when it is called again after ``load_state_dict``.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from enum import Enum
from typing import Any, ClassVar, Iterator, Literal, NamedTuple

import numpy as np
import torch


from labctl.chip import Envelope, SynapseArray
from labctl.config import Strict
from labctl.engine import Progress, RunContext
from labctl.store import DatasetSpec

from .cursor import EpochCursor  # noqa: F401  (re-exported: what a protocol declares as Kind.CURSOR)


class Settings(Strict):
    """Base of protocol settings tables: the same rules as station and protocol files
    (:class:`labctl.config.Strict`: unknown keys are errors, values taken as written, floats
    finite, no NUL in text)."""


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


class Kind(str, Enum):
    """What a declared piece of resumable state is; decides how it is saved, checked and restored.

    Every kind is saved as plain data (tensors, numbers, text, lists, dicts), so a checkpoint loads
    with ``torch.load(weights_only=True)`` and never runs code.
    """

    TENSOR = "tensor"
    """A tensor, or a list / dict of tensors (weights, levels read, counts). Restored with its shape and
    dtype checked against the attribute as built; a tensor that requires grad (a parameter an
    optimiser holds) is overwritten in place, so the optimiser keeps holding it."""
    OPTIMIZER = "optimizer"
    """A ``torch.optim.Optimizer`` over declared parameters (its ``state_dict``)."""
    GENERATOR = "generator"
    """A ``torch.Generator`` (its state)."""
    NUMPY_GENERATOR = "numpy_generator"
    """A ``numpy.random.Generator`` (its bit generator's state, kept as JSON text)."""
    CURSOR = "cursor"
    """An :class:`EpochCursor`: epoch, place in the epoch, order, generator. Its safe points count in
    the progress total."""
    PHASE = "phase"
    """A member of the protocol's phase enumeration (``class Phase(str, Enum)``), saved as its value."""
    VALUE = "value"
    """Plain data: numbers, text, booleans, None, and lists / dicts of them (counters, metric lists,
    counter marks); tensors inside are copied. No other objects (no numpy arrays: use tensors)."""
    NESTED = "nested"
    """A sub-protocol (or None) with its own declaration, e.g. a calibration run inside a training run.
    Its safe points count in the progress total."""


def _plain(value: Any, key: str) -> Any:
    """A copy of ``value`` made only of what ``torch.load(weights_only=True)`` accepts; TypeError otherwise."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: _plain(v, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(f"state '{key}' holds a {type(value).__name__}, which a checkpoint cannot keep as plain data "
                    f"(declare it with another Kind, or keep it as tensors / numbers / lists / dicts)")


def _describe(t: Any) -> str:
    return f"shape {tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else f"a {type(t).__name__}"


def _check_tensors(key: str, current: Any, value: Any) -> None:
    """ValueError if ``value`` does not have the structure, shapes and dtypes of ``current`` (None: anything)."""
    if current is None:
        return
    if isinstance(current, torch.Tensor):
        if not isinstance(value, torch.Tensor) or value.shape != current.shape or value.dtype != current.dtype:
            raise ValueError(f"checkpoint key '{key}' is {_describe(value)}; this protocol has {_describe(current)}")
    elif isinstance(current, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(current):
            n = len(value) if isinstance(value, (list, tuple)) else _describe(value)
            raise ValueError(f"checkpoint key '{key}' holds {n} tensors; this protocol has {len(current)}")
        for i, (c, v) in enumerate(zip(current, value)):
            _check_tensors(f"{key}[{i}]", c, v)
    elif isinstance(current, dict):
        if not isinstance(value, dict) or set(value) != set(current):
            got = sorted(value) if isinstance(value, dict) else _describe(value)
            raise ValueError(f"checkpoint key '{key}' has entries {got}; this protocol has {sorted(current)}")
        for k in current:
            _check_tensors(f"{key}.{k}", current[k], value[k])


def _restore_tensors(current: Any, value: Any) -> Any:
    """``value`` copied; tensors that require grad are overwritten in place (optimisers hold them)."""
    if isinstance(current, torch.Tensor) and current.requires_grad:
        with torch.no_grad():
            current.copy_(value)
        return current
    if isinstance(current, (list, tuple)):
        return type(current)(_restore_tensors(c, v) for c, v in zip(current, value))
    if isinstance(current, dict):
        return {k: _restore_tensors(current[k], value[k]) for k in current}
    return _plain(value, "")


class ChipProtocol(ABC):
    """Base class of labctl protocols.

    Class attributes: ``kind`` (the name used in protocol files), ``settings_model`` (the
    pydantic model of the ``[settings]`` table) and ``families`` (chip families it can run on).

    Resumable state is declared once in ``resumable`` (attribute name -> :class:`Kind`); the
    declarations of a class and its bases add up, and every protocol has ``step`` (safe points
    reached, a ``VALUE``). From it follow :meth:`state_dict`, :meth:`load_state_dict` and
    :meth:`progress_total` (``fixed_safe_points`` + the safe points of every declared cursor and
    nested protocol). :meth:`safe_point` counts a safe point and makes its ``Progress``.
    """

    kind: ClassVar[str]
    settings_model: ClassVar[type[Settings]]
    families: ClassVar[tuple[str, ...]]
    envelope_fields: ClassVar[dict[str, PulseQuantity]] = {}
    resumable: ClassVar[dict[str, Kind]] = {"step": Kind.VALUE}
    """Attribute name -> kind of everything needed to continue from a safe point (see :class:`Kind`)."""
    fixed_safe_points: ClassVar[int] = 0
    """Safe points outside the declared cursors and nested protocols (an initialisation, a test...)."""
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
        self.step = 0  # safe points reached

    @abstractmethod
    def describe(self) -> dict[str, DatasetSpec]:
        """The datasets this protocol writes, declared before the run starts (SWMR needs them up front)."""

    @abstractmethod
    def run(self, ctx: RunContext) -> Iterator[Progress]:
        """Do the work, yielding at every safe point."""

    @abstractmethod
    def summary(self) -> dict[str, Any]:
        """Final metrics, for the run file, ``labctl info`` and the end-of-run table."""

    # ------------------------------------------------------------------ declared state
    @classmethod
    def declared_state(cls) -> dict[str, Kind]:
        """The resumable state of this class: its ``resumable`` and those of its bases, bases first."""
        out: dict[str, Kind] = {}
        for klass in reversed(cls.__mro__):
            out.update(getattr(klass, "__dict__", {}).get("resumable", {}))
        return out

    def progress_total(self) -> int:
        """Safe points of a whole run: fixed ones plus those of every declared cursor and nested protocol."""
        total = self.fixed_safe_points
        for name, kind in self.declared_state().items():
            part = getattr(self, name)
            if kind is Kind.CURSOR:
                total += part.safe_points
            elif kind is Kind.NESTED and part is not None:
                total += part.progress_total()
        return total

    def safe_point(self, stage: str, metrics: dict[str, float] | None = None, *, last: bool = False) -> Progress:
        """Count a safe point and describe it; ``last``: the run's final one (its total is the steps taken,
        which early stopping can make fewer than :meth:`progress_total`)."""
        self.step += 1
        return Progress(self.step, self.step if last else self.progress_total(), stage, metrics or {})

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue from the last safe point, as plain data (see :class:`Kind`)."""
        state: dict[str, Any] = {"protocol": self.kind}
        for name, kind in self.declared_state().items():
            value = getattr(self, name)
            if kind is Kind.OPTIMIZER:
                state[name] = _plain(value.state_dict(), name)
            elif kind is Kind.GENERATOR:
                state[name] = value.get_state().clone()
            elif kind is Kind.NUMPY_GENERATOR:
                state[name] = json.dumps(value.bit_generator.state)
            elif kind in (Kind.CURSOR, Kind.NESTED):
                state[name] = None if value is None else value.state_dict()
            else:  # TENSOR, PHASE, VALUE
                state[name] = _plain(value, name)
        return state

    def check_state_dict(self, state: dict[str, Any], prefix: str = "") -> None:
        """ValueError naming the first key of ``state`` that is missing, unknown or does not fit (shape, dtype,
        phase, size); nothing is changed."""
        if not isinstance(state, dict):
            raise ValueError(f"checkpoint{' key ' + repr(prefix[:-1]) if prefix else ''} is {_describe(state)}, "
                             f"not a {self.kind} state")
        if state.get("protocol") != self.kind:
            raise ValueError(f"checkpoint key '{prefix}protocol' is {state.get('protocol')!r}: the checkpoint is not "
                             f"of a {self.kind} protocol")
        declared = self.declared_state()
        unknown = sorted(set(state) - set(declared) - {"protocol"})
        if unknown:
            raise ValueError(f"checkpoint key '{prefix}{unknown[0]}' is not part of the {self.kind} state")
        for name, kind in declared.items():
            key = prefix + name
            if name not in state:
                raise ValueError(f"checkpoint key '{key}' is missing (the {self.kind} state declares it)")
            current, value = getattr(self, name), state[name]
            if kind is Kind.TENSOR:
                _check_tensors(key, current, value)
            elif kind is Kind.PHASE:
                valid = [p.value for p in type(current)]
                if value not in valid:
                    raise ValueError(f"checkpoint key '{key}' is {value!r}, not a phase of {self.kind} ({', '.join(valid)})")
            elif kind is Kind.GENERATOR:
                _check_tensors(key, current.get_state(), value)
            elif kind is Kind.NUMPY_GENERATOR:
                if not isinstance(value, str):
                    raise ValueError(f"checkpoint key '{key}' is {_describe(value)}, not a numpy generator state")
                name_got = json.loads(value).get("bit_generator")
                if name_got != current.bit_generator.state["bit_generator"]:
                    raise ValueError(f"checkpoint key '{key}' is a {name_got} state; this protocol has a "
                                     f"{current.bit_generator.state['bit_generator']}")
            elif kind is Kind.OPTIMIZER:
                self._check_optimizer(key, current, value)
            elif kind is Kind.CURSOR:
                try:
                    current.check_state_dict(value if isinstance(value, dict) else {})
                except ValueError as exc:
                    raise ValueError(f"checkpoint key '{key}': {exc}") from None
            elif kind is Kind.NESTED:
                if (current is None) != (value is None):
                    raise ValueError(f"checkpoint key '{key}' is {'absent' if value is None else 'present'}, but this "
                                     f"protocol {'has' if current is not None else 'has no'} {name}")
                if current is not None:
                    current.check_state_dict(value, prefix=key + ".")

    @staticmethod
    def _check_optimizer(key: str, opt: torch.optim.Optimizer, value: Any) -> None:
        params = [p for group in opt.param_groups for p in group["params"]]
        groups = value.get("param_groups") if isinstance(value, dict) else None
        if not isinstance(groups, list) or [len(g.get("params", ())) for g in groups] != \
                [len(g["params"]) for g in opt.param_groups]:
            raise ValueError(f"checkpoint key '{key}' is not an optimiser state over this protocol's "
                             f"{len(params)} parameters")
        for index, slot in value.get("state", {}).items():
            for name, t in slot.items():
                p = params[int(index)]
                if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape != p.shape:
                    raise ValueError(f"checkpoint key '{key}.state.{index}.{name}' is {_describe(t)}; "
                                     f"its parameter is {_describe(p)}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned; ValueError (naming the key) if it does not fit, before any change."""
        self.check_state_dict(state)
        for name, kind in self.declared_state().items():
            current, value = getattr(self, name), state[name]
            if kind is Kind.OPTIMIZER:
                current.load_state_dict(value)
            elif kind is Kind.GENERATOR:
                current.set_state(value.clone())
            elif kind is Kind.NUMPY_GENERATOR:
                current.bit_generator.state = json.loads(value)
            elif kind in (Kind.CURSOR, Kind.NESTED):
                if current is not None:
                    current.load_state_dict(value)
            elif kind is Kind.PHASE:
                setattr(self, name, type(current)(value))
            elif kind is Kind.TENSOR:
                setattr(self, name, _restore_tensors(current, value))
            else:
                setattr(self, name, _plain(value, name))
