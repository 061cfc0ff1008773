"""Hebbian learning with stochastic binary STT-MTJ synapses (after Zhou et al.; REFERENCES.md section 4).

Network: binary input pulses (binarised features, 8x8 digits by default) drive, through binary
STT-MTJ synapses, ``neurons`` leaky integrate-and-fire (LIF) output neurons with winner-take-all
(WTA) lateral inhibition.

**Inputs.** Features scaled to [0, 1] and binarised at ``binarise_threshold``. With
``complement = true`` (the default) every pixel drives two rows, the pixel and its complement
(an "off" pulse), so an input always has as many active rows as pixels, and a synapse can learn
that a pixel should be *off* (documented choice; without it a neuron with many P synapses wins
every input it covers. The results table reports both).

**Synapses and weights.** Synapse (neuron j, row i) is ``mtjs_per_synapse`` (k) MTJs, chip
indices ``(j * rows + i) * k + m``. The protocol reads each MTJ's resistance (ohms) and uses its
conductance ``G = 1/R``. Negative weights come from a differential read against a reference
column at the midpoint conductance ``G_ref = (G_P + G_AP) / 2``, with G_P and G_AP the mean
conductances of the MTJs last read as P and as AP (the reference is re-estimated at every full
read). The weight is ``w = mean_m (G - G_ref) / ((G_P - G_AP) / 2)``: about +1 when all k MTJs
are in P (low resistance, potentiated), -1 when all are in AP, the fraction in P in between.

**Neurons.** For a sample, row currents ``I_j = sum_i x_i w_ji`` (in units of half the
conductance window) charge ``v_j <- (1 - leak) v_j + I_j`` for up to ``steps`` time steps; the
first neuron to reach ``theta_rest + theta_j`` fires and inhibits the others (ties: the larger
overshoot). The crossing time is computed in closed form (the exact discrete-time LIF with a
constant input; the tests check it against a step-by-step simulation). No spike within the
window: no learning for that sample (reported as ``silent``).

**Learning.** When neuron j fires, one ``chip.pulse`` call sends every MTJ of neuron j a pulse
of ``pulse_width`` seconds: a *potentiation* pulse (negative voltage, AP -> P, toward high
conductance) to the MTJs of rows with an active input, a *depression* pulse (positive voltage,
P -> AP) to the others. The pulse voltages are set from the calibrated thermal law (Koch et
al.; ``delta_*``, ``vc0_*``, ``tau0`` settings: the calibration values, by default the simulated
station's nominal ones) so that each switches with probability ``p``: the switching probability
is the learning rate. ``p`` is fixed (``p_end`` omitted or equal) or annealed geometrically from
``p_start`` to ``p_end`` over the run; the voltages are recomputed at every sample. The depression
pulses may switch with a smaller (or larger) probability ``depression_ratio * p`` (default 1,
symmetric: with complement rows, smaller depression measured worse, docs/results.md).

**What is read, and when.** A shadow of the conductances last read: the whole array is read at
the start of every epoch (one full crossbar read, which also re-estimates G_P, G_AP and G_ref),
and after every learning step the MTJs just pulsed are read back, so the winner of the next
sample is computed from measured conductances.

**Homeostasis.** Adaptive thresholds: the winner's ``theta_j`` grows by ``theta_plus`` and all
thresholds decay with time constant ``theta_tau`` samples, so a few neurons cannot win
everything (``homeostasis = false`` turns it off, for the comparison in the tests and results).

**Labels and accuracy.** Training never sees a label (a test checks that shuffled training labels
give the same chip state). After training the learning is switched off and the thresholds set to
zero (only ``theta_rest``), and the training images with their labels are presented once more to
name the neurons. ``readout = "vote"`` (default): a soft WTA with ``vote_k`` winners, the
``vote_k`` first neurons to fire (with equal thresholds and constant currents, the order of the
row currents); each neuron's class-response rates are how often it is among the first
``vote_k`` for a training sample of each class (per sample of that class), normalised to sum 1
per neuron; a test sample gets the class with the largest sum of the rates of its ``vote_k``
first neurons. ``readout = "winner"``: every neuron gets the majority class of the training
samples it wins, a test sample the label of its winner (when no neuron fires, the neuron closest
to threshold at the end of the window; counted as ``silent``). Both are reported
(``accuracy``, ``accuracy_winner``).

**Baseline (same shape, float).** The same network with float weights in [-1, 1] and the
expected value of the stochastic rule for the winner, ``w_j += p (1 - w_j)`` on active rows and
``w_j -= r p (1 + w_j)`` on the others (r = ``depression_ratio``; for r = 1 this is
``w_j += p (2 x - 1 - w_j)``), with the same LIF, homeostasis, ``p`` schedule, sample order and
read-out.

**Energy** (joules, ``chip.counters.energy_j``): learning = all pulses and reads of training;
per inference = one differential crossbar evaluation, i.e. the energy of the final full read
scaled by the mean fraction of active input rows (only rows with an input pulse are biased).
"""

