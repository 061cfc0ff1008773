"""Stochastic binary DW synapses trained with the mean/variance rule (Ellis et al. 2023; REFERENCES.md section 1).

One layer, ``D`` binary inputs -> ``C`` output neurons. Synapse ``(i, j)`` is the DW nanowire at chip
index ``i * D + j``; its trained parameter is the amplitude ``h_ij`` (tesla) of the field pulse it
gets, plus one float bias per output neuron (periphery). A pulse switches the wire with
probability ``p_ij = (1 - a) + a * sigmoid(dx * (h_ij - x0))`` (``x0``, ``dx``, ``a`` per wire, from
the calibration run at the start, or nominal values from the settings).

Forward, with ``N`` measurements per synapse: for every sample ``b`` and every active input ``j``
(``x_bj = 1``) synapse ``(i, j)`` is tried ``N`` times (reset + pulse + read) and ``k_bij`` switched
trials are counted; the neuron's measured pre-activation is ``Y_bi = sum_j x_bj k_bij / N``.
Backward goes through the calibrated law (local reparameterisation): ``mu = sum_j x_j p_ij``,
``sigma^2 = sum_j x_j p_ij (1 - p_ij) / N``, ``eps = (Y - mu) / sigma`` without gradient, and the
logits are ``mu + eps * sigma + bias`` -- numerically ``Y + bias``, with gradients through both mu and
sigma. ``N`` enters the gradient only through sigma.

Three ways of producing ``Y`` (setting ``forward``):

- ``chip``: in-situ, chip in the loop. One ``SynapseArray.trial`` call per minibatch covers every
  (sample, active input, output) triple with ``repeats = N``: the index array repeats synapse
  indices once per sample that needs them, so each pair gets its own independent binomial count.
- ``model``: ex-situ. ``Y`` is drawn from the calibrated law in torch (binomial counts); after
  training, the trained amplitudes are used on the chip and the test accuracy is measured there.
- ``continuous``: the continuous-probability limit (``N -> infinity``): logits ``mu + bias``,
  deterministic; tested the same way (no chip after calibration).

The trained amplitudes are clamped into the station envelope after every optimiser step and
again before any pulse. The trained parameter is kept in units of ``amplitude_unit`` (default
1 mT) so that Adam's learning rate (0.02 in the paper) has the paper's meaning.
"""

from __future__ import annotations

import math
import time
from enum import Enum
from typing import Any, Iterator, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from analysis.switching_laws import logistic_depinning
from labctl.chip import Counters, SynapseArray
from labctl.engine import Progress, RunContext
from labctl.families.dw_nanowire import DWNanowire
from labctl.store import DatasetSpec

from . import datasets
from .base import ChipProtocol, EpochCursor, Kind
from .calibration import Calibration, CalibrationSettings
from .training import (
    COUNTER_DTYPE, METRICS_DTYPE, Prepared, TrainingSettings, counters_delta, counters_row, inward_f32, prepare_data, torch_threads, train_float, training_specs,
)

Tensor = torch.Tensor
Forward = Literal["chip", "model", "continuous"]

#: One row of ``test/n_sweep`` per N (0: the continuous limit).
N_SWEEP_DTYPE = np.dtype([("measurements", "<i8"), ("accuracy", "<f8"), ("accuracy_std", "<f8"),
                          ("trials_per_inference", "<f8"), ("energy_per_inference_j", "<f8")])


# ---------------------------------------------------------------------------- the rule (pure tensors)
def meanvar_logits(x: Tensor, p: Tensor, n_meas: int, y: Tensor, bias: Tensor) -> Tensor:
    """Logits of the mean/variance rule: ``mu + eps * sigma + bias`` with ``eps`` detached.

    x: ``(B, D)`` binary inputs; p: ``(C, D)`` switching probabilities (differentiable);
    n_meas: measurements per synapse N; y: ``(B, C)`` measured (or sampled) pre-activations
    ``sum_j x_j k_j / N``; bias: ``(C,)``. Returns ``(B, C)``, numerically ``y + bias``.
    """
    mu = x @ p.T
    var = x @ (p * (1.0 - p)).T / n_meas
    sigma = var.clamp_min(1e-12).sqrt()
    eps = ((y - mu) / sigma).detach()
    return mu + eps * sigma + bias


def active_pairs(x: Tensor, classes: int) -> tuple[Tensor, Tensor]:
    """For binary ``x (B, D)``: the sample of each active input, and the synapse indices it drives.

    Returns ``rows (M,)`` and ``synapses (M, C)`` with ``synapses[m, i] = i * D + j_m`` for the m-th
    active (sample, input) pair; one row of ``synapses`` per pair, so a synapse index appears once
    per sample that uses it.
    """
    rows, cols = x.nonzero(as_tuple=True)
    d = x.shape[1]
    synapses = cols.unsqueeze(1) + d * torch.arange(classes).unsqueeze(0)
    return rows, synapses


