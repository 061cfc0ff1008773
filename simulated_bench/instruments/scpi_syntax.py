"""SCPI syntax for the simulated instruments: error texts, header patterns, splitting a message
into commands, and parsing arguments (numbers, integers, booleans, choices) with the
instrument's own errors (-104, -109, -222, -113). Shared by the message engine
(:mod:`.scpi`) and the table of settings (:mod:`.properties`)."""

from __future__ import annotations

import re
from typing import Iterable

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


def suffix_number(text: str, allowed: tuple[int, ...]) -> int:
    """The numeric suffix ``text`` (1 when empty); -113 if the instrument has no such channel."""
    value = int(text) if text and re.fullmatch(r"\d+", text) else 1
    if value not in allowed:
        raise CommandError(-113, f"no channel {value}")
    return value
