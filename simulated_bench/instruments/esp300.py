"""Simulated Newport ESP300 motion controller, as PyMeasure's ``ESP300`` drives it.

Commands are ``<axis><two letters>[?][parameter]`` (``1PA2.5``, ``1TP``, ``1MD?``), several per
line separated by ``;``. Moves are instantaneous (``MD?`` always answers 1 once the move has been
accepted). Positions are in the axis unit (``SN``: 2 = millimetre, the default), limited by the
software limits ``SL``/``SR`` (+-100 mm). Errors are read with ``TE?`` as ESP codes
(6 = command does not exist, 7 = parameter out of range, 0 = none); the simulator also keeps an
SCPI error queue (``SYST:ERR?``) with the matching -113 / -222 codes.
"""

from __future__ import annotations

import re

from .scpi import CommandError, SimulatedInstrument, integer, number

AXES = (1, 2, 3)
_CMD = re.compile(r"^(\d?)([A-Za-z]{2})(\??)(.*)$", re.S)
ESP_CODE = {-113: 6, -222: 7, -109: 38, -104: 7}


class ESP300Sim(SimulatedInstrument):
    """The ESP300 simulator (see the module docstring)."""

    identity = "ESP300 Version 3.08 09/09/02 (simulated SIM00005)"
    model = "ESP300"

    def reset(self) -> None:
        self.position = {a: 0.0 for a in AXES}
        self.enabled = {a: False for a in AXES}
        self.units = {a: 2 for a in AXES}
        self.limits = {a: (-100.0, 100.0) for a in AXES}
        self.esp_errors: list[int] = []

    def status(self) -> dict:
        return {f"axis{a}": {"position": self.position[a], "enabled": self.enabled[a]} for a in AXES}

    def outputs_safe(self) -> bool:
        return True

    def push_error(self, code: int, detail: str = "") -> None:
        super().push_error(code, detail)
        self.esp_errors.append(ESP_CODE.get(code, 27))

    def pop_error(self):
        if self.esp_errors:
            self.esp_errors.pop(0)
        return super().pop_error()

    def execute(self, command_text: str):
        if command_text.startswith("*") or ":" in command_text:
            return super().execute(command_text)
        m = _CMD.match(command_text.strip())
        if not m:
            raise CommandError(-113, command_text[:20])
        axis_text, name, query, args = m.groups()
        name = name.upper()
        if name == "TE" and query:
            code = self.esp_errors.pop(0) if self.esp_errors else 0
            if self.queue:
                self.queue.popleft()
            return str(code)
        if name == "VE" and query:
            return self.identity
        if not axis_text:
            raise CommandError(-113, f"{name} needs an axis number")
        axis = int(axis_text)
        if axis not in AXES:
            raise CommandError(-222, f"axis {axis}")
        handler = getattr(self, f"_{name}{'_q' if query else ''}", None)
        if handler is None:
            raise CommandError(-113, command_text[:20])
        return handler(axis, args.strip())

    # ------------------------------------------------------------------ axis commands
    def _PA(self, axis, args):
        lo, hi = self.limits[axis]
        self.position[axis] = number(args, lo, hi)

    def _PR(self, axis, args):
        lo, hi = self.limits[axis]
        target = self.position[axis] + number(args)
        if not lo <= target <= hi:
            raise CommandError(-222, f"target {target}")
        self.position[axis] = target

    def _TP(self, axis, args):
        return f"{self.position[axis]:.6f}"

    def _MD_q(self, axis, args):
        return "1"

    def _WS(self, axis, args):
        if args:
            number(args, 0, 1e9)

    def _MO(self, axis, args):
        self.enabled[axis] = True

    def _MF(self, axis, args):
        self.enabled[axis] = False

    def _MO_q(self, axis, args):
        return str(int(self.enabled[axis]))

    def _ST(self, axis, args):
        pass

    def _OR(self, axis, args):
        if args:
            integer(args, 0, 6)
        self.position[axis] = 0.0

    def _DH(self, axis, args):
        self.position[axis] = number(args) if args else 0.0

    def _SN(self, axis, args):
        self.units[axis] = integer(args, 0, 11)

    def _SN_q(self, axis, args):
        return str(self.units[axis])

    def _SL(self, axis, args):
        self.limits[axis] = (number(args), self.limits[axis][1])

    def _SL_q(self, axis, args):
        return f"{self.limits[axis][0]:.6f}"

    def _SR(self, axis, args):
        self.limits[axis] = (self.limits[axis][0], number(args))

    def _SR_q(self, axis, args):
        return f"{self.limits[axis][1]:.6f}"
