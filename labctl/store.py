"""Run files: one HDF5 file per run, written with h5py in SWMR mode.

A run file is written by one process (:class:`RunWriter`) while any number of others watch it
(:class:`RunReader`, the GUI). SWMR (single writer, multiple readers) forbids creating groups,
datasets or attributes once the writer has switched to SWMR mode, so the writer declares every
dataset up front from a *schema* (``{path: DatasetSpec}``); after that it only grows extendable
datasets along axis 0 and writes fixed-size ones.

What another process sees is what the writer last *flushed* (:meth:`RunWriter.flush`). A file
left by a writer that was killed (SIGKILL, power cut) still opens with
``h5py.File(path, "r", swmr=True)`` and holds everything flushed before the kill; plain
``h5py.File(path, "r")`` and modes ``"r+"``/``"a"`` refuse it ("file is already open for
write"). :func:`recover` copies such a file into a fresh, cleanly closed one.

Layout
------
Root attributes
    Those the caller passes (``str``, ``int``, ``float``, ``bool`` stored as HDF5 attributes;
    ``dict``, ``list``, ``tuple`` and ``None`` stored as JSON strings, and their keys listed in the
    JSON list ``labctl_json_attrs`` so :attr:`RunReader.attrs` decodes them back), plus:

    - ``format``: ``"labctl-run/1"``; a file without it is not a run file.
    - ``labctl_version``: installed version of the ``labctl`` distribution, or ``"unknown"``.
    - ``git_hash``: ``git rev-parse HEAD`` of the source tree the package was imported from, or
      ``"unknown"``.
    - ``created``: local time the file was created, ISO 8601 with UTC offset.
    - ``recovered_from`` (only in files written by :func:`recover`): path of the original.

``/<group>/<name>`` (from the schema)
    Datasets with attributes ``units`` (SI symbol such as ``"V"``, ``"s"``, ``"ohm"``, ``""`` for
    dimensionless or counts), ``description`` and, if declared, ``hint`` (JSON: what the dataset
    is, for windows; :meth:`RunReader.hints`). A spec whose ``shape[0]`` is ``None`` is
    extendable: it is created empty (``(0, *shape[1:])``), chunked along axis 0, and grown with
    :meth:`RunWriter.append`. Any other spec is fixed: created at its full shape (filled with
    zeros) and written with :meth:`RunWriter.write`.

``/events`` (extendable, compound)
    ``time`` float64, unix seconds (UTC); ``kind`` S16 (``start``, ``pause``, ``resume``,
    ``checkpoint``, ``reopen``, ``stop``, ``abort``, ``error``, ...); ``status`` S16 (for ``stop``:
    ``success``, ``failed`` or ``aborted``); ``reason`` S256, UTF-8, truncated to 256 bytes;
    ``step`` int64, ``-1`` when not tied to a step. The run's exit status is the status of the
    last ``stop`` event; a file whose last ``start``/``reopen`` is not followed by a ``stop`` was
    never closed (``"incomplete"``: the writer crashed or is still running).

``/checkpoints/blob`` (extendable, uint8) and ``/checkpoints/index`` (extendable, compound)
    Checkpoint payloads are concatenated in ``blob``; each row of ``index`` (``step`` int64,
    ``offset`` int64 and ``length`` int64 in bytes into ``blob``, ``time`` float64 unix seconds,
    ``crc32`` uint32 of the payload) describes one. The writer appends and flushes the payload
    before it appends and flushes the index row, and the reader checks bounds and CRC, so a
    reader sees either the previous checkpoint or the new complete one, never a torn one.
    Present unless the writer was created with ``checkpoints=False``.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import importlib.metadata
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = [
    "FORMAT",
    "HINT_VIEWS",
    "DatasetSpec",
    "RunFileBusy",
    "RunFileError",
    "RunFileLock",
    "RunReader",
    "RunWriter",
    "SalvageReport",
    "recover",
    "salvage",
]

FORMAT = "labctl-run/1"

log = logging.getLogger(__name__)

# Oldest HDF5 object formats that support SWMR; newer features only where needed, so files stay
# readable by HDF5 >= 1.10 (h5py builds on older libraries than the one that wrote them).
LIBVER = ("v110", "latest")

EVENT_DTYPE = np.dtype(
    [("time", "<f8"), ("kind", "S16"), ("status", "S16"), ("reason", "S256"), ("step", "<i8")]
)
CHECKPOINT_INDEX_DTYPE = np.dtype(
    [("step", "<i8"), ("offset", "<i8"), ("length", "<i8"), ("time", "<f8"), ("crc32", "<u4")]
)
EXIT_STATUSES = ("success", "failed", "aborted")
INCOMPLETE = "incomplete"

_EVENTS = "events"
_CKPT_BLOB = "checkpoints/blob"
_CKPT_INDEX = "checkpoints/index"
_RESERVED = (_EVENTS, "checkpoints")
_JSON_KEYS_ATTR = "labctl_json_attrs"
_AUTO_ATTRS = ("format", "labctl_version", "git_hash", "created", _JSON_KEYS_ATTR)

_CHUNK_BYTES = 64 * 1024  # target chunk size of extendable datasets
_BLOB_CHUNK = 256 * 1024  # checkpoint payload chunk, bytes
_COPY_BYTES = 64 * 1024 * 1024  # rows copied at a time by recover()


class RunFileError(Exception):
    """A path is not a readable labctl run file; the message names the file and the problem."""


class RunFileBusy(RunFileError):
    """Another process (or another writer in this one) holds the run file's writer lock.

    ``holder``: what the holder wrote in the lock file (``pid``, ``host``, ``started``,
    ``command``), empty if it could not be read.
    """

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = dict(holder or {})


@dataclass(frozen=True)
class DatasetSpec:
    """Declaration of one dataset of a run file.

    ``dtype``: numeric numpy dtype, fixed-length bytes (``"S32"``) or a compound of those.
    ``shape``: ``None`` in axis 0 makes the dataset extendable (rows appended as the run goes);
    otherwise the dataset has this fixed shape and is written once (or in parts).
    ``units``: SI unit symbol, stored as the dataset's ``units`` attribute (``""``: dimensionless).
    ``hint``: what the dataset is, for windows and readers (None: nothing to show), stored as the
    dataset's ``hint`` attribute (JSON). A dict with ``"view"`` one of :data:`HINT_VIEWS` and that
    view's keys (``docs/architecture.md``, "What a dataset is: hints"), e.g.
    ``{"view": "weights", "role": "control", "label": "pulse amplitude", "shape": [10, 64]}``.
    """

    dtype: Any
    shape: tuple[int | None, ...]
    units: str = ""
    description: str = ""
    hint: dict | None = None

    def with_hint(self, hint: dict) -> "DatasetSpec":
        """This declaration with ``hint`` (for a spec built by shared code)."""
        return DatasetSpec(self.dtype, self.shape, self.units, self.description, hint)

    def __post_init__(self) -> None:
        if self.hint is not None:
            _check_hint(self.hint)
        dt = np.dtype(self.dtype)
        _check_storable_dtype(dt)
        shape = tuple(self.shape)
        for axis, n in enumerate(shape):
            if n is None and axis == 0:
                continue
            if n is None or isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise ValueError(
                    f"shape {self.shape!r}: axis {axis} must be a non-negative int"
                    + (" (only axis 0 may be None)" if n is None else "")
                )
        object.__setattr__(self, "dtype", dt)
        object.__setattr__(self, "shape", tuple(None if n is None else int(n) for n in shape))

    @property
    def extendable(self) -> bool:
        return len(self.shape) > 0 and self.shape[0] is None


#: The views a dataset's hint may name (the ``"view"`` key).
HINT_VIEWS = ("weights", "curve", "calibration", "state_map", "energy")


def _check_hint(hint: Any) -> None:
    if not isinstance(hint, dict) or hint.get("view") not in HINT_VIEWS:
        raise ValueError(f"hint {hint!r}: expected a dict whose 'view' is one of {', '.join(HINT_VIEWS)}")
    try:
        json.dumps(hint)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"hint {hint!r}: not plain JSON data ({exc})") from None


def _check_storable_dtype(dt: np.dtype) -> None:
    if dt.fields is not None:
        for name in dt.names:
            _check_storable_dtype(dt.fields[name][0])
        return
    if dt.subdtype is not None:
        _check_storable_dtype(dt.subdtype[0])
        return
    if dt.kind not in "biufcS":
        raise ValueError(
            f"dtype {dt!r} cannot be stored: use numeric, fixed-length bytes ('S<n>') "
            "or a compound of those"
        )


@functools.lru_cache(maxsize=1)
def _labctl_version() -> str:
    try:
        return importlib.metadata.version("labctl")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def _git_hash() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = out.stdout.strip()
    return text if out.returncode == 0 and text else "unknown"


# ------------------------------------------------------------------------- the writer lock
def lock_path(path: str | Path) -> Path:
    """The sidecar lock file of run file ``path``: ``<name>.lock`` in the same folder."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def partial_path(path: str | Path) -> Path:
    """Where :class:`RunWriter` builds run file ``path`` before moving it into place."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


class RunFileLock:
    """Exclusive writer lock of one run file, held for the writer's whole life.

    ``fcntl.flock`` on a sidecar file ``<name>.lock`` next to the run file (not on the ``.h5``:
    HDF5 flocks that itself). The operating system releases it when the holding process dies, so
    a killed writer never leaves a stale lock. The sidecar holds the holder's pid, host, start
    time and command line (JSON) so that a refused writer can say who holds the file.
    ``fcntl`` directly rather than the ``filelock`` package: filelock truncates the lock file on
    every attempt (and deletes it on release), so a refused process could not read the holder's
    identity.

    Acquiring never blocks: :class:`RunFileBusy` if another holder exists (another process, or
    another lock object in this process). Use as a context manager, or ``acquire()``/``release()``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = lock_path(self.path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunFileLock:
        """Take the lock (returns self); RunFileBusy naming the holder if someone has it."""
        if self._fd is not None:
            return self
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise RunFileError(f"{self.path}: cannot create its lock file {self.lock_path}: {exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunFileBusy(
                    f"{self.path}: run file is being written by another process "
                    f"({_describe_holder(holder)}); a second writer is refused",
                    holder,
                ) from None
            except OSError as exc:
                os.close(fd)
                raise RunFileError(f"{self.path}: cannot lock {self.lock_path}: {exc}") from exc
            # A releasing holder unlinks the lock file: if ours is no longer the one at that
            # path, another process may lock the new one, so start again with it.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (idempotent); the lock file is removed."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(fd), os.stat(self.lock_path)):
                    os.unlink(self.lock_path)
        finally:
            os.close(fd)  # releases the flock

    def holder(self) -> dict:
        """Who holds the lock now, as written in the lock file ({} if free or unreadable)."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return {}
        try:
            return _read_holder(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> RunFileLock:
        return self.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunFileLock({str(self.path)!r}{', held' if self.held else ''})"


def _read_holder(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        holder = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe_holder(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    where = f"pid {holder.get('pid', '?')}"
    if holder.get("host") and holder.get("host") != socket.gethostname():
        where += f" on {holder['host']}"
    if holder.get("started"):
        where += f", since {holder['started']}"
    if holder.get("command"):
        where += f": {holder['command']}"
    return where


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Remove what killed writers left next to ``path``; call only while holding its lock.

    ``.<name>.partial`` (a writer killed before publishing) and ``.<name>.<pid>-<hex>.tmp``
    (:func:`recover`/:func:`salvage` killed midway) whose process is gone.
    """
    partial_path(path).unlink(missing_ok=True)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _temporary_path(out: Path) -> Path:
    """A unique hidden name next to ``out`` for a file built before it is moved into place."""
    return out.with_name(f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def atomic_replacement(final: str | Path):
    """Write a file that replaces ``final`` whole or not at all: yields a unique hidden temporary
    path next to it; when the block ends without an error that file is flushed to disk and renamed
    over ``final`` (readers see the old file or the new one, never a half-written one); otherwise
    it is removed. (A writer killed inside the block leaves the temporary file, which the store
    removes with the run file's other leftovers.)"""
    final = Path(final)
    tmp = _temporary_path(final)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to disk; best effort where the system does not allow it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # e.g. a folder on a file system that cannot sync one
        log.debug("fsync of %s not done (%s)", path, exc)
    finally:
        os.close(fd)


def _move_into_place(tmp: Path, final: Path, *, replace: bool) -> None:
    """Move ``tmp`` to ``final``; FileExistsError if ``final`` exists, unless ``replace``."""
    if replace:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # atomic and never clobbers
    except FileExistsError:
        raise FileExistsError(f"{final}: run file already exists") from None
    except OSError:  # a file system without hard links: check, then rename
        if final.exists():
            raise FileExistsError(f"{final}: run file already exists") from None
        os.rename(tmp, final)
        return
    os.unlink(tmp)


# ------------------------------------------------------------------- opening for reading
# SWMR readers retry a metadata read whose checksum fails (the writer may be mid-write). HDF5
# does so 100 times by default with an exponential back-off that doubles each time (measured:
# 25 attempts ~0.04 s, 30 ~1 s, 35 ~34 s), so a damaged file hangs a reader for ever. 24
# attempts still wait out a torn read of a live file (tens of ms) but fail within ~0.1 s.
SWMR_READ_ATTEMPTS = 24


@functools.lru_cache(maxsize=1)
def _hdf5_set_read_attempts():
    """``H5Pset_metadata_read_attempts`` of the HDF5 library h5py uses, or None if not found.

    h5py (3.16) does not wrap it, so it is called through ctypes on the very library h5py
    loaded (found in this process's memory map), never on another copy of HDF5.
    """
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = sorted({line.split(None, 5)[-1].strip() for line in maps if "/libhdf5" in line})
    except OSError:
        return None
    for lib in paths:
        name = os.path.basename(lib)
        if not name.startswith("libhdf5") or "_hl" in name:
            continue
        try:
            fn = ctypes.CDLL(lib).H5Pset_metadata_read_attempts
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
        return fn
    return None


def _h5_reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _open_for_reading(path: Path) -> tuple[h5py.File, bool]:
    """Open ``path`` read-only: ``(file, swmr)``. RunFileError within about a second if damaged."""
    # A plain open gets HDF5's full checks of a closed file (truncation included: stored end of
    # file against the real size), fast; it refuses files a writer has open (live or killed).
    try:
        probe = h5py.File(path, "r")
    except OSError as exc:
        if "already open for write" not in str(exc):
            raise RunFileError(f"{path}: damaged or unreadable HDF5 file ({exc})") from None
        closed = False
    else:
        probe.close()
        closed = True
    try:
        return _open_swmr(path), True
    except (OSError, RuntimeError, ValueError) as exc:
        if not closed:
            raise RunFileError(f"{path}: damaged or unreadable HDF5 file ({exc})") from None
    try:  # files in older formats cannot be opened for SWMR reading
        return h5py.File(path, "r"), False
    except OSError as exc:
        raise RunFileError(f"{path}: damaged or unreadable HDF5 file ({exc})") from None


def _encode_attrs(attrs: dict) -> tuple[dict[str, Any], list[str]]:
    """Turn caller attributes into HDF5-storable values; returns (values, keys stored as JSON)."""
    values: dict[str, Any] = {}
    json_keys: list[str] = []
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"attribute name {key!r} must be a non-empty str")
        if key in _AUTO_ATTRS:
            raise ValueError(f"attribute {key!r} is written by labctl.store; choose another name")
        if isinstance(value, (bool, np.bool_, int, float, str, np.integer, np.floating)):
            values[key] = value
        elif isinstance(value, (dict, list, tuple)) or value is None:
            try:
                values[key] = json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"attribute {key!r} is not JSON-serialisable: {exc}") from exc
            json_keys.append(key)
        elif isinstance(value, Path):
            values[key] = str(value)
        else:
            raise ValueError(
                f"attribute {key!r}: unsupported type {type(value).__name__} "
                "(use str, int, float, bool, dict or list)"
            )
    return values, json_keys


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _fit_bytes(text: str | bytes, size: int) -> bytes:
    """UTF-8 bytes of ``text`` cut to ``size`` bytes without splitting a character."""
    raw = text if isinstance(text, bytes) else str(text).encode("utf-8")
    if len(raw) <= size:
        return raw
    return raw[:size].decode("utf-8", "ignore").encode("utf-8")


