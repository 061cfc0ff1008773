"""Table-driven SCPI settings: one :class:`ScpiProperty` per setting a simulator keeps and reports.

Most of what an instrument's driver sets and reads back is plain state: a number within limits, a
boolean, one of a few mnemonics. A simulator lists those settings in its ``PROPERTIES`` tuple
instead of writing two handlers each::

    PROPERTIES = (
        ScpiProperty("phase", "[SOURce#:]PHASe", 0.0, lo=-360.0, hi=360.0),   # degrees
        ScpiProperty("pulse_hold", "[SOURce#:]FUNCtion:PULSe:HOLD", "WIDT", choices=("WIDTh", "DCYCle")),
    )

The header is written in the notation of :mod:`.scpi` (without the ``?``); the setter
``PHAS 90`` and the query ``PHAS?`` both match it. A ``#`` suffix (channel, output) selects one
of :attr:`SimulatedInstrument.property_suffixes` (1 when omitted); each suffix keeps its own
value. A value out of ``[lo, hi]`` queues -222 and leaves the setting unchanged, an unknown
mnemonic -222 (-104 if it is not a mnemonic at all), a missing parameter -109, as the engine does
for the hand-written handlers. Handlers declared with :func:`.scpi.command` take precedence, so a
setting with a physical effect or one coupled to others can still be written by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .scpi_syntax import CommandError, boolean, choice, integer, number, scpi_pattern

KINDS = ("number", "integer", "boolean", "choice", "text")


@dataclass(frozen=True)
class ScpiProperty:
    """One setting: its name, SCPI header, power-on value and what it accepts.

    ``kind`` is inferred when omitted: ``choice`` if ``choices`` are given, ``boolean`` for a
    bool default, ``integer`` for an int default, ``text`` for a str default, else ``number``.
    Numbers are in the instrument's own unit (volts, seconds, hertz, ...), bounded by ``lo`` and
    ``hi`` (None: unbounded); ``fmt`` formats the reply of a number. ``max_length`` bounds text.
    """

    name: str
    header: str
    default: Any
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    kind: str = ""
    fmt: str = "{:+.8E}"
    max_length: int = 64

    def __post_init__(self):
        if not self.kind:
            if self.choices:
                kind = "choice"
            elif isinstance(self.default, bool):
                kind = "boolean"
            elif isinstance(self.default, int):
                kind = "integer"
            elif isinstance(self.default, str):
                kind = "text"
            else:
                kind = "number"
            object.__setattr__(self, "kind", kind)
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not one of {KINDS}")

    def parse(self, args: str) -> Any:
        """The value written in ``args``; raises :class:`CommandError` as the instrument refuses it."""
        if self.kind == "number":
            return number(args, self.lo, self.hi)
        if self.kind == "integer":
            return integer(args, None if self.lo is None else int(self.lo), None if self.hi is None else int(self.hi))
        if self.kind == "boolean":
            return boolean(args)
        if self.kind == "choice":
            return choice(args, self.choices)
        text = args.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        if len(text) > self.max_length:
            raise CommandError(-223, f"text longer than {self.max_length} characters")
        return text

    def reply(self, value: Any) -> str:
        """The query reply for ``value``."""
        if self.kind == "number":
            return self.fmt.format(value)
        if self.kind == "integer":
            return str(int(value))
        if self.kind == "boolean":
            return str(int(bool(value)))
        if self.kind == "choice":
            return str(value)
        return f'"{value}"'


class PropertyTable:
    """The compiled ``PROPERTIES`` of one simulator class: header patterns -> properties."""

    def __init__(self, properties: tuple[ScpiProperty, ...], compile_spec=scpi_pattern):
        self.properties = {p.name: p for p in properties}
        if len(self.properties) != len(properties):
            raise ValueError("two properties share a name")
        self.setters = [(compile_spec(p.header), p) for p in properties]
        self.queries = [(compile_spec(p.header + "?"), p) for p in properties]

    def match(self, header: str) -> tuple[ScpiProperty, bool, str] | None:
        """(property, is_query, numeric suffix text) for ``header``, or None."""
        for is_query, table in ((False, self.setters), (True, self.queries)):
            for pattern, prop in table:
                m = pattern.match(header)
                if m is not None:
                    suffix = next((g for g in m.groups() if g), "")
                    return prop, is_query, suffix
        return None
