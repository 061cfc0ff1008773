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
    dimensionless or counts) and ``description``. A spec whose ``shape[0]`` is ``None`` is
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

import functools
import importlib.metadata
import json
import subprocess
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
    "DatasetSpec",
    "RunFileError",
    "RunReader",
    "RunWriter",
    "recover",
]

FORMAT = "labctl-run/1"

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


@dataclass(frozen=True)
class DatasetSpec:
    """Declaration of one dataset of a run file.

    ``dtype``: numeric numpy dtype, fixed-length bytes (``"S32"``) or a compound of those.
    ``shape``: ``None`` in axis 0 makes the dataset extendable (rows appended as the run goes);
    otherwise the dataset has this fixed shape and is written once (or in parts).
    ``units``: SI unit symbol, stored as the dataset's ``units`` attribute (``""``: dimensionless).
    """

    dtype: Any
    shape: tuple[int | None, ...]
    units: str = ""
    description: str = ""

    def __post_init__(self) -> None:
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
    """

    def __init__(
        self,
        path: str | Path,
        *,
        attrs: dict,
        schema: dict[str, DatasetSpec],
        checkpoints: bool = True,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self._closed = True
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
        try:
            f = h5py.File(self.path, "w" if overwrite else "w-", libver=LIBVER)
        except FileExistsError as exc:
            raise FileExistsError(
                f"{self.path}: run file already exists (pass overwrite=True to replace it)"
            ) from exc
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
            self.path.unlink(missing_ok=True)
            raise
        self._attach(f)
        self.event("start")
        self.flush()

    @classmethod
    def reopen(cls, path: str | Path, *, reason: str = "", truncate: dict[str, int] | None = None) -> RunWriter:
        """Continue writing a cleanly closed run file (e.g. the output of :func:`recover`).

        The schema is the file's; a ``reopen`` event is recorded, so :meth:`RunReader.exit_status`
        reports ``"incomplete"`` again until the next :meth:`close`. ``truncate`` maps extendable
        datasets to the row counts they go back to (those of :meth:`rows` at a checkpoint), so
        rows written after that checkpoint are not duplicated when a run resumes from it.
        """
        path = Path(path)
        RunReader(path).close()  # same checks and messages as for reading
        try:
            f = h5py.File(path, "a", libver=LIBVER)
        except OSError as exc:
            raise RunFileError(
                f"{path}: cannot open for writing ({exc}); if a writer was killed, "
                "run labctl.store.recover() on it first"
            ) from exc
        try:
            if _EVENTS not in f:
                raise RunFileError(f"{path}: run file has no /events dataset")
            for name, length in (truncate or {}).items():
                if name not in f or f[name].maxshape[0] is not None:
                    raise RunFileError(f"{path}: cannot truncate {name!r}: not an extendable dataset of this file")
                if f[name].shape[0] > length:
                    f[name].resize(length, axis=0)  # shrinking is not allowed once in SWMR mode
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        writer = cls.__new__(cls)
        writer.path = path
        writer._attach(f)
        writer.event("reopen", reason=reason)
        writer.flush()
        return writer

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

    def flush(self) -> None:
        """Make every row written so far visible to readers and durable against a killed writer."""
        if not self._closed:
            self._file.flush()

    def close(self, status: str = "success", reason: str = "") -> None:
        """Record a ``stop`` event with exit ``status`` and ``reason``, flush and close.

        Idempotent: a second call does nothing.
        """
        if self._closed:
            return
        if status not in EXIT_STATUSES:
            raise ValueError(f"exit status {status!r} must be one of {', '.join(EXIT_STATUSES)}")
        try:
            self.event("stop", reason=reason, status=status)
            self._file.flush()
        finally:
            self._closed = True
            self._file.close()

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
        ds = f.create_dataset(name, shape=spec.shape, dtype=spec.dtype)
    ds.attrs["units"] = spec.units
    ds.attrs["description"] = spec.description
    return ds


class RunReader:
    """Read a run file, live (while its writer runs) or finished, or left by a killed writer.

    Opened read-only in SWMR mode. Data read reflects the writer's state at opening or at the
    last :meth:`refresh`.
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
        try:
            f = h5py.File(self.path, "r", swmr=True)
            self._swmr = True
        except OSError:
            try:  # files in older formats cannot be opened for SWMR reading
                f = h5py.File(self.path, "r")
                self._swmr = False
            except OSError as exc:
                raise RunFileError(f"{self.path}: cannot open HDF5 file: {exc}") from exc
        self._file = f
        try:
            fmt = _decode_attr(f.attrs.get("format"))
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

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    self._datasets[name] = obj

            f.visititems(visit)
            self._attrs = self._read_attrs()
        except BaseException:
            self.close()
            raise

    def _read_attrs(self) -> dict[str, Any]:
        f = self._require()
        raw = {k: _decode_attr(v) for k, v in f.attrs.items()}
        try:
            json_keys = json.loads(raw.pop(_JSON_KEYS_ATTR, "[]"))
        except (TypeError, ValueError) as exc:
            raise RunFileError(f"{self.path}: bad {_JSON_KEYS_ATTR!r} attribute: {exc}") from exc
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

    def names(self) -> list[str]:
        """Paths of all datasets, e.g. ``["calibration/counts", "events", ...]``."""
        return sorted(self._datasets)

    def dataset(self, name: str, index: Any = ...) -> np.ndarray:
        """Contents of dataset ``name``, or ``index`` of it (``slice(n, None)``: rows from n)."""
        return np.asarray(self._ds(name)[index])

    def dataset_attrs(self, name: str) -> dict[str, Any]:
        """Attributes of dataset ``name`` (``units``, ``description``)."""
        return {k: _decode_attr(v) for k, v in self._ds(name).attrs.items()}

    def refresh(self) -> None:
        """Re-read SWMR metadata so rows the writer flushed since opening become visible."""
        self._require()
        if not self._swmr:
            return
        # Index before blob: the blob view must be at least as new as the index view.
        order = sorted(self._datasets, key=lambda n: n == _CKPT_BLOB)
        for name in order:
            self._datasets[name].refresh()

    def events(self) -> list[dict[str, Any]]:
        """Events in order, as dicts: time (unix s), kind, status, reason, step."""
        if _EVENTS not in self._datasets:
            return []
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
                return ev["status"] or INCOMPLETE
            if ev["kind"] in ("start", "reopen"):
                return INCOMPLETE
        return INCOMPLETE

    def checkpoints(self) -> list[dict[str, Any]]:
        """Index rows of all checkpoints (step, offset, length, time, crc32)."""
        if _CKPT_INDEX not in self._datasets:
            return []
        return [
            {k: r[k].item() for k in CHECKPOINT_INDEX_DTYPE.names}
            for r in self._datasets[_CKPT_INDEX][()]
        ]

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        """``(step, payload)`` of the last complete checkpoint, or None if there is none."""
        if _CKPT_INDEX not in self._datasets or _CKPT_BLOB not in self._datasets:
            return None
        index = self._datasets[_CKPT_INDEX][()]
        blob = self._datasets[_CKPT_BLOB]
        size = blob.shape[0]
        for row in index[::-1]:
            offset, length = int(row["offset"]), int(row["length"])
            if row["time"] <= 0 or offset < 0 or length < 0 or offset + length > size:
                continue  # row not (yet) fully visible
            data = blob[offset:offset + length].tobytes() if length else b""
            if zlib.crc32(data) != int(row["crc32"]):
                continue
            return int(row["step"]), data
        return None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunReader({str(self.path)!r}{', closed' if self._file is None else ''})"


