"""Shared pieces of the training protocols: data preparation, metrics rows, energy ledgers, float baselines.

Nothing here touches a chip; the training protocols (``meanvar``, ``kstate``) build on it. Units:
energies in joules, times in seconds, accuracies as fractions in [0, 1].
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import Field

from labctl.chip import Counters
from labctl.store import DatasetSpec

from . import datasets
from .base import Settings
from .cursor import EpochCursor, epoch_permutation  # noqa: F401  (the training protocols' loop over data)

#: One row of ``/train/metrics`` per epoch (compound dataset, appended as training goes).
METRICS_DTYPE = np.dtype([
    ("epoch", "<i8"),
    ("train_loss", "<f8"),         # mean cross-entropy over the epoch's batches, nats
    ("train_accuracy", "<f8"),     # fraction of training samples classified right (stochastic forward)
    ("val_loss", "<f8"),
    ("val_accuracy", "<f8"),
    ("extra", "<f8"),              # method-specific: fraction of mid-range p (meanvar), re-programmed fraction (kstate)
    ("pulses", "<i8"),             # chip counters since the start of training
    ("reads", "<i8"),
    ("energy_j", "<f8"),
    ("elapsed_s", "<f8"),
])

COUNTER_DTYPE = np.dtype([("stage", "S16"), ("pulses", "<i8"), ("resets", "<i8"), ("reads", "<i8"),
                          ("trials", "<i8"), ("energy_j", "<f8")])


class TrainingSettings(Settings):
    """Data and optimiser settings common to the training protocols."""

    data: str = Field("digits", description="digits | iris | wine | breast_cancer | mnist | fashion-mnist")
    data_path: str | None = Field(None, description="local IDX folder or .npz of an MNIST-format set (same as data_dir)")
    data_dir: str | None = Field(None, description="folder of an MNIST-format set's IDX files (default for "
                                 "fashion-mnist: $LABCTL_DATA, else /usr/share/datasets/fashion-mnist)")
    mnist_pool: int = Field(2, ge=1, le=4, description="average-pool factor for MNIST-format 28x28 images "
                            "(28 -> 14 with 2; 1: all 784 pixels)")
    train_limit: int | None = Field(None, ge=10, description="use only the first N training samples")
    test_limit: int | None = Field(None, ge=10, description="use only the first N test samples (None: all)")
    test_fraction: float = Field(0.25, gt=0, lt=1)
    split_seed: int = Field(0, ge=0, description="seed of the train/test split (recorded in the run file)")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="part of the training split held out for early stopping")
    batch_size: int = Field(64, ge=1, le=65536)
    lr: float = Field(0.02, gt=0, le=10, description="Adam learning rate")
    max_epochs: int = Field(100, ge=1, le=100000)
    patience: int = Field(20, ge=1, description="early stopping: epochs without a better validation accuracy")
    float_baseline: bool = Field(True, description="also train a float network of the same shape (summary)")
    threads: int | None = Field(1, ge=1, le=1024, description="torch intra-op threads while training (None: leave "
                                "as is); the tensors are small, so 1 avoids thread overhead and contention")


@dataclass
class Prepared(datasets.DataSplit):
    """A data split with a fixed validation part held out of the training part."""

    x_val: torch.Tensor = None
    y_val: torch.Tensor = None


def prepare_data(s: TrainingSettings, *, binary: bool) -> Prepared:
    """Load the data set, average-pool MNIST-format images, binarise if asked (after pooling), and hold
    out a fixed validation split (``val_fraction`` of the first ``train_limit`` training samples)."""
    split = datasets.load(s.data, test_fraction=s.test_fraction, seed=s.split_seed, path=s.data_path or s.data_dir)
    x_train, y_train, x_test, y_test = split.x_train, split.y_train, split.x_test, split.y_test
    if s.train_limit is not None:
        x_train, y_train = x_train[: s.train_limit], y_train[: s.train_limit]
    if s.test_limit is not None:
        x_test, y_test = x_test[: s.test_limit], y_test[: s.test_limit]
    if s.data in datasets.IDX_SETS and s.mnist_pool > 1:
        x_train = datasets.avg_pool(x_train, 28, s.mnist_pool)
        x_test = datasets.avg_pool(x_test, 28, s.mnist_pool)
    if binary:
        x_train, x_test = datasets.binarise(x_train), datasets.binarise(x_test)
    gen = torch.Generator().manual_seed(10_007 + s.split_seed)
    perm = torch.randperm(len(y_train), generator=gen)
    n_val = int(round(s.val_fraction * len(y_train)))
    val, train = perm[:n_val], perm[n_val:]
    record = dict(split.split, val_fraction=s.val_fraction, n_val=n_val, binarised=binary)
    if s.data in datasets.IDX_SETS:
        record.update(pool=s.mnist_pool, n_train_used=len(train), n_test_used=len(y_test))
    return Prepared(split.name, x_train[train], y_train[train], x_test, y_test, split.classes, record,
                    x_val=x_train[val], y_val=y_train[val])


@contextmanager
def torch_threads(n: int | None):
    """Use ``n`` torch intra-op threads inside the block, restoring the previous number after it.

    Training loops are thousands of small tensor operations; with several threads, and more so on
    a loaded machine, thread hand-offs cost far more than the arithmetic (measured: a 200-epoch
    read-out takes 6 s on two busy cores, 0.07 s on one thread), hence ``n = 1`` by default.
    """
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def inward_f32(lo: float, hi: float) -> tuple[float, float]:
    """``(lo, hi)`` as float32 values rounded inwards: ``lo32 >= lo`` and ``hi32 <= hi``."""
    lo32, hi32 = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
    if float(lo32) < lo:
        lo32 = torch.nextafter(lo32, torch.tensor(float("inf")))
    if float(hi32) > hi:
        hi32 = torch.nextafter(hi32, torch.tensor(float("-inf")))
    return float(lo32), float(hi32)


def counters_row(stage: str, c: Counters) -> tuple:
    return (stage.encode()[:16], c.pulses, c.resets, c.reads, c.trials, c.energy_j)


def counters_delta(after: Counters, before: Counters) -> Counters:
    return Counters(**{k: after.as_dict()[k] - before.as_dict()[k] for k in after.as_dict()})


def training_specs(n_ledger: int) -> dict[str, DatasetSpec]:
    """Datasets every training protocol writes: the metrics table and the energy ledger."""
    return {
        "train/metrics": DatasetSpec(METRICS_DTYPE, (None,), "", "one row per epoch: losses (nats), accuracies, "
                                     "chip pulses/reads/energy (J) since training started, wall time (s)"),
        "energy/ledger": DatasetSpec(COUNTER_DTYPE, (n_ledger,), "", "chip work per stage (pulses, resets, reads, "
                                     "trials, energy in J)"),
    }


# ---------------------------------------------------------------------------- float baselines
class FloatMLP(torch.nn.Module):
    """Unconstrained float network: Linear layers with ReLU between them (one layer: a linear classifier)."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def train_float(data: Prepared, sizes: list[int], *, seed: int, lr: float, batch_size: int, max_epochs: int,
                patience: int, epoch_times: list[float] | None = None) -> dict[str, Any]:
    """Train the float baseline of ``sizes`` with Adam + cross-entropy + early stopping on validation accuracy.

    Returns test accuracy (fraction), the best epoch and the epochs run. ``epoch_times`` (if given)
    receives the wall time of each training epoch in seconds (validation excluded).
    """
    torch.manual_seed(seed)
    model = FloatMLP(sizes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(data.y_train)
    best, best_state, best_epoch, bad = -1.0, None, 0, 0
    epoch = 0
    for epoch in range(max_epochs):
        t0 = time.perf_counter()
        perm = epoch_permutation(seed, epoch, n)
        for b0 in range(0, n, batch_size):
            sel = perm[b0:b0 + batch_size]
            loss = torch.nn.functional.cross_entropy(model(data.x_train[sel]), data.y_train[sel])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch_times is not None:
            epoch_times.append(time.perf_counter() - t0)
        with torch.no_grad():
            val = accuracy(model(data.x_val), data.y_val) if len(data.y_val) else 0.0
        if val > best:
            best, best_epoch, bad = val, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    with torch.no_grad():
        test = accuracy(model(data.x_test), data.y_test)
    return {"test_accuracy": test, "val_accuracy": best, "best_epoch": best_epoch, "epochs": epoch + 1}
