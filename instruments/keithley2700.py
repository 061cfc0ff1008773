"""Keithley 2700 with 7709 matrix cards as the switch (``Keithley2700``).

A 7709 is a 6 x 8 matrix; crosspoint (row r, column c) of the card in slot s is channel
``100 * s + 8 * (r - 1) + c``, as in PyMeasure's ``channels_from_rows_columns``. Device ``k``
of the chip is wired to crosspoint number ``k`` counted row-major over the station's ``slots``:
slot ``slots[k // 48]``, row ``1 + (k % 48) // 8``, column ``1 + k % 8``. A route is one
message: open every channel, close the device's crosspoint (break before make, so two devices
are never connected together), and read back the closed channels to confirm.
Safe state: every channel open.

PyMeasure's constructor already talks to the instrument: it drains the error queue
(``SYST:ERR?``) and reads the installed cards (``*OPT?``).

Driver extension: ``route_only`` (PyMeasure's ``closed_channels`` setter closes without opening
the others first and checks errors in a second message).
"""

from __future__ import annotations

from pymeasure.instruments.keithley import Keithley2700
from pymeasure.instruments.keithley.keithley2700 import clist_validator

from .errors import ReplyError
from .roles import Switch, confirm, scpi_errors

CROSSPOINTS = 48  # 6 rows x 8 columns per 7709


class LabKeithley2700(Keithley2700):
    """PyMeasure's ``Keithley2700`` with a one-message exclusive route."""

    def route_only(self, channel: int) -> str:
        """Open all channels, close ``channel``; the reply is the closed-channel list."""
        clist = clist_validator(channel, range(101, 300))
        return self.ask(f":ROUT:OPEN:ALL;:ROUT:MULT:CLOS {clist};:ROUT:MULT:CLOS?")


def crosspoint(device: int, slots: tuple[int, ...] = (1,)) -> tuple[int, int, int]:
    """(slot, row, column) of ``device`` (see the module docstring)."""
    card, k = divmod(device, CROSSPOINTS)
    if card >= len(slots):
        raise ValueError(f"device {device} needs more 7709 cards than slots {list(slots)}")
    return slots[card], 1 + k // 8, 1 + k % 8


def channel_of(device: int, slots: tuple[int, ...] = (1,)) -> int:
    """2700 channel number of ``device``'s crosspoint."""
    slot, row, column = crosspoint(device, slots)
    return 100 * slot + 8 * (row - 1) + column


class Keithley2700Switch(Switch):
    """The 2700 + 7709 in the ``switch`` role (see the module docstring)."""

    def __init__(self, link, *, slots: tuple[int, ...] | list[int] = (1,)):
        super().__init__(link)
        self.slots = tuple(slots)

    def _configure(self, d) -> None:
        d.clear()
        d.open_all_channels()

    def _route(self, d, device: int) -> None:
        channel = channel_of(device, self.slots)
        reply = d.route_only(channel).strip()
        closed = [c.strip() for c in reply.strip("()@ ").split(",") if c.strip()]
        if closed != [str(channel)]:
            raise ReplyError(f"expected channel {channel} closed, instrument reports {reply[:60]!r}")

    def _safe_state(self, d) -> None:
        d.open_all_channels()
        confirm(d.ask(":ROUT:MULT:CLOS?"), ("(@)",), "closed channels")

    def _blind_safe_state(self, d) -> None:
        d.open_all_channels()

    def _output_state(self, d) -> tuple[str, bool | None]:
        closed = d.ask(":ROUT:MULT:CLOS?").strip()
        is_open = closed == "(@)"
        return ("all channels open" if is_open else f"closed {closed}"), is_open

    def _errors(self, d) -> list[str]:
        return scpi_errors(d)
