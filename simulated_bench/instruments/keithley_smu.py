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
"""

from __future__ import annotations

import numpy as np

from .scpi import CommandError, SimulatedInstrument, boolean, choice, command, integer, number

OVERFLOW = 9.91e37
MAX_POINTS = 2500


class Keithley2400Sim(SimulatedInstrument):
    """The 2400 simulator (see the module docstring)."""

    identity = "KEITHLEY INSTRUMENTS INC.,MODEL 2400,SIM00006,C30   Mar 17 2006 09:29:29/A02  /K/J"
    model = "Keithley2400"

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
                rows.append((self.source_voltage, self.source_voltage / r, float(r), self.time, 0.0))
        return rows

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

    @command("[SOURce:]VOLTage:RANGe:AUTO", "[SOURce:]CURRent:RANGe:AUTO", "SENSe:RESistance:RANGe:AUTO",
             "SENSe:CURRent:RANGe:AUTO", "SENSe:VOLTage:RANGe:AUTO")
    def auto_range(self, args):
        boolean(args)

    @command("[SOURce:]DELay:AUTO", "SYSTem:AZERo[:STATe]", "DISPlay:ENABle", "SYSTem:RSENse")
    def misc_bool(self, args):
        if args.strip().upper() != "ONCE":
            boolean(args)

    @command("[SOURce:]DELay", "TRIGger:DELay")
    def delays(self, args):
        number(args, 0, 999.9999)

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

    @command("SENSe:RESistance:NPLCycles?")
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


class Keithley2450Sim(Keithley2400Sim):
    """The 2450 simulator: the 2400 command set plus the 2450 driver's source commands."""

    identity = "KEITHLEY INSTRUMENTS,MODEL 2450,SIM00007,1.7.3b"
    model = "Keithley2450"

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
