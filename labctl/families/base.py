"""What labctl knows about one device family: the descriptor every module asks instead of a name.

A device family (DW nanowires, STT-MTJs, DW-MTJs, or one a plugin brings) is described once, by
a :class:`DeviceFamily` subclass: its read-out, its amplitude unit, its switching laws with their
parameters and fits, its physics (the simulator class and its parameter model, where the
defaults live), what the instrument bench needs, and the protocol that calibrates it. The
station loader validates ``[chip.physics]`` with the family's model; the chip, the calibration,
the instrument station and the GUI read everything else from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from analysis.fitting import FitResult

PulseEnergy = Callable[[Any, Any], Any]
"""Energy of pulses (joules) from arrays of amplitudes (family unit) and widths (seconds)."""


@dataclass(frozen=True)
class LawParam:
    """One parameter of a switching law: its name (as the fit reports it), unit and meaning.

    ``physics_key``: the ``[chip.physics]`` field holding its nominal value (None if none does).
    """

    name: str
    unit: str
    description: str
    physics_key: str | None = None


@dataclass(frozen=True)
class Law:
    """A switching law as the calibration fits it.

    ``fit(amplitude, width, counts, repeats, *, levels, level, tau0)``: batched maximum-likelihood
    fit (``analysis.fitting``) of ``counts`` [synapse, point] (switched counts; [synapse, point,
    level] for multi-level families) at the points' ``amplitude`` (family unit) and ``width``
    (seconds), ``repeats`` trials each; returns a FitResult whose names are :attr:`param_names`.
    ``per_width``: the law has no width dependence and is fitted once per pulse width (else once,
    jointly over all widths). ``level_counts``: the fit takes per-level counts (a trial's outcome is
    the level read, ``SynapseArray.trial_levels``), not switched counts (``SynapseArray.trial``).
    ``curve(amplitude, width, params, *, levels, tau0)``: probability that one pulse of
    ``amplitude`` (family unit) and ``width`` (s) moves a device out of level 0, from the law's
    parameters (name -> tensor, ``analysis.switching_laws``): the fitted S-curve a window draws.
    """

    name: str
    params: tuple[LawParam, ...]
    fit: Callable[..., FitResult]
    curve: Callable[..., Any]
    per_width: bool = False
    level_counts: bool = False
    description: str = ""

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def nominal(self, physics: BaseModel) -> dict[str, float]:
        """The law's parameters from a chip's nominal physics (those with a ``physics_key``)."""
        return {p.name: float(getattr(physics, p.physics_key)) for p in self.params if p.physics_key}


REQUIRED_METHODS = ("nominal_levels", "energy_model")
"""Class methods every family defines (checked when it registers):

- ``nominal_levels(physics) -> list[float]``: raw signal of each level from the nominal physics
  (``signal_unit``), for decoding reads;
- ``energy_model(physics) -> (pulse energy of amplitude and width arrays, energy per read in J)``.
"""


class DeviceFamily:
    """Base of the family descriptors. Subclasses set the class attributes, define the
    :data:`REQUIRED_METHODS` and may override the other methods.

    Class attributes:

    - ``name``: the family's name in station files (``chip.family``), e.g. ``"sot_mtj"``;
    - ``label``: a short human description for windows (``"STT-MTJs (TMR)"``);
    - ``readout``: ``"kerr"`` (optical, a lock-in voltage per device) or ``"tmr"`` (a resistance
      through a switch matrix): which instrument bench drives it (``labctl.rigs``);
    - ``amplitude_unit``: unit of a pulse amplitude (``"T"``, ``"A"``, ``"V"``); ``signal_unit``:
      unit of a raw read (``"V"``, ``"Ohm"``);
    - ``simulator``: the ``simulated_bench.physics.DeviceArray`` subclass of the direct backend;
      ``physics_model`` (default: the simulator's ``params_model``) validates ``[chip.physics]``;
    - ``laws``: the switching laws the calibration can fit; the first is the default;
    - ``calibration_protocol``: the protocol file ``labctl calibrate`` runs on such a chip;
    - ``bench_roles``: the ``[instruments.<role>]`` tables an instrument station needs;
    - ``sweep``: a starting S-curve (amplitude from, to in the family unit, width in seconds) about
      the nominal switching range, for manual work at the bench.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    readout: ClassVar[Literal["kerr", "tmr"]] = "tmr"
    amplitude_unit: ClassVar[str] = ""
    signal_unit: ClassVar[str] = ""
    simulator: ClassVar[type] = object
    laws: ClassVar[tuple[Law, ...]] = ()
    calibration_protocol: ClassVar[str] = ""
    bench_roles: ClassVar[tuple[str, ...]] = ()
    sweep: ClassVar[tuple[float, float, float]] = (0.0, 0.0, 0.0)

    @classmethod
    def physics_model(cls) -> type[BaseModel]:
        """The pydantic model of ``[chip.physics]`` (the one place its defaults and bounds live)."""
        return cls.simulator.params_model

    @classmethod
    def default_law(cls) -> Law:
        return cls.laws[0]

    @classmethod
    def law(cls, name: str) -> Law:
        """The law called ``name``; KeyError naming the family's laws if it has none of that name."""
        for law in cls.laws:
            if law.name == name:
                return law
        raise KeyError(f"{cls.name} chips have no law {name!r} (laws: {', '.join(l.name for l in cls.laws)})")

    @classmethod
    def levels(cls, physics: BaseModel) -> int:
        """Number of levels a device can be read in (2 for binary families)."""
        return 2


    @classmethod
    def build_simulator(cls, n: int, seed: int, physics: BaseModel):
        """The direct backend's device array of ``n`` devices with physics ``seed``."""
        return cls.simulator(n, seed=seed, **physics.model_dump())

    @classmethod
    def problem(cls) -> str | None:
        """What is wrong with this descriptor (None if nothing): checked when a plugin registers it."""
        missing = [a for a in ("name", "amplitude_unit", "signal_unit", "laws", "bench_roles") if not getattr(cls, a)]
        missing += [m for m in REQUIRED_METHODS if not callable(getattr(cls, m, None))]
        if missing:
            return f"{cls.__name__} does not set {', '.join(missing)}"
        if cls.readout not in ("kerr", "tmr"):
            return f"{cls.__name__}.readout must be 'kerr' or 'tmr' (got {cls.readout!r})"
        if not (isinstance(cls.physics_model(), type) and issubclass(cls.physics_model(), BaseModel)):
            return f"{cls.__name__}: the physics model is not a pydantic model"
        return None