def measure_on_chip(chip: SynapseArray, x: Tensor, h: Tensor, width: float, n_meas: int, offset: int = 0) -> Tensor:
    """Measured pre-activations ``Y (B, C)``: one batched ``trial`` call over all active pairs.

    h: ``(C, D)`` amplitudes in tesla, already inside the envelope; width in seconds; offset: chip
    index of the layer's synapse (0, 0) (layers of a multi-layer network lie one after the other).
    """
    classes = h.shape[0]
    rows, syn = active_pairs(x, classes)
    idx = syn.reshape(-1)
    counts = chip.trial(idx + offset, h.reshape(-1)[idx], width, n_meas).view(-1, classes).to(x.device, x.dtype)
    return torch.zeros(x.shape[0], classes, dtype=x.dtype).index_add_(0, rows, counts) / n_meas


def sample_from_law(x: Tensor, p: Tensor, n_meas: int, gen: torch.Generator) -> Tensor:
    """Pre-activations ``Y (B, C)`` drawn from the law: one binomial count of N per active (sample, synapse)."""
    classes = p.shape[0]
    rows, syn = active_pairs(x, classes)
    q = p.reshape(-1)[syn.reshape(-1)]
    if n_meas == 1:
        counts = (torch.rand(q.shape, generator=gen, dtype=q.dtype) < q).to(x.dtype)
    else:
        counts = torch.binomial(torch.full_like(q, float(n_meas)), q, generator=gen).to(x.dtype)
    return torch.zeros(x.shape[0], classes, dtype=x.dtype).index_add_(0, rows, counts.view(-1, classes)) / n_meas


def binary_activation(z: Tensor, temperature: float) -> Tensor:
    """Binary hidden neuron ``1[z > 0]`` (the next layer's on/off input pulses), with a
    straight-through gradient: the value is the step, the gradient that of ``sigmoid(z / T)``.

    z: ``(B, H)`` pre-activations in switched-count / N units; temperature T in the same units.
    """
    hard = (z > 0).to(z.dtype)
    if not z.requires_grad:
        return hard
    soft = torch.sigmoid(z / temperature)
    return hard + (soft - soft.detach())


def fraction_mid(p: Tensor, lo: float = 0.1, hi: float = 0.9) -> float:
    """Fraction of synapses whose switching probability lies strictly between ``lo`` and ``hi``."""
    return float(((p > lo) & (p < hi)).float().mean())


def reduce_data(data: Prepared, pool: int, classes: int | None) -> Prepared:
    """A smaller problem: square images max-pooled by ``pool``, and only the samples of classes < ``classes``.

    On binary inputs the max-pool is the OR of each ``pool x pool`` block (the same as pooling
    before binarising). Used for reduced cases, e.g. chip in the loop over a socket bench.
    """
    if pool > 1:
        side = math.isqrt(data.features)
        if side * side != data.features or side % pool:
            raise ValueError(f"pool = {pool} needs square images whose side it divides; {data.name} has "
                             f"{data.features} inputs")
        for part in ("x_train", "x_val", "x_test"):
            setattr(data, part, datasets.max_pool(getattr(data, part), side, pool))
    if classes is not None and classes < data.classes:
        for x, y in (("x_train", "y_train"), ("x_val", "y_val"), ("x_test", "y_test")):
            keep = getattr(data, y) < classes
            setattr(data, x, getattr(data, x)[keep])
            setattr(data, y, getattr(data, y)[keep])
        data.classes = classes
    if pool > 1 or classes is not None:
        data.split = dict(data.split, pool=pool, classes=data.classes, n_train_kept=len(data.y_train),
                          n_val_kept=len(data.y_val), n_test_kept=len(data.y_test))
    return data


# ---------------------------------------------------------------------------- settings
_NOMINAL = DWNanowire.law("logistic").nominal(DWNanowire.physics_model()())
"""x0 (T), dx (1/T), a of the nominal DW nanowire: the defaults of the physics model."""


