"""The Python API for scripts and notebooks: open a station, run and resume protocols, read run files.

Everything here goes through the same code as the ``labctl`` command (:mod:`labctl.runs` and
:class:`~labctl.engine.RunEngine`), so a run started from Python is validated, checked against the
station's envelope, locked, checkpointed, paused, aborted and recorded exactly as ``labctl run``
would do it. The functions:

- :func:`open_station`: a context manager giving the station's chip (a SynapseArray), left in its
  safe state and closed on exit, whatever ends the block;
- :func:`load_protocol`: a protocol file (path or embedded name) with its settings validated and
  checked against the station's envelope, nothing opened;
- :func:`run` / :func:`resume`: run a protocol into a run file, or continue one from its last
  checkpoint; a :class:`RunResult` says how it ended;
- :func:`read_run`: a run file's summary, metrics, events (pandas DataFrames), weights and
  calibration.

Expected errors are labctl exceptions with one-line messages: :class:`ConfigError` (a station or
protocol file, a setting, the envelope), :class:`RunFileError` (a run file missing or damaged;
:class:`RunFileBusy` when another process writes it) and :class:`BadInput` (a run file that
exists already, one with nothing to resume). Units: seconds for times, joules for energy,
amplitudes in the chip family's unit (tesla, ampere or volt).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
from protocols import REGISTRY
from pydantic import BaseModel

from . import readers
from .chip import SynapseArray
from .config import ConfigError, ProtocolFile, StationConfig, load_protocol_file, load_station
from .runs import BadInput, check, close_chip, default_out, execute, open_for_resume, open_station_chip, start_run
from .store import RunFileBusy, RunFileError, RunReader, RunWriter

__all__ = ["BadInput", "ConfigError", "ProtocolSpec", "RunData", "RunFileBusy", "RunFileError", "RunResult",
           "load_protocol", "open_station", "read_run", "resume", "run"]

#: ``progress(doc)`` is called at every safe point with the engine's progress document: ``step``,
#: ``total`` (None if unknown), ``stage`` and ``metrics`` (latest values, e.g. ``loss`` in nats,
#: ``accuracy`` as a fraction). It runs in the thread running the protocol and must not block; one
#: that raises is detached (the run goes on and records a ``subscriber_err`` event).
ProgressCallback = Callable[[dict], None]


# ---------------------------------------------------------------------------- station
@contextmanager
def open_station(ref: str | Path, *, seed: int | None = None) -> Iterator[SynapseArray]:
    """Open the chip of station ``ref`` (a TOML path or an embedded name such as ``"sim-dw"``).

    ``seed`` replaces the station's physics seed (another simulated chip of the same design).
    On leaving the block, however it is left (normally, an exception, Ctrl-C), the chip is put in
    its safe state and closed: instruments released, a simulated bench the station started is
    stopped. An instrument that cannot be opened raises ConfigError naming the station. A safe
    state that cannot be confirmed on a normal exit raises the instrument's error; after an
    exception it is said on stderr and noted on that exception, which goes on.
    """
    chip = open_station_chip(load_station(ref), seed=seed)
    try:
        yield chip
    except BaseException as exc:
        failure = close_chip(chip)
        if failure:
            exc.add_note(failure)
        raise
    chip.close()


# ---------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class ProtocolSpec:
    """A protocol ready to run: its file, its station and its settings, validated and checked
    against the station's envelope (nothing is opened). Made by :func:`load_protocol`."""

    pfile: ProtocolFile  # the protocol file with the settings the run uses (the file's, overrides applied)
    source: str  # the protocol file's path or embedded name, as error messages name it
    station: StationConfig
    station_ref: str  # the station's file or embedded name (``labctl resume`` reads its envelope again)
    settings: BaseModel  # the protocol class's ``settings_model``, validated
    seed: int | None = None  # the protocol's seed (None: the protocol file's)

    @property
    def name(self) -> str:
        return self.pfile.protocol.name

    @property
    def kind(self) -> str:
        return self.pfile.protocol.kind


