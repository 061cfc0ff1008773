"""Data sets for the training protocols, with fixed, recorded train/test splits.

Offline only: Iris, Wisconsin breast cancer, wine and the 8x8 digits ship with scikit-learn;
MNIST-format sets are read from local IDX (``train-images-idx3-ubyte`` ...) or ``.npz`` files:
``fashion-mnist`` from the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``) unless ``data_dir`` or the environment variable
``LABCTL_DATA`` names another folder, ``mnist`` (or any IDX set) from a user's folder. Nothing is
downloaded; missing files raise :class:`DataMissing` (a ``ValueError``, one line saying how to get
them), which the run builder turns into a ``ConfigError`` (exit 2).

Every loader returns a :class:`DataSplit` whose ``split`` record (seed, test fraction, indices'
checksum) goes into the run file, so a result can be traced to the exact samples used.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SKLEARN_SETS = ("iris", "breast_cancer", "wine", "digits")
IDX_SETS = ("mnist", "fashion-mnist")
#: Where the Debian package ``dataset-fashion-mnist`` installs the four gzipped IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DataMissing(ValueError):
    """A data set's files are not on this machine; the message (one line) says how to get them."""


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
        raise ValueError(f"unknown data set {name!r}: expected one of {', '.join(SKLEARN_SETS + IDX_SETS)}")
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


def _how_to_get(name: str) -> str:
    if name == "fashion-mnist":
        return (f"install them with `apt-get install dataset-fashion-mnist` (into {FASHION_MNIST_DIR}) or put "
                f"the four IDX files ({', '.join(IDX_NAMES)}, plain or .gz) in a folder named by the setting "
                "data_dir or the environment variable LABCTL_DATA")
    return (f"put the four IDX files ({', '.join(IDX_NAMES)}, plain or .gz) or an .npz with x_train, y_train, "
            "x_test, y_test in a folder and name it with the setting data_path (or data_dir)")


def load_mnist(folder_or_npz: str | Path, limit: int | None = None, *, name: str = "mnist") -> DataSplit:
    """An MNIST-format set (MNIST, Fashion-MNIST: 28x28 images, 10 classes) from a folder of the
    four IDX files (plain or .gz) or from an ``.npz`` with ``x_train, y_train, x_test, y_test``
    (the Keras layout). Pixels scaled to [0, 1]; the recorded train/test split is the data set's own
    (60 000 / 10 000 images). Raises :class:`DataMissing` if the files are not there."""
    source = Path(folder_or_npz)
    if source.suffix == ".npz":
        if not source.is_file():
            raise DataMissing(f"data set {name!r}: no such .npz file {source}; {_how_to_get(name)}")
        with np.load(source) as z:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
            if missing:
                raise ValueError(f"{source}: missing arrays {sorted(missing)} (expected x_train, y_train, x_test, y_test)")
            parts = [z[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    else:
        parts = []
        for stem in IDX_NAMES:
            candidates = [source / stem, source / f"{stem}.gz"]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise DataMissing(f"data set {name!r}: {stem}[.gz] not found in {source}; {_how_to_get(name)}")
            parts.append(read_idx(found))
    x_train, y_train, x_test, y_test = parts
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    flat = lambda a: torch.from_numpy(a.reshape(len(a), -1).astype(np.float32) / 255.0)  # noqa: E731
    record = {"data": name, "source": str(source), "n_train": len(y_train), "n_test": len(y_test),
              "indices_sha256": _checksum(y_train, y_test)}
    return DataSplit(name, flat(x_train), torch.from_numpy(y_train.astype(np.int64)),
                     flat(x_test), torch.from_numpy(y_test.astype(np.int64)), 10, record)


def data_folder(name: str, path: str | None = None) -> str | None:
    """Where an IDX set is read from: ``path`` if given, else ``$LABCTL_DATA`` (a folder holding the
    files, or holding a sub-folder named after the set), else the system package's folder for
    ``fashion-mnist``; None when nothing names one (``mnist`` needs a user's folder)."""
    if path:
        return path
    env = os.environ.get("LABCTL_DATA")
    if env:
        sub = Path(env) / name
        return str(sub) if sub.is_dir() else env
    return FASHION_MNIST_DIR if name == "fashion-mnist" else None


def load(name: str, *, test_fraction: float = 0.25, seed: int = 0, path: str | None = None) -> DataSplit:
    """Load by name: a scikit-learn set, or an IDX set (``mnist``, ``fashion-mnist``) from
    :func:`data_folder` (``test_fraction`` and ``seed`` do not apply: IDX sets keep their own split)."""
    if name in IDX_SETS:
        folder = data_folder(name, path)
        if folder is None:
            raise DataMissing(f"data set {name!r} is not on this machine; {_how_to_get(name)}")
        return load_mnist(folder, name=name)
    return load_sklearn(name, test_fraction, seed)


# ---------------------------------------------------------------------------- preprocessing
def avg_pool(images: torch.Tensor, side: int, factor: int) -> torch.Tensor:
    """Average-pool flattened square images ``(m, side*side)`` by ``factor`` (28x28 -> 14x14 with 2)."""
    x = images.reshape(-1, 1, side, side)
    return torch.nn.functional.avg_pool2d(x, factor).reshape(len(images), -1)


def max_pool(images: torch.Tensor, side: int, factor: int) -> torch.Tensor:
    """Max-pool flattened square images ``(m, side*side)`` by ``factor`` (MNIST 28 -> 14 with 2)."""
    x = images.reshape(-1, 1, side, side)
    return torch.nn.functional.max_pool2d(x, factor).reshape(len(images), -1)


def binarise(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Binary inputs (0.0 / 1.0) for methods that drive synapses with on/off pulses."""
    return (x > threshold).float()


def load_subset(name: str, *, test_fraction: float = 0.25, seed: int = 0, path: str | None = None,
                pool: int = 1, train_limit: int | None = None, test_limit: int | None = None) -> DataSplit:
    """:func:`load`, then the first ``train_limit`` training and ``test_limit`` test samples, and an
    MNIST-format set's 28x28 images average-pooled by ``pool`` (28 -> 14 with 2). The ``split``
    record says what was kept."""
    split = load(name, test_fraction=test_fraction, seed=seed, path=path)
    if train_limit is not None:
        split.x_train, split.y_train = split.x_train[:train_limit], split.y_train[:train_limit]
    if test_limit is not None:
        split.x_test, split.y_test = split.x_test[:test_limit], split.y_test[:test_limit]
    if name in IDX_SETS and pool > 1:
        split.x_train, split.x_test = avg_pool(split.x_train, 28, pool), avg_pool(split.x_test, 28, pool)
    if name in IDX_SETS or train_limit is not None or test_limit is not None:
        split.split = dict(split.split, pool=pool, n_train_used=len(split.y_train), n_test_used=len(split.y_test))
    return split
