"""DW-MTJ clustering plus a supervised read-out (after Bennett et al. 2020, REFERENCES.md section 3).

Two layers:

1. **Unsupervised winner-take-all (WTA) layer on the chip.** ``clusters`` x ``inputs`` multi-level
   DW-MTJ synapses; the weight of synapse (c, j) is its conductance level normalised to [0, 1]
   (``level / (K - 1)``: 0 = wall at site 0, G_AP; 1 = last site, G_P). Synapse (c, j) is chip
   index ``c * inputs + j``. For every training sample x (features scaled to [0, 1]) the winner is
   the cluster with the highest ``x . w_c - |w_c|^2 / 2`` (the crossbar column current minus a
   per-neuron bias of half the squared weight norm, i.e. the nearest centroid in Euclidean
   distance). The winner's synapses move toward the input: where ``x_j > w_cj`` a potentiating
   current pulse (+``pulse_current`` A, ``pulse_width`` s: one pinning site toward G_P), where
   ``x_j < w_cj`` a depressing one (-``pulse_current``). The learning rate ``eta`` is stochastic
   rounding: synapse j is pulsed with probability ``min(1, eta * |x_j - w_cj| * (K - 1))``, so
   the expected weight step is ``eta * (x_j - w_cj)`` (online k-means). ``eta`` anneals
   geometrically from ``eta_start`` to ``eta_end`` over the run. One ``chip.pulse`` call per
   sample carries all pulses of the winner (per-synapse signed amplitudes).

   **What is read, and when.** The protocol keeps a shadow of the levels last read from the chip.
   The whole matrix is read once at the start of every epoch (``chip.read`` of all synapses: one
   crossbar read-out); after each sample only the synapses just pulsed are read back, so the
   shadow always holds what the chip last reported and the winner of the next sample is computed
   from measured conductances, not from the intended update. The landing position of a DW is
   stochastic (over/undershoot, end sites absorbing), so the read-back matters.

   Initialisation (``init = "data"``): every cluster is programmed to a randomly chosen training
   sample (no labels used): reset, then ``K - 1`` rounds of one-site pulses to the synapses whose
   target level (stochastic rounding of the sample) is not yet reached, then a full read.

2. **Supervised read-out, in floating point** (documented choice: the paper's read-out layer is
   trained by the delta rule; here it is a float linear layer, since its few weights are trained
   from a handful of labels and the device question is the clustering layer). Its inputs are the
   cluster outputs computed from the final read of the chip's weights: one-hot winner
   (``readout_temperature = 0``) or ``softmax(-d^2 / T)`` over the squared distances to every
   centroid. Trained by the delta (LMS) rule on ``n`` labelled samples per class for every ``n`` in
   ``labels_per_class`` (0 = all labels), ``label_draws`` random draws each.

Baselines on the same split, the same labelled draws and the same sample order (``baselines``):
the same WTA layer with float weights (``w += eta * (x - w)``, same init and schedule) with the
same read-out, and a logistic regression on the raw features.

Energy (joules, from ``chip.counters.energy_j``): initial programming, training (pulses and
read-backs), learning = both; per inference = the final full read of the matrix (every synapse
biased once: one crossbar evaluation of one input, an upper bound since a real crossbar biases
only rows with non-zero inputs).
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Any, Iterator, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from labctl.engine import Progress, RunContext
from labctl.families.dw_mtj import DWMTJ
from labctl.store import DatasetSpec

from . import datasets
from .base import ChipProtocol, EpochCursor, Kind, Settings
from .readout import delta_rule, labelled_subset, logistic_regression_accuracy, mean_std, readout_predict
from .training import torch_threads

Tensor = torch.Tensor

METRICS_DTYPE = np.dtype([
    ("epoch", "<i4"), ("samples", "<i8"), ("eta", "<f8"), ("distance2", "<f8"), ("clusters_used", "<i4"),
    ("pulses", "<i8"), ("reads", "<i8"), ("energy_j", "<f8"), ("wall_s", "<f8"),
])
ENERGY_DTYPE = np.dtype([
    ("init_j", "<f8"), ("training_j", "<f8"), ("learning_j", "<f8"), ("inference_j", "<f8"),
    ("init_pulses", "<i8"), ("training_pulses", "<i8"), ("training_reads", "<i8"), ("inference_reads", "<i8"),
])


class ClusterSettings(Settings):
    """Settings of train-cluster. Currents in amperes, widths in seconds, features scaled to [0, 1]."""

    data: Literal["iris", "breast_cancer", "wine", "digits", "mnist", "fashion-mnist"] = "iris"
    test_fraction: float = Field(0.25, gt=0, lt=1)
    data_dir: str | None = Field(None, description="folder of an MNIST-format set's IDX files (default for "
                                 "fashion-mnist: $LABCTL_DATA, else /usr/share/datasets/fashion-mnist)")
    image_pool: int = Field(1, ge=1, le=4, description="average-pool factor of MNIST-format 28x28 images (1: 784 inputs)")
    test_limit: int | None = Field(None, ge=10, description="use only the first N test samples (None: all)")
    train_limit: int | None = Field(None, ge=10, description="use only the first N training samples (None: all)")
    split_seed: int = Field(0, ge=0, description="seed of the stratified train/test split")
    clusters: int = Field(20, ge=2, le=100_000, description="WTA neurons (clusters)")
    encoding: Literal["analog", "thermometer"] = Field(
        "analog", description="analog: one input per feature in [0, 1]; thermometer: `bins` binary inputs per feature")
    bins: int = Field(4, ge=2, le=64, description="thermometer bins per feature")
    epochs: int = Field(10, ge=1, le=10_000)
    eta_start: float = Field(0.5, gt=0, le=1, description="learning rate at the start (weight units per sample)")
    eta_end: float = Field(0.05, gt=0, le=1, description="learning rate at the end (geometric anneal)")
    pulse_current: float = Field(155e-6, gt=0, description="magnitude of a one-site programming pulse, amperes")
    pulse_width: float = Field(1e-8, gt=0, description="programming pulse width, seconds")
    batch: int = Field(50, ge=1, description="training samples between safe points (one metrics row each)")
    init: Literal["data", "reset"] = "data"
    readout_temperature: float = Field(0.0, ge=0, description="0: one-hot winner; >0: softmax(-d^2/T) cluster outputs")
    readout_epochs: int = Field(200, ge=1)
    readout_lr: float = Field(0.5, gt=0, le=2)
    labels_per_class: list[int] = Field([1, 5, 10, 0], min_length=1, description="0 means all labels")
    label_draws: int = Field(5, ge=1, le=1000, description="random labelled subsets per entry (1 for 'all')")
    baselines: bool = True

    @model_validator(mode="after")
    def _check(self):
        if any(n < 0 for n in self.labels_per_class):
            raise ValueError("labels_per_class entries must be >= 0 (0 = all labels)")
        return self


def encode(x: Tensor, encoding: str, bins: int) -> Tensor:
    """Inputs of the crossbar: features in [0, 1] as they are, or thermometer-coded (0/1 per bin)."""
    if encoding == "analog":
        return x.float()
    edges = (torch.arange(bins, dtype=torch.float32) + 0.5) / bins
    return (x.unsqueeze(-1) > edges).float().reshape(len(x), -1)


def squared_distances(x: Tensor, w: Tensor) -> Tensor:
    """``|x - w_c|^2`` for inputs ``x`` (m, d) and centroids ``w`` (C, d): (m, C)."""
    return (x * x).sum(1, keepdim=True) - 2.0 * x @ w.T + (w * w).sum(1)


def cluster_outputs(x: Tensor, w: Tensor, temperature: float) -> Tensor:
    """Outputs of the WTA layer fed to the read-out: one-hot winner or ``softmax(-d^2/T)``."""
    d2 = squared_distances(x, w)
    if temperature <= 0:
        return torch.nn.functional.one_hot(d2.argmin(1), w.shape[0]).float()
    return torch.softmax(-d2 / temperature, dim=1)


class Phase(str, Enum):
    INIT = "init"
    TRAIN = "train"
    READOUT = "readout"
    DONE = "done"


class TrainCluster(ChipProtocol):
    """Unsupervised DW-MTJ WTA clustering plus a delta-rule read-out (see the module docstring)."""

    kind = "train-cluster"
    settings_model = ClusterSettings
    families = (DWMTJ.name,)
    envelope_fields = {"pulse_current": "magnitude", "pulse_width": "width"}  # pulses of +-pulse_current
    resumable = {
        "phase": Kind.PHASE, "cursor": Kind.CURSOR, "levels": Kind.TENSOR, "wins": Kind.TENSOR,
        "init_samples": Kind.TENSOR, "gen_gate": Kind.GENERATOR, "marks": Kind.VALUE, "wall_s": Kind.VALUE,
        "results": Kind.VALUE, "energy": Kind.VALUE,
    }
    fixed_safe_points = 2  # the initialisation, the read-out

    def __init__(self, name: str, settings: ClusterSettings, chip, seed: int = 0):
        super().__init__(name, settings, chip, seed)
        s = settings
        self.data = datasets.load_subset(s.data, test_fraction=s.test_fraction, seed=s.split_seed, path=s.data_dir,
                                         pool=s.image_pool, train_limit=s.train_limit, test_limit=s.test_limit)
        self.x_train = encode(self.data.x_train, s.encoding, s.bins)
        self.x_test = encode(self.data.x_test, s.encoding, s.bins)
        self.inputs = self.x_train.shape[1]
        self.synapses = s.clusters * self.inputs
        if self.synapses > chip.n:
            raise ValueError(f"{s.clusters} clusters x {self.inputs} inputs need {self.synapses} synapses, "
                             f"but the chip has {chip.n}")
        for amp in (s.pulse_current, -s.pulse_current):
            chip.envelope.check_pulse(torch.tensor(amp), torch.tensor(s.pulse_width), None)
        self.top = chip.levels - 1
        self.index = torch.arange(self.synapses).reshape(s.clusters, self.inputs)
        # --- resumable state
        self.phase = Phase.INIT
        self.cursor = EpochCursor(len(self.x_train), s.epochs, s.batch, seed)
        self.levels = torch.zeros(s.clusters, self.inputs, dtype=torch.int64)  # shadow of the last read
        self.gen_gate = torch.Generator().manual_seed(seed + 1_000_003)
        self.init_samples = torch.zeros(s.clusters, dtype=torch.int64)
        self.wins = torch.zeros(s.clusters, dtype=torch.int64)  # this epoch
        self.marks: dict[str, float] = {}
        self.wall_s = 0.0
        self.results: dict[str, Tensor] = {}  # accuracy tables [entry, draw], float64
        self.energy: dict[str, float] = {}

    # ------------------------------------------------------------------ run file
    def describe(self) -> dict[str, DatasetSpec]:
        s = self.settings
        n_lab = len(s.labels_per_class)
        draws = s.label_draws
        return {
            "train/metrics": DatasetSpec(METRICS_DTYPE, (None,), "", "one row per batch: epoch, samples seen, eta, "
                                         "mean squared distance input-winner, clusters used this epoch, cumulative "
                                         "chip pulses, reads and energy (J), wall time (s)",
                                         hint={"view": "curve", "x": "samples", "y": ["distance2"]}),
            "train/levels": DatasetSpec(np.int8, (s.clusters, self.inputs), "", "final levels read, [cluster, input]",
                                        hint={"view": "weights", "role": "levels", "label": "level read",
                                              "shape": [s.clusters, self.inputs], "when": "end"}),
            "train/init_levels": DatasetSpec(np.int8, (s.clusters, self.inputs), "", "levels read after initialisation"),
            "readout/labels_per_class": DatasetSpec(np.int64, (n_lab,), "", "labelled samples per class (0 = all)"),
            "readout/accuracy": DatasetSpec(np.float64, (n_lab, draws), "", "test accuracy, DW-MTJ WTA + read-out [entry, draw]"),
            "readout/accuracy_float_wta": DatasetSpec(np.float64, (n_lab, draws), "", "float WTA + same read-out"),
            "readout/accuracy_logreg": DatasetSpec(np.float64, (n_lab, draws), "", "logistic regression on raw features"),
            "energy": DatasetSpec(ENERGY_DTYPE, (1,), "J", "energy (J) and operation counts of learning and inference",
                                  hint={"view": "energy"}),
        }

    # ------------------------------------------------------------------ helpers
    def eta(self, done: int) -> float:
        """Learning rate after ``done`` training samples (geometric anneal)."""
        s = self.settings
        frac = done / max(1, self.cursor.total - 1)
        return s.eta_start * (s.eta_end / s.eta_start) ** min(1.0, frac)

    def weights(self, levels: Tensor | None = None) -> Tensor:
        """Weights in [0, 1] from levels: ``level / (K - 1)``."""
        return (self.levels if levels is None else levels).float() / self.top

    def _read_all(self) -> None:
        self.levels = self.chip.read(self.index.reshape(-1)).level[:, 0].reshape(self.levels.shape).to(self.levels.device, copy=True)

    def _counters(self) -> tuple[float, int, int]:
        c = self.chip.counters
        return c.energy_j, c.pulses, c.reads

    def _init_targets(self) -> Tensor:
        """Init samples (no labels) and their target levels by stochastic rounding."""
        s = self.settings
        order = torch.randperm(len(self.x_train), generator=self.cursor.gen)
        self.init_samples = order[: s.clusters] if s.clusters <= len(order) else order[torch.arange(s.clusters) % len(order)]
        scaled = self.x_train[self.init_samples] * self.top
        frac = scaled - scaled.floor()
        up = torch.rand(scaled.shape, generator=self.gen_gate) < frac
        return (scaled.floor() + up.float()).long().clamp(0, self.top)

    def _initialise(self) -> None:
        s = self.settings
        idx = self.index.reshape(-1)
        self.chip.reset(idx)
        if s.init == "data":
            target = self._init_targets().reshape(-1)
            self._read_all()
            for _ in range(self.top):  # rounds of one-site pulses until targets are reached (or K-1 rounds)
                lag = target > self.levels.reshape(-1)
                if not bool(lag.any()):
                    break
                sel = idx[lag]
                self.chip.pulse(sel, s.pulse_current, s.pulse_width)
                self.levels.reshape(-1)[lag] = self.chip.read(sel).level[:, 0].to(self.levels.device)
        self._read_all()

    def _train_sample(self, x: Tensor, eta: float) -> float:
        """One WTA step on the chip; returns the squared distance input-winner before the update."""
        s = self.settings
        w = self.weights()
        score = x @ w.T - 0.5 * (w * w).sum(1)
        c = int(score.argmax())
        self.wins[c] += 1
        diff = x - w[c]
        gate = torch.rand(self.inputs, generator=self.gen_gate) < (eta * diff.abs() * self.top).clamp(max=1.0)
        send = gate & (diff != 0)
        if bool(send.any()):
            sel = send.nonzero().reshape(-1)
            amplitude = torch.sign(diff[sel]) * s.pulse_current
            idx = self.index[c, sel]
            self.chip.pulse(idx, amplitude, s.pulse_width)
            self.levels[c, sel] = self.chip.read(idx).level[:, 0].to(self.levels.device)
        return float((diff * diff).sum())

    # ------------------------------------------------------------------ the run
    def run(self, ctx: RunContext) -> Iterator[Progress]:
        w = ctx.writer
        t_start = time.perf_counter() - self.wall_s
        if self.phase is Phase.INIT:
            self.marks["start"] = self._counters()
            with torch_threads(1):
                self._initialise()
            self.marks["init"] = self._counters()
            if w is not None:
                w.write("train/init_levels", self.levels.cpu().numpy().astype(np.int8))
            self.phase = Phase.TRAIN
            self.cursor.shuffle()
            self.wall_s = time.perf_counter() - t_start
            yield self.safe_point("init", {"energy_j": self._counters()[0]})
        cur = self.cursor
        while self.phase is Phase.TRAIN:
            if cur.pos == 0:
                self._read_all()  # one full crossbar read per epoch re-synchronises the shadow
                self.wins.zero_()
            epoch, done0 = cur.epoch, cur.done
            with torch_threads(1):
                d2 = [self._train_sample(self.x_train[int(i)], self.eta(done0 + k))
                      for k, i in enumerate(cur.next_batch())]
            finished = cur.advance(len(d2)) and cur.next_epoch()
            energy, pulses, reads = self._counters()
            self.wall_s = time.perf_counter() - t_start
            metrics = {"epoch": epoch, "samples": done0 + len(d2), "eta": self.eta(done0 + len(d2) - 1),
                       "distance2": float(np.mean(d2)), "clusters_used": int((self.wins > 0).sum()),
                       "pulses": pulses, "reads": reads, "energy_j": energy, "wall_s": self.wall_s}
            if w is not None:
                w.append("train/metrics", np.array([tuple(metrics[k] for k in METRICS_DTYPE.names)], dtype=METRICS_DTYPE))
            if finished:
                self.phase = Phase.READOUT
                self.marks["train"] = self._counters()
            yield self.safe_point("train", metrics)
        if self.phase is Phase.READOUT:
            self._read_all()  # the inference weights: one read of the whole matrix
            self.marks["inference"] = self._counters()
            with torch_threads(1):
                self._readout(w)
            self.phase = Phase.DONE
            self.wall_s = time.perf_counter() - t_start
            yield self.safe_point("readout", self._headline(), last=True)

    # ------------------------------------------------------------------ read-out and baselines
    def float_wta(self) -> Tensor:
        """The same WTA layer with float weights: same init samples, sample order and eta schedule."""
        s = self.settings
        gen = torch.Generator().manual_seed(self.seed)
        w = torch.zeros(s.clusters, self.inputs)
        if s.init == "data":
            order = torch.randperm(len(self.x_train), generator=gen)
            init = order[: s.clusters] if s.clusters <= len(order) else order[torch.arange(s.clusters) % len(order)]
            w = self.x_train[init].clone()
        done = 0
        for _ in range(s.epochs):
            perm = torch.randperm(len(self.x_train), generator=gen)
            for i in perm.tolist():
                x = self.x_train[i]
                c = int((x @ w.T - 0.5 * (w * w).sum(1)).argmax())
                w[c] += self.eta(done) * (x - w[c])
                done += 1
        return w

    def _readout(self, writer) -> None:
        s = self.settings
        temp = s.readout_temperature
        classes = self.data.classes
        y_tr, y_te = self.data.y_train, self.data.y_test
        chip_w = self.weights()
        h_tr, h_te = cluster_outputs(self.x_train, chip_w, temp), cluster_outputs(self.x_test, chip_w, temp)
        if s.baselines:
            float_w = self.float_wta()
            f_tr, f_te = cluster_outputs(self.x_train, float_w, temp), cluster_outputs(self.x_test, float_w, temp)
        shape = (len(s.labels_per_class), s.label_draws)
        acc, acc_f, acc_lr = (np.full(shape, np.nan) for _ in range(3))
        gen = torch.Generator().manual_seed(self.seed + 2_000_003)
        for a, n in enumerate(s.labels_per_class):
            for d in range(s.label_draws if n > 0 else 1):
                sub = labelled_subset(y_tr, n, classes, gen)
                state = gen.get_state()
                v = delta_rule(h_tr[sub], y_tr[sub], classes, epochs=s.readout_epochs, lr=s.readout_lr, gen=gen)
                acc[a, d] = float((readout_predict(v, h_te) == y_te).float().mean())
                if s.baselines:
                    gen_f = torch.Generator()
                    gen_f.set_state(state)  # same delta-rule order as the chip's read-out
                    v = delta_rule(f_tr[sub], y_tr[sub], classes, epochs=s.readout_epochs, lr=s.readout_lr, gen=gen_f)
                    acc_f[a, d] = float((readout_predict(v, f_te) == y_te).float().mean())
                    acc_lr[a, d] = logistic_regression_accuracy(self.data.x_train[sub], y_tr[sub], self.data.x_test, y_te)
        self.results = {"accuracy": torch.from_numpy(acc), "accuracy_float_wta": torch.from_numpy(acc_f),
                        "accuracy_logreg": torch.from_numpy(acc_lr)}
        e0, p0, r0 = self.marks["start"]
        e1, p1, r1 = self.marks["init"]
        e2, p2, r2 = self.marks["train"]
        e3, p3, r3 = self.marks["inference"]
        self.energy = {"init_j": e1 - e0, "training_j": e2 - e1, "learning_j": e2 - e0, "inference_j": e3 - e2,
                       "init_pulses": p1 - p0, "training_pulses": p2 - p1, "training_reads": r2 - r1,
                       "inference_reads": r3 - r2}
        if writer is not None:
            writer.write("train/levels", self.levels.cpu().numpy().astype(np.int8))
            writer.write("readout/labels_per_class", np.array(s.labels_per_class, dtype=np.int64))
            writer.write("readout/accuracy", acc)
            writer.write("readout/accuracy_float_wta", acc_f)
            writer.write("readout/accuracy_logreg", acc_lr)
            writer.write("energy", np.array([tuple(self.energy[k] for k in ENERGY_DTYPE.names)], dtype=ENERGY_DTYPE))

    # ------------------------------------------------------------------ results
    def accuracy_table(self) -> list[dict[str, Any]]:
        """One row per labels-per-class entry: mean and std over draws, chip and baselines."""
        rows = []
        for a, n in enumerate(self.settings.labels_per_class):
            row = {"labels_per_class": "all" if n == 0 else n}
            for key in ("accuracy", "accuracy_float_wta", "accuracy_logreg"):
                vals = self.results[key][a].cpu().numpy()
                vals = vals[~np.isnan(vals)]
                row[key], row[key + "_std"] = mean_std(list(vals)) if len(vals) else (float("nan"), 0.0)
            rows.append(row)
        return rows

    def _headline(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if not self.results:
            return out
        for row in self.accuracy_table():
            tag = row["labels_per_class"]
            out[f"accuracy_{tag}"] = row["accuracy"]
            if self.settings.baselines:
                out[f"float_wta_{tag}"] = row["accuracy_float_wta"]
                out[f"logreg_{tag}"] = row["accuracy_logreg"]
        return out

    def summary(self) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {"protocol": self.kind, "data": s.data, "clusters": s.clusters, "inputs": self.inputs,
                               "levels": self.top + 1, "epochs_done": self.cursor.epoch, "phase": self.phase.value,
                               "wall_s": self.wall_s}
        out.update(self._headline())
        if self.energy:
            out.update({f"energy_{k}" if k.endswith("_j") else k: v for k, v in self.energy.items()})
        return out
