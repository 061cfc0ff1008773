"""The message engine shared by the simulated instruments: parsing, dispatch, error queue.

A simulated instrument declares its commands with :func:`command`, written in SCPI notation:
upper-case letters are the short form, ``[...]`` is optional, ``#`` is an optional numeric
suffix (channel, slot, axis) passed to the handler, a trailing ``?`` makes it a query::

    @command("[SOURce#:]VOLTage[:LEVel]?")
    def amplitude(self, args, ch): ...

Matching is case-insensitive and accepts the short or the long form of every mnemonic and a
leading colon, as a real SCPI parser does. Instruments that are not SCPI (SR830, ESP300) write
their own :meth:`SimulatedInstrument.split` and declare plain headers.

A message is one line; it may hold several commands separated by ``;`` (quotes and IEEE 488.2
definite-length binary blocks ``#<d><length><bytes>`` are skipped when splitting). Each command
is executed in order; query replies are joined with ``;``. An unknown header queues error -113,
a value out of range -222, a malformed parameter -104 / -109; the rest of that message is then
discarded (IEEE 488.2), the instrument never crashes. Errors are read with ``SYST:ERR?``
(``-113,"Undefined header"``; ``0,"No error"`` when empty) and summarised in the standard event
status register (``*ESR?``: bit 5 command error, bit 4 execution error, bit 2 query error).
"""

from __future__ import annotations

import re
from collections import deque
from typing import Callable

from .properties import PropertyTable
from .scpi_syntax import (ERROR_TEXT, QUEUE_LENGTH, CommandError, boolean, choice, command, integer,  # noqa: F401
                          message_end, number, scpi_pattern, split_commands, suffix, suffix_number)

