"""Sweeps: design-space exploration over protocol settings, station physics and seeds.

A sweep file (TOML) names a protocol and a station and the axes to vary. This module reads and
validates it into a :class:`SweepPlan` (every point checked exactly like ``labctl check`` before
anything runs), runs one point (:func:`run_point`: an ordinary run file through
:mod:`labctl.runs` and the engine, resumed from its checkpoint if it was interrupted), and keeps
the sweep's index (``sweep.json``, written atomically) and its table (pandas; CSV and Parquet).
Distributing points over Dask is :mod:`labctl.sweep_dask`; plots are :func:`plot_sweep`.

Sweep file::

    [sweep]
    name = "explorer-meanvar"
    protocol = "train-meanvar"      # embedded name, protocol TOML file (relative to this file),
                                    # or a protocol kind ("train-meanvar", "mypkg.rules:MyRule")
    station = "sim-dw-640"          # optional: default the protocol file's station
    checkpoint_every_s = 10         # checkpoint cadence of every point

    [fixed]                         # one value each, applied to every point
    settings.float_baseline = false

    [axes]                          # a grid: every combination of the axes
    settings.measurements = [1, 2, 4, 8]
    station.chip.physics.x0_spread = {start = 0.0, stop = 0.1, num = 3}
    seed = [0, 1, 2]                # the protocol's seed
    chip_seed = {values = [1, 2]}   # the simulated chip's physics seed (station chip.seed)

    [[points]]                      # or explicit points (each combined with every grid point)
    settings.measurements = 4
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import Field

from .config import (ConfigError, Name, ProtocolFile, StationConfig, Strict, load_protocol_file, load_station,
                     read_toml, safe_file_stem, validate)
from .store import atomic_replacement

__all__ = ["INDEX", "Point", "PointTask", "SweepPlan", "aggregate", "load_sweep", "pareto_front", "plot_sweep",
           "point_status", "read_index", "refresh_from_files", "run_point", "sweep_table", "warm_up", "write_index",
           "write_tables"]

INDEX = "sweep.json"
FORMAT = "labctl-sweep/1"
SEED_AXES = ("seed", "chip_seed")
RANGE_KEYS = {"start", "stop", "num", "log", "values"}
MAX_POINTS = 100_000
RECORDED = ("status", "reason", "error", "metrics", "counters", "wall_s", "file_size", "file_mtime_ns")
STOP_CHECK_EVERY_S = 1.0  # how often a running point asks whether the sweep was stopped (a scheduler round trip)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- the sweep file
class SweepHeader(Strict):
    name: Name
    description: str = Field("", max_length=10_000)
    protocol: str = Field(min_length=1, max_length=4096,
                          description="embedded protocol name, protocol TOML file, or a protocol kind")
    station: str | None = Field(None, min_length=1, max_length=4096,
                                description="station TOML file or embedded name (default: the protocol's)")
    checkpoint_every_s: float = Field(10.0, ge=0, le=86_400, description="seconds between checkpoints of a point")


class SweepFile(Strict):
    sweep: SweepHeader
    fixed: dict[str, Any] = {}
    axes: dict[str, Any] = {}
    points: list[dict[str, Any]] = []


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its axis values (``values``) and what they set."""

    index: int
    name: str  # file-name stem: index and values
    values: dict[str, Any]  # axis key -> value (the varied ones)
    settings: dict[str, Any]  # setting overrides (fixed and varied)
    station: dict[str, Any]  # station key (dotted, below the station file's top) -> value
    seed: int | None
    station_config: dict[str, Any]  # the point's station, validated, as plain data


@dataclass(frozen=True)
class PointTask:
    """Everything a worker needs to run (or resume) one point: plain data, picklable."""

    name: str
    path: str
    pfile: dict[str, Any]
    source: str
    station: dict[str, Any]
    station_ref: str
    seed: int | None
    checkpoint_every_s: float
    no_new_event: str | None = None  # Dask Event names (set by the coordinator on Ctrl-C)
    stop_event: str | None = None


