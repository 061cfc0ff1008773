"""Testing a finished mean/variance run at other measurement counts N, without retraining.

``labctl evaluate RUN.h5`` rebuilds the run's protocol and chip from what the run file recorded
(the settings used, the station and its physics seed, the protocol's seed) with
:func:`labctl.runs.build`, loads the trained model (``model/*``) into it
(``MeanVarTraining.load_trained``), tests it at each N on the chip plus the continuous limit
(``MeanVarTraining.sweep_measurements``) and records the table in the run file as
``evaluate/n_sweep`` (dtype ``protocols.meanvar.N_SWEEP_DTYPE``; attributes ``passes``, ``when``,
``station``, ``measurements``). A second evaluation replaces the first one's table.

Safety of the run file: everything happens under the file's writer lock (a run still being
written is refused, naming its process), and the file is never modified in place. A finished run
file is closed, but HDF5 has no journal: a process killed while adding a dataset to a file could
leave the file's metadata half written. So the table is added to a faithful copy
(:func:`labctl.store.recover`: every dataset and attribute, built under a hidden temporary name),
which is flushed to disk and then atomically renamed over the original. An interruption at any
point leaves the original file as it was.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np

from .chip import EnvelopeError
from .config import ProtocolFile, StationConfig, load_station, validate
from .plugins import PluginError
from .runs import BadInput, build, close_chip, current_station_ref, intersect_envelopes, take_lock
from .store import LIBVER, RunFileBusy, RunFileError, RunFileLock, RunReader, atomic_replacement, recover

__all__ = ["DATASET", "DEFAULT_MEASUREMENTS", "Evaluation", "check_csv_target", "evaluate_run", "format_table",
           "parse_measurements", "parse_passes", "record", "write_csv"]

#: Where the table is recorded in the run file.
DATASET = "evaluate/n_sweep"
DEFAULT_MEASUREMENTS = (1, 2, 4, 8, 16, 32, 64)
MAX_MEASUREMENTS = 1_000_000  # as MeanVarSettings.measurements
MAX_PASSES = 1000  # as MeanVarSettings.test_passes

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """The table of one evaluation and what it was computed with."""

    path: Path
    table: np.ndarray  # N_SWEEP_DTYPE rows: one per N, then the continuous limit (N = 0)
    passes: int
    protocol_name: str
    kind: str
    station_name: str
    forward: str
    notes: list[str] = field(default_factory=list)  # what the user should know (envelope narrowed)
    when: str = ""  # local time the table was computed, ISO 8601


# ---------------------------------------------------------------------------- arguments
def parse_measurements(text: str | None) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4] (order kept, repeats dropped); BadInput saying what was expected."""
    if text is None:
        return list(DEFAULT_MEASUREMENTS)
    expected = f"expected whole numbers 1 <= N <= {MAX_MEASUREMENTS} separated by commas, e.g. 1,2,4,8"
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise BadInput(f"--measurements: {expected} (got {text!r})")
    out: list[int] = []
    for part in parts:
        try:
            n = int(part)
        except ValueError:
            raise BadInput(f"--measurements: {expected} (got {part!r} in {text!r})") from None
        if not 1 <= n <= MAX_MEASUREMENTS:
            raise BadInput(f"--measurements: {expected} (got {n})")
        if n not in out:
            out.append(n)
    return out


