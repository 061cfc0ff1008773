"""Simulated Kepco BOP 36-12 (BIT 4886 interface), as PyMeasure's ``KepcoBOP3612`` drives it.

In current mode with its output on, the magnet current follows the digital setpoint plus the
analog programming input: ``I = setpoint + gain * V_in`` (A), clipped to +-12 A, and the field at
the sample is ``coil * I`` (T). In voltage mode or with the output off the magnet carries no
current. ``gain`` (A/V) and ``coil`` (T/A) are the bench's wiring constants.

The steady field (``coil * setpoint`` with the output on in current mode) acts on the chip too:
whenever a command changes it to a non-zero value, the bench applies it to the wire under the
spot as one field pulse of :data:`STEADY_HOLD_S` seconds (at or below ``-nucleation_field``: a
reset), as if the field were held that long (the DW law does not depend on the width).
"""

from __future__ import annotations

import numpy as np

from .scpi import SimulatedInstrument, boolean, choice, command, number

I_MAX = 12.0
V_MAX = 36.0
STEADY_HOLD_S = 1.0


class KepcoBOP3612Sim(SimulatedInstrument):
    """The BOP 36-12 simulator (see the module docstring)."""

    identity = "KEPCO,BIT 4886 36-12 SIM00003,1.80-1.80"
    model = "KepcoBOP3612"

    def __init__(self, bench=None, *, gain: float = 1.2, coil: float = 5e-3):
        self.gain = gain
        self.coil = coil
        super().__init__(bench)

    def reset(self) -> None:
        self.output = False
        self.mode = "VOLT"
        self.current = 0.0
        self.voltage = 0.0

    def field(self, volts_in: np.ndarray) -> np.ndarray:
        """Field at the sample (tesla) for the analog input ``volts_in`` (volts)."""
        if not self.output or self.mode != "CURR":
            return np.zeros_like(volts_in, dtype=np.float64)
        return self.coil * np.clip(self.current + self.gain * volts_in, -I_MAX, I_MAX)

    def steady_field(self) -> float:
        """Field at the sample (tesla) with no analog input."""
        return float(self.field(np.zeros(1))[0])

    def process(self, message):
        """Execute a message; a change of the steady field reaches the chip (see the module docstring)."""
        before = self.steady_field()
        reply = super().process(message)
        after = self.steady_field()
        if after != before and after != 0.0 and self.bench is not None:
            self.bench.steady_field(self, after, STEADY_HOLD_S)
        return reply

    def status(self) -> dict:
        return {"output": self.output, "mode": self.mode, "current_a": self.current, "voltage_v": self.voltage}

    def outputs_safe(self) -> bool:
        return not self.output and self.current == 0.0

    @command("OUTPut[:STATe]")
    def output_set(self, args):
        self.output = boolean(args)

    @command("OUTPut[:STATe]?")
    def output_query(self, args):
        return str(int(self.output))

    @command("FUNCtion:MODE")
    def mode_set(self, args):
        self.mode = choice(args, ["VOLTage", "CURRent"])

    @command("FUNCtion:MODE?")
    def mode_query(self, args):
        return "1" if self.mode == "CURR" else "0"

    @command("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]")
    def current_set(self, args):
        self.current = number(args, -I_MAX, I_MAX)

    @command("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]?")
    def current_query(self, args):
        return f"{self.current:.5E}"

    @command("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    def voltage_set(self, args):
        self.voltage = number(args, -V_MAX, V_MAX)

    @command("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]?")
    def voltage_query(self, args):
        return f"{self.voltage:.5E}"

    @command("MEASure:CURRent?")
    def measure_current(self, args):
        return f"{(self.current if self.output and self.mode == 'CURR' else 0.0):.5E}"

    @command("MEASure:VOLTage?")
    def measure_voltage(self, args):
        return f"{0.0:.5E}"

    @command("SYSTem:BEEP")
    def beep(self, args):
        pass

    @command("DIAGnostic:TST?")
    def self_test(self, args):
        return "0"