@dataclass
class SweepPlan:
    """A validated sweep: every point's settings and station checked against the protocol and envelope."""

    source: str  # the sweep file's label in messages
    header: SweepHeader
    pfile: ProtocolFile
    protocol_source: str
    station_ref: str
    station: StationConfig
    axes: dict[str, list]  # grid axes in order, values as run; explicit points add their keys
    points: list[Point]
    explicit: bool = False

    @property
    def name(self) -> str:
        return self.header.name

    @property
    def local_only(self) -> bool:
        """Stations with instruments (one real or socket-bench chip) run one point at a time, here."""
        return self.station.station.backend == "instruments"

    @property
    def axis_keys(self) -> list[str]:
        return list(self.axes)

    def task(self, point: Point, out_dir: Path, **events: str | None) -> PointTask:
        pfile = self.pfile.model_copy(update={"settings": {**self.pfile.settings, **point.settings}})
        return PointTask(point.name, str(out_dir / f"{point.name}.h5"), pfile.model_dump(mode="json"),
                         self.protocol_source, point.station_config, self.station_ref, point.seed,
                         self.header.checkpoint_every_s, **events)

    def describe(self) -> dict[str, Any]:
        """What the index records about the plan (compared on a re-run)."""
        return {"name": self.name, "protocol": self.header.protocol, "protocol_kind": self.pfile.protocol.kind,
                "station": self.station_ref, "axes": self.axes,
                "points": [{"index": p.index, "name": p.name, "values": p.values} for p in self.points]}