class MeanVarSettings(TrainingSettings):
    """Settings of ``train-meanvar``. Amplitudes in tesla, widths in seconds."""

    forward: Forward = Field("chip", description="chip (in-situ) | model (ex-situ, tested on chip) | continuous")
    measurements: int = Field(1, ge=1, le=1_000_000, description="N: trials per synapse per sample")
    width: float = Field(1e-6, gt=0, description="field pulse width, seconds")
    amplitude_unit: float = Field(1e-3, gt=0, description="unit of the trained parameter, tesla (Adam steps in it)")
    init_spread: float = Field(0.1, ge=0, description="std of the initial amplitudes around x0, in amplitude_unit")
    test_passes: int = Field(16, ge=1, le=1000, description="stochastic test passes averaged")
    val_passes: int = Field(16, ge=1, le=1000, description="stochastic validation passes per epoch, averaged "
                            "for model selection (select)")
    calibrate: bool = Field(True, description="calibrate the wires first (else use x0, dx, a below)")
    calibration_start: float = Field(1.5e-3, description="calibration sweep start, tesla")
    calibration_stop: float = Field(8.0e-3, description="calibration sweep stop, tesla")
    calibration_points: int = Field(25, ge=3, le=1000)
    calibration_repeats: int = Field(200, ge=1, le=1_000_000)
    x0: float = Field(_NOMINAL["x0"], description="nominal law mid-point, tesla (calibrate = false)")
    dx: float = Field(_NOMINAL["dx"], gt=0, description="nominal law slope, 1/tesla")
    a: float = Field(_NOMINAL["a"], gt=0, le=1, description="nominal law contrast")
    pool: int = Field(1, ge=1, le=8, description="max-pool the square input images by this factor after "
                      "binarising (OR of each block; digits 8x8 -> 4x4 with 2): fewer inputs and wires")
    classes: int | None = Field(None, ge=2, le=1000, description="keep only the samples of classes 0 .. N-1 "
                                "(None: all); train_limit counts samples before this selection")
    hidden: list[int] = Field([], description="hidden layers of binary stochastic neurons (e.g. [100]: "
                              "196-100-10); each layer's synapses follow the previous layer's on the chip")
    hidden_init_spread: float = Field(1.0, ge=0, description="std of the hidden layers' initial amplitudes "
                                      "around x0, in amplitude_unit (breaks the hidden neurons' symmetry)")
    hidden_temperature: float = Field(2.0, gt=0, description="straight-through gradient of a hidden neuron: "
                                      "that of sigmoid(z / T), T in switched-count / N units")
    select: Literal["accuracy", "loss"] = Field(
        "accuracy", description="model selection and early stopping: mean validation accuracy over val_passes "
        "stochastic passes, or their mean validation loss (nats)")
    complement: bool = Field(False, description="feed every layer its binary inputs and their complements "
                             "(x, 1 - x): twice the synapses per layer, and a synapse can then count an input "
                             "being off, as a signed weight would")
    test_measurements: list[int] = Field([], description="also test the trained model at these N (e.g. "
                                         "[1, 2, 4, 8, 16, 32, 64]) and in the continuous limit: table test/n_sweep")

    @field_validator("hidden", "test_measurements")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(n < 1 for n in v):
            raise ValueError("entries must be >= 1")
        return v


# ---------------------------------------------------------------------------- the protocol
class Phase(str, Enum):
    CALIBRATE = "calibrate"
    TRAIN = "train"
    TEST = "test"
    DONE = "done"


