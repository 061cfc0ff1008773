"""One instrument connection: a PyMeasure driver on a VISA resource, counted, timed out and retried.

A :class:`Link` owns the driver instance of one role and everything about talking to it:

- an explicit VISA timeout (seconds in the station file, milliseconds for VISA) and explicit
  read/write terminations;
- a :class:`TransactionCounter`: every VISA write or query is one transaction (a query is one
  write followed by its read);
- a bounded reconnect-and-retry: :meth:`Link.call` retries an idempotent operation up to
  ``retries`` times, reconnecting first, when it fails with a VISA I/O error (timeout, lost
  connection) or a garbled reply; :meth:`Link.attempt` tries once and raises
  :class:`~instruments.errors.TransientError` so that a caller can retry a larger unit of work
  (a whole batch) instead;
- an interrupted exchange (an exception, Ctrl-C, in the middle of a query) leaves the link
  *dirty*; the next use reconnects first, so a stale reply can never be read as the answer to a
  later query.
"""

from __future__ import annotations

import logging
import socket
import time
import warnings
from typing import Any, Callable, TypeVar

from pymeasure.adapters import VISAAdapter
from pyvisa.errors import VisaIOError

from .errors import InstrumentError, ReplyError, TransientError, UnreachableError, describe

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Exceptions that mean "this exchange failed, the instrument may still be fine".
TRANSIENT = (VisaIOError, OSError, ReplyError)


class TransactionCounter:
    """Number of VISA transactions (writes and queries) made through the links that share it."""

    def __init__(self) -> None:
        self.value = 0

    def add(self, n: int = 1) -> None:
        self.value += n


class CountingVISAAdapter(VISAAdapter):
    """PyMeasure's VISA adapter, counting every message written (a query writes one message too)."""

    def __init__(self, resource_name: str, counter: TransactionCounter, visa_library: str = "", **kwargs):
        super().__init__(resource_name, visa_library, **kwargs)
        self.counter = counter

    def _write(self, command: str, **kwargs) -> None:
        self.counter.add()
        super()._write(command, **kwargs)

    def _write_bytes(self, content: bytes, **kwargs) -> None:
        self.counter.add()
        super()._write_bytes(content, **kwargs)


