"""Keithley 2400 / 2450 source meters as the resistance readout (``Keithley2400``, ``Keithley2450``).

The source meter sources the read bias (volts) and measures resistance in manual-ohms mode
(R = V / I of the sourced voltage). Before a batch it is armed for ``count`` readings, each
taken on a trigger-link trigger (input line 1, driven by the pulse source's marker channel) and
stored in the buffer; ``:TRAC:DATA?`` returns them as ASCII with five elements per reading
(voltage, current, resistance, time, status: the format PyMeasure's constructor sets).
Safe state: trigger model aborted, bias ramped to zero, output off.

The 2450 is driven with its own PyMeasure driver and, for the buffer and trigger commands, the
2400 command set: like PyMeasure's ``Keithley2450`` it must run in its "SCPI 2400" emulation.

Driver extensions: the sense function, the ASCII data format, a one-message buffer arm
(``:TRAC:CLE;:TRAC:POIN n;:TRIG:COUN n;:TRAC:FEED SENS;:TRAC:FEED:CONT NEXT;:INIT;:TRAC:POIN:ACT?``; PyMeasure's
``config_buffer`` takes six messages and its ``trigger_count`` setter first queries the arm
count), ``:TRAC:DATA?`` without rewriting the format each time, and (2450) ``:ABOR``.
"""

from __future__ import annotations

import numpy as np
from pymeasure.instruments import Instrument
from pymeasure.instruments.keithley import Keithley2400, Keithley2450
from pymeasure.instruments.validators import strict_discrete_set

from .errors import ReplyError
from .roles import SourceMeter, confirm, parse_floats, ramp, scpi_errors

ELEMENTS = 5  # VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS
RESISTANCE = 2


class _BufferedReads:
    """Declarative extensions shared by the 2400 and the 2450 (2400 command set)."""

    sense_function = Instrument.setting(
        ":SENS:FUNC '%s'",
        """Set the measurement function (str: 'RES', 'CURR' or 'VOLT').""",
        validator=strict_discrete_set,
        values=["RES", "CURR", "VOLT"],
    )

    data_format = Instrument.setting(
        ":FORM:DATA %s",
        """Set the data format of buffer transfers (str: 'ASCII').""",
        validator=strict_discrete_set,
        values=["ASCII"],
    )

    def arm_buffer(self, count: int) -> str:
        """Clear the buffer and start a trigger sequence of ``count`` stored readings (one message).

        Ends with ``:TRAC:POIN:ACT?`` (the reply is ``0``), so that the instrument is known to be
        armed before the pulse source fires (``*OPC?`` would wait for the whole sequence).
        """
        return self.ask(f":TRAC:CLE;:TRAC:POIN {count:d};:TRIG:COUN {count:d};"
                        ":TRAC:FEED SENS;:TRAC:FEED:CONT NEXT;:INIT;:TRAC:POIN:ACT?")

    def trace_data(self) -> str:
        """The raw ASCII buffer: ``5 * n`` comma-separated values."""
        return self.ask(":TRAC:DATA?")

    def abort(self) -> None:
        """Abort the trigger model (back to idle)."""
        self.write(":ABOR")


class LabKeithley2400(_BufferedReads, Keithley2400):
    """PyMeasure's ``Keithley2400`` with one-message buffered reads."""


class LabKeithley2450(_BufferedReads, Keithley2450):
    """PyMeasure's ``Keithley2450`` with one-message buffered reads (2400 emulation)."""


class Keithley2400SourceMeter(SourceMeter):
    """The 2400 in the ``source_meter`` role (see the module docstring)."""

    max_points = 2500

    def _configure(self, d) -> None:
        d.clear()
        d.abort()
        d.source_enabled = False
        d.source_mode = "voltage"
        d.source_voltage_range = max(abs(self.read_bias), 0.2)
        d.source_voltage = 0
        d.compliance_current = self.compliance
        d.sense_function = "RES"
        d.resistance_mode_auto_enabled = False
        d.resistance_nplc = self.nplc
        d.data_format = "ASCII"
        d.arm_source = "immediate"
        d.trigger_source = "trigger_link"
        d.trigger_input_line = 1
        d.source_enabled = True
        self._ramp(d, self.read_bias)

    def _ramp(self, d, target: float) -> None:
        ramp(lambda: d.ask(":SOURCE:VOLTAGE?"), lambda v: setattr(d, "source_voltage", v), target,
             self.ramp_steps, self.ramp_pause_s)

    def _output(self, d, on: bool) -> None:
        d.source_enabled = on

    def _arm(self, d, count: int) -> None:
        reply = d.arm_buffer(count).strip()
        if reply != "0":
            raise ReplyError(f"buffer not empty after arming: {reply[:40]!r}")

    def _fetch(self, d, count: int) -> np.ndarray:
        values = parse_floats(d.trace_data(), ELEMENTS * count, ":TRAC:DATA? reply")
        return values.reshape(count, ELEMENTS)[:, RESISTANCE]

    def _safe_state(self, d) -> None:
        d.abort()
        self._ramp(d, 0.0)
        self._output(d, False)
        confirm(d.ask("OUTPUT?"), ("0", "OFF"), "output")

    def _blind_safe_state(self, d) -> None:
        d.abort()
        d.source_voltage = 0
        self._output(d, False)

    #: The query of the source voltage setpoint (volts) in this model's command set.
    setpoint_query = ":SOURCE:VOLTAGE?"

    def _output_state(self, d) -> tuple[str, bool | None]:
        on = d.ask("OUTPUT?").strip().upper() not in ("0", "OFF")
        volts = float(parse_floats(d.ask(self.setpoint_query), 1, f"{self.setpoint_query} reply")[0])
        return f"output {'on' if on else 'off'}, bias {volts:.4g} V", not on and volts == 0.0

    def _errors(self, d) -> list[str]:
        return scpi_errors(d)


class Keithley2450SourceMeter(Keithley2400SourceMeter):
    """The 2450 in the ``source_meter`` role, with the 2450 driver's own source commands."""

    setpoint_query = ":SOUR:VOLT?"

    def _configure(self, d) -> None:
        d.clear()
        d.abort()
        d.disable_source()
        d.source_mode = "voltage"
        d.source_voltage_range = max(abs(self.read_bias), 0.2)
        d.source_voltage = 0
        d.compliance_current = self.compliance
        d.sense_function = "RES"
        d.resistance_nplc = self.nplc
        d.data_format = "ASCII"
        d.write(":ARM:SOUR IMM;:TRIG:SOUR TLIN;:TRIG:ILIN 1")
        d.enable_source()
        self._ramp(d, self.read_bias)

    def _ramp(self, d, target: float) -> None:
        ramp(lambda: d.ask(":SOUR:VOLT?"), lambda v: setattr(d, "source_voltage", v), target,
             self.ramp_steps, self.ramp_pause_s)

    def _output(self, d, on: bool) -> None:
        d.enable_source() if on else d.disable_source()
