"""The simulated lab: one shared chip and the simulated instruments wired to it.

The wiring is what cables do on the real benches:

Kerr bench (DW nanowires). The pulse source's channel 1 drives the field supply's analog input;
the supply (current mode, output on) turns it into magnet current ``gain * V`` (A) and the coil
into field ``coil * I`` (T). The field acts on the wire under the laser spot: wire ``k`` sits at
stage position ``origin + k * pitch`` (metres) and is under the spot when the stage is within a
quarter pitch of it. A field pulse at or below ``-nucleation_field`` re-nucleates the wall (a
reset); any other field pulse is a write. Channel 2 drives the lock-in's TRIG IN: each rising
edge stores that wire's Kerr signal (volts) in the lock-in buffer.

TMR bench (STT-MTJs, DW-MTJs). The switch matrix connects the pulse source (channel 1) and the
source meter to the devices whose crosspoints are closed (the first of them if several); the
device sees ``units_per_volt * V`` (V/V for STT-MTJs, A/V through a series resistor for
DW-MTJs). Channel 2 drives the source meter's trigger link: each rising edge takes one
resistance reading (ohms).

A triggered burst is evaluated at once (simulated time does not pass), operation by operation,
with :mod:`simulated_bench.sequencer`. Every instrument message is handled under
:attr:`Bench.lock`, so a burst and the reads that follow it never interleave.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import numpy as np
import torch

from .instruments import SIMULATORS, SimulatedInstrument
from .physics import physics_class
from .sequencer import PULSE, READ, RESET, operations, play

MARKER_THRESHOLD_V = 1.0
KERR_ROLES = ("pulse_source", "field_supply", "kerr_readout", "positioner")
TMR_ROLES = ("pulse_source", "source_meter", "switch")


class Bench:
    """The shared chip and the simulators of one station (see the module docstring).

    ``spec`` is plain data: ``chip`` (family, n, seed, physics, and ``simulator``: the device
    simulator's ``module:Class`` reference, default the family's built-in simulator),
    ``instruments`` (role -> ``{"model": ..., "simulator": ...}``: a model of
    :data:`~simulated_bench.instruments.SIMULATORS`, or the ``module:Class`` reference of a
    :class:`SimulatedInstrument` subclass a plugin brings), ``wiring`` (gain A/V, coil T/A, pitch m, origin m, axis, nucleation_field
    T; units_per_volt, slots) and ``stuck``/``stuck_level`` (synapses stuck in a level).
    """

    def __init__(self, spec: dict[str, Any]):
        chip = spec["chip"]
        self.family = chip["family"]
        self.devices = physics_class(chip.get("simulator", self.family))(
            int(chip["n"]), seed=int(chip.get("seed", 0)), **chip.get("physics", {}))
        self.kind = self.devices.readout  # "kerr" or "tmr": the simulator class declares which bench reads it
        self.wiring = dict(spec.get("wiring", {}))
        self.lock = threading.RLock()
        self.instruments: dict[str, SimulatedInstrument] = {}
        roles = KERR_ROLES if self.kind == "kerr" else TMR_ROLES
        for role in roles:
            if role not in spec.get("instruments", {}):
                raise ValueError(f"the simulated {self.kind} bench needs a {role} instrument")
        for role, table in spec["instruments"].items():
            cls = instrument_simulator(table)
            kwargs = {}
            if role == "field_supply":
                kwargs = {"gain": float(self.wiring.get("gain", 1.0)), "coil": float(self.wiring.get("coil", 1e-3))}
            elif role == "switch":
                kwargs = {"slots": tuple(self.wiring.get("slots", (1,)))}
            self.instruments[role] = cls(self, **kwargs)
        stuck = list(spec.get("stuck", []))
        if stuck:
            idx = torch.tensor(stuck, dtype=torch.int64)
            self.devices.state[idx] = int(spec.get("stuck_level", 1))
            self.devices.stuck[idx] = True

    def __getitem__(self, role: str) -> SimulatedInstrument:
        return self.instruments[role]

    # ------------------------------------------------------------------ where the chip is touched
    def target(self) -> int | None:
        """The device the pulse source and the readout reach now, or None."""
        if self.kind == "kerr":
            stage = self.instruments["positioner"]
            axis = int(self.wiring.get("axis", 1))
            x = stage.position[axis] * 1e-3  # mm -> m
            pitch = float(self.wiring.get("pitch", 1e-5))
            k = round((x - float(self.wiring.get("origin", 0.0))) / pitch)
            offset = x - float(self.wiring.get("origin", 0.0)) - k * pitch
            if 0 <= k < self.devices.n and abs(offset) <= pitch / 4:
                return int(k)
            return None
        routed = self.instruments["switch"].routed()
        routed = [d for d in routed if d < self.devices.n]
        return routed[0] if routed else None

    def _reads(self, count: int) -> np.ndarray:
        k = self.target()
        if k is None:
            return self._nothing(count)
        return play(self.devices, k, np.full(count, READ), np.zeros(count), np.zeros(count))

    def _nothing(self, count: int) -> np.ndarray:
        if self.kind == "kerr":  # no wire under the spot: background with the read noise
            noise = float(self.devices.read_noise(torch.tensor([0]))[0])
            return noise * torch.randn(count, generator=self.devices.streams.read, dtype=torch.float64).numpy()
        return np.full(count, np.inf)  # open circuit

    def kerr_signal(self, count: int) -> np.ndarray:
        """Lock-in X for ``count`` reads now (volts)."""
        return self._reads(count)

    def resistance(self, count: int) -> np.ndarray:
        """Resistance of the routed device for ``count`` reads now (ohms; inf if nothing routed)."""
        return self._reads(count)

    # ------------------------------------------------------------------ a burst from the pulse source
    def burst(self, source: SimulatedInstrument, played: dict[int, tuple[np.ndarray, float]]) -> None:
        """Channel outputs of a triggered pulse source: ``{channel: (volts, dt)}``."""
        if self.instruments.get("pulse_source") is not source:
            return
        drive, drive_dt = played.get(1, (np.empty(0), 1.0))
        marker_volts, marker_dt = played.get(2, (np.empty(0), 1.0))
        markers = marker_volts > MARKER_THRESHOLD_V
        if self.kind == "kerr":
            amplitude = self.instruments["field_supply"].field(drive)
            reset_below = -float(self.wiring.get("nucleation_field", 8e-3))
        else:
            amplitude = drive * float(self.wiring.get("units_per_volt", 1.0))
            reset_below = None
        kinds, amps, widths = operations(amplitude, drive_dt, markers, marker_dt, reset_below)
        k = self.target()
        if k is None:
            signal = self._nothing(int(np.count_nonzero(kinds == READ)))
        else:
            signal = play(self.devices, k, kinds, amps, widths)
        if len(signal):
            if self.kind == "kerr":
                self.instruments["kerr_readout"].store(signal)
            else:
                self.instruments["source_meter"].trigger_link(signal)

    def steady_field(self, source: SimulatedInstrument, field: float, hold_s: float) -> None:
        """A steady field of ``field`` tesla from the field supply, held ``hold_s`` seconds: one
        pulse (or, at or below ``-nucleation_field``, a reset) on the wire under the spot."""
        if self.kind != "kerr" or self.instruments.get("field_supply") is not source:
            return
        k = self.target()
        if k is None:
            return
        reset = field <= -float(self.wiring.get("nucleation_field", 8e-3))
        play(self.devices, k, np.array([RESET if reset else PULSE]), np.array([field]), np.array([hold_s]))

    def status(self) -> dict[str, dict]:
        return {role: inst.status() for role, inst in self.instruments.items()}

    def outputs_safe(self) -> dict[str, bool]:
        """Per role: no output on, no bias (what the safe-state tests check)."""
        return {role: inst.outputs_safe() for role, inst in self.instruments.items()}


def instrument_simulator(table: dict[str, Any]) -> type[SimulatedInstrument]:
    """The simulator of one instrument table: the built-in one of its ``model``, else the class its
    ``simulator`` names (``module:Class``). ValueError (one line) if neither gives one."""
    model = table["model"]
    if model in SIMULATORS:
        return SIMULATORS[model]
    ref = table.get("simulator")
    if not ref:
        raise ValueError(f"no simulator for instrument model {model!r} (built in: {', '.join(SIMULATORS)}; "
                         "a plugin's adapter names its own with a 'simulator' attribute)")
    module, _, attribute = str(ref).partition(":")
    try:
        cls = getattr(importlib.import_module(module), attribute)
    except Exception as exc:
        raise ValueError(f"cannot import the simulator {ref!r} of {model!r} ({type(exc).__name__}: {exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, SimulatedInstrument)):
        raise ValueError(f"{ref!r} is not a simulated_bench.instruments.SimulatedInstrument subclass")
    return cls
