"""Newport ESP300/301 motion controller as the positioner (``ESP300``).

One axis (``axis``, default 1) in millimetres carries the sample under the laser spot; wire
``k`` sits at ``origin + k * pitch`` (metres in the station file). A move is one message,
``<a>PA<x>;<a>WS;<a>MD?``: absolute move, wait for stop, then the motion-done flag (``1``).
Errors are read with ``TE?`` (ESP codes; 0 = none).

Driver extension: PyMeasure's ``ESP300`` moves (``position``) and waits (``wait_for_stop``,
which polls ``MD?``) in separate messages; ``move_and_wait`` does both in one.
"""

from __future__ import annotations

from pymeasure.instruments.newport import ESP300
from pymeasure.instruments.newport.esp300 import Axis, GeneralError

from .errors import ReplyError
from .roles import Positioner


class LabESP300(ESP300):
    """PyMeasure's ``ESP300`` with a single-message move-and-wait."""

    def move_and_wait(self, axis: int, position_mm: float) -> str:
        """Move ``axis`` to ``position_mm`` (absolute), wait for the stop; the reply is ``1``."""
        return self.ask(f"{axis}PA{position_mm:.6f};{axis}WS;{axis}MD?")


class ESP300Positioner(Positioner):
    """The ESP300 in the ``positioner`` role (see the module docstring)."""

    def _axis(self, d) -> Axis:
        return Axis(self.axis, d)

    def _configure(self, d) -> None:
        axis = self._axis(d)
        axis.units = "millimeter"
        axis.enable()

    def _move_to(self, d, position: float) -> None:
        reply = d.move_and_wait(self.axis, position * 1e3).strip()
        if reply != "1":
            raise ReplyError(f"expected motion done '1', got {reply[:40]!r}")

    def _safe_state(self, d) -> None:
        """Nothing on the chip is energised by the stage: the safe state needs no command."""

    def _errors(self, d) -> list[str]:
        errors = []
        for _ in range(32):
            reply = d.ask("TE?").strip()
            try:
                code = int(reply)
            except ValueError:
                raise ReplyError(f"garbled TE? reply {reply[:40]!r}") from None
            if code == 0:
                return errors
            if code > 100:
                errors.append(f"axis {code // 100} error {code % 100:02d}")
            else:
                errors.append(f"{code}: {GeneralError.MESSAGES.get(str(code), 'unknown error')}")
        return errors