def _flatten(table: dict, prefix: str = "", *, ranges: bool = False) -> dict[str, Any]:
    """Nested TOML tables as dotted keys; with ``ranges``, a table of range keys is one value."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and not (ranges and set(value) <= RANGE_KEYS):
            flat.update(_flatten(value, dotted + ".", ranges=ranges))
        else:
            flat[dotted] = value
    return flat


def _axis_kind(source: str, table: str, key: str) -> str:
    if key in SEED_AXES:
        return key
    head, _, rest = key.partition(".")
    if head in ("settings", "station") and rest:
        return head
    raise ConfigError(f"{source}: key '{table}.{key}': unknown axis (expected settings.<setting>, "
                      f"station.<key> such as station.chip.physics.x0_spread, seed or chip_seed)")


def _axis_values(source: str, key: str, spec: Any) -> list:
    """The values of an axis: a list, ``{values = [...]}`` or ``{start, stop, num[, log]}``."""
    where = f"{source}: key 'axes.{key}'"
    if isinstance(spec, list):
        values = spec
    elif isinstance(spec, dict):
        if "values" in spec:
            if set(spec) != {"values"} or not isinstance(spec["values"], list):
                raise ConfigError(f"{where}: expected {{values = [...]}} alone (got keys {sorted(spec)})")
            values = spec["values"]
        else:
            values = _range(where, spec)
    else:
        raise ConfigError(f"{where}: expected a list of values, {{values = [...]}} or {{start, stop, num}} "
                          f"(got {spec!r:.60})")
    if not values:
        raise ConfigError(f"{where}: empty (an axis needs at least one value)")
    if len(values) > MAX_POINTS:
        raise ConfigError(f"{where}: {len(values)} values, more than {MAX_POINTS}")
    return values


def _range(where: str, spec: dict) -> list:
    missing = {"start", "stop", "num"} - set(spec)
    if missing:
        raise ConfigError(f"{where}: a range needs start, stop and num (missing {', '.join(sorted(missing))})")
    start, stop, num, log = spec["start"], spec["stop"], spec["num"], spec.get("log", False)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, stop))
    if not numbers or not all(math.isfinite(v) for v in (start, stop)):
        raise ConfigError(f"{where}: start and stop must be finite numbers (got {start!r}, {stop!r})")
    if not isinstance(num, int) or isinstance(num, bool) or num < 0 or num > MAX_POINTS:
        raise ConfigError(f"{where}.num: expected a whole number 1..{MAX_POINTS} (got {num!r})")
    if num == 0:
        raise ConfigError(f"{where}: empty range (num = 0; an axis needs at least one value)")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: expected true or false (got {log!r})")
    if log and (start <= 0 or stop <= 0):
        raise ConfigError(f"{where}: a log range needs start and stop > 0 (got {start}, {stop})")
    if num == 1:
        raw = [float(start)]
    elif log:
        raw = [math.exp(math.log(start) + (math.log(stop) - math.log(start)) * i / (num - 1)) for i in range(num)]
    else:
        raw = [start + (stop - start) * i / (num - 1) for i in range(num)]
    if isinstance(start, int) and isinstance(stop, int):  # whole-number axis (a count, a seed)
        values = [int(round(v)) for v in raw]
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}: {num} whole numbers from {start} to {stop} would repeat values ({values})")
        return values
    return [float(f"{v:.12g}") for v in raw]


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(_label(v) for v in value)
    return str(value)


def point_name(index: int, values: dict[str, Any]) -> str:
    """``007_measurements-4_seed-1``: the index and each value, safe for a file name."""
    parts = [f"{index:03d}"] + [f"{key.rsplit('.', 1)[-1]}-{_label(v)}" for key, v in values.items()]
    return safe_file_stem("_".join(parts))[:100]


def _set_path(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _resolve_protocol(ref: str, sweep_path: Path | None, station_ref: str | None) -> tuple[ProtocolFile, str]:
    """A protocol file (embedded name, or a path relative to the sweep file) or a bare protocol kind."""
    from protocols import REGISTRY
    from .config import embedded_names
    from .plugins import is_reference

    if ref.endswith(".toml"):
        path = Path(ref)
        if not path.is_absolute() and sweep_path is not None and (sweep_path.parent / path).is_file():
            path = sweep_path.parent / path
        return load_protocol_file(path)
    if ref in embedded_names("protocols"):
        return load_protocol_file(ref)
    if ref in REGISTRY or is_reference(ref):
        header = {"name": safe_file_stem(ref.replace(":", "-")), "kind": ref}
        if station_ref:
            header["station"] = station_ref
        return validate(ProtocolFile, {"protocol": header, "settings": {}}, f"protocol kind {ref}"), f"protocol kind {ref}"
    return load_protocol_file(ref)  # a ConfigError naming it and the embedded names


def _resolve_station_ref(ref: str, sweep_path: Path | None) -> str:
    path = Path(ref)
    if ref.endswith(".toml") and not path.is_absolute() and sweep_path is not None \
            and (sweep_path.parent / path).is_file():
        return str((sweep_path.parent / path).resolve())
    return ref


def load_sweep(ref: str | Path) -> SweepPlan:
    """Read and validate a sweep file (path or embedded name under labctl/defaults/sweeps).

    Every point's settings are validated by the protocol and checked against its station's envelope
    (:func:`labctl.runs.check`), and every modified station is validated like a station file, before
    this returns: a bad sweep raises one ConfigError naming the file and the key, and nothing runs.
    """
    from .runs import check

    data, source = read_toml(ref, "sweeps")  # type: ignore[arg-type]  (same rules as stations, protocols)
    sweep_path = Path(ref) if str(ref).endswith(".toml") else None
    spec = validate(SweepFile, data, source)
    header = spec.sweep
    station_ref = _resolve_station_ref(header.station, sweep_path) if header.station else None
    pfile, protocol_source = _resolve_protocol(header.protocol, sweep_path, station_ref)
    station_ref = station_ref or pfile.protocol.station
    station = load_station(station_ref)

    fixed = _flatten(spec.fixed)
    for key in fixed:
        _axis_kind(source, "fixed", key)
    axes: dict[str, list] = {}
    for key, value in _flatten(spec.axes, ranges=True).items():
        _axis_kind(source, "axes", key)
        axes[key] = _axis_values(source, key, value)
    explicit = [_flatten(p) for p in spec.points]
    for i, point in enumerate(explicit):
        if not point:
            raise ConfigError(f"{source}: key 'points[{i}]': empty point (give at least one key)")
        for key in point:
            _axis_kind(source, f"points[{i}]", key)
            if key in axes:
                raise ConfigError(f"{source}: key 'points[{i}].{key}': also an axis of the grid (give it in one place)")
    if not axes and not explicit:
        raise ConfigError(f"{source}: no axes and no points (give [axes] for a grid or [[points]])")
    size = math.prod(len(v) for v in axes.values()) * max(1, len(explicit))
    if size > MAX_POINTS:
        raise ConfigError(f"{source}: {size} points, more than {MAX_POINTS}")
    all_axes: dict[str, list] = {}
    for point in explicit:  # an explicit point's keys are axes too (their values in order of appearance)
        for key, value in point.items():
            known = all_axes.setdefault(key, [])
            if value not in known:
                known.append(value)
    all_axes.update(axes)

    check(pfile, protocol_source, station)  # the protocol file itself, named as such
    points: list[Point] = []
    stations: dict[str, dict] = {}
    combos = itertools.product(*axes.values()) if axes else [()]
    for index, (extra, combo) in enumerate(itertools.product(explicit or [{}], list(combos))):
        values = {**extra, **dict(zip(axes, combo))}
        merged = {**fixed, **values}
        label = f"{source} (point {index})"
        settings = {k.partition(".")[2]: v for k, v in merged.items() if k.startswith("settings.")}
        station_changes = {k.partition(".")[2]: v for k, v in merged.items() if k.startswith("station.")}
        if "chip_seed" in merged:
            station_changes["chip.seed"] = merged["chip_seed"]
        seed = merged.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
            raise ConfigError(f"{label}: key 'seed': expected a whole number 0 <= seed < 2**63 (got {seed!r})")
        station_key = json.dumps(station_changes, sort_keys=True)
        if station_key not in stations:
            data = station.model_dump(mode="json")
            for key, value in station_changes.items():
                _set_path(data, key, value)
            point_station = validate(StationConfig, data, label, prefix="station") if station_changes else station
            stations[station_key] = {"config": point_station, "data": point_station.model_dump(mode="json")}
        point_station = stations[station_key]["config"]
        check(pfile, label, point_station, overrides=settings)
        points.append(Point(index, point_name(index, values), values, settings, station_changes, seed,
                            stations[station_key]["data"]))
    return SweepPlan(source, header, pfile, protocol_source, station_ref, station, all_axes, points,
                     explicit=bool(explicit))


# ---------------------------------------------------------------------------- one point
def point_status(path: Path) -> str:
    """``missing``, ``success``, ``failed``, ``aborted``, ``incomplete`` or ``damaged``."""
    from .store import RunFileError, RunReader

    if not path.exists():
        return "missing"
    try:
        with RunReader(path) as reader:
            return reader.exit_status()
    except RunFileError:
        return "damaged"


def read_point(path: Path) -> dict[str, Any]:
    """Status, reason, summary (metrics and counters) and wall time of a point's run file, and the
    file's size and modification time as read (a later re-run trusts the index while they match)."""
    from . import readers
    from .store import RunReader

    with RunReader(path) as reader:
        events = reader.events()
        checkpoints = reader.checkpoints()
        summary = readers.read_summary(reader) if reader.exit_status() == "success" else {}
        record = {"status": reader.exit_status(),
                  "reason": next((e["reason"] for e in reversed(events) if e["kind"] == "stop"), ""),
                  "metrics": {k: v for k, v in summary.items() if k not in ("counters", "protocol")},
                  "counters": summary.get("counters", {}),
                  "wall_s": _wall_time(events, checkpoints)}
    return {**record, **file_stamp(path)}


