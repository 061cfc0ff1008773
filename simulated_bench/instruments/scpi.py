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
from typing import Callable, Iterable

ERROR_TEXT = {
    -100: "Command error",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -200: "Execution error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -223: "Too much data",
    -225: "Out of memory",
    -350: "Queue overflow",
    -400: "Query error",
}
QUEUE_LENGTH = 20


class CommandError(Exception):
    """Raised by a handler: queue SCPI error ``code`` (with optional detail) and stop the message."""

    def __init__(self, code: int, detail: str = ""):
        self.code = code
        self.detail = detail
        super().__init__(f"{code},{ERROR_TEXT.get(code, 'Error')}{'; ' + detail if detail else ''}")


# ---------------------------------------------------------------------------- SCPI patterns
def _mnemonic(word: str) -> str:
    suffix = word.endswith("#")
    name = word.rstrip("#")
    short = "".join(c for c in name if not c.islower())
    forms = sorted({name.upper(), short.upper()}, key=len, reverse=True)
    pattern = "(?:" + "|".join(re.escape(f) for f in forms) + ")"
    return pattern + (r"(\d*)" if suffix else "")


def scpi_pattern(spec: str) -> re.Pattern:
    """Compile an SCPI header spec (see the module docstring) to a case-insensitive regex."""
    query = spec.endswith("?")
    body = spec[:-1] if query else spec
    body = body.lstrip(":")
    out = []
    for token in re.split(r"(\[|\]|:)", body):
        if token == "[":
            out.append("(?:")
        elif token == "]":
            out.append(")?")
        elif token == ":":
            out.append(":")
        elif token:
            out.append(re.escape(token) if token.startswith("*") else _mnemonic(token))
    return re.compile("^:?" + "".join(out) + (r"\?" if query else "") + "$", re.IGNORECASE)


def command(*specs: str):
    """Declare a handler for one or more header specs."""

    def mark(fn):
        fn._scpi_specs = specs
        return fn

    return mark


# ---------------------------------------------------------------------------- framing
def message_end(buffer: bytes | bytearray, start: int = 0) -> int | None:
    """Index of the newline ending the first message in ``buffer``, or None if incomplete.

    Newlines inside an IEEE 488.2 definite-length block (``#<d><length><bytes>``) do not count.
    """
    pos = start
    while True:
        newline = buffer.find(b"\n", pos)
        block = buffer.find(b"#", pos)
        if block == -1 or (newline != -1 and newline < block):
            return None if newline == -1 else newline
        digits = buffer[block + 1: block + 2]
        if not digits or not digits.isdigit() or digits == b"0":
            pos = block + 1
            continue
        d = int(digits)
        header = buffer[block + 2: block + 2 + d]
        if len(header) < d:
            return None
        if not header.isdigit():
            pos = block + 1
            continue
        pos = block + 2 + d + int(header)
        if pos > len(buffer):
            return None


_SPECIAL = re.compile(r"[;'\"#]")


def split_commands(text: str) -> list[str]:
    """Split a message at ``;``, skipping quoted strings and binary blocks."""
    if "'" not in text and '"' not in text and "#" not in text:
        return text.split(";")
    parts, start, pos = [], 0, 0
    while True:
        m = _SPECIAL.search(text, pos)
        if m is None:
            break
        c, i = m.group(), m.start()
        if c == ";":
            parts.append(text[start:i])
            start = pos = i + 1
        elif c in "'\"":
            close = text.find(c, i + 1)
            pos = len(text) if close == -1 else close + 1
        else:  # '#'
            d = text[i + 1: i + 2]
            if d.isdigit() and d != "0" and text[i + 2: i + 2 + int(d)].isdigit():
                pos = i + 2 + int(d) + int(text[i + 2: i + 2 + int(d)])
            else:
                pos = i + 1
    parts.append(text[start:])
    return parts


# ---------------------------------------------------------------------------- parameters
def number(args: str, lo: float | None = None, hi: float | None = None) -> float:
    """A numeric parameter (MIN/MAX allowed when bounds are given); -109 if missing, -104 if not a
    number, -222 outside ``[lo, hi]``."""
    text = args.strip()
    if not text:
        raise CommandError(-109)
    upper = text.upper()
    if upper in ("MIN", "MINIMUM") and lo is not None:
        return lo
    if upper in ("MAX", "MAXIMUM") and hi is not None:
        return hi
    try:
        value = float(text)
    except ValueError:
        raise CommandError(-104, f"not a number: {text[:20]!r}") from None
    if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise CommandError(-222, f"{text} outside [{lo}, {hi}]")
    return value


def integer(args: str, lo: int | None = None, hi: int | None = None) -> int:
    value = number(args, lo, hi)
    if value != int(value):
        raise CommandError(-104, f"not an integer: {args.strip()[:20]!r}")
    return int(value)


def boolean(args: str) -> bool:
    text = args.strip().upper()
    if text in ("1", "ON"):
        return True
    if text in ("0", "OFF"):
        return False
    if not text:
        raise CommandError(-109)
    try:
        return number(text) != 0
    except CommandError:
        raise CommandError(-104, f"not a boolean: {text[:20]!r}") from None


def choice(args: str, options: Iterable[str]) -> str:
    """One of ``options`` written as SCPI mnemonics (``TRIGgered``); returns the short form."""
    text = args.strip().strip("'\"")
    if not text:
        raise CommandError(-109)
    for option in options:
        if scpi_pattern(option).match(text):
            return "".join(c for c in option if not c.islower()).upper()
    raise CommandError(-222 if text[:1].isalpha() else -104, f"{text[:20]!r} is not one of {list(options)}")


def suffix(value: str, default: int = 1) -> int:
    return int(value) if value else default


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
            from .properties import PropertyTable  # properties.py builds on this module

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
        from .properties import suffix_number

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
