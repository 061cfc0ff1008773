"""Keysight/Agilent 33500B as the pulse source (``Agilent33500``).

Channel 1 plays the drive waveform (into the field supply's analog input on the Kerr bench,
into the switch matrix on the TMR bench); channel 2 plays the read-trigger markers (a 0 / 2.5 V
logic level into the lock-in's or source meter's trigger input). Both channels hold an
arbitrary waveform of 16-bit DAC codes, are set to triggered bursts of one cycle from the bus,
and idle at 0 V (offset 0, first and last samples 0).

Output voltage of a sample: ``dac / 32767 * Vpp / 2`` (offset 0).

Driver extensions (PyMeasure's ``Agilent33500`` lacks them): a per-channel trigger source
(``TRIG<n>:SOUR``), one message that loads the arbitrary waveforms of both channels, and a
trigger that waits for completion (``*TRG;*OPC?``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pymeasure.instruments import Instrument
from pymeasure.instruments.agilent import Agilent33500
from pymeasure.instruments.agilent.agilent33500 import Agilent33500Channel
from pymeasure.instruments.validators import strict_discrete_set

from .errors import ReplyError
from .roles import PulseSource, confirm, scpi_errors
from .waveform import Waveform

DAC_MAX = 32767
MIN_POINTS = 8  # the 33500B refuses shorter arbitrary waveforms


class LabAgilent33500Channel(Agilent33500Channel):
    """A 33500B channel with its own trigger source."""

    trigger_source = Instrument.control(
        "TRIG{ch}:SOUR?",
        "TRIG{ch}:SOUR %s",
        """Control the trigger source of this channel (str: 'IMM', 'EXT', 'TIM' or 'BUS').""",
        validator=strict_discrete_set,
        values=["IMM", "EXT", "TIM", "BUS"],
    )


class LabAgilent33500(Agilent33500):
    """PyMeasure's ``Agilent33500`` with the commands labctl needs for batched trials."""

    ch_1 = Instrument.ChannelCreator(LabAgilent33500Channel, 1)
    ch_2 = Instrument.ChannelCreator(LabAgilent33500Channel, 2)

    def load_arbs(self, arbs: Sequence[tuple[int, str, Sequence[int], float, float]]) -> None:
        """Load and select arbitrary waveforms in one message.

        ``arbs``: ``(channel, name, dac_codes, sample_rate_Sa_per_s, amplitude_Vpp)`` per channel.
        The volatile memory of each channel is cleared first (a name cannot be loaded twice).
        """
        parts = []
        for ch, name, dac, srate, vpp in arbs:
            parts += [
                f"SOUR{ch}:DATA:VOL:CLE",
                f"SOUR{ch}:DATA:ARB:DAC {name}, {', '.join(str(int(v)) for v in dac)}",
                f"SOUR{ch}:FUNC:ARB {name}",
                f"SOUR{ch}:FUNC:ARB:SRAT {srate:e}",
                f"SOUR{ch}:VOLT {vpp:f}",
            ]
        self.write(";:".join(parts))

    def trigger_and_wait(self) -> str:
        """Send a bus trigger and wait until the burst has been played; the reply is ``1``."""
        return self.ask("*TRG;*OPC?")


class Agilent33500PulseSource(PulseSource):
    """The 33500B in the ``pulse_source`` role (see the module docstring)."""

    max_volts = 5.0
    min_dt = 1 / 160e6  # 160 MSa/s
    min_vpp = 0.01
    marker_vpp = 5.0  # marker high = +2.5 V

    def __init__(self, link, *, max_points: int = 65536):
        super().__init__(link)
        self.max_points = max_points

    def _configure(self, d) -> None:
        d.clear()
        for ch in (d.ch_1, d.ch_2):
            ch.output = False
            ch.shape = "ARB"
            ch.arb_filter = "STEP"
            ch.offset = 0
            ch.burst_mode = "TRIG"
            ch.burst_ncycles = 1
            ch.burst_state = True
            ch.trigger_source = "BUS"
        self._load(d, Waveform(np.zeros(MIN_POINTS), np.zeros(MIN_POINTS, bool), 1e-6))
        d.ch_1.output = True
        d.ch_2.output = True

    def _load(self, d, wave: Waveform) -> None:
        volts, markers = wave.volts, wave.markers
        if len(volts) < MIN_POINTS:
            pad = MIN_POINTS - len(volts)
            volts = np.concatenate([volts, np.zeros(pad)])
            markers = np.concatenate([markers, np.zeros(pad, bool)])
        vpp = max(2.0 * float(np.abs(volts).max()), self.min_vpp)
        dac = np.rint(volts / (vpp / 2.0) * DAC_MAX).astype(int)
        marks = np.where(markers, DAC_MAX, 0)
        srate = 1.0 / wave.dt
        d.load_arbs([(1, "LABCTL1", dac, srate, vpp), (2, "LABCTL2", marks, srate, self.marker_vpp)])

    def _fire(self, d) -> None:
        reply = d.trigger_and_wait().strip()
        if reply != "1":
            raise ReplyError(f"expected '1' from *OPC?, got {reply[:40]!r}")

    def _safe_state(self, d) -> None:
        d.ch_1.output = False
        d.ch_2.output = False
        confirm(d.ask("OUTP1?"), ("0", "OFF"), "channel 1 output")
        confirm(d.ask("OUTP2?"), ("0", "OFF"), "channel 2 output")

    def _blind_safe_state(self, d) -> None:
        d.ch_1.output = False
        d.ch_2.output = False

    def _errors(self, d) -> list[str]:
        return scpi_errors(d)