def file_stamp(path: Path) -> dict[str, int | None]:
    """``file_size`` and ``file_mtime_ns`` of ``path`` (None when it is missing): what the index
    records of a finished point's run file, so a re-run need not open it again."""
    try:
        st = os.stat(path)
    except OSError:
        return {"file_size": None, "file_mtime_ns": None}
    return {"file_size": st.st_size, "file_mtime_ns": st.st_mtime_ns}


def warm_up(task: PointTask) -> float:
    """Make this process ready to run points at full speed; returns the seconds it took.

    One torch thread; the modules a point needs imported (labctl's run machinery, the protocol,
    and what the protocol imports only when it is built: datasets, optimisers); the protocol of
    ``task`` built once on its (simulated) chip and dropped. Nothing is written. A Dask worker does
    this once, when it joins the sweep (:mod:`labctl.sweep_dask`), instead of in its first point
    (several seconds of imports otherwise). Errors are left for the point itself to report.
    """
    import torch

    start = time.perf_counter()
    torch.set_num_threads(1)
    try:
        from . import engine, readers, runs, store  # noqa: F401  (imported once per process)

        pfile = validate(ProtocolFile, task.pfile, task.source)
        station = validate(StationConfig, task.station, f"{task.source} (station of point {task.name})")
        if station.station.backend == "instruments":
            return time.perf_counter() - start  # never open a real chip just to warm up
        protocol, chip = runs.build(pfile, task.source, station, task.seed)
        del protocol
        runs.close_chip(chip)
    except Exception as exc:  # noqa: BLE001  (the point reports its own errors when it runs)
        log.debug("warm-up of sweep %s incomplete (%s)", task.name, exc)
    return time.perf_counter() - start


