"""Live instrument status, queried (never inferred): one plain row per role.

For each role of a station: its identity (``*IDN?``), whether it answers, what it reports of its
outputs (on/off, setpoints in volts or amperes, closed channels) and its error queue (read until
empty: ``SYST:ERR?`` until "No error", ``*ESR?`` on the SR830, ``TE?`` on the ESP300). An
instrument that does not answer gets a row saying so, with the VISA error.

Used by the GUI's status view (through the roles of an open chip, or connecting itself) and by
``labctl bench status --station NAME`` (:func:`query_station`), which prints :func:`format_table`.
Qt-free.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, TextIO

from instruments import InstrumentError
from instruments.errors import describe
from instruments.registry import open_role
from instruments.roles import Role

from .config import StationConfig, load_station
from .instrument_station import role_settings

#: Roles in the order a rig makes them safe: sources first (labctl.rigs: KerrRig/TMRRig.order reversed).
SAFE_ORDER = ("pulse_source", "field_supply", "source_meter", "kerr_readout", "switch", "positioner")


@dataclass
class StatusRow:
    """What one instrument reported. ``off``: True when its outputs are off and sources at zero,
    False when something is on, None when it has no outputs or did not answer."""

    role: str
    model: str
    resource: str
    answers: bool
    identity: str = ""
    output: str = ""
    off: bool | None = None
    errors: list[str] = field(default_factory=list)
    problem: str = ""  # why it does not answer (the VISA error), or a failed safe state

    @property
    def state(self) -> str:
        return "live" if self.answers else "NOT ANSWERING"


@dataclass
class StationStatus:
    """The rows of a station, and a note on how it was reached (e.g. a self-served bench)."""

    station: str
    rows: list[StatusRow]
    note: str = ""

    @property
    def all_answer(self) -> bool:
        return all(r.answers for r in self.rows)


def query_role(role: Role) -> StatusRow:
    """Ask one connected role for its identity, outputs and error queue; never raises for an
    instrument that does not answer (the row says so)."""
    link = role.link
    row = StatusRow(role.role, link.model, link.resource, answers=False)
    try:
        row.identity = role.identify()
        row.output, row.off = role.output_state()
        row.errors = role.errors()
        row.answers = True
    except InstrumentError as exc:
        row.problem = str(exc)
    except Exception as exc:  # noqa: BLE001 - an unexpected reply is a status, not a crash
        row.problem = describe(exc)
    return row


def query_roles(roles: dict[str, Role]) -> list[StatusRow]:
    """One row per role, in the order given."""
    return [query_role(role) for role in roles.values()]


def safe_state_roles(roles: dict[str, Role]) -> list[StatusRow]:
    """Every role to its safe state (sources first), then queried: one row per role.

    A role that did not confirm its safe state has its error in ``problem``."""
    failures: dict[str, str] = {}
    for name in sorted(roles, key=lambda r: SAFE_ORDER.index(r) if r in SAFE_ORDER else len(SAFE_ORDER)):
        try:
            roles[name].safe_state()
        except Exception as exc:  # noqa: BLE001 - every role gets its chance
            failures[name] = str(exc) if isinstance(exc, InstrumentError) else describe(exc)
    rows = query_roles(roles)
    for row in rows:
        if row.role in failures:
            row.problem = f"safe state not confirmed: {failures[row.role]}"
    return rows


@contextmanager
def station_roles(station: StationConfig, resources: dict[str, str] | None = None) -> Iterator[tuple[dict[str, Role], list[StatusRow]]]:
    """Connect to every instrument of ``station`` (not configured: nothing is switched on).

    Yields ``(roles, rows)``: the roles that could be opened, and a row for each one that could
    not (with its error). ``resources`` overrides the station's (role -> VISA resource), e.g. the
    ports of a bench started for the query. Every link is closed afterwards."""
    ins = station.instruments
    roles: dict[str, Role] = {}
    failed: list[StatusRow] = []
    try:
        for name, table in ins.roles().items():
            resource = (resources or {}).get(name, table.resource)
            visa = table.visa_library or ("@py" if resources and name in resources else "")
            try:
                roles[name] = open_role(
                    name, table.model, resource, timeout_s=table.timeout_s, retries=table.retries,
                    visa_library=visa, read_termination=table.read_termination,
                    write_termination=table.write_termination, **role_settings(station, name))
            except (InstrumentError, KeyError) as exc:
                failed.append(StatusRow(name, table.model, resource, answers=False, problem=str(exc)))
        yield roles, failed
    finally:
        for role in roles.values():
            role.link.close()


def query_station(station: StationConfig) -> StationStatus:
    """Query every instrument of ``station`` (``labctl bench status``).

    A simulated-backend station has no instruments (no rows, a note). A station with ``[bench]
    start = true`` serves its simulated bench for the query and stops it afterwards (noted: the
    bench is self-served, so it exists only while something of this process uses it). Otherwise
    the station's resources are queried where they are (real instruments, or ``labctl bench
    serve``). Raises InstrumentError only if a self-served bench cannot be started."""
    name = station.station.name
    if station.station.backend == "simulated" or station.instruments is None:
        return StationStatus(name, [], "simulated backend: no instruments to query")
    running = None
    note = ""
    if station.bench is not None and station.bench.start:
        from .bench import start_bench

        try:
            running = start_bench(station)
        except (OSError, ValueError, KeyError) as exc:
            raise InstrumentError(f"[bench] start = true: cannot serve the simulated bench: {describe(exc)}") from exc
        note = ("self-served simulated bench ([bench] start = true): started for this query and stopped after it; "
                "it runs only while this process uses it")
    try:
        resources = None
        if running is not None:
            auto = {r for r, t in station.instruments.roles().items() if t.resource == "auto"}
            resources = {r: res for r, res in running.resources.items() if r in auto}
        with station_roles(station, resources) as (roles, failed):
            rows = query_roles(roles) + failed
    finally:
        if running is not None:
            running.stop()
    order = list(station.instruments.roles())
    rows.sort(key=lambda r: order.index(r.role))
    return StationStatus(name, rows, note)


def safe_state_station(station: StationConfig) -> StationStatus:
    """Connect to the station's instruments, put each in its safe state and query it.

    For a station whose instruments are reachable without opening the chip (real instruments, a
    bench served elsewhere). A self-served bench exists only while a chip of this process holds
    it, so there is nothing to reach (a note says so); a simulated backend has no instruments."""
    name = station.station.name
    if station.station.backend == "simulated" or station.instruments is None:
        return StationStatus(name, [], "simulated backend: no instruments")
    if station.bench is not None and station.bench.start:
        return StationStatus(name, [], "self-served simulated bench: it stopped with the chip that served it, "
                                       "nothing is left energised")
    with station_roles(station) as (roles, failed):
        rows = safe_state_roles(roles) + failed
    order = list(station.instruments.roles())
    rows.sort(key=lambda r: order.index(r.role))
    return StationStatus(name, rows)


def format_table(status: StationStatus) -> list[str]:
    """The rows as aligned text lines (role, model, state, outputs, errors, identity or problem)."""
    lines = [f"station {status.station}" + (f" ({status.note})" if status.note else "")]
    if not status.rows:
        return lines
    lines.append(f"{'role':<13} {'model':<15} {'state':<14} {'outputs':<40} {'errors':<20} identity / problem")
    for r in status.rows:
        errors = "; ".join(r.errors) if r.errors else ("none" if r.answers else "-")
        lines.append(f"{r.role:<13} {r.model:<15} {r.state:<14} {(r.output or '-'):<40} {errors:<20} "
                     f"{r.identity if r.answers and not r.problem else r.problem}")
    return lines


def status(station: str, out: TextIO | None = None) -> int:
    """``labctl bench status --station NAME``: query every instrument and print one line per role.

    Exit code 0 when every instrument answers (or the station has none: simulated backend), 1 when
    any does not (or a self-served bench cannot be started). A bad station (file, name, content)
    raises ConfigError, which the CLI turns into exit code 2.
    """
    out = out or sys.stdout
    config = load_station(station)
    try:
        result = query_station(config)
    except InstrumentError as exc:
        print(f"labctl bench status: {exc}", file=sys.stderr)
        return 1
    for line in format_table(result):
        print(line, file=out)
    if not result.all_answer:
        silent = ", ".join(r.role for r in result.rows if not r.answers)
        print(f"labctl bench status: not answering: {silent}", file=sys.stderr)
        return 1
    return 0
