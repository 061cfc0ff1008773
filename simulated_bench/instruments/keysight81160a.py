"""Simulated Keysight 81160A (two channels), as PyMeasure's ``Keysight81160A`` drives it.

User waveforms are uploaded as binary blocks of big-endian int16 DAC codes (-8191..8191) to
volatile memory (``:DATA<n>:DAC VOLATILE,#<block>``), selected with ``:FUNC<n> USER`` and
``:FUNC<n>:USER VOLATILE``, and played one period per trigger at the repetition frequency
``:FREQ<n>``, so the sample period is ``1 / (frequency * points)``. A channel plays on ``*TRG``
when it is armed manually (``:ARM:SOUR<n> MAN``). Ranges as in PyMeasure's validators
(amplitude 50 mVpp-5 Vpp, offset +-4.995 V, frequency up to 500 MHz).
"""

from __future__ import annotations

import numpy as np

from .awg import ArbitraryWaveformGenerator, Channel
from .scpi import CommandError, boolean, choice, command, integer, number

SHAPES = ["SINusoid", "SQUare", "RAMP", "PULSe", "NOISe", "DC", "USER"]


class Keysight81160ASim(ArbitraryWaveformGenerator):
    """The 81160A simulator (see the module docstring)."""

    identity = "Agilent Technologies,81160A,SIM00002,2.0.0.0"
    model = "Keysight81160A"
    dac_max = 8191

    def plays(self, c: Channel):
        if not (c.trigger_source == "MAN" and c.shape == "USER" and c.arb in c.arbs):
            return None
        dac = c.arbs[c.arb]
        volts = self.volts(c, np.tile(dac, c.trigger_count))
        return volts, 1.0 / (c.frequency * len(dac))

    @command("OUTPut#[:STATe]")
    def output(self, args, ch):
        self.channel(ch).output = boolean(args)

    @command("OUTPut#[:STATe]?")
    def output_query(self, args, ch):
        return str(int(self.channel(ch).output))

    @command("FUNCtion#[:SHAPe]")
    def function(self, args, ch):
        self.channel(ch).shape = choice(args, SHAPES)

    @command("FUNCtion#[:SHAPe]?")
    def function_query(self, args, ch):
        return self.channel(ch).shape

    @command("FUNCtion#:USER")
    def user(self, args, ch):
        name = args.strip().upper()
        if name not in ("VOLATILE", "VOLATIL") and name not in self.channel(ch).arbs:
            raise CommandError(-221, f"no user waveform {name}")
        self.channel(ch).arb = "VOLATILE" if name.startswith("VOLATIL") else name

    @command("FUNCtion#:USER?")
    def user_query(self, args, ch):
        return self.channel(ch).arb

    @command("DATA#:DAC")
    def load_dac(self, args, ch):
        c = self.channel(ch)
        name, _, block = args.partition(",")
        if name.strip().upper() not in ("VOLATILE", "VOLATIL"):
            raise CommandError(-222, "DAC data goes to VOLATILE memory")
        block = block.strip()
        if not block.startswith("#") or not block[1:2].isdigit():
            raise CommandError(-104, "expected an IEEE 488.2 definite-length block")
        d = int(block[1])
        length = int(block[2: 2 + d])
        raw = block[2 + d: 2 + d + length].encode("latin-1")
        if len(raw) != length or length % 2:
            raise CommandError(-104, "truncated binary block")
        dac = np.frombuffer(raw, dtype=">i2").astype(np.int64)
        if len(dac) < 8 or len(dac) > 524_288:
            raise CommandError(-222, f"{len(dac)} points (8..512k)")
        if np.abs(dac).max() > self.dac_max:
            raise CommandError(-222, "DAC value beyond +-8191")
        c.arbs["VOLATILE"] = dac

    @command("VOLTage#[:LEVel][:IMMediate][:AMPLitude]")
    def amplitude(self, args, ch):
        self.channel(ch).amplitude = number(args, 0.05, 5.0)

    @command("VOLTage#[:LEVel][:IMMediate][:AMPLitude]?")
    def amplitude_query(self, args, ch):
        return f"{self.channel(ch).amplitude:+.8E}"

    @command("VOLTage#[:LEVel][:IMMediate]:OFFSet")
    def offset(self, args, ch):
        self.channel(ch).offset = number(args, -4.995, 4.995)

    @command("VOLTage#[:LEVel][:IMMediate]:OFFSet?")
    def offset_query(self, args, ch):
        return f"{self.channel(ch).offset:+.8E}"

    @command("FREQuency#[:CW]")
    def frequency(self, args, ch):
        self.channel(ch).frequency = number(args, 1e-6, 500e6)

    @command("FREQuency#[:CW]?")
    def frequency_query(self, args, ch):
        return f"{self.channel(ch).frequency:+.8E}"

    @command("ARM:SOURce#")
    def arm_source(self, args, ch):
        self.channel(ch).trigger_source = choice(args, ["IMMediate", "INTernal2", "EXTernal", "MANual"])

    @command("ARM:SOURce#?")
    def arm_source_query(self, args, ch):
        return self.channel(ch).trigger_source

    @command("TRIGger#:COUNt")
    def trigger_count(self, args, ch):
        self.channel(ch).trigger_count = integer(args, 1, 2_147_483_647)

    @command("TRIGger#:COUNt?")
    def trigger_count_query(self, args, ch):
        return str(self.channel(ch).trigger_count)