from __future__ import annotations

import math
import time
from enum import Enum
from typing import Any, Iterator, Literal

import numpy as np
import torch
from pydantic import Field

from analysis.switching_laws import thermal_switching_voltage
from labctl.engine import Progress, RunContext
from labctl.families.stt_mtj import STTMTJ
from labctl.store import DatasetSpec

from . import datasets
from .base import ChipProtocol, EpochCursor, Kind, Settings
from .readout import class_response_rates, majority_labels, vote_predict
from .training import torch_threads

Tensor = torch.Tensor

METRICS_DTYPE = np.dtype([
    ("epoch", "<i4"), ("samples", "<i8"), ("p", "<f8"), ("silent", "<i4"), ("max_win_fraction", "<f8"),
    ("neurons_used", "<i4"), ("pulses", "<i8"), ("reads", "<i8"), ("energy_j", "<f8"), ("wall_s", "<f8"),
])
ENERGY_DTYPE = np.dtype([
    ("learning_j", "<f8"), ("inference_j", "<f8"), ("learning_pulses", "<i8"), ("learning_reads", "<i8"),
    ("potentiation_pulses", "<i8"), ("depression_pulses", "<i8"),
])


class HebbianSettings(Settings):
    """Settings of train-hebbian. Voltages in volts, widths and tau0 in seconds, thresholds in units of
    half the conductance window times active rows."""

    data: Literal["iris", "breast_cancer", "wine", "digits", "mnist", "fashion-mnist"] = "digits"
    test_fraction: float = Field(0.25, gt=0, lt=1)
    data_dir: str | None = Field(None, description="folder of an MNIST-format set's IDX files (default for "
                                 "fashion-mnist: $LABCTL_DATA, else /usr/share/datasets/fashion-mnist)")
    image_pool: int = Field(1, ge=1, le=4, description="average-pool factor of MNIST-format 28x28 images (1: 784 inputs)")
    test_limit: int | None = Field(None, ge=10, description="use only the first N test samples (None: all)")
    split_seed: int = Field(0, ge=0)
    binarise_threshold: float = Field(0.5, gt=0, lt=1)
    complement: bool = Field(True, description="also drive a complement row per feature (pixel off)")
    limit_train: int | None = Field(None, ge=10, description="use only the first N training samples (tests)")
    neurons: int = Field(100, ge=2, le=100_000)
    mtjs_per_synapse: int = Field(1, ge=1, le=64, description="compound synapse: k MTJs, weight = fraction in P")
    epochs: int = Field(4, ge=1, le=1000)
    p_start: float = Field(0.1, gt=0, lt=1, description="switching probability per learning pulse (start)")
    p_end: float | None = Field(None, gt=0, lt=1, description="annealed to this (geometric); None: fixed p_start")
    depression_ratio: float = Field(1.0, gt=0, le=100, description="switching probability of the depression pulses "
                                    "(P -> AP) as a fraction of p; 1: symmetric")
    pulse_width: float = Field(1e-8, gt=0, description="learning pulse width, seconds")
    delta_p2ap: float = Field(45.0, gt=0, description="calibrated thermal stability, P -> AP")
    vc0_p2ap: float = Field(0.8, gt=0, description="calibrated critical voltage P -> AP, volts")
    delta_ap2p: float = Field(42.0, gt=0, description="calibrated thermal stability, AP -> P")
    vc0_ap2p: float = Field(0.6, gt=0, description="calibrated critical voltage AP -> P, volts")
    tau0: float = Field(1e-9, gt=0, description="attempt time, seconds")
    leak: float = Field(0.1, gt=0, lt=1, description="membrane leak per time step")
    steps: int = Field(20, ge=1, le=10_000, description="time steps per presentation")
    theta_rest: float = Field(5.0, ge=0, description="resting threshold")
    homeostasis: bool = True
    theta_plus: float = Field(10.0, ge=0, description="threshold increase of the winner")
    theta_tau: float = Field(3000.0, gt=0, description="threshold decay time constant, samples")
    init_p: float = Field(0.5, ge=0, le=1, description="fraction of MTJs randomly switched to AP at the start")
    batch: int = Field(100, ge=1, description="samples between safe points (one metrics row each)")
    readout: Literal["winner", "vote"] = Field("vote", description="winner: label of the first neuron to fire; "
                                               "vote: class-response rates summed over the vote_k first neurons")
    vote_k: int = Field(5, ge=1, description="neurons that vote (the first vote_k to fire), readout = vote")
    baseline: bool = True