def _wall_time(events: list[dict], checkpoints: list[dict]) -> float:
    """Seconds the run ran: each segment (start or reopen to stop, else to its last record) summed."""
    times = sorted([(e["time"], e["kind"]) for e in events] + [(c["time"], "checkpoint") for c in checkpoints])
    total, begin, last = 0.0, None, None
    for t, kind in times:
        if kind in ("start", "reopen"):
            if begin is not None and last is not None:
                total += last - begin
            begin, last = t, t
        elif begin is not None:
            last = t
            if kind == "stop":
                total += t - begin
                begin = last = None
    if begin is not None and last is not None:
        total += last - begin
    return total


class _StopWatch:
    """An engine subscriber that aborts the run at its next safe point once ``should_stop()`` is true
    (checked at most every ``every_s`` seconds: with Dask it asks the scheduler)."""

    def __init__(self, should_stop: Callable[[], bool] | None, every_s: float | None = None):
        self.should_stop, self.engine, self._last = should_stop, None, 0.0
        self.every_s = STOP_CHECK_EVERY_S if every_s is None else every_s

    def __call__(self, name: str, doc: dict) -> None:
        if self.should_stop is None or self.engine is None or name != "progress":
            return
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        if self.should_stop():
            self.engine.request_abort("sweep interrupted (Ctrl-C twice); resumable from its last checkpoint")


def _dask_event(name: str | None) -> Callable[[], bool] | None:
    if name is None:
        return None
    from distributed import Event

    event = Event(name)
    return event.is_set