# ---------------------------------------------------------------------------- the instrument base
class SimulatedInstrument:
    """Base of the simulated instruments: IEEE 488.2 common commands and an SCPI error queue.

    Subclasses declare ``identity`` (the ``*IDN?`` reply), their handlers, and implement
    :meth:`reset` (``*RST`` and power-on state) and :meth:`status` (outputs and biases, for tests
    and for ``labctl bench serve``).
    """

    identity = "labctl,simulated instrument,0,0"
    model = ""
    #: settings kept by table (see :mod:`.properties`); handlers take precedence
    PROPERTIES: tuple = ()
    #: the numeric suffixes (channels) a property header may carry
    property_suffixes: tuple[int, ...] = (1,)

    def __init__(self, bench=None):
        self.bench = bench
        self.queue: deque[tuple[int, str]] = deque()
        self.esr = 0
        self._handlers = self._collect()
        self.reset_properties()
        self.reset()

    @classmethod
    def _collect(cls) -> list[tuple[re.Pattern | str, Callable]]:
        cached = cls.__dict__.get("_handler_cache")
        if cached is not None:
            return cached
        handlers = []
        for klass in reversed(cls.__mro__):
            for name, fn in vars(klass).items():
                for spec in getattr(fn, "_scpi_specs", ()):
                    handlers.append((cls.compile(spec), name))
        cls._handler_cache = handlers
        return handlers

    @classmethod
    def compile(cls, spec: str) -> re.Pattern:
        return scpi_pattern(spec)

    @classmethod
    def property_table(cls):
        """The compiled :attr:`PROPERTIES` of this class (built once)."""
        cached = cls.__dict__.get("_property_cache")
        if cached is None:
            cached = PropertyTable(tuple(cls.PROPERTIES), cls.compile)
            cls._property_cache = cached
        return cached

    # ------------------------------------------------------------------ table-driven settings
    def reset_properties(self) -> None:
        """Every table setting back to its power-on value (``*RST``)."""
        self.settings_store: dict[tuple[str, int], object] = {
            (p.name, n): p.default for p in self.PROPERTIES for n in self.property_suffixes
        }

    def setting(self, name: str, suffix: int = 1):
        """The value of table setting ``name`` on channel ``suffix``."""
        return self.settings_store[(name, suffix)]

    def store_setting(self, name: str, suffix: int, value) -> None:
        """Store a validated table setting; simulators override it for cross-setting rules and
        physical effects (raise :class:`CommandError` to refuse, leaving the setting unchanged)."""
        self.settings_store[(name, suffix)] = value

    def read_setting(self, name: str, suffix: int):
        """The value a table setting's query reports; simulators override it for derived values."""
        return self.settings_store[(name, suffix)]

    # ------------------------------------------------------------------ to override
    def reset(self) -> None:
        """Power-on / ``*RST`` state."""

    def status(self) -> dict:
        """Outputs, biases and whatever else a test or an operator wants to see."""
        return {}

    def trigger(self) -> None:
        """``*TRG``: a bus trigger."""

    def split(self, command_text: str) -> tuple[str, str]:
        """Header and parameters of one command (SCPI: separated by the first whitespace)."""
        parts = command_text.split(None, 1)
        return parts[0], parts[1] if len(parts) > 1 else ""

    # ------------------------------------------------------------------ errors
    def push_error(self, code: int, detail: str = "") -> None:
        detail = "".join(c if " " <= c <= "~" and c != '"' else "?" for c in detail[:60])
        text = ERROR_TEXT.get(code, "Error") + (f"; {detail}" if detail else "")
        if len(self.queue) >= QUEUE_LENGTH:
            self.queue[-1] = (-350, ERROR_TEXT[-350])
        else:
            self.queue.append((code, text))
        if -199 <= code <= -100:
            self.esr |= 1 << 5
        elif -299 <= code <= -200:
            self.esr |= 1 << 4
        elif -399 <= code <= -300:
            self.esr |= 1 << 3
        elif -499 <= code <= -400:
            self.esr |= 1 << 2

    def pop_error(self) -> tuple[int, str]:
        return self.queue.popleft() if self.queue else (0, "No error")

    # ------------------------------------------------------------------ dispatch
    def process(self, message: bytes | str) -> str | None:
        """Execute one message; return the reply text (without terminator) or None."""
        text = message.decode("latin-1") if isinstance(message, (bytes, bytearray)) else message
        replies = []
        for part in split_commands(text.rstrip("\r\n")):
            part = part.strip()
            if not part:
                continue
            try:
                reply = self.execute(part)
            except CommandError as exc:
                self.push_error(exc.code, exc.detail)
                break
            except Exception as exc:  # noqa: BLE001 - a simulator never crashes on input
                self.push_error(-200, f"{type(exc).__name__}: {exc}"[:80])
                break
            if reply is not None:
                replies.append(str(reply))
        return ";".join(replies) if replies else None

    def execute(self, command_text: str) -> str | None:
        if command_text.startswith(":*"):
            command_text = command_text[1:]
        header, args = self.split(command_text)
        for pattern, name in self._handlers:
            m = pattern.match(header) if isinstance(pattern, re.Pattern) else None
            if m is not None:
                return getattr(self, name)(args, *m.groups())
        return self.execute_property(header, args)

    def execute_property(self, header: str, args: str) -> str | None:
        """A table setting (set or query), or -113 if ``header`` is none of them."""
        found = self.property_table().match(header) if self.PROPERTIES else None
        if found is None:
            raise CommandError(-113, header[:40])
        prop, is_query, suffix_text = found
        suffix = suffix_number(suffix_text, self.property_suffixes)
        if is_query:
            return prop.reply(self.read_setting(prop.name, suffix))
        self.store_setting(prop.name, suffix, prop.parse(args))
        return None

    # ------------------------------------------------------------------ IEEE 488.2 common commands
    @command("*IDN?")
    def _idn(self, args):
        return self.identity

    @command("*RST")
    def _rst(self, args):
        self.reset_properties()
        self.reset()

    @command("*CLS")
    def _cls(self, args):
        self.queue.clear()
        self.esr = 0

    @command("*OPC?")
    def _opc_query(self, args):
        return "1"

    @command("*OPC")
    def _opc(self, args):
        self.esr |= 1

    @command("*WAI")
    def _wai(self, args):
        pass

    @command("*ESR?")
    def _esr(self, args):
        value, self.esr = self.esr, 0
        return str(value)

    @command("*ESE", "*SRE")
    def _enable_registers(self, args):
        integer(args, 0, 255)

    @command("*ESE?", "*SRE?")
    def _enable_registers_query(self, args):
        return "0"

    @command("*STB?")
    def _stb(self, args):
        return str((1 << 2 if self.queue else 0) | (1 << 5 if self.esr else 0))

    @command("*TST?")
    def _tst(self, args):
        return "0"

    @command("*TRG")
    def _trg(self, args):
        self.trigger()

    @command("SYSTem:ERRor[:NEXT]?")
    def _syst_err(self, args):
        code, text = self.pop_error()
        return f'{code},"{text}"'

    @command("STATus:PRESet")
    def _status_preset(self, args):
        pass

    @command("STATus:QUEue:CLEar")
    def _status_queue_clear(self, args):
        self.queue.clear()
