"""Assembling a run: from protocol and station references to a built protocol, an open chip and
its run file; and reopening a run file to resume it.

The command line, the GUI and scripts all go through here, so a run is built, recorded and
resumed the same way whichever started it. Order matters for safety and for never losing data:

1. the protocol and station files are validated, and the protocol's settings are checked against
   the station's envelope, before anything is opened;
2. the run file's writer lock is taken before the chip is opened (a second writer is refused
   before it can drive an instrument);
3. only then is the chip opened and the run file created.
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from .config import ConfigError, ProtocolFile, StationConfig, load_protocol_file, load_station, safe_file_stem, validate
from .console import Console
from .engine import SUMMARY, SUMMARY_SPEC, RunEngine, RunOutcome
from .station import check_settings_against_envelope, open_chip
from .store import RunFileError, RunFileLock, RunReader, RunWriter, partial_path, salvage

__all__ = ["BadInput", "Resumable", "build", "check", "close_chip", "create_run_file", "default_out", "execute",
           "intersect_envelopes", "open_for_resume", "open_station_chip", "prepare", "start_run", "take_lock"]


class BadInput(Exception):
    """Bad input outside a configuration file (arguments, run files); shown as is, exit code 2."""


def build(pfile: ProtocolFile, source: str, station: StationConfig, seed: int | None = None, *,
          overrides: dict | None = None, chip_seed: int | None = None):
    """Open the station's chip and build the protocol a validated protocol file describes.

    ``overrides`` replace settings of the file (validated like them); ``chip_seed`` replaces the
    station's physics seed (another simulated chip of the same design). The settings are checked
    against the station's envelope before the chip is opened.
    """
    header = pfile.protocol
    cls, settings = check(pfile, source, station, overrides=overrides)
    chip = open_station_chip(station, seed=chip_seed)
    try:
        protocol = cls(header.name, settings, chip, seed=header.seed if seed is None else seed)
    except ValueError as exc:
        chip.close()
        raise ConfigError(f"{source}: {exc}") from None
    except BaseException:
        chip.close()
        raise
    return protocol, chip


def open_station_chip(station: StationConfig, seed: int | None = None):
    """The station's chip (``labctl.station.open_chip``); an instrument that cannot be opened is
    bad input (ConfigError naming the station), not a crash."""
    from instruments import InstrumentError

    try:
        return open_chip(station, seed=seed)
    except InstrumentError as exc:
        raise ConfigError(f"station {station.station.name}: cannot open the instruments: {exc}") from None


def check(pfile: ProtocolFile, source: str, station: StationConfig, *, overrides: dict | None = None):
    """Validate a protocol file's kind and settings and check them against the station's envelope.

    Opens nothing. Returns (protocol class, validated settings); raises ConfigError naming the
    file, the key, the value and the limit.
    """
    from protocols import REGISTRY

    kind = pfile.protocol.kind
    cls = REGISTRY.get(kind)
    if cls is None:
        raise ConfigError(f"{source}: key 'protocol.kind': expected one of {sorted(REGISTRY)} (got {kind!r})")
    settings = validate(cls.settings_model, {**pfile.settings, **(overrides or {})}, source, prefix="settings")
    check_settings_against_envelope(cls, settings, source, station)
    return cls, settings


def prepare(protocol_ref: str, station_ref: str | None = None, seed: int | None = None, *,
            overrides: dict | None = None, chip_seed: int | None = None):
    """Load a protocol file and its station (the protocol's default unless given), build both.

    Returns (protocol, chip, station config, protocol file). Raises ConfigError for bad input.
    ``overrides`` and ``chip_seed`` as in :func:`build` (for sweeps and tests).
    """
    pfile, source = load_protocol_file(protocol_ref)
    station = load_station(station_ref or pfile.protocol.station)
    protocol, chip = build(pfile, source, station, seed, overrides=overrides, chip_seed=chip_seed)
    return protocol, chip, station, pfile


def default_out(name: str) -> Path:
    """``runs/<time>-<name>.h5``; the name is made safe for a file name (it never picks the folder)."""
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{safe_file_stem(name)}.h5"


def take_lock(path: Path) -> RunFileLock:
    """The writer lock of run file ``path``; RunFileBusy (a RunFileError) if another process holds it."""
    lock = RunFileLock(path)
    lock.acquire()
    return lock


def create_run_file(protocol, chip, station: StationConfig, pfile: ProtocolFile, out: Path, *,
                    station_source: str | None = None, overwrite: bool = False,
                    lock: RunFileLock | None = None, command: str | None = None) -> RunWriter:
    """A new run file with everything needed to understand and resume the run in its attributes.

    ``station_source``: the station's file path or embedded name (``labctl resume`` re-reads the
    station's envelope from it). ``lock``: the file's writer lock if the caller already holds it
    (the caller releases it after the run); None: the writer takes it and releases it on close.
    ``command``: what started the run, as recorded (default: this process's command line).
    """
    used = pfile.model_copy(update={"settings": protocol.settings.model_dump(mode="json")})
    attrs = {
        "protocol_name": pfile.protocol.name,
        "protocol_kind": pfile.protocol.kind,
        "protocol": used.model_dump(),  # the settings the run uses (overrides and defaults applied)
        "station_name": station.station.name,
        "station": station.model_dump(),
        "station_source": _absolute_ref(station_source) if station_source else "",
        "seed": protocol.seed,
        "command": command if command is not None else " ".join(sys.argv),
    }
    schema = {**protocol.describe(), SUMMARY: SUMMARY_SPEC}
    try:
        return RunWriter(out, attrs=attrs, schema=schema, overwrite=overwrite, lock=lock)
    except FileExistsError:
        raise BadInput(f"{out}: run file already exists (choose another --out, or pass --overwrite to replace it)") from None


def _absolute_ref(ref: str) -> str:
    """A station reference that still resolves from another working directory."""
    path = Path(ref)
    return str(path.resolve()) if path.suffix == ".toml" else ref


def start_run(pfile: ProtocolFile, source: str, station: StationConfig, *, station_ref: str | None, out: Path,
              seed: int | None = None, overwrite: bool = False, overrides: dict | None = None,
              command: str | None = None):
    """Take ``out``'s writer lock, open the chip, build the protocol, create the run file.

    Returns (protocol, chip, writer, lock); the caller runs it (:func:`execute`) and then
    releases the lock. The lock comes first, so a refused second writer never opens the chip.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = take_lock(out)
    try:
        protocol, chip = build(pfile, source, station, seed, overrides=overrides)
        try:
            writer = create_run_file(protocol, chip, station, pfile, out, station_source=station_ref,
                                     overwrite=overwrite, lock=lock, command=command)
        except BaseException:
            close_chip(chip)
            raise
    except BaseException:
        lock.release()
        raise
    return protocol, chip, writer, lock


def execute(protocol, chip, writer: RunWriter, *, subscribers=(), progress_bar: bool = False,
            checkpoint_every_s: float | None = 60.0, resumed: bool = False,
            pause_timeout_s: float | None = 600.0) -> tuple[RunOutcome, float, str]:
    """Run a protocol into its run file under the engine, with the terminal's run control.

    In the main thread one Ctrl-C pauses (the terminal says how to go on), a second or SIGTERM
    aborts (:mod:`labctl.console`). ``subscribers``: extra engine subscribers (progress callbacks).
    The chip is closed (safe state) whatever happens. Returns the outcome, the duration (s) and
    "" or the error of closing the chip (its safe state then is NOT confirmed).
    """
    engine = RunEngine(chip, writer, checkpoint_every_s=checkpoint_every_s, checkpoint_at_start=not resumed,
                       subscribers=tuple(subscribers))
    console = Console(engine, writer.path, progress=progress_bar, pause_timeout_s=pause_timeout_s)
    start = time.perf_counter()
    try:
        with engine.ctrl_c_pauses():
            outcome = engine.run(protocol)
    finally:
        console.close()
        closed = close_chip(chip)
    return outcome, time.perf_counter() - start, closed


def close_chip(chip) -> str:
    """Close the chip (safe state first); returns "" or what went wrong, also said on stderr."""
    try:
        chip.close()
    except Exception as exc:  # the run is over: the user must learn that the outputs may be on
        message = (f"closing the chip failed, its safe state is NOT confirmed: {type(exc).__name__}: "
                   + " ".join(str(exc).splitlines()))
        print(f"labctl: warning: {message}", file=sys.stderr)
        return message
    return ""


# ---------------------------------------------------------------------------- resuming
def intersect_envelopes(recorded: StationConfig, current: StationConfig) -> tuple[StationConfig, list[str]]:
    """The recorded station with its envelope narrowed to what both envelopes allow.

    Returns the station to resume with and one line per limit that differs (empty if none).
    Raises ConfigError if the two envelopes do not overlap.
    """
    a, b = recorded.envelope, current.envelope
    merged = {
        "amplitude_min": max(a.amplitude_min, b.amplitude_min),
        "amplitude_max": min(a.amplitude_max, b.amplitude_max),
        "width_min": max(a.width_min, b.width_min),
        "width_max": min(a.width_max, b.width_max),
        "read_bias_max": min(a.read_bias_max, b.read_bias_max),
    }
    notes = [f"envelope.{key}: run file {getattr(a, key):.6g}, station now {getattr(b, key):.6g}, using {value:.6g}"
             for key, value in merged.items() if getattr(a, key) != getattr(b, key)]
    data = recorded.model_dump()
    data["envelope"] = merged
    station = validate(StationConfig, data, f"station {current.station.name} (envelope of the run file and the station together)")
    return station, notes


@dataclass
class Resumable:
    """A run file reopened for writing, with its protocol and chip rebuilt from its last checkpoint."""

    path: Path
    protocol: object
    chip: object
    writer: RunWriter
    pfile: ProtocolFile
    station: StationConfig
    step: int
    lock: RunFileLock  # held until the run ends: release it then
    notes: list[str] = field(default_factory=list)  # what the user should know (envelope narrowed)


def open_for_resume(path: str | Path, *, station_ref: str | None = None) -> Resumable:
    """Take the writer lock of ``path``, rebuild protocol and chip from its last checkpoint, reopen it.

    The envelope used is the station's current one (``station_ref``, else the station the run
    recorded: its file or embedded name) intersected with the one recorded in the run file, so a
    run file edited by hand can never widen the limits. A damaged file is never modified: what
    can be read is salvaged into a new file and the error says where.
    """
    path = Path(path)
    lock = take_lock(path)
    try:
        return _reopen_locked(path, lock, station_ref)
    except BaseException:
        lock.release()
        raise


def _reopen_locked(path: Path, lock: RunFileLock, station_ref: str | None) -> Resumable:
    if not path.exists() and partial_path(path).exists():
        raise BadInput(f"{path}: the run was stopped before its first checkpoint, so there is nothing to resume; "
                       "start it again with the same --out")
    try:
        with RunReader(path) as reader:
            attrs, status, latest = reader.attrs, reader.exit_status(), reader.latest_checkpoint()
    except RunFileError as damage:
        if not path.is_file():
            raise
        raise BadInput(_salvage_message(path, damage)) from None
    if status == "success":
        raise BadInput(f"{path}: the run finished successfully; there is nothing to resume")
    if latest is None:
        raise BadInput(f"{path}: holds no checkpoint to resume from (it was stopped before its first checkpoint); "
                       "start the run again")
    step, payload = latest
    pfile = validate(ProtocolFile, attrs.get("protocol"), f"{path} (attribute 'protocol')")
    recorded = validate(StationConfig, attrs.get("station"), f"{path} (attribute 'station')")
    current = load_station(current_station_ref(path, attrs, station_ref))
    station, notes = intersect_envelopes(recorded, current)
    try:  # weights_only: a run file is data, and loading it must not run code
        state = torch.load(io.BytesIO(payload), weights_only=True)
        plan_state, rows = state["plan"], state["rows"]
    except Exception as exc:  # any unusable checkpoint: say so, do not crash
        raise BadInput(f"{path}: the checkpoint at step {step} cannot be loaded ({_first_line(exc)})") from None
    protocol, chip = build(pfile, str(path), station, attrs.get("seed"))
    try:
        try:
            protocol.load_state_dict(plan_state)
            if "chip" in state and hasattr(chip, "load_state_dict"):
                chip.load_state_dict(state["chip"])
        except Exception as exc:  # a checkpoint this version cannot use
            raise BadInput(f"{path}: the checkpoint at step {step} cannot be loaded ({_first_line(exc)})") from None
        writer = RunWriter.reopen(path, reason=f"resume from checkpoint at step {step}",
                                  truncate={**rows, SUMMARY: 0}, lock=lock)
    except BaseException:
        chip.close()
        raise
    return Resumable(path, protocol, chip, writer, pfile, station, step, lock, notes)


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (torch's errors run to a page of advice)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def current_station_ref(path: Path, attrs: dict, station_ref: str | None) -> str:
    """Where the station's current envelope is read from when a run file is reopened (resume, evaluate)."""
    if station_ref:
        return station_ref
    ref = attrs.get("station_source") or attrs.get("station_name") or ""
    if not isinstance(ref, str) or not ref:
        raise BadInput(f"{path}: the run file does not say which station file it used; pass --station")
    if ref.endswith(".toml") and not Path(ref).is_file():
        raise BadInput(f"{path}: its station file {ref} is gone; pass --station with the station's current file")
    return ref


def _salvage_message(path: Path, damage: RunFileError) -> str:
    """Recover what a damaged run file still holds into a new file; say what happened."""
    out = path.with_name(f"{path.stem}.salvaged.h5")
    try:
        report = salvage(path, out)
    except RunFileError as exc:
        return f"{damage}; nothing could be recovered ({exc}); the file was left as it is"
    return f"{damage}; the file was left as it is; {report}"