def _row_chunk(row_shape: tuple[int, ...], dt: np.dtype) -> tuple[int, ...]:
    row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * dt.itemsize)
    rows = int(min(max(1, _CHUNK_BYTES // row_bytes), 65536))
    return (rows, *(max(1, n) for n in row_shape))


def _convert(name: str, target: np.dtype, values: Any) -> np.ndarray:
    """``values`` as an array of dtype ``target``; ValueError naming dataset ``name`` if unfit."""
    if target.fields is not None:
        if isinstance(values, np.ndarray):
            arr = values
        else:
            try:
                arr = np.asarray(values, dtype=target)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"dataset {name!r}: cannot convert rows to {target}: {exc}"
                ) from exc
        if arr.dtype.names != target.names:
            raise ValueError(
                f"dataset {name!r}: expected fields {target.names}, got {arr.dtype.names}"
            )
        try:
            return arr.astype(target, copy=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"dataset {name!r}: cannot convert rows to {target}: {exc}") from exc
    arr = np.asarray(values)
    if target.kind == "S":
        if arr.dtype.kind not in "SU":
            raise ValueError(f"dataset {name!r}: expected bytes or str, got {arr.dtype}")
        try:
            if arr.dtype.kind == "U":
                arr = np.char.encode(arr, "utf-8")
        except UnicodeError as exc:
            raise ValueError(f"dataset {name!r}: {exc}") from exc
        if arr.dtype.itemsize > target.itemsize and arr.size:
            longest = int(np.char.str_len(arr).max())
            if longest > target.itemsize:
                raise ValueError(
                    f"dataset {name!r}: string of {longest} bytes does not fit {target}"
                )
        return arr.astype(target)
    if arr.dtype.kind not in "biufc" or not np.can_cast(arr.dtype, target, "same_kind"):
        raise ValueError(
            f"dataset {name!r}: cannot store {arr.dtype} values in a {target} dataset"
        )
    return arr.astype(target, copy=False)


def _coerce(name: str, target: np.dtype, row_shape: tuple[int, ...], rows: Any) -> np.ndarray:
    """Validate ``rows`` for dataset ``name`` and return them as ``(k, *row_shape)`` of ``target``.

    A single row (shape ``row_shape``) is accepted and becomes ``(1, *row_shape)``.
    """
    arr = _convert(name, target, rows)
    if arr.shape == row_shape:
        arr = arr[np.newaxis]
    if arr.ndim != len(row_shape) + 1 or arr.shape[1:] != row_shape:
        expected = "(n" + "".join(f", {d}" for d in row_shape) + ")"
        raise ValueError(
            f"dataset {name!r}: expected rows of shape {expected} or one row of shape "
            f"{row_shape}, got an array of shape {arr.shape}"
        )
    return arr


def _normalise_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip("/"):
        raise ValueError(f"dataset name {name!r} must be a non-empty path like 'train/metrics'")
    return name.strip("/")


class RunWriter:
    """Writes one run file. Create, :meth:`append`/:meth:`write`/:meth:`event`, :meth:`close`.

    Every dataset is declared in ``schema`` because nothing can be created once the file is in
    SWMR mode. Rows become visible to readers (and survive a killed writer) at :meth:`flush`;
    the caller decides how often. Use as a context manager: an exception closes the file with
    status ``"failed"`` (``"aborted"`` for KeyboardInterrupt/SystemExit) and propagates.

    One writer per file: the writer lock (:class:`RunFileLock`) is taken before anything is
    created and held until :meth:`close` (:class:`RunFileBusy` if another writer has it); pass
    ``lock=`` to use a lock the caller already holds (taken before opening instruments; the
    caller then releases it). The file is built as ``.<name>.partial`` in the same folder and
    moved to ``path`` (never over an existing file unless ``overwrite``) at the first
    :meth:`checkpoint` or at :meth:`close`; FileExistsError if ``path`` exists.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        attrs: dict,
        schema: dict[str, DatasetSpec],
        checkpoints: bool = True,
        overwrite: bool = False,
        lock: RunFileLock | None = None,
    ) -> None:
        self.path = Path(path)
        self._closed = True
        self._lock: RunFileLock | None = None
        self._own_lock = False
        self._partial: Path | None = None
        self._overwrite = overwrite
        values, json_keys = _encode_attrs(dict(attrs))
        specs: dict[str, DatasetSpec] = {}
        for raw_name, spec in schema.items():
            name = _normalise_name(raw_name)
            if name.split("/")[0] in _RESERVED:
                raise ValueError(f"dataset name {raw_name!r}: {name.split('/')[0]!r} is reserved")
            if not isinstance(spec, DatasetSpec):
                raise TypeError(f"schema[{raw_name!r}] must be a DatasetSpec, got {spec!r}")
            if name in specs:
                raise ValueError(f"dataset {name!r} declared twice")
            specs[name] = spec

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._take_lock(lock)
        try:
            if self.path.exists() and not overwrite:
                raise FileExistsError(
                    f"{self.path}: run file already exists (pass overwrite=True to replace it)"
                )
            _remove_stale_temporaries(self.path)
            # Built under a hidden name and moved into place once it holds its first
            # checkpoint (or at close): a writer killed while creating it leaves no half file
            # with the run's name.
            self._partial = partial_path(self.path)
            f = h5py.File(self._partial, "w", libver=LIBVER)
            try:
                f.attrs.update(values)
                f.attrs[_JSON_KEYS_ATTR] = json.dumps(json_keys)
                f.attrs["format"] = FORMAT
                f.attrs["labctl_version"] = _labctl_version()
                f.attrs["git_hash"] = _git_hash()
                f.attrs["created"] = datetime.now().astimezone().isoformat(timespec="milliseconds")
                for name, spec in specs.items():
                    try:
                        _create_dataset(f, name, spec)
                    except (TypeError, ValueError) as exc:
                        raise ValueError(f"dataset {name!r}: cannot create it: {exc}") from exc
                _create_dataset(f, _EVENTS, DatasetSpec(EVENT_DTYPE, (None,), "",
                                                        "run events (start, pause, stop, ...)"))
                if checkpoints:
                    ckpt = f.create_dataset(
                        _CKPT_BLOB, shape=(0,), maxshape=(None,), chunks=(_BLOB_CHUNK,), dtype="u1"
                    )
                    ckpt.attrs["units"] = "byte"
                    ckpt.attrs["description"] = "checkpoint payloads, concatenated"
                    _create_dataset(f, _CKPT_INDEX, DatasetSpec(
                        CHECKPOINT_INDEX_DTYPE, (None,), "",
                        "one row per complete checkpoint: step, byte offset and length in blob, "
                        "unix time, crc32 of the payload"))
                f.swmr_mode = True
            except BaseException:
                f.close()
                raise
            self._attach(f)
            self.event("start")
            self.flush()
        except BaseException:
            if not self._closed:
                self._closed = True
                self._file.close()
            if self._partial is not None:
                self._partial.unlink(missing_ok=True)
            self._drop_lock()
            raise

    def _take_lock(self, lock: RunFileLock | None) -> None:
        if lock is None:
            self._lock = RunFileLock(self.path).acquire()
            self._own_lock = True
            return
        if not isinstance(lock, RunFileLock) or not lock.held:
            raise ValueError(f"{self.path}: lock= must be a held RunFileLock, got {lock!r}")
        if os.path.abspath(lock.path) != os.path.abspath(self.path):
            raise ValueError(f"{self.path}: lock= is the lock of another file ({lock.path})")
        self._lock, self._own_lock = lock, False

    def _drop_lock(self) -> None:
        """Release the lock if this writer took it; a lock passed in is the caller's to release."""
        lock, self._lock = self._lock, None
        if lock is not None and self._own_lock:
            lock.release()

    @property
    def published(self) -> bool:
        """True once the file is at :attr:`path` (it is built under a hidden name until then)."""
        return self._partial is None

    def publish(self) -> None:
        """Move the file from its hidden temporary name to :attr:`path` (no-op once done).

        Called by the first :meth:`checkpoint` and by :meth:`close`. FileExistsError if a file
        appeared at :attr:`path` meanwhile (and ``overwrite`` was not given).
        """
        if self._partial is None:
            return
        if not self._closed:
            self._file.flush()
        _move_into_place(self._partial, self.path, replace=self._overwrite)
        self._partial = None

    @classmethod
    def reopen(cls, path: str | Path, *, reason: str = "", truncate: dict[str, int] | None = None,
               lock: RunFileLock | None = None) -> RunWriter:
        """Continue writing a run file (e.g. to resume a run from its last checkpoint).

        The writer lock is taken first (or ``lock``, already held by the caller, is used).
        A file left by a killed writer (still flagged "open for write") is first copied into a
        clean one that replaces it (:func:`recover`, under the lock). The schema is the file's;
        a ``reopen`` event is recorded, so :meth:`RunReader.exit_status` reports
        ``"incomplete"`` again until the next :meth:`close`. ``truncate`` maps extendable
        datasets to the row counts they go back to (those of :meth:`rows` at a checkpoint), so
        rows written after that checkpoint are not duplicated when a run resumes from it.
        """
        writer = cls.__new__(cls)
        writer.path = Path(path)
        writer._closed = True
        writer._partial = None
        writer._overwrite = False
        writer._lock, writer._own_lock = None, False
        writer._take_lock(lock)
        try:
            f = writer._open_for_append()
            try:
                if _EVENTS not in f:
                    raise RunFileError(f"{path}: run file has no /events dataset")
                for name, length in (truncate or {}).items():
                    if name not in f or not isinstance(f[name], h5py.Dataset) or f[name].maxshape[0] is not None:
                        raise RunFileError(f"{path}: cannot truncate {name!r}: not an extendable dataset of this file")
                    if f[name].shape[0] > length:
                        f[name].resize(length, axis=0)  # shrinking is not allowed once in SWMR mode
                f.swmr_mode = True
            except BaseException:
                f.close()
                raise
            writer._attach(f)
            writer.event("reopen", reason=reason)
            writer.flush()
        except BaseException:
            if not writer._closed:
                writer._closed = True
                writer._file.close()
            writer._drop_lock()
            raise
        return writer

    def _open_for_append(self) -> h5py.File:
        """Open :attr:`path` for writing (lock held); a killed writer's file is recovered first."""
        RunReader(self.path).close()  # same checks and messages as for reading
        try:
            return h5py.File(self.path, "a", libver=LIBVER)
        except OSError as exc:
            if "already open for write" not in str(exc):
                raise RunFileError(f"{self.path}: cannot open for writing ({exc})") from exc
        recover(self.path, self.path, lock=self._lock)
        try:
            return h5py.File(self.path, "a", libver=LIBVER)
        except OSError as exc:
            raise RunFileError(f"{self.path}: cannot open for writing ({exc})") from exc

    def _attach(self, f: h5py.File) -> None:
        self._file = f
        self._datasets: dict[str, h5py.Dataset] = {}
        self._lengths: dict[str, int] = {}
        self._row_shapes: dict[str, tuple[int, ...]] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                self._datasets[name] = obj
                if obj.maxshape and obj.maxshape[0] is None:
                    self._lengths[name] = obj.shape[0]
                    self._row_shapes[name] = tuple(obj.shape[1:])

        f.visititems(visit)
        self._events = self._datasets[_EVENTS]
        self._has_checkpoints = _CKPT_BLOB in self._datasets and _CKPT_INDEX in self._datasets
        self._closed = False

    # -- writing -----------------------------------------------------------------------------

    def _get(self, name: str) -> tuple[str, h5py.Dataset]:
        if self._closed:
            raise ValueError(f"{self.path}: run file is closed")
        key = name.strip("/") if isinstance(name, str) else name
        try:
            return key, self._datasets[key]
        except (KeyError, TypeError):
            raise KeyError(
                f"dataset {name!r} is not in the schema of {self.path} "
                f"(declared: {', '.join(sorted(self._datasets))})"
            ) from None

    def append(self, name: str, rows: Any) -> None:
        """Append rows (shape ``(k, *shape[1:])``, or one row of shape ``shape[1:]``)."""
        key, ds = self._get(name)
        if key not in self._lengths:
            raise ValueError(f"dataset {key!r} has fixed shape {ds.shape}; use write() instead")
        arr = _coerce(key, ds.dtype, self._row_shapes[key], rows)
        self._append_array(key, ds, arr)

    def _append_array(self, key: str, ds: h5py.Dataset, arr: np.ndarray) -> None:
        k = arr.shape[0]
        if k == 0:
            return
        n = self._lengths[key]
        ds.resize(n + k, axis=0)
        ds[n:n + k] = arr
        self._lengths[key] = n + k

    def read(self, name: str) -> np.ndarray:
        """Read back a dataset written earlier (e.g. by a run being resumed)."""
        key, ds = self._get(name)
        return ds[...]

    def rows(self) -> dict[str, int]:
        """Row counts of the schema's extendable datasets (not events or checkpoints)."""
        return {k: n for k, n in self._lengths.items() if k != _EVENTS and not k.startswith("checkpoints/")}

    def write(self, name: str, array: Any, index: Any = ...) -> None:
        """Write ``array`` into the fixed-size dataset ``name`` (whole, or at ``index``)."""
        key, ds = self._get(name)
        if key in self._lengths:
            raise ValueError(f"dataset {key!r} is extendable; use append() instead")
        arr = _convert(key, ds.dtype, array)
        if index is Ellipsis and arr.shape != ds.shape:
            raise ValueError(f"dataset {key!r}: expected shape {ds.shape}, got {arr.shape}")
        try:
            ds[index] = arr
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"dataset {key!r}: cannot write at {index!r}: {exc}") from exc

    def event(self, kind: str, reason: str = "", status: str = "", step: int = -1) -> None:
        """Record an event (not flushed: call :meth:`flush`, as :meth:`close` does)."""
        if self._closed:
            raise ValueError(f"{self.path}: run file is closed")
        kind_b = str(kind).encode("utf-8")
        status_b = str(status).encode("utf-8")
        if not kind_b or len(kind_b) > 16:
            raise ValueError(f"event kind {kind!r} must be 1 to 16 bytes")
        if len(status_b) > 16:
            raise ValueError(f"event status {status!r} must be at most 16 bytes")
        row = np.array(
            [(time.time(), kind_b, status_b, _fit_bytes(reason, 256), int(step))],
            dtype=EVENT_DTYPE,
        )
        self._append_array(_EVENTS, self._events, row)

    def checkpoint(self, step: int, payload: bytes) -> None:
        """Store a checkpoint atomically: payload appended and flushed, then its index row."""
        if self._closed:
            raise ValueError(f"{self.path}: run file is closed")
        if not self._has_checkpoints:
            raise ValueError(f"{self.path}: run file was created with checkpoints=False")
        data = np.frombuffer(bytes(payload), dtype=np.uint8)
        blob = self._datasets[_CKPT_BLOB]
        offset = self._lengths[_CKPT_BLOB]
        self._append_array(_CKPT_BLOB, blob, data)
        self._file.flush()
        row = np.array(
            [(int(step), offset, data.size, time.time(), zlib.crc32(data))],
            dtype=CHECKPOINT_INDEX_DTYPE,
        )
        self._append_array(_CKPT_INDEX, self._datasets[_CKPT_INDEX], row)
        self._file.flush()
        self.event("checkpoint", step=step)
        self._file.flush()
        self.publish()

    def flush(self) -> None:
        """Make every row written so far visible to readers and durable against a killed writer."""
        if not self._closed:
            self._file.flush()

    def close(self, status: str = "success", reason: str = "", step: int = -1) -> None:
        """Record a ``stop`` event with exit ``status``, ``reason`` and the last ``step``, flush and close.

        The file is moved into place if it was not yet (:meth:`publish`) and the writer lock
        released (if this writer took it). Idempotent: a second call does nothing.
        """
        if self._closed:
            return
        if status not in EXIT_STATUSES:
            raise ValueError(f"exit status {status!r} must be one of {', '.join(EXIT_STATUSES)}")
        try:
            self.event("stop", reason=reason, status=status, step=step)
            self._file.flush()
            self.publish()
        finally:
            self._closed = True
            try:
                self._file.close()
            finally:
                self._drop_lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        elif isinstance(exc, Exception):
            self.close(status="failed", reason=repr(exc))
        else:
            self.close(status="aborted", reason=repr(exc))

    def __repr__(self) -> str:
        return f"RunWriter({str(self.path)!r}{', closed' if self._closed else ''})"


def _create_dataset(f: h5py.File, name: str, spec: DatasetSpec) -> h5py.Dataset:
    if spec.extendable:
        row_shape = tuple(spec.shape[1:])
        ds = f.create_dataset(
            name,
            shape=(0, *row_shape),
            maxshape=(None, *row_shape),
            chunks=_row_chunk(row_shape, spec.dtype),
            dtype=spec.dtype,
        )
    else:
        ds = f.create_dataset(name, shape=spec.shape, dtype=spec.dtype, dcpl=_early_dcpl())
    ds.attrs["units"] = spec.units
    ds.attrs["description"] = spec.description
    if spec.hint is not None:
        ds.attrs["hint"] = json.dumps(spec.hint)
    return ds


def _early_dcpl() -> h5py.h5p.PropDCID:
    """Creation properties of a fixed-size dataset: storage allocated (zero-filled) at creation.

    With HDF5's default (late allocation) the first write of a fixed-size dataset allocates its
    storage, changing its object header under SWMR; a reader refreshing at that moment fails
    ("invalid dataset size") and its dataset id becomes invalid. Allocated up front, the
    metadata of a fixed-size dataset never changes after creation.
    """
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


class RunReader:
    """Read a run file, live (while its writer runs) or finished, or left by a killed writer.

    Opened read-only in SWMR mode. Data read reflects the writer's state at opening or at the
    last :meth:`refresh`. A damaged file (truncated, bit-flipped, not a labctl file, garbled
    attributes or checkpoint index) raises :class:`RunFileError` naming the file and what is
    wrong, within about a second; nothing is ever written to the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        if not self.path.exists():
            raise RunFileError(f"{self.path}: no such run file")
        if not self.path.is_file():
            raise RunFileError(f"{self.path}: not a file")
        try:
            is_hdf5 = h5py.is_hdf5(self.path)
        except OSError as exc:
            raise RunFileError(f"{self.path}: cannot read: {exc}") from exc
        if not is_hdf5:
            raise RunFileError(f"{self.path}: not an HDF5 file (expected a labctl run file)")
        self._file, self._swmr = _open_for_reading(self.path)
        try:
            with self._reading("its root attributes"):
                fmt = _decode_attr(self._file.attrs.get("format"))
            if fmt is None:
                raise RunFileError(
                    f"{self.path}: not a labctl run file (no 'format' root attribute; "
                    f"expected {FORMAT!r})"
                )
            if fmt != FORMAT:
                raise RunFileError(
                    f"{self.path}: unsupported run file format {fmt!r} (expected {FORMAT!r})"
                )
            self._datasets: dict[str, h5py.Dataset] = {}
            with self._reading("its list of datasets"):
                self._file.visititems(self._visit)
            self._check_structure()
            with self._reading("its root attributes"):
                self._attrs = self._read_attrs()
        except BaseException:
            self.close()
            raise

    def _visit(self, name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            self._datasets[name] = obj

    @contextlib.contextmanager
    def _reading(self, what: str):
        """Turn HDF5's errors while reading ``what`` into RunFileError naming the file."""
        try:
            yield
        except RunFileError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError,
                UnicodeDecodeError) as exc:
            if self._file is None:
                raise
            raise RunFileError(f"{self.path}: damaged run file: cannot read {what} ({_h5_reason(exc)})") from exc

    def _check_structure(self) -> None:
        """The datasets every run file has, with the right types; RunFileError otherwise."""
        def need(name: str, dtype: np.dtype, what: str) -> None:
            ds = self._datasets.get(name)
            if ds is None:
                raise RunFileError(f"{self.path}: not a valid labctl run file: no /{name} dataset ({what})")
            with self._reading(f"/{name}"):
                ok = ds.dtype == dtype and ds.ndim == 1 and ds.maxshape == (None,)
            if not ok:
                raise RunFileError(
                    f"{self.path}: not a valid labctl run file: /{name} is {ds.dtype} of shape "
                    f"{ds.shape} (expected an extendable 1-d {dtype})"
                )

        need(_EVENTS, EVENT_DTYPE, "run events")
        if _CKPT_BLOB in self._datasets or _CKPT_INDEX in self._datasets:
            need(_CKPT_BLOB, np.dtype("u1"), "checkpoint payloads")
            need(_CKPT_INDEX, CHECKPOINT_INDEX_DTYPE, "checkpoint index")

    def _read_attrs(self) -> dict[str, Any]:
        f = self._require()
        raw = {k: _decode_attr(v) for k, v in f.attrs.items()}
        try:
            json_keys = json.loads(raw.pop(_JSON_KEYS_ATTR, "[]"))
        except (TypeError, ValueError) as exc:
            raise RunFileError(f"{self.path}: bad {_JSON_KEYS_ATTR!r} attribute: {exc}") from exc
        if not isinstance(json_keys, list) or not all(isinstance(k, str) for k in json_keys):
            raise RunFileError(f"{self.path}: bad {_JSON_KEYS_ATTR!r} attribute: expected a JSON list of names")
        for key in json_keys:
            if key in raw:
                try:
                    raw[key] = json.loads(raw[key])
                except (TypeError, ValueError) as exc:
                    raise RunFileError(
                        f"{self.path}: attribute {key!r} is not valid JSON: {exc}"
                    ) from exc
        return raw

    def _require(self) -> h5py.File:
        if self._file is None:
            raise ValueError(f"{self.path}: run file is closed")
        return self._file

    def _ds(self, name: str) -> h5py.Dataset:
        self._require()
        key = name.strip("/") if isinstance(name, str) else name
        try:
            return self._datasets[key]
        except (KeyError, TypeError):
            raise KeyError(
                f"{self.path}: no dataset {name!r} (has: {', '.join(sorted(self._datasets))})"
            ) from None

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes, JSON-encoded ones decoded back to dict/list."""
        return dict(self._attrs)

    @property
    def swmr(self) -> bool:
        """True if opened in SWMR mode (:meth:`refresh` then shows what the writer flushed since)."""
        return self._swmr

    def names(self) -> list[str]:
        """Paths of all datasets, e.g. ``["calibration/counts", "events", ...]``."""
        return sorted(self._datasets)

    def dataset(self, name: str, index: Any = ...) -> np.ndarray:
        """Contents of dataset ``name``, or ``index`` of it (``slice(n, None)``: rows from n)."""
        ds = self._ds(name)
        try:
            return np.asarray(ds[index])
        except (OSError, RuntimeError) as exc:
            raise RunFileError(f"{self.path}: damaged run file: cannot read /{name} ({_h5_reason(exc)})") from exc

    def dataset_attrs(self, name: str) -> dict[str, Any]:
        """Attributes of dataset ``name`` (``units``, ``description``)."""
        ds = self._ds(name)
        with self._reading(f"the attributes of /{name}"):
            return {k: _decode_attr(v) for k, v in ds.attrs.items()}

    def hints(self) -> dict[str, dict]:
        """The hint of every dataset that has one (``DatasetSpec.hint``): name -> dict, in name order.

        RunFileError if a hint is not a JSON object with a ``view``.
        """
        out = {}
        for name in self.names():
            raw = self.dataset_attrs(name).get("hint")
            if raw is None:
                continue
            try:
                hint = json.loads(raw)
            except ValueError:
                hint = None
            if not isinstance(hint, dict) or "view" not in hint:
                raise RunFileError(f"{self.path}: dataset /{name} has a damaged hint ({str(raw)[:80]!r})")
            out[name] = hint
        return out

    def json_dataset(self, name: str) -> Any:
        """A uint8 dataset holding UTF-8 JSON (e.g. ``summary``) decoded; None if it is empty.

        RunFileError if the bytes are not valid UTF-8 JSON.
        """
        raw = self.dataset(name).tobytes()
        if not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise RunFileError(f"{self.path}: dataset /{name} is not valid JSON ({exc})") from None

    def refresh(self) -> None:
        """Re-read SWMR metadata so rows the writer flushed since opening become visible.

        A dataset whose refresh fails (HDF5 invalidates its id when that happens) is opened
        again by name; RunFileError if that fails too (the caller may retry later: a live
        writer may have been mid-flush).
        """
        f = self._require()
        if not self._swmr:
            return
        # Index before blob: the blob view must be at least as new as the index view.
        order = sorted(self._datasets, key=lambda n: n == _CKPT_BLOB)
        for name in order:
            try:
                self._datasets[name].refresh()
            except (OSError, RuntimeError, ValueError) as exc:
                try:
                    self._datasets[name] = f[name]
                    self._datasets[name].refresh()
                except (OSError, RuntimeError, ValueError, KeyError) as again:
                    raise RunFileError(
                        f"{self.path}: cannot refresh /{name} ({_h5_reason(exc)}; then {_h5_reason(again)})"
                    ) from again

    def events(self) -> list[dict[str, Any]]:
        """Events in order, as dicts: time (unix s), kind, status, reason, step."""
        with self._reading("/events"):
            rows = self._datasets[_EVENTS][()]
        return [
            {
                "time": float(r["time"]),
                "kind": r["kind"].decode("utf-8", "replace"),
                "status": r["status"].decode("utf-8", "replace"),
                "reason": r["reason"].decode("utf-8", "replace"),
                "step": int(r["step"]),
            }
            for r in rows
        ]

    def exit_status(self) -> str:
        """Status of the last ``stop`` event, or ``"incomplete"`` if the writer never closed."""
        for ev in reversed(self.events()):
            if ev["kind"] == "stop":
                return ev["status"] if ev["status"] in EXIT_STATUSES else INCOMPLETE
            if ev["kind"] in ("start", "reopen"):
                return INCOMPLETE
        return INCOMPLETE

    def checkpoints(self) -> list[dict[str, Any]]:
        """Index rows of all checkpoints (step, offset, length, time, crc32)."""
        if _CKPT_INDEX not in self._datasets:
            return []
        with self._reading("the checkpoint index"):
            rows = self._datasets[_CKPT_INDEX][()]
        return [{k: r[k].item() for k in CHECKPOINT_INDEX_DTYPE.names} for r in rows]

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        """``(step, payload)`` of the last complete checkpoint, or None if there is none.

        Index rows that point outside the payloads or whose CRC does not match (torn, or
        garbled) are skipped; RunFileError if the payloads cannot be read at all.
        """
        if _CKPT_INDEX not in self._datasets or _CKPT_BLOB not in self._datasets:
            return None
        with self._reading("the checkpoints"):
            index = self._datasets[_CKPT_INDEX][()]
            blob = self._datasets[_CKPT_BLOB]
            size = blob.shape[0]
            for row in index[::-1]:
                offset, length = int(row["offset"]), int(row["length"])
                if not row["time"] > 0 or offset < 0 or length < 0 or offset + length > size:
                    continue  # row not (yet) fully visible, or garbled
                data = blob[offset:offset + length].tobytes() if length else b""
                if zlib.crc32(data) != int(row["crc32"]):
                    continue
                return int(row["step"]), data
        return None

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunReader({str(self.path)!r}{', closed' if self._file is None else ''})"


def recover(path: str | Path, out_path: str | Path | None = None, *, lock: RunFileLock | None = None) -> Path:
    """Copy a run file, possibly left by a killed writer, into a fresh cleanly closed file.

    Everything the writer flushed is kept: root attributes (plus ``recovered_from``), every
    dataset with its attributes, events and checkpoints. Extendable datasets stay extendable, so
    :meth:`RunWriter.reopen` can continue the run. The default output is
    ``<stem>.recovered.h5`` next to the input (replaced if it exists). ``out_path`` may be
    ``path`` itself only for a caller holding the file's writer lock (``lock``): the copy then
    replaces the original atomically. The copy is built under a unique hidden name in the
    output's folder and removed if anything fails. Returns the output path.
    """
    path = Path(path)
    out = Path(out_path) if out_path is not None else path.with_name(f"{path.stem}.recovered.h5")
    in_place = out.resolve() == path.resolve()
    if in_place and (lock is None or not lock.held or lock.path.resolve() != path.resolve()):
        raise ValueError(f"{path}: recover() in place needs the file's held writer lock (lock=)")
    reader = RunReader(path)  # validates: exists, HDF5, labctl run file
    src = reader._require()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_replacement(out) as tmp, h5py.File(tmp, "w", libver=LIBVER) as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            dst.attrs["recovered_from"] = str(path)
            for name in reader.names():
                _copy_dataset(reader._datasets[name], dst, name)
    finally:
        reader.close()
    return out


def _new_like(ds: h5py.Dataset, dst: h5py.File, name: str, rows: int | None = None) -> h5py.Dataset:
    shape = ds.shape if rows is None else (rows, *ds.shape[1:])
    if ds.maxshape and ds.maxshape[0] is None:
        return dst.create_dataset(name, shape=shape, maxshape=ds.maxshape, chunks=ds.chunks, dtype=ds.dtype)
    return dst.create_dataset(name, shape=shape, dtype=ds.dtype, dcpl=_early_dcpl())


def _copy_dataset(ds: h5py.Dataset, dst: h5py.File, name: str) -> None:
    new = _new_like(ds, dst, name)
    for key, value in ds.attrs.items():
        new.attrs[key] = value
    if ds.ndim == 0:
        new[()] = ds[()]
        return
    if ds.size == 0:
        return
    row_bytes = max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64)))
    step = max(1, _COPY_BYTES // row_bytes)
    for start in range(0, ds.shape[0], step):
        stop = min(ds.shape[0], start + step)
        new[start:stop] = ds[start:stop]


# ---------------------------------------------------------------------------------- salvage
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError)


@dataclass
class SalvageReport:
    """What :func:`salvage` copied out of a damaged run file.

    ``copied``: dataset path -> rows copied (all rows for a fixed-size dataset); ``lost``:
    dataset path (or ``"attrs"``, ``"/group"``) -> why it could not be copied (or why rows are
    missing); ``checkpoint_step``: step of the last valid checkpoint in the copy, None if none;
    ``usable``: the copy opens as a labctl run file (so ``labctl resume`` can use it if it has
    a checkpoint).
    """

    source: Path
    out: Path
    copied: dict[str, int]
    lost: dict[str, str]
    attrs: int
    checkpoint_step: int | None
    usable: bool

    def __str__(self) -> str:
        rows = ", ".join(f"{k} ({n} rows)" for k, n in sorted(self.copied.items())) or "no dataset"
        lost = "; ".join(f"{k}: {why}" for k, why in sorted(self.lost.items()))
        ckpt = ("no valid checkpoint" if self.checkpoint_step is None
                else f"last valid checkpoint at step {self.checkpoint_step}")
        text = f"salvaged into {self.out}: {self.attrs} attributes, {rows}; {ckpt}"
        if lost:
            text += f"; not recovered: {lost}"
        if not self.usable:
            text += "; the copy is not a complete labctl run file"
        return text


def _open_swmr(path: Path) -> h5py.File:
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    set_attempts = _hdf5_set_read_attempts()
    if set_attempts is not None:
        set_attempts(fapl.id, SWMR_READ_ATTEMPTS)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid)


def _readable_rows(ds: h5py.Dataset, file_size: int) -> tuple[int, str]:
    """How many leading rows of ``ds`` lie within the file's ``file_size`` bytes, and why not all."""
    if ds.ndim == 0 or ds.chunks is None:
        offset = ds.id.get_offset()
        if offset is not None and offset + ds.id.get_storage_size() > file_size:
            return 0, "its data lies past the end of the file"
        return (ds.shape[0] if ds.ndim else 1), ""
    rows_per_chunk = ds.chunks[0]
    for start in range(0, ds.shape[0], rows_per_chunk):
        info = ds.id.get_chunk_info_by_coord((start,) + (0,) * (ds.ndim - 1))
        if info.byte_offset is None:
            return start, f"rows from {start} were never written"
        if info.byte_offset + info.size > file_size:
            return start, f"rows from {start} lie past the end of the file"
    return ds.shape[0], ""