class MeanVarTraining(ChipProtocol):
    """Single-layer classifier of stochastic binary DW synapses, mean/variance rule (see module docstring)."""

    kind = "train-meanvar"
    settings_model = MeanVarSettings
    families = (DWNanowire.name,)
    envelope_fields = {"width": "width"}  # trained amplitudes are clamped into the envelope
    resumable = {
        "phase": Kind.PHASE, "calibration": Kind.NESTED, "cursor": Kind.CURSOR,
        "h": Kind.TENSOR, "bias": Kind.TENSOR, "opt": Kind.OPTIMIZER, "law": Kind.TENSOR, "gen": Kind.GENERATOR,
        "hidden_h": Kind.TENSOR, "hidden_bias": Kind.TENSOR, "hidden_law": Kind.TENSOR, "n_sweep": Kind.VALUE,
        "best": Kind.VALUE, "bad_epochs": Kind.VALUE, "acc": Kind.VALUE, "marks": Kind.VALUE,
        "t_train": Kind.VALUE, "results": Kind.VALUE, "test_accuracies": Kind.VALUE,
    }
    fixed_safe_points = 2  # the law set, the test

    @classmethod
    def derived_pulses(cls, settings: MeanVarSettings) -> list:
        """The calibration sweep's ends, when it runs (tesla)."""
        if not settings.calibrate:
            return []
        return [("calibration_start", "amplitude", settings.calibration_start, ""),
                ("calibration_stop", "amplitude", settings.calibration_stop, "")]

    def __init__(self, name: str, settings: MeanVarSettings, chip: SynapseArray, seed: int = 0):
        super().__init__(name, settings, chip, seed)
        s = settings
        self.data = reduce_data(prepare_data(s, binary=True), s.pool, s.classes)
        self.inputs, self.c = self.data.features, self.data.classes
        #: layer sizes, e.g. [196, 100, 10]; self.fan_in: each layer's input width (doubled by
        #: ``complement``); self.d is the output layer's
        self.sizes = [self.inputs, *s.hidden, self.c]
        self.fan_in = [n * (2 if s.complement else 1) for n in self.sizes[:-1]]
        self.d = self.fan_in[-1]
        self.offsets = [0]
        for a, b in zip(self.fan_in, self.sizes[1:]):
            self.offsets.append(self.offsets[-1] + a * b)
        self.synapses = self.offsets[-1]
        if self.synapses > chip.n:
            shape = " -> ".join(map(str, self.sizes))
            raise ValueError(f"a {shape} network needs {self.synapses} synapses; the chip has {chip.n} "
                             f"(use a larger station, e.g. sim-dw-640 for 64 -> 10, sim-dw-1960 for 196 -> 10)")
        env = chip.envelope
        self.h_lo, self.h_hi = env.amplitude_min / s.amplitude_unit, env.amplitude_max / s.amplitude_unit
        self.a_lo, self.a_hi = inward_f32(env.amplitude_min, env.amplitude_max)
        if not env.width_min <= s.width <= env.width_max:
            raise ValueError(f"settings.width {s.width:g} s is outside the station envelope "
                             f"[{env.width_min:g}, {env.width_max:g}] s")
        self.calibration = None
        if s.calibrate:
            cal = CalibrationSettings(amplitude_start=s.calibration_start, amplitude_stop=s.calibration_stop,
                                      points=s.calibration_points, widths=[s.width], repeats=s.calibration_repeats,
                                      synapses=self.synapses, law="logistic")
            self.calibration = Calibration(f"{name}-calibration", cal, chip, seed)
        self.batches = math.ceil(len(self.data.y_train) / s.batch_size)
        self.gen = torch.Generator().manual_seed(seed)
        self.phase = Phase.CALIBRATE
        self.cursor = EpochCursor(len(self.data.y_train), s.max_epochs, s.batch_size, seed, order="keyed",
                                  epoch_end_points=1)
        # (C, D) trained amplitudes in amplitude_unit and (C,) biases: set after calibration (_init_params)
        self.h = torch.zeros(self.c, self.d, requires_grad=True)
        self.bias = torch.zeros(self.c, requires_grad=True)
        # hidden layers k = 0 .. L-2: (H_k, inputs_k) amplitudes, (H_k,) biases, law "x0_k", "dx_k", "a_k"
        self.hidden_h = [torch.zeros(b, a, requires_grad=True) for a, b in zip(self.fan_in[:-1], self.sizes[1:-1])]
        self.hidden_bias = [torch.zeros(b, requires_grad=True) for b in self.sizes[1:-1]]
        self.opt = torch.optim.Adam([self.h, self.bias, *self.hidden_h, *self.hidden_bias], lr=s.lr)
        self.law: dict[str, Tensor] = {k: torch.zeros(self.c, self.d) for k in ("x0", "dx", "a")}
        self.hidden_law: dict[str, Tensor] = {f"{k}_{i}": torch.zeros(hh.shape) for i, hh in enumerate(self.hidden_h)
                                              for k in ("x0", "dx", "a")}
        self.best: dict[str, Any] = {"val": -1.0, "score": -math.inf, "epoch": -1, "h": None, "bias": None}
        self.n_sweep: list[list[float]] = []  # rows of test/n_sweep
        self.bad_epochs = 0
        self.acc = {"loss": 0.0, "correct": 0, "seen": 0, "batches": 0}
        self.marks: dict[str, dict] = {}  # chip counters at stage boundaries
        self.t_train = 0.0
        self.results: dict[str, Any] = {}
        self.test_accuracies: list[float] = []

    # ------------------------------------------------------------------ run file
    def describe(self) -> dict[str, DatasetSpec]:
        c, d = self.c, self.d
        specs = dict(self.calibration.describe()) if self.calibration is not None else {}
        specs.update(training_specs(3))
        specs["train/metrics"] = specs["train/metrics"].with_hint(
            {"view": "curve", "x": "epoch", "y": ["train_loss", "val_loss", "train_accuracy", "val_accuracy"]})
        specs["energy/ledger"] = specs["energy/ledger"].with_hint({"view": "energy"})
        specs.update({
            "train/amplitude": DatasetSpec(np.float32, (None, c, d), "T", "trained pulse amplitudes at the end of each epoch",
                                           hint={"view": "weights", "role": "control", "label": "pulse amplitude",
                                                 "shape": [c, d], "when": "epoch"}),
            "model/law": DatasetSpec(np.float64, (3, c, d), "SI", "device law used as the model: x0 (T), dx (1/T), a",
                                     hint={"view": "weights", "role": "law", "law": "logistic", "shape": [c, d],
                                           "label": "switching probability"}),
            "model/amplitude": DatasetSpec(np.float64, (c, d), "T", "final (best-validation) pulse amplitudes",
                                           hint={"view": "weights", "role": "control", "label": "pulse amplitude",
                                                 "shape": [c, d], "when": "end"}),
            "model/probability": DatasetSpec(np.float64, (c, d), "", "switching probability of the final amplitudes",
                                             hint={"view": "weights", "role": "effective", "label": "switching probability",
                                                   "shape": [c, d], "when": "end", "range": [0, 1]}),
            "model/bias": DatasetSpec(np.float64, (c,), "", "output biases (units of switched-count / N)"),
            "test/accuracy": DatasetSpec(np.float64, (self.settings.test_passes,), "", "test accuracy of each stochastic pass"),
        })
        for k, hh in enumerate(self.hidden_h):
            hk, dk = hh.shape
            specs.update({
                f"model/hidden{k}/law": DatasetSpec(np.float64, (3, hk, dk), "SI", f"hidden layer {k}: device law "
                                                    "used as the model: x0 (T), dx (1/T), a"),
                f"model/hidden{k}/amplitude": DatasetSpec(np.float64, (hk, dk), "T", f"hidden layer {k}: final pulse amplitudes"),
                f"model/hidden{k}/bias": DatasetSpec(np.float64, (hk,), "", f"hidden layer {k}: thresholds (switched-count / N)"),
            })
        if self.settings.test_measurements:
            specs["test/n_sweep"] = DatasetSpec(N_SWEEP_DTYPE, (len(self.settings.test_measurements) + 1,), "",
                                                "the trained model tested at other N (N = 0: continuous limit): "
                                                "accuracy mean and std over test_passes, trials and energy (J) "
                                                "per inference")
        return specs

    # ------------------------------------------------------------------ model pieces
    def amplitude(self) -> Tensor:
        """Current amplitudes in tesla, clipped into the envelope (differentiable inside it).

        The clip is done in tesla against float32 bounds rounded inwards, so that no rounding of
        the unit conversion can put a pulse outside the envelope the chip checks.
        """
        return (self.h * self.settings.amplitude_unit).clamp(self.a_lo, self.a_hi)

    def probability(self, h_tesla: Tensor, layer: int | None = None) -> Tensor:
        """Switching probability of amplitudes ``h_tesla`` (T) under the law of the output layer
        (``layer`` None) or of hidden layer ``layer``."""
        if layer is None:
            return logistic_depinning(h_tesla, self.law["x0"], self.law["dx"], self.law["a"])
        law = self.hidden_law
        return logistic_depinning(h_tesla, law[f"x0_{layer}"], law[f"dx_{layer}"], law[f"a_{layer}"])

    def hidden_amplitude(self, layer: int) -> Tensor:
        """Amplitudes (T) of hidden layer ``layer``, clipped into the envelope like :meth:`amplitude`."""
        return (self.hidden_h[layer] * self.settings.amplitude_unit).clamp(self.a_lo, self.a_hi)

    def layers(self) -> list[tuple[Tensor, Tensor, Tensor, int]]:
        """(amplitudes in T, probabilities, biases, chip offset) of every layer, input to output."""
        out = []
        for k in range(len(self.hidden_h)):
            h_t = self.hidden_amplitude(k)
            out.append((h_t, self.probability(h_t, k), self.hidden_bias[k], self.offsets[k]))
        h_t = self.amplitude()
        out.append((h_t, self.probability(h_t), self.bias, self.offsets[-2]))
        return out

    def _set_law(self) -> None:
        s = self.settings
        shape = (self.c, self.d)
        if self.calibration is not None:
            fit = self.calibration.fit
            est = {k: fit.param(k).float() for k in ("x0", "dx", "a")}
            ok = fit.converged & torch.isfinite(fit.estimate).all(1)
            for k, v in est.items():  # a failed fit falls back to the median of the good ones
                median = v[ok].median() if bool(ok.any()) else torch.tensor(getattr(s, k))
                est[k] = torch.where(ok, v, median)
            est["a"] = est["a"].clamp(1e-6, 1.0)
            lo, hi = self.offsets[-2], self.offsets[-1]
            self.law = {k: v[lo:hi].reshape(shape).clone() for k, v in est.items()}
            self.hidden_law = {f"{k}_{i}": v[self.offsets[i]:self.offsets[i + 1]].reshape(hh.shape).clone()
                               for i, hh in enumerate(self.hidden_h) for k, v in est.items()}
        else:
            self.law = {k: torch.full(shape, float(getattr(s, k))) for k in ("x0", "dx", "a")}
            self.hidden_law = {f"{k}_{i}": torch.full(hh.shape, float(getattr(s, k)))
                               for i, hh in enumerate(self.hidden_h) for k in ("x0", "dx", "a")}

    def _init_params(self) -> None:
        s = self.settings
        g = torch.Generator().manual_seed(self.seed + 7919)
        h0 = self.law["x0"] / s.amplitude_unit + s.init_spread * torch.randn(self.c, self.d, generator=g)
        with torch.no_grad():  # in place: the optimiser holds h and bias
            self.h.copy_(h0.clamp(self.h_lo, self.h_hi))
            self.bias.zero_()
        if not self.hidden_h:
            return
        # hidden layers: wider initial spread (symmetry breaking); thresholds at minus the mean
        # pre-activation over (up to) 1024 training samples, so each neuron starts on about half the time
        g2 = torch.Generator().manual_seed(self.seed + 7920)
        a = self.layer_input(self.data.x_train[:1024])
        with torch.no_grad():
            for k, hh in enumerate(self.hidden_h):
                h0 = self.hidden_law[f"x0_{k}"] / s.amplitude_unit + s.hidden_init_spread * torch.randn(
                    hh.shape, generator=g2)
                hh.copy_(h0.clamp(self.h_lo, self.h_hi))
                mu = a @ self.probability(self.hidden_amplitude(k), k).T
                self.hidden_bias[k].copy_(-mu.mean(0))
                a = self.layer_input((mu + self.hidden_bias[k] > 0).float())

    def layer_input(self, a: Tensor) -> Tensor:
        """A layer's input pulses from binary activations ``a (B, n)``: ``a`` itself, or ``(a, 1 - a)``
        side by side ``(B, 2n)`` with ``complement`` (differentiable: the complement's gradient is minus)."""
        return torch.cat([a, 1.0 - a], dim=1) if self.settings.complement else a

    def _measure(self, x: Tensor, h_tesla: Tensor, p: Tensor, n_meas: int, on_chip: bool, offset: int = 0) -> Tensor:
        if on_chip:
            return measure_on_chip(self.chip, x, h_tesla, self.settings.width, n_meas, offset)
        return sample_from_law(x, p, n_meas, self.gen)

    def logits(self, x: Tensor, *, on_chip: bool, grad: bool = False, measurements: int | None = None,
               continuous: bool | None = None) -> Tensor:
        """Forward pass with the current parameters: measured, sampled, or continuous (``forward``).

        ``measurements``: N for this pass (default: the setting); ``continuous``: force (True) or
        forbid (False) the continuous limit (default: ``forward == "continuous"`` off the chip).
        Hidden layers pass binary activations ``1[Y + b > 0]`` on; with ``grad`` their gradient is
        the mean/variance rule's with respect to its inputs (see :func:`binary_activation`).
        """
        s = self.settings
        n = s.measurements if measurements is None else measurements
        cont = (s.forward == "continuous" and not on_chip) if continuous is None else continuous
        with torch.set_grad_enabled(grad):
            layers = self.layers()
            a = self.layer_input(x)
            for k, (h_t, p, b, offset) in enumerate(layers):
                if cont:
                    z = a @ p.T + b
                else:
                    with torch.no_grad():
                        y = self._measure(a.detach(), h_t.detach(), p.detach(), n, on_chip, offset)
                    z = meanvar_logits(a, p, n, y, b) if grad else y + b
                if k < len(layers) - 1:
                    a = self.layer_input(binary_activation(z, s.hidden_temperature))
            return z

    def train_step(self, x: Tensor, y: Tensor) -> tuple[float, int]:
        """One Adam step on a minibatch; returns (loss, number classified right)."""
        out = self.logits(x, on_chip=self.settings.forward == "chip", grad=True)
        loss = torch.nn.functional.cross_entropy(out, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.h.clamp_(self.h_lo, self.h_hi)
            for hh in self.hidden_h:
                hh.clamp_(self.h_lo, self.h_hi)
        return float(loss.detach()), int((out.detach().argmax(1) == y).sum())

    def evaluate(self, x: Tensor, y: Tensor, passes: int, *, on_chip: bool, chunk: int = 4096,
                 **forward) -> tuple[float, list[float]]:
        """Mean loss (nats) and per-pass accuracies of ``passes`` stochastic forward passes, each over
        the samples in chunks of ``chunk`` (bounded memory); ``forward``: see :meth:`logits`."""
        losses, accs = [], []
        for _ in range(passes):
            loss, right = 0.0, 0
            for b0 in range(0, len(y), chunk):
                out = self.logits(x[b0:b0 + chunk], on_chip=on_chip, **forward)
                yb = y[b0:b0 + chunk]
                loss += float(torch.nn.functional.cross_entropy(out, yb, reduction="sum"))
                right += int((out.argmax(1) == yb).sum())
            losses.append(loss / len(y))
            accs.append(right / len(y))
        return float(np.mean(losses)), accs

    # ------------------------------------------------------------------ the run
    def _mark(self, stage: str) -> None:
        self.marks[stage] = self.chip.counters.as_dict()

    def run(self, ctx: RunContext) -> Iterator[Progress]:
        with torch_threads(self.settings.threads):
            yield from self._run(ctx)

    def _run(self, ctx: RunContext) -> Iterator[Progress]:
        s, w, data = self.settings, ctx.writer, self.data
        if self.phase is Phase.CALIBRATE:
            if "start" not in self.marks:
                self._mark("start")
            if self.calibration is not None:
                for prog in self.calibration.run(ctx):
                    yield self.safe_point("calibrate", prog.metrics)
            self._set_law()
            self._init_params()
            self._mark("calibrated")
            if w is not None:
                w.write("model/law", torch.stack([self.law[k] for k in ("x0", "dx", "a")]).double().cpu().numpy())
            self.phase = Phase.TRAIN
            yield self.safe_point("calibrated")
        train_on_chip = s.forward == "chip"
        cur = self.cursor
        while self.phase is Phase.TRAIN:
            t0 = time.perf_counter()
            while not cur.end_of_epoch:
                sel = cur.next_batch()
                loss, correct = self.train_step(data.x_train[sel], data.y_train[sel])
                a = self.acc
                a["loss"] += loss
                a["batches"] += 1
                a["correct"] += correct
                a["seen"] += len(sel)
                cur.advance(len(sel))
                self.t_train += time.perf_counter() - t0
                t0 = time.perf_counter()
                yield self.safe_point("train", {"epoch": cur.epoch, "loss": a["loss"] / a["batches"],
                                                "accuracy": a["correct"] / a["seen"]})
            yield from self._end_epoch(w, train_on_chip)
        if self.phase is Phase.TEST:
            yield from self._test(w)

    def _end_epoch(self, w, on_chip: bool) -> Iterator[Progress]:
        s, data, epoch = self.settings, self.data, self.cursor.epoch
        val_loss, val_accs = self.evaluate(data.x_val, data.y_val, s.val_passes, on_chip=on_chip) if len(data.y_val) \
            else (float("nan"), [0.0])
        val = float(np.mean(val_accs))
        with torch.no_grad():
            p = self.probability(self.amplitude())
        since = counters_delta(self.chip.counters, Counters(**self.marks["calibrated"]))
        a = self.acc
        row = (epoch, a["loss"] / max(a["batches"], 1), a["correct"] / max(a["seen"], 1), val_loss, val,
               fraction_mid(p), since.pulses, since.reads, since.energy_j, self.t_train)
        if w is not None:
            w.append("train/metrics", np.array([row], dtype=METRICS_DTYPE))
            w.append("train/amplitude", self.amplitude().detach().cpu().numpy()[None])
        score = -val_loss if s.select == "loss" else val
        if score > self.best["score"]:
            self.best = {"val": val, "score": score, "epoch": epoch, "h": self.h.detach().clone(),
                         "bias": self.bias.detach().clone(),
                         "hidden_h": [hh.detach().clone() for hh in self.hidden_h],
                         "hidden_bias": [hb.detach().clone() for hb in self.hidden_bias]}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        self.acc = {"loss": 0.0, "correct": 0, "seen": 0, "batches": 0}
        if self.cursor.next_epoch() or self.bad_epochs >= s.patience:
            with torch.no_grad():
                self.h.copy_(self.best["h"])
                self.bias.copy_(self.best["bias"])
                for k in range(len(self.hidden_h)):
                    self.hidden_h[k].copy_(self.best["hidden_h"][k])
                    self.hidden_bias[k].copy_(self.best["hidden_bias"][k])
            self._mark("trained")
            self.phase = Phase.TEST
        yield self.safe_point("epoch", {"epoch": epoch, "loss": row[1], "accuracy": row[2], "val_accuracy": val,
                                        "fraction_mid": row[5]})

    def _test(self, w) -> Iterator[Progress]:
        s, data = self.settings, self.data
        on_chip = s.forward != "continuous"
        _, accs = self.evaluate(data.x_test, data.y_test, s.test_passes, on_chip=on_chip)
        self.test_accuracies = accs
        self._mark("tested")
        with torch.no_grad():
            h_t = self.amplitude()
            p = self.probability(h_t)
        cont = self.evaluate(data.x_test, data.y_test, 1, on_chip=False, continuous=True)[1][0]
        if s.test_measurements and not self.n_sweep:
            self.n_sweep = self.sweep_measurements(s.test_measurements, s.test_passes)
        test = counters_delta(Counters(**self.marks["tested"]), Counters(**self.marks["trained"]))
        train = counters_delta(Counters(**self.marks["trained"]), Counters(**self.marks["calibrated"]))
        cal = counters_delta(Counters(**self.marks["calibrated"]), Counters(**self.marks["start"]))
        inferences = s.test_passes * len(data.y_test)
        self.results = {
            "test_accuracy": float(np.mean(accs)),
            "test_accuracy_std": float(np.std(accs)),
            "continuous_test_accuracy": cont,
            "fraction_mid": fraction_mid(p),
            "best_epoch": self.best["epoch"],
            "epochs": self.cursor.epoch,
            "val_accuracy": self.best["val"],
            "train_time_s": self.t_train,
            "calibration_energy_j": cal.energy_j,
            "training_pulses": train.pulses,
            "training_reads": train.reads,
            "training_energy_j": train.energy_j,
            "inference_trials": test.trials / inferences if on_chip else 0.0,
            "inference_energy_j": test.energy_j / inferences if on_chip else 0.0,
        }
        if self.n_sweep:
            self.results["n_sweep_accuracy"] = {str(int(r[0])): r[1] for r in self.n_sweep}
        if s.float_baseline:
            fl = train_float(data, self.sizes, seed=self.seed, lr=s.lr, batch_size=s.batch_size,
                             max_epochs=s.max_epochs, patience=s.patience)
            self.results["float_test_accuracy"] = fl["test_accuracy"]
        if w is not None:
            w.write("model/amplitude", h_t.double().cpu().numpy())
            w.write("model/probability", p.double().cpu().numpy())
            w.write("model/bias", self.bias.detach().double().cpu().numpy())
            w.write("test/accuracy", np.array(accs))
            for k in range(len(self.hidden_h)):
                w.write(f"model/hidden{k}/law", torch.stack([self.hidden_law[f"{q}_{k}"] for q in ("x0", "dx", "a")])
                        .double().cpu().numpy())
                w.write(f"model/hidden{k}/amplitude", self.hidden_amplitude(k).detach().double().cpu().numpy())
                w.write(f"model/hidden{k}/bias", self.hidden_bias[k].detach().double().cpu().numpy())
            if self.n_sweep:
                w.write("test/n_sweep", np.array([tuple(r) for r in self.n_sweep], dtype=N_SWEEP_DTYPE))
            rows = [counters_row("calibration", cal), counters_row("training", train), counters_row("test", test)]
            w.write("energy/ledger", np.array(rows, dtype=COUNTER_DTYPE))
        self.phase = Phase.DONE
        yield self.safe_point("test", {"test_accuracy": self.results["test_accuracy"]}, last=True)

    def sweep_measurements(self, ns: list[int], passes: int) -> list[list[float]]:
        """Test the current (trained) model at every N in ``ns`` on the chip (``forward = "model"``
        runs too: the test is on the chip; ``"continuous"``: drawn from the law), plus the continuous
        limit (row N = 0), without retraining. Rows: N, mean and std of the per-pass test accuracy
        over ``passes`` passes, trials and energy (J) per inference."""
        data, on_chip = self.data, self.settings.forward != "continuous"
        rows = []
        for n in ns:
            before = self.chip.counters
            _, accs = self.evaluate(data.x_test, data.y_test, passes, on_chip=on_chip, measurements=n, continuous=False)
            spent = counters_delta(self.chip.counters, before)
            inferences = passes * len(data.y_test)
            rows.append([n, float(np.mean(accs)), float(np.std(accs)), spent.trials / inferences,
                         spent.energy_j / inferences])
        _, accs = self.evaluate(data.x_test, data.y_test, 1, on_chip=False, continuous=True)
        rows.append([0, accs[0], 0.0, 0.0, 0.0])
        return rows

    def load_trained(self, arrays: dict[str, np.ndarray]) -> None:
        """Set the trained model from a finished run file's datasets (``model/law``, ``model/amplitude``
        (T), ``model/bias`` and the hidden layers' ``model/hidden{k}/...``), for :meth:`sweep_measurements`
        on a chip opened from the run file's station (``labctl.runs.build``): a finished run tested at
        other N without retraining. Shapes are checked (ValueError naming the dataset)."""
        def get(name: str, shape: tuple) -> Tensor:
            if name not in arrays:
                raise ValueError(f"run file has no dataset {name!r} (not a finished train-meanvar run?)")
            a = torch.as_tensor(np.asarray(arrays[name]), dtype=torch.float32)
            if tuple(a.shape) != tuple(shape):
                raise ValueError(f"dataset {name!r} is shape {tuple(a.shape)}; this protocol expects {tuple(shape)}")
            return a
        unit = self.settings.amplitude_unit
        with torch.no_grad():
            law = get("model/law", (3, self.c, self.d))
            self.law = {k: law[i].clone() for i, k in enumerate(("x0", "dx", "a"))}
            self.h.copy_(get("model/amplitude", (self.c, self.d)) / unit)
            self.bias.copy_(get("model/bias", (self.c,)))
            for k, hh in enumerate(self.hidden_h):
                law = get(f"model/hidden{k}/law", (3, *hh.shape))
                self.hidden_law.update({f"{q}_{k}": law[i].clone() for i, q in enumerate(("x0", "dx", "a"))})
                hh.copy_(get(f"model/hidden{k}/amplitude", tuple(hh.shape)) / unit)
                self.hidden_bias[k].copy_(get(f"model/hidden{k}/bias", tuple(self.hidden_bias[k].shape)))
        self.phase = Phase.DONE

    # ------------------------------------------------------------------ results and resume
    def summary(self) -> dict[str, Any]:
        s = self.settings
        return {"protocol": self.kind, "forward": s.forward, "measurements": s.measurements, "data": s.data,
                "layers": self.sizes, "synapses": self.synapses, **self.results}
