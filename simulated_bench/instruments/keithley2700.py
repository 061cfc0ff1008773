"""Simulated Keithley 2700 with 7709 matrix cards, as PyMeasure's ``Keithley2700`` drives it.

Channels are ``100 * slot + n``: n = 1..48 are the 6 x 8 crosspoints (row r, column c at
``8 * (r - 1) + c``), 49 and 50 the backplane relays. ``*OPT?`` lists the card in each of the
two slots (``7709`` or ``none``). ``ROUT:MULT:CLOS <clist>`` closes channels (others unchanged),
``ROUT:MULT:OPEN <clist>`` opens them, ``ROUT:OPEN:ALL`` opens everything, and
``ROUT:MULT:CLOS?`` lists the closed channels as ``(@111,112)``. A channel on a slot without a
7709 is out of range (-222). The bench asks :meth:`routed` which crosspoints connect the pulse
source and the source meter to the chip.
"""

from __future__ import annotations

import re

from .properties import ScpiProperty
from .scpi import CommandError, SimulatedInstrument, command

CROSSPOINTS = 48


def parse_clist(args: str) -> list[int]:
    """Channels of a channel list ``(@101,102:105)``."""
    text = args.strip()
    if not (text.startswith("(@") and text.endswith(")")):
        raise CommandError(-104, f"expected a channel list (@...), got {text[:20]!r}")
    channels = []
    for item in text[2:-1].split(","):
        item = item.strip()
        if not item:
            continue
        if not re.fullmatch(r"\d+(:\d+)?", item):
            raise CommandError(-104, f"bad channel {item!r}")
        lo, _, hi = item.partition(":")
        channels.extend(range(int(lo), int(hi or lo) + 1))
    return channels


class Keithley2700Sim(SimulatedInstrument):
    """The 2700 simulator (see the module docstring)."""

    identity = "KEITHLEY INSTRUMENTS INC.,MODEL 2700,SIM00008,B09  /A02"
    model = "Keithley2700"
    PROPERTIES = (ScpiProperty("buffer_points", "TRACe:POINts", 100, lo=2, hi=55000),)  # readings

    def __init__(self, bench=None, *, slots: tuple[int, ...] = (1,)):
        self.slots = tuple(slots)
        super().__init__(bench)

    def reset(self) -> None:
        self.closed: set[int] = set()
        self.text = ""
        self.text_enabled = False

    def status(self) -> dict:
        return {"closed": sorted(self.closed)}

    def outputs_safe(self) -> bool:
        return not self.closed

    def _valid(self, channels: list[int]) -> list[int]:
        for ch in channels:
            slot, n = divmod(ch, 100)
            if slot not in self.slots or not 1 <= n <= CROSSPOINTS + 2:
                raise CommandError(-222, f"channel {ch} (7709 cards in slots {list(self.slots)})")
        return channels

    def routed(self) -> list[int]:
        """Chip devices whose crosspoint is closed, in device order (row-major over the slots)."""
        devices = []
        for ch in sorted(self.closed):
            slot, n = divmod(ch, 100)
            if slot in self.slots and 1 <= n <= CROSSPOINTS:
                devices.append(self.slots.index(slot) * CROSSPOINTS + n - 1)
        return devices

    @command("*OPT?")
    def options(self, args):
        return ",".join("7709" if s in self.slots else "none" for s in (1, 2))

    @command("ROUTe:MULTiple:CLOSe")
    def close(self, args):
        self.closed.update(self._valid(parse_clist(args)))

    @command("ROUTe:MULTiple:CLOSe?")
    def close_query(self, args):
        return "(@" + ",".join(str(c) for c in sorted(self.closed)) + ")"

    @command("ROUTe:MULTiple:OPEN")
    def open(self, args):
        self.closed.difference_update(self._valid(parse_clist(args)))

    @command("ROUTe:CLOSe")
    def close_one(self, args):
        channels = self._valid(parse_clist(args))
        if len(channels) != 1:
            raise CommandError(-222, "ROUT:CLOS takes one channel")
        self.closed = set(channels)

    @command("ROUTe:OPEN:ALL")
    def open_all(self, args):
        self.closed.clear()

    @command("ROUTe:MULTiple:STATe?")
    def state(self, args):
        return ",".join("1" if c in self.closed else "0" for c in self._valid(parse_clist(args)))

    @command("DISPlay:TEXT:STATe")
    def text_state(self, args):
        self.text_enabled = args.strip() not in ("0", "OFF")

    @command("DISPlay:TEXT:STATe?")
    def text_state_query(self, args):
        return str(int(self.text_enabled))

    @command("DISPlay:TEXT[:DATA]")
    def text_set(self, args):
        self.text = args.strip().strip("'\"")[:12]

    @command("DISPlay:TEXT[:DATA]?")
    def text_query(self, args):
        return f'"{self.text}"'

    @command("SYSTem:BEEPer[:IMMediate]")
    def beep(self, args):
        pass