class Link:
    """The connection of one role (``pulse_source``, ``kerr_readout``, ...) to its instrument.

    ``timeout_s`` is the VISA timeout in seconds; ``retries`` how many times :meth:`call`
    reconnects and tries again after a transient failure; ``visa_library`` the pyvisa backend
    (``"@py"`` for pyvisa-py, ``""`` for the system default).
    """

    def __init__(
        self,
        role: str,
        model: str,
        driver_cls: type,
        resource: str,
        *,
        timeout_s: float = 2.0,
        retries: int = 2,
        visa_library: str = "",
        read_termination: str = "\n",
        write_termination: str = "\n",
        counter: TransactionCounter | None = None,
    ):
        self.role = role
        self.model = model
        self.driver_cls = driver_cls
        self.resource = resource
        self.timeout_s = timeout_s
        self.retries = retries
        self.visa_library = visa_library
        self.read_termination = read_termination
        self.write_termination = write_termination
        self.counter = counter if counter is not None else TransactionCounter()
        self.driver: Any = None
        self.dirty = False
        self.reconnects = 0

    @classmethod
    def attach(cls, role: str, model: str, driver: Any) -> "Link":
        """A link around an existing driver (e.g. one built by ``pymeasure.test.expected_protocol``).

        It cannot reconnect: a transient failure is final.
        """
        link = cls(role, model, type(driver), "<attached>", retries=0)
        link.driver = driver
        return link

    def __repr__(self) -> str:
        return f"Link({self.role!r}, {self.model!r}, {self.resource!r})"

    @property
    def where(self) -> str:
        return f"{self.role} ({self.model} at {self.resource})"

    @property
    def named(self) -> str:
        """``role 'pulse_source' (Agilent33500) at 'RESOURCE'``: how open errors name the link."""
        return f"role {self.role!r} ({self.model}) at {self.resource!r}"

    # ------------------------------------------------------------------ connection
    def _adapter(self) -> CountingVISAAdapter:
        adapter = CountingVISAAdapter(
            self.resource,
            self.counter,
            visa_library=self.visa_library,
            timeout=int(round(self.timeout_s * 1000)),
            read_termination=self.read_termination,
            write_termination=self.write_termination,
        )
        if self.resource.upper().endswith("::SOCKET"):
            no_delay(adapter.connection)
        return adapter

    def open(self) -> None:
        """Connect and build the driver (its constructor may already talk to the instrument)."""

        def build():
            adapter = self._adapter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # PyMeasure's SCPI-unknown notice
                    self.driver = self.driver_cls(adapter)
            except BaseException:
                adapter.close()
                raise

        try:
            self._retrying(build)
        except UnreachableError as exc:
            raise UnreachableError(f"{self.named}: cannot open: no answer after {self.retries + 1} attempt(s); "
                                   f"last: {exc.cause}; expected the instrument on and reachable at that resource",
                                   role=self.role, model=self.model, resource=self.resource, cause=exc.cause,
                                   ) from exc.__cause__
        except Exception as exc:  # a resource string or VISA backend pyvisa cannot use: not retried
            raise InstrumentError(
                f"{self.named}: cannot open: {describe(exc)}; expected a VISA resource string that the "
                f"{'pyvisa-py (@py)' if self.visa_library == '@py' else repr(self.visa_library or 'default')} "
                "VISA library can open (e.g. TCPIP0::host::port::SOCKET), with its interface's support installed"
            ) from exc

    def reconnect(self) -> None:
        """Close the connection and open a new one; the driver object (and its state) is kept."""
        if self.resource == "<attached>":
            raise InstrumentError(f"{self.where}: cannot reconnect an attached driver")
        self._close_adapter()
        self.driver.adapter = self._adapter()
        if self.resource.upper().endswith("::INSTR"):
            try:
                self.driver.adapter.connection.clear()  # device clear: flush a half-sent reply
            except Exception as exc:  # noqa: BLE001 - not every interface supports it
                log.debug("%s: no device clear on reconnect (%s)", self.where, exc)
        self.reconnects += 1
        self.dirty = False
        log.info("reconnected %s", self.where)

    def _close_adapter(self) -> None:
        adapter = getattr(self.driver, "adapter", None)
        if adapter is not None:
            try:
                adapter.close()
            except Exception as exc:  # noqa: BLE001 - the connection may be gone already
                log.debug("%s: closing the connection: %s", self.where, exc)

    def close(self) -> None:
        """Close the connection (the instrument keeps its state)."""
        if self.driver is not None and self.resource != "<attached>":
            self._close_adapter()

    # ------------------------------------------------------------------ exchanges
    def attempt(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run ``fn(driver, *args)`` once; a transient failure raises :class:`TransientError`."""
        if self.dirty and self.resource != "<attached>":
            try:
                self.reconnect()
            except TRANSIENT as exc:
                raise TransientError(self, exc) from exc
        self.dirty = True
        try:
            result = fn(self.driver, *args, **kwargs)
        except TRANSIENT as exc:
            raise TransientError(self, exc) from exc
        self.dirty = False
        return result

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run ``fn(driver, *args)``, reconnecting and retrying up to ``retries`` times.

        Only for idempotent operations (configuration, queries of settings, safe state).
        Raises :class:`InstrumentError` when the retries are exhausted.
        """
        return self._retrying(lambda: self.attempt(fn, *args, **kwargs))

    def _retrying(self, fn: Callable[[], T]) -> T:
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.05 * 2 ** (attempt - 1), 1.0))  # let a rebooting instrument breathe
            try:
                return fn()
            except TransientError as exc:
                last = exc.cause if isinstance(exc.cause, BaseException) else exc
                log.info("%s: attempt %d failed: %s", self.where, attempt + 1, describe(exc.cause))
            except TRANSIENT as exc:  # while opening
                last = exc
                log.info("%s: attempt %d failed: %s", self.where, attempt + 1, describe(exc))
        raise UnreachableError(
            f"{self.where}: failed {self.retries + 1} time(s); last: {describe(last)}",
            role=self.role, model=self.model, resource=self.resource, cause=describe(last),
        ) from last


def no_delay(connection) -> None:
    """Send each message at once on a TCP socket resource (TCP_NODELAY).

    Otherwise a write followed at once by another message waits for the peer's delayed
    acknowledgement (Nagle's algorithm; about 40 ms on Linux). pyvisa-py 0.8 reads the VISA
    attribute but cannot set it, so the socket option is set on its session directly when the
    attribute is refused. Best effort: a backend without either keeps its default.
    """
    try:
        from pyvisa import constants

        connection.set_visa_attribute(constants.VI_ATTR_TCPIP_NODELAY, True)
        return
    except Exception as exc:  # noqa: BLE001 - unsupported by this backend: try the socket itself
        log.debug("VI_ATTR_TCPIP_NODELAY refused (%s); setting TCP_NODELAY on the socket", exc)
    try:
        session = connection.visalib.sessions[connection.session]
        session.interface.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except Exception:  # noqa: BLE001
        log.debug("TCP_NODELAY not set on %s", connection)
