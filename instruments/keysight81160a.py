"""Keysight 81160A as the pulse source (``Keysight81160A``), the TMR bench's fast pulse generator.

Channel 1 plays the drive waveform into the switch matrix; channel 2 the read-trigger markers
into the source meter's trigger-link input. Both play the volatile user waveform (14-bit DAC
codes, uploaded as a binary IEEE 488.2 block, big-endian int16, as PyMeasure's driver does),
armed manually (``*TRG``), one cycle per trigger. The waveform repetition frequency sets the
sample period: ``dt = 1 / (frequency * points)``.

Output voltage of a sample: ``dac / 8191 * Vpp / 2`` (offset 0).

Driver extensions: PyMeasure's ``waveform_volatile`` normalises by the waveform's maximum (not
its largest magnitude, so a waveform with a larger negative reset pulse would overflow the DAC)
and takes one channel per message; ``load_user_waveforms`` uploads both channels, selects them
and sets frequency and amplitude in one message. Also the ``:FUNC<n>:USER`` selection and
``*TRG;*OPC?``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pymeasure.instruments import Instrument
from pymeasure.instruments.keysight import Keysight81160A
from pymeasure.instruments.keysight.keysight81160A import Keysight81160AChannel
from pyvisa.util import to_ieee_block

from .arb_source import TwoChannelArbSource
from .waveform import Waveform


class LabKeysight81160AChannel(Keysight81160AChannel):
    """An 81160A channel with the user-waveform selection."""

    user_waveform = Instrument.control(
        ":FUNC{ch}:USER?",
        ":FUNC{ch}:USER %s",
        """Control which user waveform the channel plays (str, e.g. 'VOLATILE').""",
    )


class LabKeysight81160A(Keysight81160A):
    """PyMeasure's ``Keysight81160A`` with the commands labctl needs for batched trials."""

    ch_1 = Instrument.ChannelCreator(LabKeysight81160AChannel, 1)
    ch_2 = Instrument.ChannelCreator(LabKeysight81160AChannel, 2)

    def load_user_waveforms(self, waves: Sequence[tuple[int, Sequence[int], float, float]]) -> None:
        """Upload, select and scale user waveforms in one message.

        ``waves``: ``(channel, dac_codes, frequency_Hz, amplitude_Vpp)`` per channel; the codes
        (-8191..8191) go as a binary block to the channel's volatile memory.
        """
        message = b""
        for ch, dac, _, _ in waves:
            block = to_ieee_block(np.asarray(dac, dtype=int).tolist(), "h", True)
            message += (b";" if message else b"") + f":DATA{ch}:DAC VOLATILE,".encode() + block
        for ch, _, frequency, vpp in waves:
            message += f";:FUNC{ch}:USER VOLATILE;:FREQ{ch} {frequency:f};:VOLT{ch} {vpp:f}".encode()
        self.write_bytes(message + b"\n")

    def trigger_and_wait(self) -> str:
        """Send a trigger and wait until the waveform has been played; the reply is ``1``."""
        return self.ask("*TRG;*OPC?")


class Keysight81160APulseSource(TwoChannelArbSource):
    """The 81160A in the ``pulse_source`` role (see the module docstring)."""

    max_volts = 2.5  # 5 Vpp, offset 0
    min_dt = 1 / 2.5e9  # 2.5 GSa/s
    min_vpp = 0.05
    dac_max = 8191
    marker_vpp = 5.0

    def _configure(self, d) -> None:
        d.clear()
        for ch in (d.ch_1, d.ch_2):
            ch.output = False
        self._load(d, self.idle_waveform())
        for ch in (d.ch_1, d.ch_2):
            ch.shape = "USER"
            ch.offset = 0
            ch.trigger_mode = "MAN"
            ch.trigger_count = 1
        d.ch_1.output = True
        d.ch_2.output = True

    def _load(self, d, wave: Waveform) -> None:
        dac, marks, vpp = self.dac_codes(wave)
        frequency = 1.0 / (wave.dt * len(dac))  # one pass of the padded waveform per trigger
        d.load_user_waveforms([(1, dac, frequency, vpp), (2, marks, frequency, self.marker_vpp)])


