"""Simulated Keithley 2400 and 2450 source meters, as PyMeasure's drivers (and labctl's extension) drive them.

The source meter sources a voltage and, in manual-ohms mode, reports ``R = V / I`` of the
device routed to it by the switch matrix (the shared chip's resistance read, ohms). ``:INIT``
starts a trigger sequence of ``:TRIG:COUN`` readings; with ``:TRIG:SOUR TLIN`` each one waits
for a trigger-link edge, which the bench delivers from the pulse source's marker channel; with
``IMM`` they are taken at once. Readings feed the buffer (``:TRAC:FEED:CONT NEXT``, up to
``:TRAC:POIN``, at most 2500) and come back from ``:TRAC:DATA?`` as ASCII, five elements each
(voltage, current, resistance, time, status). With the output off, or nothing routed, the
current is 0 and the resistance the overflow value 9.91e37. The 2450 simulator accepts its own
source commands (``:SOUR:VOLT:LEV``, ``:SOUR:VOLT:ILIM``, ``OUTPUT ON``) besides the 2400 set
(its "SCPI 2400" emulation).

Sourcing a voltage ``V`` into a device of resistance ``R`` gives ``I = V / R`` unless that exceeds
the current compliance ``Ic``: then the source meter is in compliance, ``I = +-Ic`` and the
voltage at the device ``Ic * R`` (status bit 3 set). The read bias therefore reaches the chip's
read exactly as the source voltage is set. Settings with no effect on the simulated chip (ranges,
filters, delays, trigger lines, line frequency, ...) are kept and reported by table
(:data:`PROPERTIES_2400`, :data:`PROPERTIES_2450`); ranges are kept as set, not rounded up to the
instrument's range steps.
"""

from __future__ import annotations

import numpy as np

from .properties import ScpiProperty
from .scpi import CommandError, SimulatedInstrument, boolean, choice, command, integer, number

OVERFLOW = 9.91e37
MAX_POINTS = 2500
COMPLIANCE_BIT = 1 << 3

#: settings of the 2400 kept by table; units: volts, amperes, ohms, seconds, hertz
PROPERTIES_2400 = (
    ScpiProperty("source_current_range", "[SOURce:]CURRent:RANGe", 1.05e-4, lo=-1.05, hi=1.05, fmt="{:+.6E}"),
    ScpiProperty("source_voltage_range_auto", "[SOURce:]VOLTage:RANGe:AUTO", False),
    ScpiProperty("source_current_range_auto", "[SOURce:]CURRent:RANGe:AUTO", False),
    ScpiProperty("source_delay", "[SOURce:]DELay", 0.0, lo=0.0, hi=999.9999, fmt="{:+.6E}"),
    ScpiProperty("source_delay_auto", "[SOURce:]DELay:AUTO", True),
    ScpiProperty("auto_output_off", "[SOURce:]CLEar:AUTO", False),
    ScpiProperty("current_range", "SENSe:CURRent[:DC]:RANGe[:UPPer]", 1.05e-4, lo=-1.05, hi=1.05, fmt="{:+.6E}"),
    ScpiProperty("current_range_auto", "SENSe:CURRent[:DC]:RANGe:AUTO", True),
    ScpiProperty("voltage_range", "SENSe:VOLTage[:DC]:RANGe[:UPPer]", 21.0, lo=-210.0, hi=210.0, fmt="{:+.6E}"),
    ScpiProperty("voltage_range_auto", "SENSe:VOLTage[:DC]:RANGe:AUTO", True),
    ScpiProperty("resistance_range", "SENSe:RESistance:RANGe[:UPPer]", 2.1e5, lo=0.0, hi=2.1e8, fmt="{:+.6E}"),
    ScpiProperty("resistance_range_auto", "SENSe:RESistance:RANGe:AUTO", True),
    ScpiProperty("filter_count", "SENSe:AVERage:COUNt", 10, lo=1, hi=100),
    ScpiProperty("filter_state", "SENSe:AVERage[:STATe]", False),
    ScpiProperty("filter_type", "SENSe:AVERage:TCONtrol", "REP", choices=("REPeat", "MOVing")),
    ScpiProperty("terminals", "ROUTe:TERMinals", "FRON", choices=("FRONt", "REAR")),
    ScpiProperty("line_frequency", "SYSTem:LFRequency", 60, lo=50, hi=60),
    ScpiProperty("line_frequency_auto", "SYSTem:LFRequency:AUTO", True),
    ScpiProperty("output_off_state", "OUTPut[:STATe]:SMODe", "NORM", choices=("HIMPedance", "NORMal", "ZERO", "GUARd")),
    ScpiProperty("display_enabled", "DISPlay:ENABle", True),
    ScpiProperty("wires", "SYSTem:RSENse", False),
    ScpiProperty("trigger_delay", "TRIGger[:SEQuence[1]]:DELay", 0.0, lo=0.0, hi=999.9999, fmt="{:+.6E}"),
    ScpiProperty("trigger_output_event", "TRIGger[:SEQuence[1]]:OUTPut", "NONE",
                 choices=("SOURce", "DELay", "SENSe", "NONE")),
    ScpiProperty("trigger_output_line", "TRIGger[:SEQuence[1]]:OLINe", 2, lo=1, hi=4),
    ScpiProperty("arm_input_line", "ARM[:SEQuence[1]][:LAYer[1]]:ILINe", 1, lo=1, hi=4),
    ScpiProperty("arm_output_line", "ARM[:SEQuence[1]][:LAYer[1]]:OLINe", 2, lo=1, hi=4),
    ScpiProperty("arm_output_event", "ARM[:SEQuence[1]][:LAYer[1]]:OUTPut", "NONE",
                 choices=("TENTer", "TEXit", "NONE")),
    ScpiProperty("arm_timer", "ARM[:SEQuence[1]][:LAYer[1]]:TIMer", 0.1, lo=0.001, hi=99999.99, fmt="{:+.6E}"),
)