def salvage(path: str | Path, out: str | Path) -> SalvageReport:
    """Copy whatever can still be read from a damaged or killed run file into the NEW file ``out``.

    The original is only read. Root attributes, then every dataset (leading rows of an
    extendable one up to the first chunk that is missing or lies past the end of the file; a
    fixed-size one whole or not at all) are copied, each separately, so one damaged object does
    not lose the others; the report says what was copied, what was not and why, and the last
    valid checkpoint of the copy. The copy is built under a unique hidden name and moved to
    ``out`` at the end. RunFileError if nothing at all can be read (no file is written then)
    or if ``out`` exists.
    """
    path, out = Path(path), Path(out)
    if out.exists():
        raise RunFileError(f"{out}: already exists (from an earlier salvage?); move it away first")
    if not path.is_file():
        raise RunFileError(f"{path}: no such run file")
    try:
        src = _open_swmr(path)
    except _H5_ERRORS as exc:
        raise RunFileError(f"{path}: cannot be opened as HDF5 at all ({_h5_reason(exc)})") from None
    file_size = path.stat().st_size
    copied: dict[str, int] = {}
    lost: dict[str, str] = {}
    n_attrs = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(out)
    try:
        datasets: list[tuple[str, h5py.Dataset]] = []

        def walk(group: h5py.Group, prefix: str) -> None:
            try:
                names = list(group.keys())
            except _H5_ERRORS as exc:
                lost[prefix or "/"] = f"group unreadable ({_h5_reason(exc)})"
                return
            for name in names:
                full = prefix + name
                try:
                    obj = group[name]
                except _H5_ERRORS as exc:
                    lost[full] = f"unreadable ({_h5_reason(exc)})"
                    continue
                if isinstance(obj, h5py.Group):
                    walk(obj, full + "/")
                elif isinstance(obj, h5py.Dataset):
                    datasets.append((full, obj))

        walk(src, "")
        with h5py.File(tmp, "w", libver=LIBVER) as dst:
            try:
                keys = list(src.attrs.keys())
            except _H5_ERRORS as exc:
                keys = []
                lost["attrs"] = f"root attributes unreadable ({_h5_reason(exc)})"
            for key in keys:
                try:
                    dst.attrs[key] = src.attrs[key]
                    n_attrs += 1
                except _H5_ERRORS as exc:
                    lost[f"attrs/{key}"] = f"unreadable ({_h5_reason(exc)})"
            for name, ds in datasets:
                try:
                    rows, why = _readable_rows(ds, file_size)
                    extendable = ds.maxshape and ds.maxshape[0] is None
                    if why and not extendable:
                        raise ValueError(why)
                    new = _new_like(ds, dst, name, rows if extendable else None)
                    for key, value in ds.attrs.items():
                        new.attrs[key] = value
                    if ds.ndim == 0:
                        new[()] = ds[()]
                    elif rows:
                        new[:rows] = ds[:rows]
                except _H5_ERRORS as exc:
                    if name in dst:
                        del dst[name]
                    lost[name] = f"unreadable ({_h5_reason(exc)})"
                    continue
                copied[name] = rows
                if why:
                    lost[name] = why
            if n_attrs == 0 and not copied:
                raise RunFileError(f"{path}: nothing could be read from it ({'; '.join(lost.values())})")
            dst.attrs["salvaged_from"] = str(path)
        _move_into_place(tmp, out, replace=False)
    finally:
        src.close()
        tmp.unlink(missing_ok=True)
    step, usable = None, True
    try:
        with RunReader(out) as reader:
            latest = reader.latest_checkpoint()
            step = None if latest is None else latest[0]
    except RunFileError as exc:
        usable = False
        lost.setdefault("run file", str(exc).split(": ", 1)[-1])
    return SalvageReport(path, out, copied, lost, n_attrs, step, usable)
