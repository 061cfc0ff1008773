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

from pymeasure.instruments import Instrument
from pymeasure.instruments.agilent import Agilent33500
from pymeasure.instruments.agilent.agilent33500 import Agilent33500Channel
from pymeasure.instruments.validators import strict_discrete_set

from .arb_source import TwoChannelArbSource
from .waveform import Waveform


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


class Agilent33500PulseSource(TwoChannelArbSource):
    """The 33500B in the ``pulse_source`` role (see the module docstring)."""

    max_volts = 5.0
    min_dt = 1 / 160e6  # 160 MSa/s
    min_vpp = 0.01
    dac_max = 32767
    min_points = 8  # the 33500B refuses shorter arbitrary waveforms
    marker_vpp = 5.0  # marker high = +2.5 V

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
        self._load(d, self.idle_waveform())
        d.ch_1.output = True
        d.ch_2.output = True

    def _load(self, d, wave: Waveform) -> None:
        dac, marks, vpp = self.dac_codes(wave)
        srate = 1.0 / wave.dt
        d.load_arbs([(1, "LABCTL1", dac, srate, vpp), (2, "LABCTL2", marks, srate, self.marker_vpp)])


