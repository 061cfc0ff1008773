"""Simulated Keysight/Agilent 33500B (33522B, two channels), as PyMeasure's ``Agilent33500`` drives it.

Arbitrary waveforms are loaded as DAC codes (``[SOUR<n>:]DATA:ARB:DAC name, d0, d1, ...``,
-32767..32767, at least 8 points), selected with ``FUNC:ARB name`` and played at
``FUNC:ARB:SRAT`` samples per second. A channel plays on ``*TRG`` when it is in burst mode
(``BURS:STAT 1``, ``BURS:MODE TRIG``) with bus triggering (``TRIG<n>:SOUR BUS``) and its
function is ``ARB``. Ranges as in PyMeasure's validators (amplitude 1 mVpp-10 Vpp, offset
+-4.995 V, sample rate up to 250 MSa/s).

The pulse function plays too: with ``FUNC PULS`` and the same burst/bus-trigger set-up, a
trigger plays ``BURS:NCYC`` periods of ``FUNC:PULS:WIDT`` seconds at the high level
(``offset + amplitude / 2``) followed by the rest of ``FUNC:PULS:PER`` at the low level
(``offset - amplitude / 2``; set ``VOLT:LOW 0`` for pulses from 0 V). The low part of each period
is shortened to at most :data:`MAX_GAP_SAMPLES` pulse widths (the chip has no memory of the time
between pulses). A width not below the period is refused (-221); a period set below the width
shortens the width to fit. The other settings PyMeasure's driver declares (phase, duty cycles, edge time,
burst period, amplitude unit, ...) are kept and reported by table (:data:`PROPERTIES`).
"""

from __future__ import annotations

import numpy as np

from .awg import ArbitraryWaveformGenerator, Channel
from .properties import ScpiProperty
from .scpi import CommandError, boolean, choice, command, integer, number

SHAPES = ["SINusoid", "SQUare", "TRIangle", "RAMP", "PULSe", "PRBS", "NOISe", "ARB", "DC"]
MAX_GAP_SAMPLES = 8
MIN_PULSE_WIDTH_S = 16e-9

#: settings kept by table; units: seconds, degrees, percent
PROPERTIES = (
    ScpiProperty("amplitude_unit", "[SOURce#:]VOLTage:UNIT", "VPP", choices=("VPP", "VRMS", "DBM")),
    ScpiProperty("arb_advance", "[SOURce#:]FUNCtion:ARBitrary:ADVance", "SRAT", choices=("TRIGger", "SRATe")),
    ScpiProperty("burst_period", "[SOURce#:]BURSt:INTernal:PERiod", 0.01, lo=1e-6, hi=8000.0),
    ScpiProperty("phase", "[SOURce#:]PHASe", 0.0, lo=-360.0, hi=360.0),
    ScpiProperty("pulse_hold", "[SOURce#:]FUNCtion:PULSe:HOLD", "WIDT", choices=("WIDTh", "DCYCle")),
    ScpiProperty("pulse_period", "[SOURce#:]FUNCtion:PULSe:PERiod", 1e-3, lo=33e-9, hi=1e6),
    ScpiProperty("pulse_width", "[SOURce#:]FUNCtion:PULSe:WIDTh", 1e-4, lo=MIN_PULSE_WIDTH_S, hi=1e6),
    ScpiProperty("pulse_dutycycle", "[SOURce#:]FUNCtion:PULSe:DCYCle", 10.0, lo=0.0, hi=100.0),
    ScpiProperty("pulse_transition", "[SOURce#:]FUNCtion:PULSe:TRANsition[:BOTH]", 8.4e-9, lo=8.4e-9, hi=1e-6),
    ScpiProperty("ramp_symmetry", "[SOURce#:]FUNCtion:RAMP:SYMMetry", 100.0, lo=0.0, hi=100.0),
    ScpiProperty("square_dutycycle", "[SOURce#:]FUNCtion:SQUare:DCYCle", 50.0, lo=0.01, hi=99.98),
    ScpiProperty("ext_trig_out", "OUTPut:TRIGger", False),
    ScpiProperty("display", "DISPlay:TEXT", "", max_length=40),
)