def load_protocol(ref: str | Path, *, station: str | Path | None = None, seed: int | None = None,
                  settings: BaseModel | None = None, **overrides: Any) -> ProtocolSpec:
    """Load protocol ``ref`` (a TOML path or an embedded name such as ``"calibrate-stt"``) for a run.

    ``station``: a station file or embedded name (default: the one the protocol file names).
    ``seed``: the protocol's seed (default: the file's). ``settings``: a complete settings object
    of the protocol's ``settings_model`` (e.g. ``spec.settings.model_copy(update={...})``) that
    replaces the file's settings; ``overrides``: single settings replacing the file's (or those of
    ``settings``), in the units the settings model states. Everything is validated and checked
    against the station's envelope exactly as on the command line; ConfigError otherwise.
    """
    pfile, source = load_protocol_file(ref)
    station_ref = str(station or pfile.protocol.station)
    station_cfg = load_station(station_ref)
    replaced: dict[str, Any] = {}
    if settings is not None:
        model = getattr(REGISTRY.get(pfile.protocol.kind), "settings_model", BaseModel)
        if not isinstance(settings, model):
            raise ConfigError(f"{source}: settings must be a {model.__name__} for protocol kind "
                              f"{pfile.protocol.kind!r} (got {type(settings).__name__})")
        replaced = settings.model_dump(mode="json")
    replaced.update(overrides)
    _, validated = check(pfile, source, station_cfg, overrides=replaced)  # ConfigError: the key and the limit
    # The run file records this protocol file, so it must hold the settings the run uses: a resume
    # rebuilds the protocol from the record alone.
    effective = pfile.model_copy(update={"settings": {**pfile.settings, **replaced}})
    return ProtocolSpec(effective, source, station_cfg, station_ref, validated, seed)


# ---------------------------------------------------------------------------- running
@dataclass
class RunResult:
    """How a run ended. ``status``: "success" or "failed" (an abort fails too); ``reason``:
    "completed", "stopped: ...", "aborted: ..." or "error: ..."; ``summary``: final metrics and the
    chip's ``counters`` (``energy_j`` in J); ``path``: the run file; ``steps``: the last safe point
    reached; ``safe``: False if the chip's safe state was NOT confirmed at the end; ``error``: the
    exception that failed the run, if any; ``duration_s``: wall time in seconds."""

    status: str
    reason: str
    summary: dict[str, Any]
    path: Path
    steps: int
    safe: bool = True
    error: BaseException | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True for a run that ended successfully (completed or stopped)."""
        return self.status == "success"


def run(protocol: str | Path | ProtocolSpec, *, station: str | Path | None = None, out: str | Path | None = None,
        seed: int | None = None, overrides: dict[str, Any] | None = None, progress: ProgressCallback | None = None,
        checkpoint_every_s: float | None = 60.0, pause_timeout_s: float | None = 600.0,
        overwrite: bool = False) -> RunResult:
    """Run a protocol into a run file, as ``labctl run`` does; returns a :class:`RunResult`.

    ``protocol``: a protocol file, an embedded name, or a :class:`ProtocolSpec` from
    :func:`load_protocol` (then ``station`` and ``overrides`` belong to that call). ``out``: the
    run file (default ``runs/<time>-<name>.h5``; ``overwrite`` replaces an existing one, else
    BadInput). ``seed``: the protocol's seed. ``progress``: see :data:`ProgressCallback`.
    ``checkpoint_every_s``: seconds between checkpoints (0: at every safe point). A failed run does
    not raise: the result says why, and :func:`resume` continues it from its last checkpoint.

    Run control is the command line's: in the main thread one Ctrl-C pauses at the next safe point
    (chip in its safe state, checkpoint written; on a terminal, Enter resumes, ``s`` stops, ``a``
    aborts), a second Ctrl-C or SIGTERM aborts; a pause unanswered for ``pause_timeout_s`` seconds
    (None or 0: for ever) aborts. The run file's writer lock is taken before the chip is opened.
    """
    if isinstance(protocol, ProtocolSpec):
        if station is not None or overrides:
            raise TypeError("run(): with a ProtocolSpec, give station and overrides to load_protocol()")
        spec = protocol
    else:
        spec = load_protocol(protocol, station=station, **(overrides or {}))
    seed = spec.seed if seed is None else seed
    out = Path(out) if out is not None else default_out(spec.name)
    plan, chip, writer, lock = start_run(spec.pfile, spec.source, spec.station, station_ref=spec.station_ref,
                                         out=out, seed=seed, overwrite=overwrite)
    try:
        return _execute(plan, chip, writer, progress=progress, checkpoint_every_s=checkpoint_every_s,
                        pause_timeout_s=pause_timeout_s, resumed=False)
    finally:
        lock.release()


def resume(path: str | Path, *, station: str | Path | None = None, progress: ProgressCallback | None = None,
           checkpoint_every_s: float | None = 60.0, pause_timeout_s: float | None = 600.0) -> RunResult:
    """Continue run file ``path`` from its last checkpoint, in the same file, as ``labctl resume`` does.

    ``station``: the station's current file or embedded name (default: the one the run used); its
    envelope, intersected with the one the run file recorded, limits the resumed run (a narrowed
    limit is said on stderr). Other arguments as in :func:`run`. BadInput if the run finished
    successfully or holds no checkpoint; RunFileBusy if another process is writing it.
    """
    job = open_for_resume(path, station_ref=str(station) if station is not None else None)
    try:
        for note in job.notes:
            print(f"labctl: {note}", file=sys.stderr)
        return _execute(job.protocol, job.chip, job.writer, progress=progress, checkpoint_every_s=checkpoint_every_s,
                        pause_timeout_s=pause_timeout_s, resumed=True)
    finally:
        job.lock.release()


def _execute(plan, chip: SynapseArray, writer: RunWriter, *, progress: ProgressCallback | None,
             checkpoint_every_s: float | None, pause_timeout_s: float | None, resumed: bool) -> RunResult:
    """Run ``plan`` with the command line's run control; the chip is closed whatever happens."""
    def on_progress(name: str, doc: dict) -> None:
        if name == "progress":
            progress(doc)

    outcome, duration, closed = execute(plan, chip, writer, subscribers=(on_progress,) if progress else (),
                                        checkpoint_every_s=checkpoint_every_s, resumed=resumed,
                                        pause_timeout_s=pause_timeout_s)
    return RunResult(outcome.status, outcome.reason, outcome.summary, Path(writer.path), outcome.steps,
                     safe=outcome.safe and not closed, error=outcome.error, duration_s=duration)


