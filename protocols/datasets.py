"""Data sets for the training protocols, with fixed, recorded train/test splits.

Offline only: Iris, Wisconsin breast cancer, wine and the 8x8 digits ship with scikit-learn;
MNIST is read from local IDX (``train-images-idx3-ubyte`` ...) or ``.npz`` files when a user has
them. Nothing is downloaded.

Every loader returns a :class:`DataSplit` whose ``split`` record (seed, test fraction, indices'
checksum) goes into the run file, so a result can be traced to the exact samples used.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SKLEARN_SETS = ("iris", "breast_cancer", "wine", "digits")


@dataclass
class DataSplit:
    """Train and test tensors: features float32 ``(m, d)`` in [0, 1], labels int64 ``(m,)``."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int
    split: dict

    @property
    def features(self) -> int:
        return self.x_train.shape[1]


def _checksum(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _split(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> DataSplit:
    """Stratified split with a fixed seed; features scaled to [0, 1] with train-set min/max."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    train, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=y)
    lo = x[train].min(axis=0)
    span = np.where(x[train].max(axis=0) > lo, x[train].max(axis=0) - lo, 1.0)
    scaled = np.clip((x - lo) / span, 0.0, 1.0).astype(np.float32)
    record = {"data": name, "seed": seed, "test_fraction": test_fraction, "n_train": len(train),
              "n_test": len(test), "indices_sha256": _checksum(train, test)}
    return DataSplit(name, torch.from_numpy(scaled[train]), torch.from_numpy(y[train]).long(),
                     torch.from_numpy(scaled[test]), torch.from_numpy(y[test]).long(), int(y.max()) + 1, record)


def load_sklearn(name: str, test_fraction: float = 0.25, seed: int = 0) -> DataSplit:
    """One of scikit-learn's bundled sets: iris, breast_cancer, wine, digits (8x8, 1797 images)."""
    from sklearn import datasets

    loaders = {"iris": datasets.load_iris, "breast_cancer": datasets.load_breast_cancer,
               "wine": datasets.load_wine, "digits": datasets.load_digits}
    if name not in loaders:
        raise ValueError(f"unknown data set {name!r}: expected one of {', '.join(SKLEARN_SETS)} or 'mnist'")
    bunch = loaders[name]()
    return _split(name, bunch.data.astype(np.float64), bunch.target.astype(np.int64), test_fraction, seed)


# ---------------------------------------------------------------------------- MNIST from local files
def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), as distributed for MNIST. Raises ValueError naming the file."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (expected two zero bytes, a type code and a rank)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX type code 0x{data[2]:02x}")
    rank = data[3]
    shape = struct.unpack(f">{rank}I", data[4:4 + 4 * rank])
    dtype = np.dtype(dtypes[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = data[4 + 4 * rank:]
    if len(body) != expected:
        raise ValueError(f"{path}: IDX header announces shape {shape} ({expected} bytes) but holds {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def load_mnist(folder_or_npz: str | Path, limit: int | None = None) -> DataSplit:
    """MNIST from a folder of the four IDX files (plain or .gz) or from an ``.npz`` with
    ``x_train, y_train, x_test, y_test`` (the Keras layout). Pixels scaled to [0, 1]."""
    source = Path(folder_or_npz)
    if source.suffix == ".npz":
        if not source.is_file():
            raise ValueError(f"{source}: no such MNIST .npz file")
        with np.load(source) as z:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
            if missing:
                raise ValueError(f"{source}: missing arrays {sorted(missing)} (expected x_train, y_train, x_test, y_test)")
            parts = [z[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    else:
        names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        parts = []
        for stem in names:
            candidates = [source / stem, source / f"{stem}.gz"]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise ValueError(f"{source}: MNIST file {stem}[.gz] not found")
            parts.append(read_idx(found))
    x_train, y_train, x_test, y_test = parts
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    flat = lambda a: torch.from_numpy(a.reshape(len(a), -1).astype(np.float32) / 255.0)  # noqa: E731
    record = {"data": "mnist", "source": str(source), "n_train": len(y_train), "n_test": len(y_test),
              "indices_sha256": _checksum(y_train, y_test)}
    return DataSplit("mnist", flat(x_train), torch.from_numpy(y_train.astype(np.int64)),
                     flat(x_test), torch.from_numpy(y_test.astype(np.int64)), 10, record)


def load(name: str, *, test_fraction: float = 0.25, seed: int = 0, path: str | None = None) -> DataSplit:
    """Load by name: a scikit-learn set, or ``mnist`` from ``path``."""
    if name == "mnist":
        if path is None:
            raise ValueError("data set 'mnist' needs a path to local IDX files or an .npz (nothing is downloaded)")
        return load_mnist(path)
    return load_sklearn(name, test_fraction, seed)


# ---------------------------------------------------------------------------- preprocessing
def max_pool(images: torch.Tensor, side: int, factor: int) -> torch.Tensor:
    """Max-pool flattened square images ``(m, side*side)`` by ``factor`` (MNIST 28 -> 14 with 2)."""
    x = images.reshape(-1, 1, side, side)
    return torch.nn.functional.max_pool2d(x, factor).reshape(len(images), -1)


def binarise(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Binary inputs (0.0 / 1.0) for methods that drive synapses with on/off pulses."""
    return (x > threshold).float()
