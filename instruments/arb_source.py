"""What the two arbitrary-waveform pulse sources (33500B, 81160A) share.

Both play the drive waveform on channel 1 and the read-trigger markers on channel 2, as DAC codes
scaled to the waveform's peak, are fired with ``*TRG;*OPC?``, and are made safe by switching both
outputs off. Each model adds its constants, its set-up and the command that loads the codes.
"""

from __future__ import annotations

import numpy as np

from .errors import ReplyError
from .roles import PulseSource, confirm, scpi_errors
from .waveform import Waveform


class TwoChannelArbSource(PulseSource):
    """A pulse source whose two channels hold DAC-coded arbitrary waveforms."""

    #: Largest DAC code (the code of +Vpp/2).
    dac_max: int
    #: Fewest samples the instrument accepts in a waveform.
    min_points: int = 8
    #: Smallest amplitude the instrument accepts, volts peak to peak.
    min_vpp: float
    #: Amplitude of the marker channel, volts peak to peak (marker high = +Vpp/2).
    marker_vpp: float = 5.0

    def __init__(self, link, *, max_points: int = 65536):
        super().__init__(link)
        self.max_points = max_points

    @property
    def min_step_volts(self) -> float:
        """One DAC code at the smallest amplitude, volts: a peak below half of it plays as 0 V."""
        return self.min_vpp / 2.0 / self.dac_max

    def idle_waveform(self) -> Waveform:
        """The shortest all-zero waveform: what the channels hold after configuration."""
        return Waveform(np.zeros(self.min_points), np.zeros(self.min_points, bool), 1e-6)

    def dac_codes(self, wave: Waveform) -> tuple[np.ndarray, np.ndarray, float]:
        """Drive codes, marker codes and drive amplitude (Vpp) of ``wave``, padded with zeros to
        ``min_points``. The amplitude is twice the peak, so the peak sample uses the full DAC range."""
        volts, markers = wave.volts, wave.markers
        if len(volts) < self.min_points:
            pad = self.min_points - len(volts)
            volts = np.concatenate([volts, np.zeros(pad)])
            markers = np.concatenate([markers, np.zeros(pad, bool)])
        vpp = max(2.0 * float(np.abs(volts).max()), self.min_vpp)
        dac = np.rint(volts / (vpp / 2.0) * self.dac_max).astype(int)
        marks = np.where(markers, self.dac_max, 0)
        return dac, marks, vpp

    def _fire(self, d) -> None:
        reply = d.trigger_and_wait().strip()
        if reply != "1":
            raise ReplyError(f"expected '1' from *OPC?, got {reply[:40]!r}")

    def _safe_state(self, d) -> None:
        self._blind_safe_state(d)
        confirm(d.ask("OUTP1?"), ("0", "OFF"), "channel 1 output")
        confirm(d.ask("OUTP2?"), ("0", "OFF"), "channel 2 output")

    def _blind_safe_state(self, d) -> None:
        d.ch_1.output = False
        d.ch_2.output = False

    def _output_state(self, d) -> tuple[str, bool | None]:
        on = [d.ask(f"OUTP{ch}?").strip().upper() not in ("0", "OFF") for ch in (1, 2)]
        return f"ch1 {'on' if on[0] else 'off'}, ch2 {'on' if on[1] else 'off'}", not any(on)

    def _errors(self, d) -> list[str]:
        return scpi_errors(d)