def parse_passes(text: str | None) -> int | None:
    """``--passes``: a whole number 1 .. 1000, or None (the run's ``test_passes``)."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_PASSES:
        raise BadInput(f"--passes: expected a whole number 1 <= P <= {MAX_PASSES} (got {text!r})")
    return value


# ---------------------------------------------------------------------------- evaluating
def evaluate_run(path: str | Path, measurements: list[int] | None = None, passes: int | None = None, *,
                 station_ref: str | None = None, save: bool = True, progress=None) -> Evaluation:
    """Test a finished train-meanvar run file's model at each N of ``measurements`` (and N -> infinity).

    ``passes``: stochastic test passes per N (default: the run's ``test_passes``). ``station_ref``:
    the station's current file or embedded name (default: the one the run recorded); as for
    ``labctl resume``, the chip is the recorded station's (same devices) and its envelope is the
    recorded one intersected with the current station's. ``save``: record the table in the run
    file (:func:`record`). ``progress``: called with a line of text before the test starts.

    The run file's writer lock is held throughout (RunFileBusy, naming the holder, if a run is
    still writing it). Raises BadInput / RunFileError / ConfigError (one line, naming the file)
    for a file that is not a finished train-meanvar run, or a model that does not fit it.
    """
    path = Path(path)
    if not path.exists():
        raise RunFileError(f"{path}: no such run file (expected a finished train-meanvar run file)")
    if not path.is_file():
        raise RunFileError(f"{path}: not a file (expected a finished train-meanvar run file)")
    ns = list(DEFAULT_MEASUREMENTS) if measurements is None else list(measurements)
    try:
        lock = take_lock(path)
    except RunFileBusy as exc:
        raise RunFileBusy(f"{exc}; evaluate it once that run has finished", exc.holder) from None
    try:
        evaluation = _evaluate_locked(path, ns, passes, station_ref, progress)
        if save:
            record(evaluation, lock)
        return evaluation
    finally:
        lock.release()


def _evaluate_locked(path: Path, ns: list[int], passes: int | None, station_ref: str | None, progress) -> Evaluation:
    from protocols import REGISTRY
    from protocols.meanvar import N_SWEEP_DTYPE, MeanVarTraining

    with RunReader(path) as reader:
        attrs, status = reader.attrs, reader.exit_status()
        kind = attrs.get("protocol_kind") or ""
        try:
            cls = REGISTRY.get(kind) if isinstance(kind, str) and kind else None
        except PluginError as exc:  # a protocol of the user's own that no longer loads
            raise BadInput(f"{path}: its protocol kind {kind!r} does not load ({exc})") from None
        if not (isinstance(cls, type) and issubclass(cls, MeanVarTraining)):
            what = f"protocol {attrs.get('protocol_name') or '?'}, kind {kind or 'not recorded'}"
            raise BadInput(f"{path}: not a train-meanvar run ({what}); "
                           "labctl evaluate tests the model of a finished mean/variance training run")
        if status != "success":
            raise BadInput(f"{path}: the run has not finished (exit status {status}), so it holds no trained model "
                           f"to test; finish it first (labctl resume {path})")
        arrays = {name: reader.dataset(name) for name in reader.names() if name.startswith("model/")}
    pfile = validate(ProtocolFile, attrs.get("protocol"), f"{path} (attribute 'protocol')")
    recorded = validate(StationConfig, attrs.get("station"), f"{path} (attribute 'station')")
    current = load_station(current_station_ref(path, attrs, station_ref))
    station, notes = intersect_envelopes(recorded, current)
    seed = attrs.get("seed")
    protocol, chip = build(pfile, str(path), station, seed if isinstance(seed, int) else None)
    try:
        try:
            protocol.load_trained(arrays)
        except (ValueError, TypeError, RuntimeError) as exc:  # missing, mis-shaped or garbled model datasets
            raise BadInput(f"{path}: {exc}") from None
        passes = protocol.settings.test_passes if passes is None else passes
        if progress is not None:
            progress(f"testing the model of {path} at N = {', '.join(map(str, ns))} and in the continuous limit, "
                     f"{passes} pass{'' if passes == 1 else 'es'} each, on station {station.station.name}")
        try:
            rows = protocol.sweep_measurements(ns, passes)
        except EnvelopeError as exc:  # a model outside the (narrowed) envelope: nothing was sent
            raise BadInput(f"{path}: its trained model cannot be tested on station {station.station.name}: "
                           f"{exc}") from None
    finally:
        close_chip(chip)
    table = np.array([tuple(r) for r in rows], dtype=N_SWEEP_DTYPE)
    return Evaluation(path, table, passes, pfile.protocol.name, pfile.protocol.kind, station.station.name,
                      str(protocol.settings.forward), notes,
                      datetime.now().astimezone().isoformat(timespec="seconds"))


# ---------------------------------------------------------------------------- recording
def record(evaluation: Evaluation, lock: RunFileLock) -> None:
    """Record the table in the run file as :data:`DATASET`, replacing an earlier one.

    ``lock``: the file's writer lock, held by the caller. The table is added to a complete copy
    of the file built under a hidden temporary name next to it (the store's naming, so a later
    writer removes it if this process is killed), flushed to disk and renamed over the original:
    readers see the old file or the new one, never a half-written one.
    """
    path = evaluation.path
    if not lock.held or os.path.abspath(lock.path) != os.path.abspath(path):
        raise ValueError(f"{path}: record() needs the file's held writer lock")
    target = path.resolve()
    with RunReader(target) as reader:
        recovered_from = reader.attrs.get("recovered_from")
    with atomic_replacement(target) as tmp:
        recover(target, tmp)  # every attribute and dataset, into a fresh, cleanly closed file
        try:
            with h5py.File(tmp, "r+", libver=LIBVER) as f:
                if recovered_from is None:  # recover() marks its copies; this one is the same file
                    del f.attrs["recovered_from"]
                else:
                    f.attrs["recovered_from"] = recovered_from
                if DATASET in f:
                    del f[DATASET]
                ds = f.create_dataset(DATASET, data=evaluation.table)
                ds.attrs["units"] = ""
                ds.attrs["description"] = ("the trained model tested at other N by labctl evaluate (N = 0: continuous "
                                           "limit): accuracy mean and std over the passes, trials and energy (J) per "
                                           "inference")
                ds.attrs["passes"] = int(evaluation.passes)
                ds.attrs["when"] = evaluation.when
                ds.attrs["station"] = evaluation.station_name
                ds.attrs["measurements"] = np.asarray(evaluation.table["measurements"][:-1], dtype=np.int64)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise RunFileError(f"{path}: cannot record the table ({exc}); the run file was left as it was") from None
        try:
            shutil.copymode(target, tmp)
        except OSError as exc:  # the copy keeps the default mode
            log.debug("permissions of %s not copied (%s)", target, exc)


# ---------------------------------------------------------------------------- output
def format_table(evaluation: Evaluation) -> str:
    """The table as text: N, accuracy mean +- std (%), trials and energy (J) per inference."""
    head = ("N", "accuracy (%)", "trials/inference", "energy/inference (J)")
    lines = []
    for row in evaluation.table:
        n = int(row["measurements"])
        acc, std = 100 * float(row["accuracy"]), 100 * float(row["accuracy_std"])
        if n == 0:
            lines.append(("continuous", f"{acc:.2f}", "-", "-"))
        else:
            lines.append((str(n), f"{acc:.2f} +- {std:.2f}", f"{float(row['trials_per_inference']):.6g}",
                          f"{float(row['energy_per_inference_j']):.4g}"))
    widths = [max(len(r[i]) for r in (head, *lines)) for i in range(len(head))]
    fmt = "  {:>{}}  {:<{}}  {:>{}}  {:>{}}"
    return "\n".join(fmt.format(*(x for pair in zip(r, widths) for x in pair)).rstrip() for r in (head, *lines))


def write_csv(evaluation: Evaluation, out: str | Path) -> Path:
    """The table as CSV, one row per N (N = 0: the continuous limit); columns as in the run file.

    Written under a temporary name and renamed, so an existing file is replaced whole or not at all.
    """
    out = Path(out)
    with atomic_replacement(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        names = evaluation.table.dtype.names
        writer.writerow(names)
        for row in evaluation.table:
            writer.writerow([int(row[k]) if k == "measurements" else repr(float(row[k])) for k in names])
    return out


def check_csv_target(out: str | Path) -> None:
    """BadInput before any test runs if the CSV file cannot be written where asked."""
    out = Path(out)
    if out.is_dir():
        raise BadInput(f"--csv {out}: is a folder (expected a file name)")
    if not out.parent.is_dir():
        raise BadInput(f"--csv {out}: folder {out.parent} does not exist")