class Agilent33500Sim(ArbitraryWaveformGenerator):
    """The 33522B simulator (see the module docstring)."""

    identity = "Agilent Technologies,33522B,SIM00001,4.00-1.19-2.00-58-00"
    model = "Agilent33500"
    dac_max = 32767
    PROPERTIES = PROPERTIES
    property_suffixes = (1, 2)

    def plays(self, c: Channel):
        if not (c.burst_state and c.burst_mode == "TRIG" and c.trigger_source == "BUS"):
            return None
        if c.shape == "PULS":
            return self.pulse_train(c)
        if c.shape != "ARB" or c.arb not in c.arbs:
            return None
        dac = c.arbs[c.arb]
        volts = self.volts(c, np.tile(dac, c.burst_cycles))
        return volts, 1.0 / c.srate

    def pulse_train(self, c: Channel) -> tuple[np.ndarray, float]:
        """(volts, dt) of a burst of ``burst_cycles`` pulses on channel ``c`` (see the module docstring)."""
        number_ = next(n for n, other in self.channels.items() if other is c)
        width = self.setting("pulse_width", number_)
        period = self.setting("pulse_period", number_)
        gap = int(min(MAX_GAP_SAMPLES, max(1, round((period - width) / width))))
        high, low = c.offset + c.amplitude / 2.0, c.offset - c.amplitude / 2.0
        one = np.concatenate([[high], np.full(gap, low)])
        return np.tile(one, c.burst_cycles), width

    # ------------------------------------------------------------------ coupled pulse settings
    def store_setting(self, name, suffix, value):
        if name == "pulse_dutycycle":  # the duty cycle sets the width at the present period
            name, value = "pulse_width", value / 100.0 * self.setting("pulse_period", suffix)
        if name == "pulse_width" and value > self.setting("pulse_period", suffix) - MIN_PULSE_WIDTH_S:
            raise CommandError(-221, "pulse width not below the period")
        if name == "pulse_period" and value < self.setting("pulse_width", suffix) + MIN_PULSE_WIDTH_S:
            # as the 33500 does: a shorter period shortens the pulse width to fit
            super().store_setting("pulse_width", suffix, max(MIN_PULSE_WIDTH_S, value - MIN_PULSE_WIDTH_S))
        super().store_setting(name, suffix, value)

    def read_setting(self, name, suffix):
        if name == "pulse_dutycycle":
            return 100.0 * self.setting("pulse_width", suffix) / self.setting("pulse_period", suffix)
        return super().read_setting(name, suffix)

    # ------------------------------------------------------------------ output
    @command("OUTPut#[:STATe]")
    def output(self, args, ch):
        self.channel(ch).output = boolean(args)

    @command("OUTPut#[:STATe]?")
    def output_query(self, args, ch):
        return str(int(self.channel(ch).output))

    @command("OUTPut#:LOAD")
    def output_load(self, args, ch):
        self.channel(ch).load = args.strip()

    @command("OUTPut#:LOAD?")
    def output_load_query(self, args, ch):
        return self.channel(ch).load

    # ------------------------------------------------------------------ function and levels
    @command("[SOURce#:]FUNCtion[:SHAPe]")
    def function(self, args, ch):
        self.channel(ch).shape = choice(args, SHAPES)

    @command("[SOURce#:]FUNCtion[:SHAPe]?")
    def function_query(self, args, ch):
        return self.channel(ch).shape

    @command("[SOURce#:]VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    def amplitude(self, args, ch):
        self.channel(ch).amplitude = number(args, 1e-3, 10.0)

    @command("[SOURce#:]VOLTage[:LEVel][:IMMediate][:AMPLitude]?")
    def amplitude_query(self, args, ch):
        return f"{self.channel(ch).amplitude:+.8E}"

    @command("[SOURce#:]VOLTage[:LEVel][:IMMediate]:OFFSet")
    def offset(self, args, ch):
        self.channel(ch).offset = number(args, -4.995, 4.995)

    @command("[SOURce#:]VOLTage[:LEVel][:IMMediate]:OFFSet?")
    def offset_query(self, args, ch):
        return f"{self.channel(ch).offset:+.8E}"

    @command("[SOURce#:]VOLTage[:LEVel][:IMMediate]:HIGH")
    def voltage_high(self, args, ch):
        c = self.channel(ch)
        self._levels(c, number(args, -5.0, 5.0), c.offset - c.amplitude / 2.0)

    @command("[SOURce#:]VOLTage[:LEVel][:IMMediate]:HIGH?")
    def voltage_high_query(self, args, ch):
        c = self.channel(ch)
        return f"{c.offset + c.amplitude / 2.0:+.8E}"

    @command("[SOURce#:]VOLTage[:LEVel][:IMMediate]:LOW")
    def voltage_low(self, args, ch):
        c = self.channel(ch)
        self._levels(c, c.offset + c.amplitude / 2.0, number(args, -5.0, 5.0))

    @command("[SOURce#:]VOLTage[:LEVel][:IMMediate]:LOW?")
    def voltage_low_query(self, args, ch):
        c = self.channel(ch)
        return f"{c.offset - c.amplitude / 2.0:+.8E}"

    @staticmethod
    def _levels(c: Channel, high: float, low: float) -> None:
        """High and low levels (volts) set amplitude and offset; -221 if high is not above low."""
        if high - low < 1e-3:
            raise CommandError(-221, "high level not above low level")
        c.amplitude, c.offset = high - low, (high + low) / 2.0

    @command("[SOURce#:]FREQuency")
    def frequency(self, args, ch):
        self.channel(ch).frequency = number(args, 1e-6, 120e6)

    @command("[SOURce#:]FREQuency?")
    def frequency_query(self, args, ch):
        return f"{self.channel(ch).frequency:+.8E}"

    # ------------------------------------------------------------------ arbitrary waveforms
    @command("[SOURce#:]DATA:VOLatile:CLEar")
    def clear_volatile(self, args, ch):
        c = self.channel(ch)
        c.arbs.clear()
        c.arb = ""

    @command("[SOURce#:]DATA:ARBitrary:DAC")
    def load_dac(self, args, ch):
        c = self.channel(ch)
        name, _, data = args.partition(",")
        name = name.strip().upper()
        if not name or not name[0].isalpha() or len(name) > 12:
            raise CommandError(-104, "arb name must be 1-12 characters starting with a letter")
        try:
            dac = np.array([int(v) for v in data.split(",")], dtype=np.int64)
        except ValueError:
            raise CommandError(-104, "DAC values must be integers") from None
        if len(dac) < 8 or len(dac) > 16_000_000:
            raise CommandError(-222, f"{len(dac)} points (8..16M)")
        if np.abs(dac).max() > self.dac_max:
            raise CommandError(-222, "DAC value beyond +-32767")
        if name in c.arbs:
            raise CommandError(-221, f"arb {name} already loaded; clear volatile memory first")
        c.arbs[name] = dac

    @command("[SOURce#:]FUNCtion:ARBitrary")
    def select_arb(self, args, ch):
        c = self.channel(ch)
        name = args.strip().strip("\"'").upper()
        if name not in c.arbs:
            raise CommandError(-221, f"no arb named {name}")
        c.arb = name

    @command("[SOURce#:]FUNCtion:ARBitrary?")
    def select_arb_query(self, args, ch):
        return f'"{self.channel(ch).arb}"'

    @command("[SOURce#:]FUNCtion:ARBitrary:SRATe")
    def srate(self, args, ch):
        self.channel(ch).srate = number(args, 1e-6, 250e6)

    @command("[SOURce#:]FUNCtion:ARBitrary:SRATe?")
    def srate_query(self, args, ch):
        return f"{self.channel(ch).srate:+.8E}"

    @command("[SOURce#:]FUNCtion:ARBitrary:FILTer")
    def arb_filter(self, args, ch):
        self.channel(ch).filter = choice(args, ["NORMal", "STEP", "OFF"])

    @command("[SOURce#:]FUNCtion:ARBitrary:FILTer?")
    def arb_filter_query(self, args, ch):
        return self.channel(ch).filter

    # ------------------------------------------------------------------ burst and trigger
    @command("[SOURce#:]BURSt:STATe")
    def burst_state(self, args, ch):
        self.channel(ch).burst_state = boolean(args)

    @command("[SOURce#:]BURSt:STATe?")
    def burst_state_query(self, args, ch):
        return str(int(self.channel(ch).burst_state))

    @command("[SOURce#:]BURSt:MODE")
    def burst_mode(self, args, ch):
        self.channel(ch).burst_mode = choice(args, ["TRIGgered", "GATed"])

    @command("[SOURce#:]BURSt:MODE?")
    def burst_mode_query(self, args, ch):
        return self.channel(ch).burst_mode

    @command("[SOURce#:]BURSt:NCYCles")
    def burst_cycles(self, args, ch):
        self.channel(ch).burst_cycles = integer(args, 1, 100_000_000)

    @command("[SOURce#:]BURSt:NCYCles?")
    def burst_cycles_query(self, args, ch):
        return f"{self.channel(ch).burst_cycles:+.8E}"

    @command("TRIGger#:SOURce")
    def trigger_source(self, args, ch):
        self.channel(ch).trigger_source = choice(args, ["IMMediate", "EXTernal", "TIMer", "BUS"])

    @command("TRIGger#:SOURce?")
    def trigger_source_query(self, args, ch):
        return self.channel(ch).trigger_source

    @command("SYSTem:BEEPer[:IMMediate]")
    def beep(self, args):
        pass