def recover(path: str | Path, out_path: str | Path | None = None) -> Path:
    """Copy a run file, possibly left by a killed writer, into a fresh cleanly closed file.

    Everything the writer flushed is kept: root attributes (plus ``recovered_from``), every
    dataset with its attributes, events and checkpoints. Extendable datasets stay extendable, so
    :meth:`RunWriter.reopen` can continue the run. The default output is
    ``<stem>.recovered.h5`` next to the input. Returns the output path.
    """
    path = Path(path)
    out = Path(out_path) if out_path is not None else path.with_name(f"{path.stem}.recovered.h5")
    if out.resolve() == path.resolve():
        raise ValueError(f"{path}: recover() needs an output path different from its input")
    reader = RunReader(path)  # validates: exists, HDF5, labctl run file
    src = reader._require()
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with h5py.File(tmp, "w", libver=LIBVER) as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            dst.attrs["recovered_from"] = str(path)
            for name in reader.names():
                _copy_dataset(reader._datasets[name], dst, name)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        reader.close()
    return out


def _copy_dataset(ds: h5py.Dataset, dst: h5py.File, name: str) -> None:
    new = dst.create_dataset(
        name, shape=ds.shape, maxshape=ds.maxshape, chunks=ds.chunks, dtype=ds.dtype
    )
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