class Keithley2400Sim(SimulatedInstrument):
    """The 2400 simulator (see the module docstring)."""

    identity = "KEITHLEY INSTRUMENTS INC.,MODEL 2400,SIM00006,C30   Mar 17 2006 09:29:29/A02  /K/J"
    model = "Keithley2400"
    PROPERTIES = PROPERTIES_2400

    def reset(self) -> None:
        self.output = False
        self.source_function = "VOLT"
        self.source_voltage = 0.0
        self.source_current = 0.0
        self.voltage_range = 21.0
        self.compliance_current = 1.05e-4
        self.compliance_voltage = 21.0
        self.sense = "CURR"
        self.resistance_mode = "MAN"
        self.nplc = 1.0
        self.auto_zero = True
        self.elements = "VOLT,CURR,RES,TIME,STAT"
        self.data_format = "ASC"
        self.arm_source = "IMM"
        self.arm_count = 1
        self.trigger_source = "IMM"
        self.trigger_count = 1
        self.trigger_line = 1
        self.trace_points = 100
        self.feed = "SENS"
        self.feed_control = "NEV"
        self.buffer: list[tuple[float, float, float, float, float]] = []
        self.pending = 0  # readings still to take in the running trigger sequence
        self.time = 0.0

    def status(self) -> dict:
        return {"output": self.output, "source_voltage_v": self.source_voltage,
                "source_current_a": self.source_current, "armed": self.pending > 0}

    def outputs_safe(self) -> bool:
        return not self.output and self.source_voltage == 0.0 and self.source_current == 0.0

    # ------------------------------------------------------------------ readings
    def _rows(self, resistance: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        rows = []
        for r in np.asarray(resistance, dtype=np.float64):
            self.time += 1e-3
            if not self.output or not np.isfinite(r) or r >= OVERFLOW:
                rows.append((self.source_voltage if self.output else 0.0, 0.0, OVERFLOW, self.time, 0.0))
            else:
                v, i, compliance = self._operating_point(float(r))
                rows.append((v, i, float(r), self.time, float(COMPLIANCE_BIT if compliance else 0)))
        return rows

    def _operating_point(self, r: float) -> tuple[float, float, bool]:
        """(volts, amperes, in compliance) at a device of ``r`` ohms: the source level, unless the
        other quantity would pass its compliance limit."""
        if self.source_function == "CURR":
            v, limit = self.source_current * r, abs(self.compliance_voltage)
            if abs(v) > limit:
                v = float(np.copysign(limit, v))
                return v, v / r, True
            return v, self.source_current, False
        i, limit = self.source_voltage / r, abs(self.compliance_current)
        if abs(i) > limit:
            i = float(np.copysign(limit, i))
            return i * r, i, True
        return self.source_voltage, i, False

    def _readings(self, count: int) -> list[tuple[float, float, float, float, float]]:
        resistance = self.bench.resistance(count) if self.bench is not None else np.full(count, np.inf)
        return self._rows(resistance)

    def _store(self, rows) -> None:
        if self.feed_control == "NEXT":
            room = self.trace_points - len(self.buffer)
            self.buffer.extend(rows[:room])
            if len(self.buffer) >= self.trace_points:
                self.feed_control = "NEV"

    def trigger_link(self, resistance: np.ndarray) -> None:
        """Trigger-link edges from the bench, one resistance (ohms) each: readings while a sequence waits."""
        if self.pending > 0 and self.trigger_source == "TLIN":
            n = min(len(resistance), self.pending)
            self.pending -= n
            self._store(self._rows(resistance[:n]))

    @staticmethod
    def _format(rows) -> str:
        return ",".join(f"{v:+.6E}" for row in rows for v in row)

    # ------------------------------------------------------------------ output and source
    @command("OUTPut[:STATe]")
    def output_set(self, args):
        self.output = boolean(args)

    @command("OUTPut[:STATe]?")
    def output_query(self, args):
        return str(int(self.output))

    @command("[SOURce:]FUNCtion[:MODE]")
    def source_function_set(self, args):
        self.source_function = choice(args, ["VOLTage", "CURRent"])

    @command("[SOURce:]FUNCtion[:MODE]?")
    def source_function_query(self, args):
        return self.source_function

    @command("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    def source_voltage_set(self, args):
        self.source_voltage = number(args, -210.0, 210.0)

    @command("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]?")
    def source_voltage_query(self, args):
        return f"{self.source_voltage:+.6E}"

    @command("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]")
    def source_current_set(self, args):
        self.source_current = number(args, -1.05, 1.05)

    @command("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]?")
    def source_current_query(self, args):
        return f"{self.source_current:+.6E}"

    @command("[SOURce:]VOLTage:RANGe")
    def voltage_range_set(self, args):
        self.voltage_range = number(args, -210.0, 210.0)

    @command("[SOURce:]VOLTage:RANGe?")
    def voltage_range_query(self, args):
        return f"{self.voltage_range:+.6E}"

    @command("SYSTem:AZERo[:STATe]")
    def auto_zero_set(self, args):
        if args.strip().upper() != "ONCE":  # ONCE: one auto-zero now, the state unchanged
            self.auto_zero = boolean(args)

    @command("SYSTem:AZERo[:STATe]?")
    def auto_zero_query(self, args):
        return str(int(self.auto_zero))

    @command("SYSTem:LFRequency")
    def line_frequency_set(self, args):
        value = integer(args, 50, 60)
        if value not in (50, 60):
            raise CommandError(-222, "line frequency is 50 or 60 Hz")
        self.store_setting("line_frequency", 1, value)

    # ------------------------------------------------------------------ sense
    @command("SENSe:CURRent[:DC]:PROTection[:LEVel]")
    def compliance_current_set(self, args):
        self.compliance_current = number(args, -1.05, 1.05)

    @command("SENSe:CURRent[:DC]:PROTection[:LEVel]?")
    def compliance_current_query(self, args):
        return f"{self.compliance_current:+.6E}"

    @command("SENSe:VOLTage[:DC]:PROTection[:LEVel]")
    def compliance_voltage_set(self, args):
        self.compliance_voltage = number(args, -210.0, 210.0)

    @command("SENSe:VOLTage[:DC]:PROTection[:LEVel]?")
    def compliance_voltage_query(self, args):
        return f"{self.compliance_voltage:+.6E}"

    @command("SENSe:FUNCtion[:ON]")
    def sense_set(self, args):
        self.sense = choice(args, ["RESistance", "CURRent[:DC]", "VOLTage[:DC]"])

    @command("SENSe:FUNCtion[:ON]?")
    def sense_query(self, args):
        names = {"RES": "RES", "CURR": "CURR:DC", "VOLT": "VOLT:DC"}
        return f'"{names.get(self.sense, self.sense)}"'

    @command("SENSe:FUNCtion:ALL")
    def sense_all(self, args):
        self.sense = "RES"

    @command("SENSe:RESistance:MODE")
    def resistance_mode_set(self, args):
        self.resistance_mode = choice(args, ["AUTO", "MANual"])

    @command("SENSe:RESistance:MODE?")
    def resistance_mode_query(self, args):
        return self.resistance_mode

    @command("SENSe:RESistance:NPLCycles", "SENSe:CURRent[:DC]:NPLCycles", "SENSe:VOLTage[:DC]:NPLCycles")
    def nplc_set(self, args):
        self.nplc = number(args, 0.01, 10.0)

    @command("SENSe:RESistance:NPLCycles?", "SENSe:CURRent[:DC]:NPLCycles?", "SENSe:VOLTage[:DC]:NPLCycles?")
    def nplc_query(self, args):
        return f"{self.nplc:+.6E}"

    @command("FORMat:ELEMents[:SENSe]")
    def elements_set(self, args):
        items = [choice(a, ["VOLTage", "CURRent", "RESistance", "TIME", "STATus"]) for a in args.split(",")]
        self.elements = ",".join(items)

    @command("FORMat:ELEMents[:SENSe]?")
    def elements_query(self, args):
        return self.elements

    @command("FORMat[:DATA]")
    def data_format_set(self, args):
        self.data_format = choice(args, ["ASCii", "SREal", "REAL", "SBIPolar"])

    # ------------------------------------------------------------------ trigger model
    @command("ARM[:SEQuence[1]][:LAYer[1]]:SOURce")
    def arm_source_set(self, args):
        self.arm_source = choice(args, ["IMMediate", "TLINk", "TIMer", "MANual", "BUS"])

    @command("ARM[:SEQuence[1]][:LAYer[1]]:SOURce?")
    def arm_source_query(self, args):
        return self.arm_source

    @command("ARM[:SEQuence[1]][:LAYer[1]]:COUNt")
    def arm_count_set(self, args):
        self.arm_count = integer(args, 1, MAX_POINTS)

    @command("ARM[:SEQuence[1]][:LAYer[1]]:COUNt?")
    def arm_count_query(self, args):
        return str(self.arm_count)

    @command("TRIGger[:SEQuence[1]]:SOURce")
    def trigger_source_set(self, args):
        self.trigger_source = choice(args, ["IMMediate", "TLINk"])

    @command("TRIGger[:SEQuence[1]]:SOURce?")
    def trigger_source_query(self, args):
        return self.trigger_source

    @command("TRIGger[:SEQuence[1]]:COUNt")
    def trigger_count_set(self, args):
        count = integer(args, 1, MAX_POINTS)
        if count * self.arm_count > MAX_POINTS:
            raise CommandError(-221, "arm count x trigger count exceeds 2500")
        self.trigger_count = count

    @command("TRIGger[:SEQuence[1]]:COUNt?")
    def trigger_count_query(self, args):
        return str(self.trigger_count)

    @command("TRIGger[:SEQuence[1]]:ILINe")
    def trigger_line_set(self, args):
        self.trigger_line = integer(args, 1, 4)

    @command("TRIGger[:SEQuence[1]]:ILINe?")
    def trigger_line_query(self, args):
        return str(self.trigger_line)

    @command("TRIGger[:SEQuence[1]]:CLEar")
    def trigger_clear(self, args):
        pass

    @command("INITiate[:IMMediate]")
    def initiate(self, args):
        if not self.output:
            raise CommandError(-221, "output is off")
        self.pending = self.trigger_count * self.arm_count
        if self.trigger_source == "IMM":
            rows = self._readings(self.pending)
            self.pending = 0
            self._store(rows)

    @command("ABORt")
    def abort(self, args):
        self.pending = 0

    @command("READ?", "MEASure[:RESistance]?", "MEASure:CURRent[:DC]?", "MEASure:VOLTage[:DC]?")
    def read(self, args):
        if not self.output:
            raise CommandError(-221, "output is off")
        return self._format(self._readings(self.trigger_count * self.arm_count))

    # ------------------------------------------------------------------ buffer
    @command("TRACe:CLEar")
    def trace_clear(self, args):
        self.buffer.clear()

    @command("TRACe:POINts")
    def trace_points_set(self, args):
        self.trace_points = integer(args, 1, MAX_POINTS)

    @command("TRACe:POINts?")
    def trace_points_query(self, args):
        return str(self.trace_points)

    @command("TRACe:POINts:ACTual?")
    def trace_actual(self, args):
        return str(len(self.buffer))

    @command("TRACe:FEED")
    def feed_set(self, args):
        self.feed = choice(args, ["SENSe[1]", "CALCulate[1]", "CALCulate2"])

    @command("TRACe:FEED:CONTrol")
    def feed_control_set(self, args):
        self.feed_control = choice(args, ["NEXT", "NEVer"])

    @command("TRACe:DATA?")
    def trace_data(self, args):
        return self._format(self.buffer)


PROPERTIES_2450 = PROPERTIES_2400 + (
    ScpiProperty("current_filter_count", "SENSe:CURRent[:DC]:AVERage:COUNt", 10, lo=1, hi=100),
    ScpiProperty("current_filter_state", "SENSe:CURRent[:DC]:AVERage[:STATe]", False),
    ScpiProperty("current_filter_type", "SENSe:CURRent[:DC]:AVERage:TCONtrol", "REP", choices=("REPeat", "MOVing")),
    ScpiProperty("voltage_filter_count", "SENSe:VOLTage[:DC]:AVERage:COUNt", 10, lo=1, hi=100),
    ScpiProperty("voltage_filter_state", "SENSe:VOLTage[:DC]:AVERage[:STATe]", False),
    ScpiProperty("voltage_filter_type", "SENSe:VOLTage[:DC]:AVERage:TCONtrol", "REP", choices=("REPeat", "MOVing")),
    ScpiProperty("current_output_off_state", "OUTPut:CURRent:SMODe", "NORM",
                 choices=("HIMPedance", "NORMal", "ZERO", "GUARd")),
    ScpiProperty("voltage_output_off_state", "OUTPut:VOLTage:SMODe", "NORM",
                 choices=("HIMPedance", "NORMal", "ZERO", "GUARd")),
    ScpiProperty("source_voltage_delay", "[SOURce:]VOLTage:DELay", 0.0, lo=0.0, hi=999.9999, fmt="{:+.6E}"),
    ScpiProperty("source_voltage_delay_auto", "[SOURce:]VOLTage:DELay:AUTO", True),
    ScpiProperty("source_current_delay", "[SOURce:]CURRent:DELay", 0.0, lo=0.0, hi=999.9999, fmt="{:+.6E}"),
    ScpiProperty("source_current_delay_auto", "[SOURce:]CURRent:DELay:AUTO", True),
    ScpiProperty("wires_2450", "SENSe:RESistance:RSENse", False),
)


class Keithley2450Sim(Keithley2400Sim):
    """The 2450 simulator: the 2400 command set plus the 2450 driver's source commands."""

    identity = "KEITHLEY INSTRUMENTS,MODEL 2450,SIM00007,1.7.3b"
    model = "Keithley2450"
    PROPERTIES = PROPERTIES_2450

    @command("READ?")
    def read(self, args):
        """The 2450's own ``:READ?`` (and ``:MEAS...?``): one reading of the sense function
        (amperes, volts or ohms), not the 2400's five elements."""
        if not self.output:
            raise CommandError(-221, "output is off")
        v, i, r, _, _ = self._readings(1)[0]
        sense = self.sense.split("[")[0]  # CURR[:DC] -> CURR
        return f"{ {'CURR': i, 'VOLT': v, 'RES': r}[sense]:+.6E}"

    @command("OUTPut[:STATe]")
    def output_set(self, args):
        self.output = boolean(args)

    @command("[SOURce:]VOLTage:ILIMit")
    def voltage_ilimit(self, args):
        self.compliance_current = number(args, -1.05, 1.05)

    @command("[SOURce:]VOLTage:ILIMit?")
    def voltage_ilimit_query(self, args):
        return f"{self.compliance_current:+.6E}"

    @command("[SOURce:]CURRent:VLIMit")
    def current_vlimit(self, args):
        self.compliance_voltage = number(args, -210.0, 210.0)

    @command("[SOURce:]CURRent:VLIMit?")
    def current_vlimit_query(self, args):
        return f"{self.compliance_voltage:+.6E}"
