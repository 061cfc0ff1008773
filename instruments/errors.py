"""Errors of the instrument layer.

A :class:`TransientError` is one failed exchange with an instrument (a VISA timeout, a lost
connection, a reply that does not parse); the caller may reconnect and retry. An
:class:`InstrumentError` is final: retries are exhausted, or the instrument reported errors in
its error queue; its message names the role, the model and the VISA resource.
"""

from __future__ import annotations


class InstrumentError(RuntimeError):
    """An instrument failed for good (after retries) or reported errors; the message says which."""


class UnreachableError(InstrumentError):
    """An instrument stopped answering: its retries were exhausted on communication failures
    (connection refused or reset, VISA timeouts, garbled replies). The station may get it back
    (a power cycle, a cable); :class:`~labctl.instrument_array.InstrumentArray` waits for it
    (suspends) before giving up. ``role``, ``model``, ``resource``: which instrument; ``cause``:
    one line describing the last failure."""

    def __init__(self, message: str, *, role: str = "", model: str = "", resource: str = "", cause: str = ""):
        super().__init__(message)
        self.role = role
        self.model = model
        self.resource = resource
        self.cause = cause


class TransientError(Exception):
    """One failed exchange (timeout, lost connection, garbled reply) that a retry may cure.

    ``link`` is the :class:`~instruments.link.Link` it happened on, so that the caller can
    reconnect that instrument before retrying.
    """

    def __init__(self, link, cause: BaseException | str):
        self.link = link
        self.cause = cause
        where = f"{link.role} ({link.model} at {link.resource})" if link is not None else "instrument"
        super().__init__(f"{where}: {describe(cause)}")


class ReplyError(ValueError):
    """A reply that does not have the expected form (garbled, truncated, wrong count)."""


def describe(exc: BaseException | str | None) -> str:
    """One line for an exception: VISA errors by their VISA name, others by type and message."""
    if isinstance(exc, str) or exc is None:
        return one_line(str(exc))
    abbreviation = getattr(exc, "abbreviation", None)
    if abbreviation is not None:  # pyvisa.errors.VisaIOError
        return one_line(f"VISA error {abbreviation}: {getattr(exc, 'description', '')}")
    return one_line(f"{type(exc).__name__}: {exc}")


def one_line(text: str) -> str:
    """``text`` with its line breaks (pyvisa's messages have some) folded into spaces."""
    return " ".join(text.split())
