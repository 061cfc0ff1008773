"""``SimulatedArray``: the SynapseArray backed directly by the simulated device physics.

The fast path for research and most tests: no instruments, no VISA, the physics of
``simulated_bench.physics`` called on whole index arrays. Counts no instrument transactions.

Device. The chip lives on ``chip.device`` (the station's ``[station] device`` setting, resolved
by ``labctl.config.resolve_device``; ``cpu`` unless set). Indices, amplitudes and widths passed
in (on any device) are moved there before the physics sees them, and results -- the counts of
``trial`` / ``trial_levels``, the signal and level of ``read`` -- come back on ``chip.device``:
a protocol that keeps its tensors on ``chip.device`` makes no host round trip, and one that
needs numpy calls ``.cpu()`` first. On the CPU nothing is copied.
"""

from __future__ import annotations

import torch

from simulated_bench.physics import DeviceArray

from .chip import Counters, Envelope, ReadResult, SynapseArray

Tensor = torch.Tensor


class SimulatedArray(SynapseArray):
    """A SynapseArray over a simulated device family (``DWNanowireArray``, ``DWMTJArray``, ``STTMTJArray``)."""

    def __init__(self, devices: DeviceArray, envelope: Envelope):
        self.devices = devices
        self.envelope = envelope
        self.family = devices.family
        self.n = devices.n
        self.levels = devices.levels
        self.signal_unit = devices.signal_unit

    @property
    def device(self) -> torch.device:
        """Where the chip's tensors live and its results come back (see the module docstring)."""
        return self.devices.device

    def _here(self, x: Tensor | None) -> Tensor | None:
        return None if x is None else x.to(self.devices.device)

    @property
    def counters(self) -> Counters:
        c = self.devices.counters
        return Counters(pulses=c.pulses, resets=c.resets, reads=c.reads, trials=c.trials, energy_j=c.energy_j)

    def state_dict(self) -> dict:
        """The simulated chip's mutable state, for checkpoints (see DeviceArray.state_dict)."""
        return self.devices.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.devices.load_state_dict(state)

    def safe_state(self) -> None:
        """Nothing is energised in a simulation: the safe state holds by construction."""

    def _reset(self, idx: Tensor | None) -> None:
        self.devices.reset(self._here(idx))

    def _pulse(self, idx: Tensor | None, amplitude: Tensor, width: Tensor) -> None:
        self.devices.pulse(self._here(idx), self._here(amplitude), self._here(width))

    def _read(self, idx: Tensor | None, repeats: int) -> ReadResult:
        return ReadResult(*self.devices.read(self._here(idx), repeats))

    def _trial_levels(self, idx: Tensor | None, amplitude: Tensor, width: Tensor, repeats: int) -> Tensor:
        return self.devices.trial(self._here(idx), self._here(amplitude), self._here(width), repeats)

    def _trial(self, idx: Tensor | None, amplitude: Tensor, width: Tensor, repeats: int) -> Tensor:
        return self.devices.trial_switched(self._here(idx), self._here(amplitude), self._here(width), repeats)
