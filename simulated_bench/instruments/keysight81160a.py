"""Simulated Keysight 81160A (two channels), as PyMeasure's ``Keysight81160A`` drives it.

User waveforms are uploaded as binary blocks of big-endian int16 DAC codes (-8191..8191) to
volatile memory (``:DATA<n>:DAC VOLATILE,#<block>``), selected with ``:FUNC<n> USER`` and
``:FUNC<n>:USER VOLATILE``, and played one period per trigger at the repetition frequency
``:FREQ<n>``, so the sample period is ``1 / (frequency * points)``. A channel plays on ``*TRG``
when it is armed manually (``:ARM:SOUR<n> MAN``). Ranges as in PyMeasure's validators
(amplitude 50 mVpp-5 Vpp, offset +-4.995 V, frequency up to 500 MHz).

The other settings PyMeasure's ``Keysight81160A`` channels declare (pulse period, width, duty
cycle and edge time, burst, voltage limits, channel coupling, phase, ...) are kept and reported
by table (:data:`PROPERTIES`). The pulse commands are ``:PULSe:...<n>``; the driver's edge time
(``:FUNC<n>:PULS:TRAN``) and its instrument-level 33500-style spellings (``FUNC:PULS:WIDT``) are
accepted with the optional ``FUNCtion`` node. The 81160A has no ``FUNC:ARB`` subsystem (user
waveforms are ``:FUNC:USER`` and ``:DATA:DAC``): those commands are -113.
"""

from __future__ import annotations

import numpy as np

from .awg import ArbitraryWaveformGenerator, Channel
from .properties import ScpiProperty
from .scpi import CommandError, boolean, choice, command, integer, number

SHAPES = ["SINusoid", "SQUare", "RAMP", "PULSe", "NOISe", "DC", "USER"]

#: settings kept by table; units: volts, seconds, degrees, percent, ohms
PROPERTIES = (
    ScpiProperty("amplitude_unit", "VOLTage#:UNIT", "VPP", choices=("VPP", "VRMS", "DBM")),
    ScpiProperty("limit_high", "VOLTage#:LIMit[:HIGH]", 10.0, lo=-9.99, hi=10.0),
    ScpiProperty("limit_low", "VOLTage#:LIMit:LOW", -10.0, lo=-10.0, hi=9.99),
    ScpiProperty("limit_state", "VOLTage#:LIMit:STATe", False),
    ScpiProperty("square_dutycycle", "FUNCtion#:SQUare:DCYCle", 50.0, lo=0.0001515, hi=99.9998485),
    ScpiProperty("ramp_symmetry", "FUNCtion#:RAMP:SYMMetry", 100.0, lo=0.0, hi=100.0),
    ScpiProperty("pulse_period", "[FUNCtion#:]PULSe:PERiod#", 1e-6, lo=2e-9, hi=1e6),
    ScpiProperty("pulse_hold", "[FUNCtion#:]PULSe:HOLD#", "WIDT", choices=("WIDTh", "DCYCle")),
    ScpiProperty("pulse_width", "[FUNCtion#:]PULSe:WIDTh#", 1e-7, lo=1.5e-9, hi=1e6),
    ScpiProperty("pulse_dutycycle", "[FUNCtion#:]PULSe:DCYCle#", 10.0, lo=0.15, hi=99.99),
    ScpiProperty("pulse_transition", "[FUNCtion#:]PULSe:TRANsition#[:LEADing]", 2.5e-9, lo=1e-9, hi=1e3),
    ScpiProperty("load", "OUTPut#:LOAD", 50.0, lo=0.3, hi=1e6),
    ScpiProperty("external_trigger_out", "OUTPut#:TRIGger", False),
    ScpiProperty("burst_state", "BURSt#:STATe", False),
    ScpiProperty("burst_mode", "BURSt#:MODE", "TRIG", choices=("TRIGgered", "GATed")),
    ScpiProperty("burst_period", "BURSt#:INTernal:PERiod", 1e-3, lo=3.03e-9, hi=1e6),
    ScpiProperty("burst_ncycles", "BURSt#:NCYCles", 2, lo=2, hi=2_147_483_647),
    ScpiProperty("coupling", "TRACk:CHANnel#", False),
    ScpiProperty("phase", "[SOURce#:]PHASe#", 0.0, lo=-360.0, hi=360.0),
    ScpiProperty("trigger_source", "TRIGger#:SOURce", "IMM", choices=("IMMediate", "INTernal1", "INTernal2",
                                                                    "EXTernal", "BUS", "MANual")),
    ScpiProperty("display", "DISPlay:TEXT", "", max_length=40),
)


class Keysight81160ASim(ArbitraryWaveformGenerator):
    """The 81160A simulator (see the module docstring)."""

    identity = "Agilent Technologies,81160A,SIM00002,2.0.0.0"
    model = "Keysight81160A"
    dac_max = 8191
    PROPERTIES = PROPERTIES
    property_suffixes = (1, 2)

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

    @command("VOLTage#[:LEVel][:IMMediate]:HIGH")
    def voltage_high(self, args, ch):
        c = self.channel(ch)
        self._levels(c, number(args, -4.95, 5.0), c.offset - c.amplitude / 2.0)

    @command("VOLTage#[:LEVel][:IMMediate]:HIGH?")
    def voltage_high_query(self, args, ch):
        c = self.channel(ch)
        return f"{c.offset + c.amplitude / 2.0:+.8E}"

    @command("VOLTage#[:LEVel][:IMMediate]:LOW")
    def voltage_low(self, args, ch):
        c = self.channel(ch)
        self._levels(c, c.offset + c.amplitude / 2.0, number(args, -5.0, 4.95))

    @command("VOLTage#[:LEVel][:IMMediate]:LOW?")
    def voltage_low_query(self, args, ch):
        c = self.channel(ch)
        return f"{c.offset - c.amplitude / 2.0:+.8E}"

    @staticmethod
    def _levels(c: Channel, high: float, low: float) -> None:
        """High and low levels (volts) set amplitude and offset; -221 outside 50 mVpp..5 Vpp."""
        if not 0.05 <= high - low <= 5.0:
            raise CommandError(-221, "high - low outside 50 mV..5 V")
        c.amplitude, c.offset = high - low, (high + low) / 2.0

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
