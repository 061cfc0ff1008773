"""SRS SR830 lock-in as the Kerr readout (``SR830``).

Channel 1 shows X (the in-phase Kerr signal, volts). The data buffer stores one point per rising
edge at the rear TRIG IN (sample rate index 14, "trigger"), which the pulse source's marker
channel drives; ``REST;STRT;SPTS?`` clears and starts it before a batch (a query, so that it is armed before the pulse source fires), ``SPTS?`` counts the stored
points and ``TRCA? 1,0,n`` returns them as ASCII. The SR830 has no SCPI error queue: command
and execution errors set bits 5 and 4 of the standard event status register, read (and cleared)
with ``*ESR?``.

Driver extensions: PyMeasure's ``SR830`` reads the buffer only in binary (``TRCB?``, which over
a socket has no terminator and ends on a timeout) and writes the sample rate as a float
(``SRAT14.000000``); here ``TRCA?``, an integer ``SRAT``, ``TSTR``, ``*ESR?`` and the combined
``REST;STRT``.
"""

from __future__ import annotations

import numpy as np
from pymeasure.instruments import Instrument
from pymeasure.instruments.srs import SR830
from pymeasure.instruments.validators import strict_discrete_set

from .errors import ReplyError
from .roles import KerrReadout, confirm, parse_floats

ESR_BITS = {5: "command error (unknown command)", 4: "execution error (parameter out of range)",
            2: "query error", 0: "input queue overflow"}


class LabSR830(SR830):
    """PyMeasure's ``SR830`` with an ASCII buffer read and the trigger-mode settings."""

    sample_rate_index = Instrument.control(
        "SRAT?",
        "SRAT %d",
        """Control the data-buffer sample rate index (int 0..14; 14 = one point per trigger).""",
        validator=strict_discrete_set,
        values=range(15),
        cast=int,
    )

    trigger_starts_scan = Instrument.control(
        "TSTR?",
        "TSTR %d",
        """Control whether a trigger starts the scan (bool).""",
        validator=strict_discrete_set,
        values={True: 1, False: 0},
        map_values=True,
    )

    event_status = Instrument.measurement(
        "*ESR?",
        """Get (and clear) the standard event status register (int).""",
        cast=int,
    )

    def restart_buffer(self) -> str:
        """Clear the data buffer and start storing; the reply is the point count, ``0``.

        A query, so that the lock-in is known to be armed before the pulse source fires.
        """
        return self.ask("REST;STRT;SPTS?")

    def buffer_ascii(self, channel: int, start: int, count: int) -> str:
        """The raw ASCII reply of ``TRCA?``: ``count`` points of channel 1 or 2 from ``start``."""
        return self.ask(f"TRCA? {channel},{start},{count}")


class SR830KerrReadout(KerrReadout):
    """The SR830 in the ``kerr_readout`` role (see the module docstring)."""

    max_points = 16383

    def _configure(self, d) -> None:
        d.clear()
        d.channel1 = "X"
        d.sample_rate_index = 14
        d.trigger_starts_scan = False
        d.reset_buffer()

    def _arm(self, d) -> None:
        reply = d.restart_buffer().strip()
        if reply != "0":
            raise ReplyError(f"lock-in buffer not empty after REST;STRT: {reply[:40]!r}")

    def _fetch(self, d, count: int) -> np.ndarray:
        reply = d.ask("SPTS?").strip()
        try:
            stored = int(reply)
        except ValueError:
            raise ReplyError(f"garbled SPTS? reply {reply[:40]!r}") from None
        if stored != count:
            raise ReplyError(f"lock-in buffer holds {stored} points, expected {count}")
        return parse_floats(d.buffer_ascii(1, 0, count), count, "TRCA? reply")

    def _safe_state(self, d) -> None:
        d.pause_buffer()
        confirm(d.ask("*OPC?"), ("1",), "*OPC?")

    def _blind_safe_state(self, d) -> None:
        d.pause_buffer()

    def _errors(self, d) -> list[str]:
        reply = d.ask("*ESR?").strip()
        try:
            status = int(reply)
        except ValueError:
            raise ReplyError(f"garbled *ESR? reply {reply[:40]!r}") from None
        return [f"*ESR bit {bit}: {text}" for bit, text in ESR_BITS.items() if status & (1 << bit)]