# ---------------------------------------------------------------------------- reading
@dataclass
class RunData:
    """What a run file holds, read at :func:`read_run` time (``weights()``, ``calibration()`` and
    ``dataset()`` read the file again when called).

    ``status``: "success", "failed", "aborted" or "incomplete" (still being written, or its writer
    was killed); ``reason``: the stop event's; ``attrs``: the file's root attributes (``protocol``,
    ``station``, ``seed``, ``command``, ...); ``summary``: final metrics and ``counters`` (empty
    until the run ends); ``metrics``: ``train/metrics`` as a DataFrame (one row per epoch or
    batch; empty if none); ``events`` and ``checkpoints``: DataFrames (``time`` in unix s);
    ``tables``: every table of compound rows by dataset name; ``datasets``: every dataset's name.
    """

    path: Path
    status: str
    reason: str
    attrs: dict[str, Any]
    summary: dict[str, Any]
    metrics: pd.DataFrame
    events: pd.DataFrame
    checkpoints: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    datasets: list[str]

    @property
    def protocol(self) -> str:
        """The protocol's name (``protocol.name`` of its file)."""
        return str(self.attrs.get("protocol_name", ""))

    @property
    def seed(self) -> int | None:
        """The protocol's seed."""
        return self.attrs.get("seed")

    def weights(self) -> list[dict]:
        """Per layer: trained control values and effective switching probability or device level
        (dicts of numpy arrays, see :func:`labctl.readers.weight_layers`); empty if none."""
        with RunReader(self.path) as reader:
            return readers.weight_layers(reader, finished=self.status == "success")

    def calibration(self) -> dict | None:
        """Calibration sweep and fit (see :func:`labctl.readers.calibration_data`), or None."""
        with RunReader(self.path) as reader:
            return readers.calibration_data(reader)

    def dataset(self, name: str) -> np.ndarray:
        """Dataset ``name`` (e.g. ``"model/amplitude"``, in its ``units``) as a numpy array."""
        if name not in self.datasets:
            raise RunFileError(f"{self.path}: no dataset {name!r} (has: {', '.join(self.datasets)})")
        with RunReader(self.path) as reader:
            return reader.dataset(name)


def read_run(path: str | Path) -> RunData:
    """Read run file ``path`` (finished, being written, or left by a killed writer).

    RunFileError (one line) if it is missing, not a run file, or damaged.
    """
    with RunReader(path) as reader:
        events = readers.read_events(reader)
        tables = {name: _frame(rows) for name, rows in readers.read_tables(reader).items()}
        return RunData(
            path=Path(path),
            status=reader.exit_status(),
            reason=next((e["reason"] for e in reversed(events) if e["kind"] == "stop"), ""),
            attrs=reader.attrs,
            summary=readers.read_summary(reader),
            metrics=tables.get(readers.METRICS, pd.DataFrame()),
            events=pd.DataFrame(events, columns=["time", "kind", "status", "reason", "step"]),
            checkpoints=pd.DataFrame(readers.read_checkpoints(reader),
                                     columns=["step", "time", "length", "offset", "crc32"]),
            tables=tables,
            datasets=reader.names(),
        )


def _frame(rows: np.ndarray) -> pd.DataFrame:
    """A DataFrame from compound rows: text columns decoded, array-valued columns as object columns."""
    columns = {}
    for name in rows.dtype.names:
        col = rows[name]
        if col.dtype.kind == "S":
            columns[name] = [v.decode("utf-8", "replace") for v in col]
        elif col.ndim > 1:
            columns[name] = list(col)
        else:
            columns[name] = col
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))
