"""MNIST-format data (Fashion-MNIST) and the embedded protocols at the published shapes.

The tests never need the real data set: they write small IDX files of their own (28x28 images,
10 classes) and point ``LABCTL_DATA`` or ``data_dir`` at them.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from labctl.cli import main as labctl_main
from labctl.config import ConfigError
from labctl.runs import prepare
from protocols import datasets
from protocols.training import TrainingSettings, prepare_data


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    """An IDX file of unsigned bytes (type 0x08), as MNIST is distributed."""
    head = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = head + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def tiny_idx(folder: Path, n_train: int = 60, n_test: int = 30, seed: int = 0) -> Path:
    """Four IDX files: class c lights the c-th horizontal band of the image (plus noise)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, size=(n, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 * c + 4: 2 * c + 8, 4:24] = 250
        write_idx(folder / f"{stem}-images-idx3-ubyte", x)
        write_idx(folder / f"{stem}-labels-idx1-ubyte", y)
    return folder


@pytest.fixture
def fashion_dir(tmp_path, monkeypatch):
    folder = tiny_idx(tmp_path / "fashion-mnist")
    monkeypatch.setenv("LABCTL_DATA", str(tmp_path))  # a folder holding a sub-folder named after the set
    return folder


def test_fashion_found_through_labctl_data(fashion_dir):
    split = datasets.load("fashion-mnist")
    assert split.name == "fashion-mnist" and split.split["source"] == str(fashion_dir)
    assert split.x_train.shape == (60, 784) and split.x_test.shape == (30, 784)
    assert float(split.x_train.max()) <= 1.0 and split.classes == 10


def test_data_dir_overrides_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("LABCTL_DATA", raising=False)
    folder = tiny_idx(tmp_path / "elsewhere")
    assert datasets.data_folder("fashion-mnist") == datasets.FASHION_MNIST_DIR
    s = TrainingSettings(data="fashion-mnist", data_dir=str(folder), val_fraction=0.2)
    data = prepare_data(s, binary=True)
    assert data.features == 196  # 28x28 average-pooled 2x2
    assert data.x_train.shape[0] == 48 and data.x_val.shape[0] == 12
    assert set(torch.unique(data.x_train).tolist()) <= {0.0, 1.0}


def test_average_pool_is_the_block_mean():
    img = torch.arange(16.0).reshape(1, 16)  # a 4x4 image
    pooled = datasets.avg_pool(img, 4, 2)
    assert pooled.tolist() == [[2.5, 4.5, 10.5, 12.5]]


def test_missing_files_one_line_error_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABCTL_DATA", str(tmp_path / "nothing-here"))
    with pytest.raises(datasets.DataMissing) as exc:
        datasets.load("fashion-mnist")
    msg = str(exc.value)
    assert "\n" not in msg and "apt-get install dataset-fashion-mnist" in msg and "LABCTL_DATA" in msg
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist"):
        prepare("train-meanvar-fashion")
    assert labctl_main(["run", "train-meanvar-fashion", "--no-progress", "--out", str(tmp_path / "r.h5")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err
    with pytest.raises(datasets.DataMissing, match="data_path"):
        datasets.load("mnist")  # no default folder for MNIST


@pytest.mark.parametrize("name, synapses, devices", [
    ("train-meanvar-fashion", 196 * 10, 1960),
    ("train-meanvar-mlp-fashion", 2 * 196 * 100 + 2 * 100 * 10, 41200),  # complement inputs
    ("train-kstate-fashion-insitu", 784 * 100 + 100 * 10, 79400),
    ("train-kstate-fashion-exsitu", 784 * 100 + 100 * 10, 79400),
    ("train-cluster-fashion", 100 * 784, 78400),
    ("train-hebbian-fashion", 1568 * 100, 156800),
])
def test_embedded_protocols_at_the_published_shapes(fashion_dir, name, synapses, devices):
    proto, chip, station, _ = prepare(name)
    try:
        assert proto.synapses == synapses and chip.n == devices
    finally:
        chip.close()
