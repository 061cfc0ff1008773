"""The two benches as compositions of instrument roles: how one batch of trials reaches one device.

A batch on one device is always the same few transactions, whatever the number of trials in it:

Kerr bench (:class:`KerrRig`): move the stage so the laser spot is on wire ``k`` (one message,
skipped if it is there already), arm the lock-in buffer, upload the waveform, trigger it and
wait, count and read the buffer: 6 transactions.

TMR bench (:class:`TMRRig`): route the switch matrix to device ``k`` (one message, confirmed;
skipped if routed already), arm the source meter for ``n`` readings, upload, trigger, read the
buffer: 5 transactions.

A communication failure anywhere in a batch (timeout, lost connection, garbled reply) makes the
whole batch start again from the selection, after the failed link has reconnected; readings of
a failed attempt are discarded, so nothing is lost or counted twice. After ``retries`` failed
attempts the batch raises :class:`~instruments.errors.UnreachableError` (an
:class:`~instruments.errors.InstrumentError`) naming the instrument that stopped answering.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod

import numpy as np

from instruments import InstrumentError, TransientError, UnreachableError
from instruments.errors import describe
from instruments.link import TransactionCounter
from instruments.roles import FieldSupply, KerrReadout, Positioner, PulseSource, Role, SourceMeter, Switch
from instruments.waveform import Waveform

log = logging.getLogger(__name__)

OVERFLOW = 1e30  # source-meter readings at or above this are an open circuit


class Rig(ABC):
    """Roles of one bench; subclasses say how a device is selected and read."""

    #: Roles in the order they are configured; safe state goes in reverse.
    order: tuple[str, ...] = ()

    def __init__(self, roles: dict[str, Role], counter: TransactionCounter, retries: int = 2):
        missing = [r for r in self.order if r not in roles]
        if missing:
            raise ValueError(f"{type(self).__name__} needs the roles {missing}")
        self.roles = roles
        self.counter = counter
        self.retries = retries
        self.selected: int | None = None
        self.retried = 0

    @property
    def pulse_source(self) -> PulseSource:
        return self.roles["pulse_source"]  # type: ignore[return-value]

    #: The station keys the scale comes from (named in errors about it).
    scale_keys: str = ""

    @property
    @abstractmethod
    def volts_per_unit(self) -> float:
        """Pulse-source volts per unit of device amplitude (1/T, 1/V or 1/A)."""
        ...

    @property
    @abstractmethod
    def max_reads(self) -> int:
        ...

    def configure(self) -> None:
        for name in self.order:
            self.roles[name].configure()

    # ------------------------------------------------------------------ one batch
    def batch(self, device: int, wave: Waveform, reads: int) -> np.ndarray | None:
        """Play ``wave`` on ``device``; return its ``reads`` readings (or None when 0)."""
        self.pulse_source.check(wave)
        last: TransientError | None = None
        for attempt in range(self.retries + 1):
            try:
                if self.selected != device:
                    self._select(device)
                    self.selected = device
                if reads:
                    self._arm(reads)
                self.pulse_source.load(wave)
                self.pulse_source.fire()
                return self._fetch(reads) if reads else None
            except TransientError as exc:
                last = exc
                self.selected = None
                self.retried += 1
                log.info("batch on device %d, attempt %d failed (retried): %s", device, attempt + 1, exc)
        link = last.link
        raise UnreachableError(
            f"batch on device {device} failed {self.retries + 1} times; last failure: {last}",
            role=link.role, model=link.model, resource=link.resource, cause=describe(last.cause),
        ) from last.cause if isinstance(last.cause, BaseException) else last

    @abstractmethod
    def _select(self, device: int) -> None:
        ...

    @abstractmethod
    def _arm(self, reads: int) -> None:
        ...

    @abstractmethod
    def _fetch(self, reads: int) -> np.ndarray:
        ...

    # ------------------------------------------------------------------ safety and shutdown
    def safe_state(self, names: list[str] | None = None) -> dict[str, str]:
        """Every role (or those in ``names``) to its safe state, sources first.

        Returns ``{role: error}`` for each role that did not confirm it; never raises.
        """
        failures = {}
        for name in reversed(self.order):
            if names is not None and name not in names:
                continue
            role = self.roles[name]
            try:
                role.safe_state()
            except Exception as exc:  # noqa: BLE001 - every role must get its chance
                failures[name] = describe(exc) if not isinstance(exc, InstrumentError) else str(exc)
                log.error("safe state of %s failed: %s", name, exc)
        self.selected = None
        return failures

    def identities(self) -> dict[str, str]:
        """``*IDN?`` of every role (retried like any query; UnreachableError if one does not answer)."""
        return {name: self.roles[name].identify() for name in self.order}

    def reconnect_all(self) -> None:
        """Mark every link for a fresh connection before its next use (after an outage)."""
        for role in self.roles.values():
            if role.link.resource != "<attached>":
                role.link.dirty = True

    def close(self) -> None:
        for role in self.roles.values():
            role.link.close()


class KerrRig(Rig):
    """Kerr bench: AWG -> field supply -> magnet; stage positions the spot; lock-in reads."""

    order = ("positioner", "kerr_readout", "field_supply", "pulse_source")

    @property
    def field_supply(self) -> FieldSupply:
        return self.roles["field_supply"]  # type: ignore[return-value]

    @property
    def readout(self) -> KerrReadout:
        return self.roles["kerr_readout"]  # type: ignore[return-value]

    @property
    def positioner(self) -> Positioner:
        return self.roles["positioner"]  # type: ignore[return-value]

    #: The station keys the scale comes from (named in errors about it).
    scale_keys = "[instruments.field_supply] gain (A/V) and coil (T/A)"

    @property
    def volts_per_unit(self) -> float:
        return checked_scale(self.field_supply.gain * self.field_supply.coil, self.scale_keys, "T/V")

    @property
    def max_reads(self) -> int:
        return self.readout.max_points

    def _select(self, device: int) -> None:
        self.positioner.move_to(self.positioner.position_of(device))

    def _arm(self, reads: int) -> None:
        self.readout.arm()

    def _fetch(self, reads: int) -> np.ndarray:
        return self.readout.fetch(reads)


class TMRRig(Rig):
    """TMR bench: pulse generator and source meter reach one device through the switch matrix."""

    order = ("switch", "source_meter", "pulse_source")

    def __init__(self, roles: dict[str, Role], counter: TransactionCounter, retries: int = 2,
                 units_per_volt: float = 1.0):
        super().__init__(roles, counter, retries)
        self.units_per_volt = units_per_volt

    @property
    def source_meter(self) -> SourceMeter:
        return self.roles["source_meter"]  # type: ignore[return-value]

    @property
    def switch(self) -> Switch:
        return self.roles["switch"]  # type: ignore[return-value]

    scale_keys = "[instruments.pulse_source] units_per_volt"

    @property
    def volts_per_unit(self) -> float:
        return checked_scale(self.units_per_volt, self.scale_keys, "V/V or A/V")

    @property
    def max_reads(self) -> int:
        return self.source_meter.max_points

    def _select(self, device: int) -> None:
        self.switch.route(device)

    def _arm(self, reads: int) -> None:
        self.source_meter.arm(reads)

    def _fetch(self, reads: int) -> np.ndarray:
        ohms = self.source_meter.fetch(reads)
        if np.any(ohms >= OVERFLOW):
            raise InstrumentError(f"{self.source_meter.link.where}: open circuit (overflow reading); "
                                  "is the device routed and the source on?")
        return ohms


def checked_scale(units_per_volt: float, keys: str, unit: str) -> float:
    """``1 / units_per_volt``: pulse-source volts per unit of device amplitude.

    Raises InstrumentError naming the station ``keys`` unless both are finite and positive (a
    zero, infinite or NaN calibration constant would send 0 V or an infinite voltage)."""
    ok = math.isfinite(units_per_volt) and units_per_volt > 0
    volts = 1.0 / units_per_volt if ok else math.nan
    if not (ok and math.isfinite(volts) and volts > 0):
        raise InstrumentError(
            f"{keys} give {units_per_volt:.6g} {unit} at the device per pulse-source volt: "
            "expected a finite positive product; check the station's calibration constants"
        )
    return volts