def run_point(task: PointTask, *, no_new: Callable[[], bool] | None = None,
              should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run one point into its run file, or resume it from its last checkpoint; returns its record.

    A point whose run file says ``success`` is not run again. A run file locked by another live
    process is reported (``busy``), never written twice. Expected errors are returned, not raised:
    a failed point does not stop the sweep. Uses one torch thread. In a Dask worker the
    coordinator's events (``task.no_new_event``, ``task.stop_event``) are used when ``no_new`` and
    ``should_stop`` are not given.
    """
    import torch

    from .config import ConfigError as _ConfigError
    from .runs import BadInput, open_for_resume, start_run
    from .store import RunFileBusy, RunFileError

    torch.set_num_threads(1)
    no_new = no_new or _dask_event(task.no_new_event)
    should_stop = should_stop or _dask_event(task.stop_event)
    record: dict[str, Any] = {"name": task.name, "ran": False, "resumed_from": None, "error": "",
                              "pid": os.getpid(), "host": os.uname().nodename}
    if no_new is not None and no_new():
        return {**record, "status": "not started", "reason": "sweep interrupted before this point started"}
    path = Path(task.path)
    start = time.perf_counter()
    try:
        status = point_status(path)  # on the worker: the coordinator never opens a run file while it runs
        if status == "success":
            return {**record, **read_point(path)}
        if status == "damaged":
            raise BadInput(f"{path}: damaged run file; inspect it with labctl info or labctl resume, or move it away")
        if status == "missing":
            pfile = validate(ProtocolFile, task.pfile, task.source)
            station = validate(StationConfig, task.station, f"{task.source} (station of point {task.name})")
            protocol, chip, writer, lock = start_run(pfile, task.source, station, station_ref=task.station_ref,
                                                     out=path, seed=task.seed,
                                                     command=f"labctl sweep {task.source} (point {task.name})")
            try:
                outcome, note = _execute(protocol, chip, writer, task, should_stop, resumed=False)
            finally:
                lock.release()
        else:
            job = open_for_resume(path)
            record["resumed_from"] = job.step
            try:
                outcome, note = _execute(job.protocol, job.chip, job.writer, task, should_stop, resumed=True)
            finally:
                job.lock.release()
    except RunFileBusy as exc:
        return {**record, "status": "busy", "reason": "another live process writes this run file", "error": str(exc)}
    except (_ConfigError, RunFileError, BadInput) as exc:
        return {**record, "status": "failed", "reason": "error", "error": " ".join(str(exc).splitlines())}
    except Exception as exc:  # an unexpected error of one point is recorded; the sweep goes on
        return {**record, "status": "failed", "reason": "error", "error": f"{type(exc).__name__}: {exc}"}
    record.update(ran=True, duration_s=time.perf_counter() - start)
    record.update(read_point(path))
    if outcome.status != "success":
        record["error"] = outcome.reason
    if note:
        record["error"] = "; ".join(filter(None, [record["error"], note]))
    return record


def _execute(protocol, chip, writer, task: PointTask, should_stop, *, resumed: bool):
    from .engine import RunEngine
    from .runs import close_chip

    watch = _StopWatch(should_stop)
    engine = RunEngine(chip, writer, checkpoint_every_s=task.checkpoint_every_s, checkpoint_at_start=not resumed,
                       subscribers=(watch,))
    watch.engine = engine
    try:
        outcome = engine.run(protocol)
    finally:
        note = close_chip(chip)
    return outcome, note


# ---------------------------------------------------------------------------- the index
def read_index(out_dir: Path) -> dict[str, Any] | None:
    path = Path(out_dir) / INDEX
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a sweep index ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("points"), list):
        raise ConfigError(f"{path}: not a sweep index (expected format {FORMAT!r})")
    return data


def write_index(out_dir: Path, index: dict[str, Any]) -> None:
    """Write ``sweep.json`` atomically (a temporary file in the folder, then renamed over it)."""
    with atomic_replacement(Path(out_dir) / INDEX) as tmp, open(tmp, "w") as stream:
        json.dump(index, stream, indent=1, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def new_index(plan: SweepPlan, out_dir: Path, previous: dict | None) -> dict[str, Any]:
    """The index of ``plan`` in ``out_dir``: a new one, or the previous one if it is the same sweep.

    A folder holding another sweep (other axes or points) is refused: its run files belong to it.
    """
    described = json.loads(json.dumps(plan.describe(), default=_json_default))
    if previous is not None:
        old = {k: previous.get(k) for k in described}
        old["points"] = [{k: p.get(k) for k in ("index", "name", "values")} for p in previous.get("points", [])]
        if old != described:
            changed = [k for k in described if old.get(k) != described[k]]
            raise ConfigError(f"{out_dir / INDEX}: this folder holds another sweep ({', '.join(changed)} differ "
                              f"from {plan.source}); choose another --out")
    points = {p["name"]: p for p in (previous or {}).get("points", [])}
    index = {"format": FORMAT, **described, "sweep_file": plan.source, "description": plan.header.description,
             "protocol_source": plan.protocol_source, "fixed_settings": plan.pfile.settings,
             "updated": time.time(), "points": []}
    for p in plan.points:
        old = points.get(p.name, {})
        index["points"].append({"index": p.index, "name": p.name, "file": f"{p.name}.h5", "values": p.values,
                                "settings": p.settings, "station": p.station, "seed": p.seed,
                                "status": old.get("status", "pending"), "reason": old.get("reason", ""),
                                "error": old.get("error", ""), "metrics": old.get("metrics", {}),
                                "counters": old.get("counters", {}), "wall_s": old.get("wall_s"),
                                "file_size": old.get("file_size"), "file_mtime_ns": old.get("file_mtime_ns")})
    return index


def update_point(index: dict[str, Any], record: dict[str, Any], entry: dict[str, Any] | None = None) -> dict[str, Any]:
    """File ``record`` (what :func:`run_point` returns) into its point's entry (``entry``, or found by name)."""
    if entry is None:
        entry = next(p for p in index["points"] if p["name"] == record["name"])
    for key in RECORDED:
        if key in record:
            entry[key] = record[key]
    entry["updated"] = time.time()
    index["updated"] = time.time()
    return entry


def sweep_table(index: dict[str, Any]):
    """One row per point: index, name, axis values, status, metrics and counters (pandas DataFrame)."""
    import pandas as pd

    rows = []
    for p in index["points"]:
        row: dict[str, Any] = {"index": p["index"], "name": p["name"]}
        row.update({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in p["values"].items()})
        row.update(status=p["status"], wall_s=p.get("wall_s"))
        for key, value in {**p.get("metrics", {}), **p.get("counters", {})}.items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                row[key] = value
        row["error"] = p.get("error", "")
        rows.append(row)
    return pd.DataFrame(rows)


def write_tables(out_dir: Path, index: dict[str, Any]) -> list[Path]:
    """``sweep.csv`` and ``sweep.parquet`` next to the index (each written atomically)."""
    table = sweep_table(index)
    written = []
    for suffix, writer in ((".csv", lambda t, f: t.to_csv(f, index=False)),
                           (".parquet", lambda t, f: t.to_parquet(f, index=False))):
        final = Path(out_dir) / f"sweep{suffix}"
        with atomic_replacement(final) as tmp:
            writer(table, tmp)
        written.append(final)
    return written


def refresh_from_files(index: dict[str, Any], out_dir: Path) -> int:
    """Status and final metrics of every point from its run file (the run files are the truth).

    A point the index records as finished, whose run file has the size and modification time the
    index recorded, is taken from the index (a finished run file is never written again); any other
    existing run file is opened and read. Returns how many run files were opened.
    """
    from .store import RunFileError

    opened = 0
    for entry in index["points"]:
        path = Path(out_dir) / entry["file"]
        stamp = file_stamp(path)
        if stamp["file_size"] is None:  # missing
            if entry["status"] in ("success", "running"):
                entry["status"] = "pending"
            continue
        if entry["status"] == "success" and stamp["file_size"] == entry.get("file_size") \
                and stamp["file_mtime_ns"] == entry.get("file_mtime_ns"):
            continue
        opened += 1
        try:
            record = read_point(path)
        except RunFileError:
            entry.update(status="failed", error=f"{path}: damaged run file", file_size=None, file_mtime_ns=None)
            continue
        update_point(index, {"name": entry["name"], **record}, entry)
    return opened


# ---------------------------------------------------------------------------- summaries and plots
def seed_axes(index: dict[str, Any]) -> list[str]:
    return [k for k in index["axes"] if k in SEED_AXES]


def aggregate(table, metric: str, axis: str, group_by: list[str] | None = None):
    """Mean, std and count of ``metric`` per value of ``axis`` (and of ``group_by`` axes), over the
    points that differ only by their seeds; only finished points count."""
    done = table[table["status"] == "success"]
    keys = [axis, *(group_by or [])]
    grouped = done.groupby(keys, dropna=False)[metric]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def pareto_front(cost, value) -> list[int]:
    """Positions of the points no other point beats: lower or equal cost and higher or equal value,
    one of them strictly. Returned sorted by cost."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -value[i]))
    front, best = [], -math.inf
    for i in order:
        if value[i] > best:
            front.append(i)
            best = value[i]
    return front


DEFAULT_METRICS = ("test_accuracy", "accuracy", "converged_fraction")
COSTS = (("inference_energy_j", "energy per inference (J)"), ("wall_s", "wall time per point (s)"))


def default_metric(table) -> str:
    for name in DEFAULT_METRICS:
        if name in table and table[name].notna().any():
            return name
    numeric = [c for c in table.select_dtypes("number").columns if c not in ("index",)]
    if not numeric:
        raise ConfigError("the sweep has no numeric metric yet (no point finished)")
    return numeric[0]


def plot_sweep(out_dir: Path, index: dict[str, Any], *, metric: str | None = None,
               axis: str | None = None) -> list[Path]:
    """PNG figures in ``out_dir/plots``: ``metric`` against ``axis`` (mean +- std over the seeds, one
    line per value of the other axes), and the Pareto fronts of the metric against energy per
    inference and against wall time (when the sweep has them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = sweep_table(index)
    if not (table["status"] == "success").any():
        raise ConfigError(f"{out_dir}: no point has finished yet; nothing to plot")
    metric = metric or default_metric(table)
    if metric not in table:
        known = [c for c in table.select_dtypes("number").columns if c != "index"]
        raise ConfigError(f"{out_dir}: key 'metric': unknown metric {metric!r} (this sweep has: {', '.join(known)})")
    varied = [k for k in index["axes"] if k not in SEED_AXES]
    if axis is None:
        axis = varied[0] if varied else next(iter(index["axes"]))
    if axis not in index["axes"]:
        raise ConfigError(f"{out_dir}: key 'axis': unknown axis {axis!r} (this sweep has: {', '.join(index['axes'])})")
    others = [k for k in varied if k != axis]
    folder = Path(out_dir) / "plots"
    folder.mkdir(exist_ok=True)
    written = []

    stats = aggregate(table, metric, axis, others)
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = stats.groupby(others, dropna=False) if others else [((), stats)]
    for key, part in groups:
        part = part.sort_values(axis)
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(others, key if isinstance(key, tuple) else (key,)))
        ax.errorbar(part[axis], part["mean"], yerr=part["std"], marker="o", capsize=3, label=label or None)
    numeric_axis = stats[axis].map(lambda v: isinstance(v, (int, float))).all()
    if numeric_axis and (stats[axis] > 0).all() and stats[axis].max() / max(stats[axis].min(), 1e-300) >= 16:
        ax.set_xscale("log", base=2 if all(float(v).is_integer() for v in stats[axis]) else 10)
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    seeds = seed_axes(index)
    ax.set_title(f"{index['name']}: mean +- std over {', '.join(seeds) or 'points'}", fontsize=9)
    if others:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = folder / f"{safe_file_stem(metric)}-vs-{safe_file_stem(axis)}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    for cost, label in COSTS:
        if cost not in table or not table[cost].notna().any():
            continue
        written.append(_pareto_plot(table, index, metric, cost, label, varied, folder, plt))
    return written


def _pareto_plot(table, index, metric, cost, cost_label, varied, folder, plt) -> Path:
    done = table[table["status"] == "success"]
    if varied:
        grouped = done.groupby(varied, dropna=False)
        means = grouped[[metric, cost]].mean().reset_index()
        stds = grouped[[metric, cost]].std().fillna(0.0).reset_index()
    else:
        means, stds = done[[metric, cost]].reset_index(drop=True), None
    front = pareto_front(list(means[cost]), list(means[metric]))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(means[cost], means[metric], xerr=None if stds is None else stds[cost],
                yerr=None if stds is None else stds[metric], fmt="o", capsize=3, color="0.5", label="configurations")
    ax.plot(means[cost].iloc[front], means[metric].iloc[front], "-o", color="C3", label="Pareto front")
    for i in range(len(means)):
        text = ", ".join(f"{k.rsplit('.', 1)[-1]}={means[k].iloc[i]}" for k in varied)
        ax.annotate(text, (means[cost].iloc[i], means[metric].iloc[i]), fontsize=6, xytext=(3, -8),
                    textcoords="offset points")
    if (means[cost] > 0).all() and means[cost].max() / means[cost].min() >= 16:
        ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel(metric)
    ax.set_title(f"{index['name']}: {metric} against {cost_label}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = folder / f"pareto-{safe_file_stem(metric)}-vs-{safe_file_stem(cost)}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