def learning_voltages(s: HebbianSettings, p: float) -> tuple[float, float]:
    """(potentiation, depression) pulse voltages, volts, for switching probability ``p``: -V(AP->P) for
    probability p and +V(P->AP) for probability ``depression_ratio * p``."""
    v_pot = float(thermal_switching_voltage(p, s.pulse_width, s.delta_ap2p, s.vc0_ap2p, s.tau0))
    v_dep = float(thermal_switching_voltage(p * s.depression_ratio, s.pulse_width, s.delta_p2ap, s.vc0_p2ap, s.tau0))
    return -v_pot, v_dep


def lif_first_spike(current: Tensor, threshold: Tensor, leak: float, steps: int) -> tuple[Tensor, Tensor]:
    """Winner of a WTA layer of discrete-time LIF neurons driven by constant currents.

    ``v[t] = (1 - leak) v[t-1] + I`` from ``v[0] = 0``, t = 1..steps; a neuron fires at the first t
    with ``v[t] >= threshold``. ``current`` (m, N), ``threshold`` (N,) or (m, N). Returns
    ``(winner, fired)``: the first neuron to fire (ties: largest ``v - threshold`` at that step;
    where none fires within ``steps``, the one with the largest ``v[steps] - threshold``) and
    whether it fired. Closed form: ``v[t] = I (1 - a^t) / (1 - a)``, ``a = 1 - leak``.
    """
    a = 1.0 - leak
    current = current.double()
    threshold = torch.as_tensor(threshold, dtype=torch.float64).expand_as(current)
    ratio = threshold * leak / current  # need 1 - a^t >= ratio
    with torch.no_grad():
        t_cross = torch.where(
            current > 0,
            torch.where(ratio <= 0, torch.ones_like(ratio), torch.log1p(-ratio.clamp(max=1.0 - 1e-15)) / math.log(a)),
            torch.full_like(ratio, math.inf),
        )
        t_cross = torch.where((current > 0) & (ratio < 1), t_cross.clamp(min=1.0), torch.full_like(ratio, math.inf))
        t_int = torch.ceil(t_cross - 1e-9).clamp(min=1.0)
        # guard the rounding: make sure v[t_int] >= threshold, else step once more
        v_at = current * (1.0 - a ** t_int) / leak
        t_int = torch.where(v_at < threshold, t_int + 1.0, t_int)
        t_int = torch.where(torch.isfinite(t_cross), t_int, torch.full_like(t_int, math.inf))
        first = t_int.min(1).values
        fired = first <= steps
        t_eval = torch.where(fired, first, torch.full_like(first, float(steps))).unsqueeze(1)
        over = current * (1.0 - a ** t_eval) / leak - threshold
        over = torch.where(fired.unsqueeze(1) & (t_int != first.unsqueeze(1)), torch.full_like(over, -math.inf), over)
        winner = over.argmax(1)
    return winner, fired


