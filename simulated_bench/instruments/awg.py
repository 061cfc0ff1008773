"""What the two simulated pulse sources share: channels holding DAC-coded arbitrary waveforms.

A channel's output voltage for DAC code ``d`` is ``offset + d / dac_max * Vpp / 2``. When the
instrument is triggered, every channel that is armed for it plays its waveform once, and the
bench (the cables) receives ``{channel: (volts, dt)}`` with ``dt`` the sample period in seconds.
A channel whose output is off contributes 0 V.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from .scpi import CommandError, SimulatedInstrument


@dataclass
class Channel:
    """State of one output channel (volts, seconds, hertz)."""

    output: bool = False
    shape: str = "SIN"
    amplitude: float = 0.1  # Vpp
    offset: float = 0.0
    frequency: float = 1e3
    srate: float = 40e3  # arb sample rate, Sa/s
    arbs: dict[str, np.ndarray] = field(default_factory=dict)
    arb: str = ""
    filter: str = "NORM"
    burst_state: bool = False
    burst_mode: str = "TRIG"
    burst_cycles: int = 1
    trigger_source: str = "IMM"
    trigger_count: int = 1
    load: str = "50"


class ArbitraryWaveformGenerator(SimulatedInstrument, ABC):
    """Two-channel generator; subclasses define the command set and when a channel plays."""

    dac_max = 32767
    channels_count = 2

    def reset(self) -> None:
        self.channels = {ch: Channel() for ch in range(1, self.channels_count + 1)}
        self.bursts = 0

    def channel(self, ch: str | None) -> Channel:
        number = int(ch) if ch else 1
        if number not in self.channels:
            raise CommandError(-113, f"no channel {number}")
        return self.channels[number]

    def volts(self, c: Channel, dac: np.ndarray) -> np.ndarray:
        return c.offset + dac.astype(np.float64) / self.dac_max * c.amplitude / 2.0

    @abstractmethod
    def plays(self, c: Channel) -> tuple[np.ndarray, float] | None:
        """(volts, dt) the channel plays on a trigger, or None if it is not armed for it."""

    def trigger(self) -> None:
        played = {}
        for number, c in self.channels.items():
            wave = self.plays(c)
            if wave is not None:
                volts, dt = wave
                played[number] = (volts if c.output else np.zeros_like(volts), dt)
        self.bursts += 1
        if played and self.bench is not None:
            self.bench.burst(self, played)

    def status(self) -> dict:
        return {
            f"ch{n}": {"output": c.output, "shape": c.shape, "amplitude_vpp": c.amplitude, "offset_v": c.offset}
            for n, c in self.channels.items()
        }

    def outputs_safe(self) -> bool:
        """No output is on."""
        return not any(c.output for c in self.channels.values())
