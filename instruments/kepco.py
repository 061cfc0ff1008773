"""Kepco BOP 36-12 as the electromagnet supply (``KepcoBOP3612``).

The supply runs in current mode with a zero digital setpoint and its output on; the pulse
source's channel 1 drives its analog programming input, so the magnet current follows the
pulse source at ``gain`` A/V and the field at the sample is ``gain * coil * V`` tesla. The
voltage setpoint is the compliance in current mode. Safe state: setpoint ramped to zero,
output off.

PyMeasure's ``KepcoBOP3612`` has every command needed (mode, setpoints, output, SCPI error
queue), so there is no driver extension.
"""

from __future__ import annotations

from pymeasure.instruments.kepco import KepcoBOP3612

from .roles import FieldSupply, confirm, parse_floats, ramp, scpi_errors

LabKepcoBOP3612 = KepcoBOP3612


class KepcoFieldSupply(FieldSupply):
    """The BOP 36-12 in the ``field_supply`` role (see the module docstring)."""

    def _configure(self, d) -> None:
        d.clear()
        d.output_enabled = False
        d.operating_mode = "CURR"
        d.current_setpoint = 0
        d.voltage_setpoint = self.voltage_limit
        d.output_enabled = True

    def _safe_state(self, d) -> None:
        ramp(lambda: d.ask("CURRent?"), lambda v: setattr(d, "current_setpoint", v), 0.0,
             self.ramp_steps, self.ramp_pause_s)
        d.output_enabled = False
        confirm(d.ask("OUTPut?"), ("0", "OFF"), "output")

    def _blind_safe_state(self, d) -> None:
        d.current_setpoint = 0
        d.output_enabled = False

    def _output_state(self, d) -> tuple[str, bool | None]:
        on = d.ask("OUTPut?").strip().upper() not in ("0", "OFF")
        amps = float(parse_floats(d.ask("CURRent?"), 1, "CURRent? reply")[0])
        return f"output {'on' if on else 'off'}, current setpoint {amps:.4g} A", not on and amps == 0.0

    def _errors(self, d) -> list[str]:
        return scpi_errors(d)