def lif_simulate(current: Tensor, threshold: Tensor, leak: float, steps: int) -> tuple[Tensor, Tensor]:
    """Step-by-step reference of :func:`lif_first_spike` (slow; for tests)."""
    current = current.double()
    threshold = torch.as_tensor(threshold, dtype=torch.float64).expand_as(current)
    v = torch.zeros_like(current)
    winner = torch.full((len(current),), -1, dtype=torch.int64)
    for _ in range(steps):
        v = (1.0 - leak) * v + current
        over = v - threshold
        best = over.max(1)
        new = (winner < 0) & (best.values >= 0)
        winner = torch.where(new, best.indices, winner)
    fired = winner >= 0
    winner = torch.where(fired, winner, (v - threshold).argmax(1))
    return winner, fired


class Phase(str, Enum):
    INIT = "init"
    TRAIN = "train"
    EVAL = "eval"
    DONE = "done"


class TrainHebbian(ChipProtocol):
    """Stochastic Hebbian WTA learning on binary STT-MTJ synapses (see the module docstring)."""

    kind = "train-hebbian"
    settings_model = HebbianSettings
    families = (STTMTJ.name,)
    envelope_fields = {"pulse_width": "width"}
    resumable = {
        "phase": Kind.PHASE, "cursor": Kind.CURSOR, "conductance": Kind.TENSOR, "g_p": Kind.VALUE,
        "g_ap": Kind.VALUE, "theta": Kind.TENSOR, "wins": Kind.TENSOR, "epoch_wins": Kind.TENSOR,
        "gen_init": Kind.GENERATOR, "pulses_pot": Kind.VALUE, "pulses_dep": Kind.VALUE, "marks": Kind.VALUE,
        "wall_s": Kind.VALUE, "results": Kind.VALUE, "energy": Kind.VALUE,
    }
    fixed_safe_points = 2  # the initialisation, the evaluation

    @classmethod
    def derived_pulses(cls, settings: HebbianSettings) -> list:
        """The learning pulses at the start and end of the schedule (volts)."""
        out = []
        for key, p in (("p_start", settings.p_start), ("p_end", settings.p_end)):
            if p is None or p * settings.depression_ratio >= 1.0:  # the latter is refused when the protocol is built
                continue
            pot, dep = learning_voltages(settings, p)
            out += [(key, "amplitude", pot, "the potentiation pulse it gives"),
                    (key, "amplitude", dep, "the depression pulse it gives")]
        return out

    def __init__(self, name: str, settings: HebbianSettings, chip, seed: int = 0):
        super().__init__(name, settings, chip, seed)
        s = settings
        self.data = datasets.load_subset(s.data, test_fraction=s.test_fraction, seed=s.split_seed, path=s.data_dir,
                                         pool=s.image_pool, train_limit=s.limit_train, test_limit=s.test_limit)
        self.x_train = self.encode(self.data.x_train)
        self.y_train = self.data.y_train
        if s.limit_train is not None:
            self.x_train, self.y_train = self.x_train[: s.limit_train], self.y_train[: s.limit_train]
        self.x_test = self.encode(self.data.x_test)
        self.rows = self.x_train.shape[1]
        self.k = s.mtjs_per_synapse
        self.synapses = s.neurons * self.rows * self.k
        if self.synapses > chip.n:
            raise ValueError(f"{s.neurons} neurons x {self.rows} rows x {self.k} MTJs need {self.synapses} devices, "
                             f"but the chip has {chip.n}")
        self.index = torch.arange(self.synapses).reshape(s.neurons, self.rows, self.k)
        if max(s.p_start, s.p_end or s.p_start) * s.depression_ratio >= 1.0:
            raise ValueError(f"depression probability depression_ratio x p reaches "
                             f"{max(s.p_start, s.p_end or s.p_start) * s.depression_ratio:.3g}; it must stay below 1")
        for p in (s.p_start, s.p_end or s.p_start):  # refuse a schedule outside the envelope up front
            pot, dep = self.voltages(p)
            chip.envelope.check_pulse(torch.tensor([pot, dep]), torch.tensor(s.pulse_width), None)
        # --- resumable state
        self.phase = Phase.INIT
        self.cursor = EpochCursor(len(self.x_train), s.epochs, s.batch, seed)
        self.conductance = torch.zeros(s.neurons, self.rows, self.k, dtype=torch.float64)  # siemens, last read
        self.g_p = self.g_ap = 0.0
        self.theta = torch.zeros(s.neurons, dtype=torch.float64)
        self.wins = torch.zeros(s.neurons, dtype=torch.int64)  # whole training
        self.epoch_wins = torch.zeros(s.neurons, dtype=torch.int64)
        self.gen_init = torch.Generator().manual_seed(seed + 1_000_003)
        self.pulses_pot = 0
        self.pulses_dep = 0
        self.marks: dict[str, tuple[float, int, int]] = {}
        self.wall_s = 0.0
        self.results: dict[str, Any] = {}
        self.energy: dict[str, float] = {}

    # ------------------------------------------------------------------ encoding and laws
    def encode(self, x: Tensor) -> Tensor:
        """Binary input rows: binarised features, followed by their complements if ``complement``."""
        b = datasets.binarise(x, self.settings.binarise_threshold)
        return torch.cat([b, 1.0 - b], dim=1) if self.settings.complement else b

    def p_at(self, done: int) -> float:
        """Switching probability after ``done`` training samples (fixed, or geometric anneal)."""
        s = self.settings
        if s.p_end is None:
            return s.p_start
        frac = min(1.0, done / max(1, self.cursor.total - 1))
        return s.p_start * (s.p_end / s.p_start) ** frac

    def voltages(self, p: float) -> tuple[float, float]:
        """(potentiation, depression) pulse voltages, volts: -V(AP->P) for probability p and +V(P->AP) for
        probability ``depression_ratio * p``."""
        return learning_voltages(self.settings, p)

    # ------------------------------------------------------------------ chip access
    def _read(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        r = self.chip.read(idx.reshape(-1))
        return 1.0 / r.signal[:, 0].double().to(idx.device), r.level[:, 0].to(idx.device)

    def _read_all(self) -> None:
        g, level = self._read(self.index)
        self.conductance = g.reshape(self.conductance.shape).clone()
        in_p, in_ap = level == 0, level == 1
        # reference column: midpoint of the mean P and AP conductances seen in this read
        if bool(in_p.any()):
            self.g_p = float(g[in_p].mean())
        if bool(in_ap.any()):
            self.g_ap = float(g[in_ap].mean())

    def weights(self, conductance: Tensor | None = None) -> Tensor:
        """Differential weights (neurons, rows) in about [-1, 1] from conductances."""
        g = self.conductance if conductance is None else conductance
        g_ref = 0.5 * (self.g_p + self.g_ap)
        half = 0.5 * (self.g_p - self.g_ap)
        return ((g - g_ref) / half).mean(-1)

    def _counters(self) -> tuple[float, int, int]:
        c = self.chip.counters
        return c.energy_j, c.pulses, c.reads

    def _initialise(self) -> None:
        s = self.settings
        idx = self.index.reshape(-1)
        self.chip.reset(idx)  # all P
        if s.init_p > 0:
            flip = torch.rand(len(idx), generator=self.gen_init) < s.init_p
            if bool(flip.any()):
                # a strong P -> AP pulse: near-certain switching (read back, so failures are seen)
                v = float(thermal_switching_voltage(0.999, s.pulse_width, s.delta_p2ap, s.vc0_p2ap, s.tau0))
                v = min(v, 0.999 * self.chip.envelope.amplitude_max)  # stay strictly inside the envelope
                self.chip.pulse(idx[flip], v, s.pulse_width)
        self._read_all()

    def _learn(self, x: Tensor, p: float) -> tuple[bool, int]:
        """Present one sample: LIF WTA on the shadow weights, then the Hebbian pulses. Returns (fired, winner)."""
        s = self.settings
        current = (self.weights() @ x.double()).unsqueeze(0)
        threshold = s.theta_rest + (self.theta if s.homeostasis else torch.zeros_like(self.theta))
        winner, fired = lif_first_spike(current, threshold, s.leak, s.steps)
        if s.homeostasis:
            self.theta *= math.exp(-1.0 / s.theta_tau)
        if not bool(fired[0]):
            return False, -1
        j = int(winner[0])
        v_pot, v_dep = self.voltages(p)
        active = (x > 0).unsqueeze(1).expand(self.rows, self.k).reshape(-1)
        amplitude = torch.where(active, torch.tensor(v_pot), torch.tensor(v_dep))
        idx = self.index[j].reshape(-1)
        self.chip.pulse(idx, amplitude, s.pulse_width)
        self.pulses_pot += int(active.sum())
        self.pulses_dep += int((~active).sum())
        g, _ = self._read(idx)
        self.conductance[j] = g.reshape(self.rows, self.k)
        if s.homeostasis:
            self.theta[j] += s.theta_plus
        self.wins[j] += 1
        self.epoch_wins[j] += 1
        return True, j

    # ------------------------------------------------------------------ run file
    def describe(self) -> dict[str, DatasetSpec]:
        s = self.settings
        c = self.data.classes
        return {
            "train/metrics": DatasetSpec(METRICS_DTYPE, (None,), "", "one row per batch: epoch, samples seen, switching "
                                         "probability, samples without a spike, largest share of wins of one neuron "
                                         "this epoch, neurons that won this epoch, cumulative chip pulses, reads, "
                                         "energy (J), wall time (s)",
                                         hint={"view": "curve", "x": "samples", "y": ["max_win_fraction"]}),
            "train/wins": DatasetSpec(np.int64, (s.neurons,), "", "training samples won by each neuron"),
            "train/thresholds": DatasetSpec(np.float64, (s.neurons,), "", "adaptive thresholds at the end of training"),
            "train/state": DatasetSpec(np.int8, (s.neurons, self.rows, self.k), "", "final MTJ levels read (0 P, 1 AP)",
                                       hint={"view": "state_map", "label": "MTJ level (0 P, 1 AP)",
                                             "shape": [s.neurons, self.rows * self.k], "when": "end"}),
            "train/weights": DatasetSpec(np.float32, (s.neurons, self.rows), "", "final differential weights",
                                         hint={"view": "weights", "role": "control", "label": "differential weight",
                                               "shape": [s.neurons, self.rows], "when": "end"}),
            "eval/labels": DatasetSpec(np.int64, (s.neurons,), "", "class assigned to each neuron (-1: never won)"),
            "eval/class_rates": DatasetSpec(np.float64, (s.neurons, c), "", "class-response rates of each neuron "
                                            "(among the vote_k first to fire, per training sample of a class; "
                                            "normalised per neuron)"),
            "eval/accuracy": DatasetSpec(np.float64, (3,), "", "test accuracy [chip, float baseline (nan if off), "
                                         "chip with the single-winner read-out]"),
            "eval/confusion": DatasetSpec(np.int64, (c, c), "", "test confusion matrix of the chip [true, predicted]"),
            "energy": DatasetSpec(ENERGY_DTYPE, (1,), "J", "energy (J) and pulse/read counts of learning and inference",
                                  hint={"view": "energy"}),
        }

    # ------------------------------------------------------------------ the run
    def run(self, ctx: RunContext) -> Iterator[Progress]:
        w = ctx.writer
        t_start = time.perf_counter() - self.wall_s
        if self.phase is Phase.INIT:
            self.marks["start"] = self._counters()
            with torch_threads(1):
                self._initialise()
            self.marks["init"] = self._counters()
            self.cursor.shuffle()
            self.phase = Phase.TRAIN
            self.wall_s = time.perf_counter() - t_start
            yield self.safe_point("init")
        cur = self.cursor
        while self.phase is Phase.TRAIN:
            with torch_threads(1):
                if cur.pos == 0:
                    self._read_all()
                    self.epoch_wins.zero_()
                epoch, done0, batch = cur.epoch, cur.done, cur.next_batch().tolist()
                silent = 0
                for k, i in enumerate(batch):
                    fired, _ = self._learn(self.x_train[i], self.p_at(done0 + k))
                    silent += not fired
            finished = cur.advance(len(batch)) and cur.next_epoch()
            energy, pulses, reads = self._counters()
            self.wall_s = time.perf_counter() - t_start
            won = int(self.epoch_wins.sum())
            metrics = {"epoch": epoch, "samples": done0 + len(batch),
                       "p": self.p_at(done0 + len(batch) - 1), "silent": silent,
                       "max_win_fraction": float(self.epoch_wins.max()) / won if won else 0.0,
                       "neurons_used": int((self.epoch_wins > 0).sum()), "pulses": pulses, "reads": reads,
                       "energy_j": energy, "wall_s": self.wall_s}
            if w is not None:
                w.append("train/metrics", np.array([tuple(metrics[k] for k in METRICS_DTYPE.names)], dtype=METRICS_DTYPE))
            if finished:
                self.phase = Phase.EVAL
                self.marks["train"] = self._counters()
            yield self.safe_point("train", metrics)
        if self.phase is Phase.EVAL:
            self._read_all()
            self.marks["inference"] = self._counters()
            with torch_threads(1):
                self._evaluate(w)
            self.phase = Phase.DONE
            self.wall_s = time.perf_counter() - t_start
            yield self.safe_point("eval", self._headline(), last=True)

    # ------------------------------------------------------------------ evaluation and baseline
    def classify(self, weights: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Winners (and whether they fired) of samples ``x`` with learning off and thresholds at rest."""
        s = self.settings
        current = x.double() @ weights.double().T
        return lif_first_spike(current, torch.full((s.neurons,), s.theta_rest, dtype=torch.float64), s.leak, s.steps)

    def first_k(self, weights: Tensor, x: Tensor, k: int) -> Tensor:
        """The ``k`` first neurons to fire (m, k), in firing order, with learning off and thresholds at rest.

        All thresholds are equal (``theta_rest``) and the current is constant over the window, so a
        neuron's crossing time falls with its row current (and the end-of-window potential of one that
        does not fire rises with it): the firing order is the order of the row currents, largest first.
        Column 0 is the winner of :meth:`classify` (the tests check it).
        """
        current = x.double() @ weights.double().T
        return current.topk(k, dim=1).indices

    def accuracy_of(self, weights: Tensor, readout: str | None = None) -> tuple[float, Tensor, Tensor, Tensor, Tensor]:
        """(test accuracy, neuron labels, test predictions, fraction of silent test samples, class-response rates).

        Labels are used only here, after training: ``winner``: each neuron gets the majority class of
        the training samples it wins, a test sample the label of its winner; ``vote``: each neuron's
        class-response rates (how often it is among the ``vote_k`` first to fire, per training sample
        of each class, normalised per neuron), a test sample the class with the largest sum of the
        rates of its ``vote_k`` first neurons. The neuron labels reported are then the argmax rates.
        """
        s = self.settings
        readout = readout or s.readout
        k = 1 if readout == "winner" else min(s.vote_k, s.neurons)
        win_tr, _ = self.classify(weights, self.x_train)
        win_te, fired = self.classify(weights, self.x_test)
        top_tr = self.first_k(weights, self.x_train, k)
        rates = class_response_rates(top_tr, self.y_train, s.neurons, self.data.classes)
        if readout == "winner":
            labels = majority_labels(win_tr, self.y_train, s.neurons, self.data.classes)
            pred = labels[win_te]
        else:
            labels = torch.where(rates.sum(1) > 0, rates.argmax(1), torch.full((s.neurons,), -1, dtype=torch.int64))
            pred = vote_predict(rates, self.first_k(weights, self.x_test, k))
        acc = float((pred == self.data.y_test).float().mean())
        return acc, labels, pred, 1.0 - fired.double().mean(), rates

    def float_network(self) -> Tensor:
        """The same network with float weights and the expected update of the stochastic rule:
        ``w += p (1 - w)`` on active rows, ``w -= r p (1 + w)`` on the others (r = ``depression_ratio``)."""
        s = self.settings
        gen_order = torch.Generator().manual_seed(self.seed)
        gen_init = torch.Generator().manual_seed(self.seed + 1_000_003)
        flip = torch.rand(self.synapses, generator=gen_init) < s.init_p
        w = (1.0 - 2.0 * flip.double()).reshape(s.neurons, self.rows, self.k).mean(-1)
        theta = torch.zeros(s.neurons, dtype=torch.float64)
        order = torch.randperm(len(self.x_train), generator=gen_order)
        done = 0
        for _ in range(s.epochs):
            for i in order.tolist():
                x = self.x_train[i].double()
                thr = s.theta_rest + (theta if s.homeostasis else 0.0)
                winner, fired = lif_first_spike((w @ x).unsqueeze(0), thr, s.leak, s.steps)
                if s.homeostasis:
                    theta *= math.exp(-1.0 / s.theta_tau)
                if bool(fired[0]):
                    j = int(winner[0])
                    p = self.p_at(done)
                    w[j] += x * p * (1.0 - w[j]) - (1.0 - x) * p * s.depression_ratio * (1.0 + w[j])
                    if s.homeostasis:
                        theta[j] += s.theta_plus
                done += 1
            order = torch.randperm(len(self.x_train), generator=gen_order)
        return w

    def _evaluate(self, writer) -> None:
        s = self.settings
        weights = self.weights()
        acc, labels, pred, silent, rates = self.accuracy_of(weights)
        acc_winner = self.accuracy_of(weights, "winner")[0]
        acc_float = float("nan")
        if s.baseline:
            acc_float = self.accuracy_of(self.float_network())[0]
        c = self.data.classes
        confusion = torch.zeros(c, c, dtype=torch.int64)
        ok = pred >= 0
        confusion.index_put_((self.data.y_test[ok], pred[ok]), torch.ones(int(ok.sum()), dtype=torch.int64), accumulate=True)
        e0, p0, r0 = self.marks["start"]
        e2, p2, r2 = self.marks["train"]
        e3, _, _ = self.marks["inference"]
        active_fraction = float(self.x_test.mean())
        self.energy = {"learning_j": e2 - e0, "inference_j": (e3 - e2) * active_fraction,
                       "learning_pulses": p2 - p0, "learning_reads": r2 - r0,
                       "potentiation_pulses": self.pulses_pot, "depression_pulses": self.pulses_dep}
        wins = self.wins.double()
        self.results = {"accuracy": acc, "accuracy_winner": acc_winner, "accuracy_float": acc_float,
                        "silent_test": float(silent),
                        "neurons_labelled": int((labels >= 0).sum()),
                        "max_win_fraction": float(wins.max() / wins.sum()) if wins.sum() > 0 else 0.0,
                        "labels": labels}
        if writer is not None:
            state = (self.conductance < 0.5 * (self.g_p + self.g_ap)).to(torch.int8)  # 1 = AP (low conductance)
            writer.write("train/wins", self.wins.cpu().numpy())
            writer.write("train/thresholds", self.theta.cpu().numpy())
            writer.write("train/state", state.cpu().numpy())
            writer.write("train/weights", weights.float().cpu().numpy())
            writer.write("eval/labels", labels.cpu().numpy())
            writer.write("eval/class_rates", rates.cpu().numpy())
            writer.write("eval/accuracy", np.array([acc, acc_float, acc_winner]))
            writer.write("eval/confusion", confusion.cpu().numpy())
            writer.write("energy", np.array([tuple(self.energy[k] for k in ENERGY_DTYPE.names)], dtype=ENERGY_DTYPE))

    # ------------------------------------------------------------------ results
    def _headline(self) -> dict[str, float]:
        return {k: v for k, v in self.results.items() if k != "labels"}

    def summary(self) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {"protocol": self.kind, "data": s.data, "neurons": s.neurons, "rows": self.rows,
                               "mtjs_per_synapse": self.k, "p_start": s.p_start, "p_end": s.p_end if s.p_end else s.p_start,
                               "epochs_done": self.cursor.epoch, "phase": self.phase.value, "wall_s": self.wall_s}
        out.update(self._headline())
        if self.energy:
            out.update({f"energy_{k}" if k.endswith("_j") else k: v for k, v in self.energy.items()})
        return out
