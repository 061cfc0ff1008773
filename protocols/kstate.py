"""K-state DW-MTJ synapses, quantised training in-situ and ex-situ (Misba et al. 2022; REFERENCES.md section 2).

A multilayer perceptron (default 64-32-10, ReLU between layers) whose every weight is one K-state
DW-MTJ (K = the chip's ``levels``: 2, 3 or 5). Weight mapping: level ``l`` in ``0 .. K-1`` is the
weight ``w = 2 l / (K - 1) - 1`` in [-1, 1] (one device per weight, no differential pair); each
output neuron has a float gain (its read-out amplifier's, learnable) and a float bias (periphery).
Layer ``k``'s weight ``(o, i)`` is the synapse ``offset_k + o * fan_in + i`` on the chip.

Training (after Hubara et al.): full-precision *shadow* weights ``W`` in [-1, 1] accumulate the
Adam updates; the forward pass uses the device weights -- the levels actually held by the devices
-- and the straight-through estimator passes the gradient to ``W`` unchanged. Each synapse has a
*target* level, the one last programmed. After an update, a synapse is re-programmed only when
its shadow weight has moved past a level boundary by more than the noise tolerance ``margin``
(in level units): ``|pos - target| > 0.5 + margin`` with ``pos = (W + 1) / 2 * (K - 1)``; its new
target is ``round(pos)``. This hysteresis keeps weights that hover at a boundary from being
re-programmed on every step.

Write-verify programming (:func:`write_verify`): pulse every synapse toward its target with the
current that the device model says moves the wall the right number of sites
(``I = sign(d) * (I_c + |d| / (mobility * width))``, ``d`` = target - current level), read it back,
and re-pulse those that missed from where they landed, at most ``max_attempts`` rounds. Pulses
go through ``chip.pulse``, the first programming of a chip starts from ``chip.reset``.

- ``insitu``: the chip is in the loop. Every minibatch starts with one read of all synapses
  (``chip.read``), the forward pass uses the levels read, and after the update the changed synapses
  are re-programmed on the chip with write-verify.
- ``exsitu``: trained against the device model: a re-programmed synapse lands on a level drawn
  from the landing law (Gaussian spread ``sigma`` around the target, nearest site), no chip
  access. After training, the whole chip is programmed once with write-verify and tested.

Testing always reads the chip: one read of every synapse per test sample (as a crossbar inference
would), so the read energy per inference is measured, not estimated.
Currents in amperes, pulse widths in seconds, energies in joules.
"""

from __future__ import annotations

import math
import time
from enum import Enum
from typing import Any, Iterator, Literal

import numpy as np
import torch
from pydantic import Field

from analysis.switching_laws import level_probabilities
from labctl.chip import Counters, SynapseArray
from labctl.engine import Progress, RunContext
from labctl.families.dw_mtj import DWMTJ
from labctl.store import DatasetSpec

from .base import ChipProtocol, EpochCursor, Kind
from .training import (
    COUNTER_DTYPE, METRICS_DTYPE, TrainingSettings, counters_delta, counters_row, inward_f32,
    prepare_data, torch_threads, train_float, training_specs,
)

Tensor = torch.Tensor


# ---------------------------------------------------------------------------- pure pieces
def level_to_weight(level: Tensor, k: int) -> Tensor:
    """Weight in [-1, 1] of device level ``level`` (0 .. k-1)."""
    return 2.0 * level.float() / (k - 1) - 1.0


def weight_position(w: Tensor, k: int) -> Tensor:
    """Continuous level coordinate of shadow weight ``w`` in [-1, 1]: 0 .. k-1."""
    return (w.clamp(-1.0, 1.0) + 1.0) * 0.5 * (k - 1)


def retarget(w: Tensor, target: Tensor, k: int, margin: float) -> tuple[Tensor, Tensor]:
    """Hysteresis quantiser: new target levels and the mask of synapses whose target changed.

    A synapse changes only when its shadow weight lies more than ``0.5 + margin`` level units
    from its current target, i.e. past the level boundary by more than ``margin``.
    """
    pos = weight_position(w, k)
    changed = (pos - target.float()).abs() > 0.5 + margin
    new = torch.where(changed, pos.round().long().clamp(0, k - 1), target)
    return new, changed & (new != target)


def programming_current(distance: Tensor, i_c: Tensor | float, mobility: Tensor | float, width: float) -> Tensor:
    """Current (A) that moves the wall by ``distance`` sites in a pulse of ``width`` s (model inverse)."""
    d = distance.float()
    return torch.sign(d) * (i_c + d.abs() / (mobility * width))


def write_verify(chip: SynapseArray, idx: Tensor, target: Tensor, level: Tensor, *, i_c: float, mobility: float,
                 width: float, max_attempts: int) -> tuple[Tensor, int]:
    """Program synapses ``idx`` to levels ``target`` from their known levels ``level``, verifying by reading.

    Each round pulses every synapse not yet at its target (current from :func:`programming_current`,
    clipped into the envelope) and reads it back; at most ``max_attempts`` rounds. Returns the
    levels read last and the number of rounds used.
    """
    level = level.clone()
    lo, hi = inward_f32(chip.envelope.amplitude_min, chip.envelope.amplitude_max)
    rounds = 0
    for _ in range(max_attempts):
        miss = level != target
        if not bool(miss.any()):
            break
        sel = idx[miss]
        amp = programming_current(target[miss] - level[miss], i_c, mobility, width)
        amp = amp.clamp(lo, hi)
        chip.pulse(sel, amp, width)
        level[miss] = chip.read(sel).level[:, 0].to(level.device)
        rounds += 1
    return level, rounds


# ---------------------------------------------------------------------------- settings
class KStateSettings(TrainingSettings):
    """Settings of ``train-kstate``. Currents in amperes, widths in seconds, margin in level units."""

    mode: Literal["insitu", "exsitu"] = Field("insitu", description="chip in the loop, or trained on the model")
    hidden: list[int] = Field([32], description="hidden layer sizes (empty: a single layer)")
    binarise: bool = Field(False, description="binary inputs (default: analog inputs in [0, 1])")
    margin: float = Field(0.2, ge=0, le=0.5, description="noise tolerance beyond a level boundary, level units")
    width: float = Field(1e-8, gt=0, description="programming pulse width, seconds")
    i_c: float = Field(100e-6, gt=0, description="depinning current of the device model, amperes")
    mobility: float = Field(2e12, gt=0, description="wall mobility of the device model, sites per ampere-second")
    sigma: float = Field(0.15, gt=0, description="landing spread of the device model (ex-situ), sites")
    max_attempts: int = Field(5, ge=1, le=100, description="write-verify rounds")
    test_batch: int = Field(64, ge=1, description="test samples per chip read (one read per synapse per sample)")


# ---------------------------------------------------------------------------- the protocol
class Phase(str, Enum):
    PROGRAM = "program"
    TRAIN = "train"
    FINAL = "final"
    DONE = "done"


class KStateTraining(ChipProtocol):
    """Quantised MLP on K-state DW-MTJs with hysteresis and write-verify (see module docstring)."""

    kind = "train-kstate"
    settings_model = KStateSettings
    families = (DWMTJ.name,)
    envelope_fields = {"width": "width"}  # programming currents are clamped into the envelope
    resumable = {
        "phase": Kind.PHASE, "cursor": Kind.CURSOR, "w": Kind.TENSOR, "gain": Kind.TENSOR, "b": Kind.TENSOR,
        "opt": Kind.OPTIMIZER, "target": Kind.TENSOR, "levels": Kind.TENSOR, "gen": Kind.GENERATOR,
        "best": Kind.VALUE, "bad_epochs": Kind.VALUE, "acc": Kind.VALUE, "ledger": Kind.VALUE,
        "prog_stats": Kind.VALUE, "t_train": Kind.VALUE, "results": Kind.VALUE,
    }
    fixed_safe_points = 2  # the first programming, the final test

    def __init__(self, name: str, settings: KStateSettings, chip: SynapseArray, seed: int = 0):
        super().__init__(name, settings, chip, seed)
        s = settings
        self.k = chip.levels
        self.data = prepare_data(s, binary=s.binarise)
        self.sizes = [self.data.features, *s.hidden, self.data.classes]
        self.shapes = [(o, i) for i, o in zip(self.sizes[:-1], self.sizes[1:])]
        self.offsets = np.cumsum([0] + [o * i for o, i in self.shapes]).tolist()
        self.synapses = self.offsets[-1]
        if self.synapses > chip.n:
            raise ValueError(f"a {'-'.join(map(str, self.sizes))} network needs {self.synapses} synapses; the chip has "
                             f"{chip.n} (use a larger station, e.g. sim-dwmtj5-mlp)")
        env = chip.envelope
        if not env.width_min <= s.width <= env.width_max:
            raise ValueError(f"settings.width {s.width:g} s is outside the station envelope "
                             f"[{env.width_min:g}, {env.width_max:g}] s")
        self.idx = torch.arange(self.synapses)
        self.batches = math.ceil(len(self.data.y_train) / s.batch_size)
        self.gen = torch.Generator().manual_seed(seed)
        g = torch.Generator().manual_seed(seed + 7919)
        self.w = [torch.empty(o, i).uniform_(-1.0, 1.0, generator=g).requires_grad_(True) for o, i in self.shapes]
        self.gain = [torch.full((o,), 2.0 / math.sqrt(i), requires_grad=True) for o, i in self.shapes]
        self.b = [torch.zeros(o, requires_grad=True) for o, _ in self.shapes]
        self.opt = torch.optim.Adam(self.w + self.gain + self.b, lr=s.lr)
        self.target = self._flat_position().round().long()  # intended levels
        self.levels = torch.zeros(self.synapses, dtype=torch.int64)  # levels held (read or modelled)
        self.phase = Phase.PROGRAM
        self.cursor = EpochCursor(len(self.data.y_train), s.max_epochs, s.batch_size, seed, order="keyed",
                                  epoch_end_points=1)
        self.best: dict[str, Any] = {"val": -1.0, "epoch": -1}
        self.bad_epochs = 0
        self.acc = {"loss": 0.0, "correct": 0, "seen": 0, "batches": 0, "reprogrammed": 0}
        self.ledger = {k: Counters().as_dict() for k in ("programming", "forward_reads", "final_programming", "test")}
        self.prog_stats = {"requested": 0, "reached": 0, "rounds": 0, "calls": 0}
        self.t_train = 0.0
        self.results: dict[str, Any] = {}

    # ------------------------------------------------------------------ run file
    def describe(self) -> dict[str, DatasetSpec]:
        specs = training_specs(4)
        specs["train/metrics"] = specs["train/metrics"].with_hint(
            {"view": "curve", "x": "epoch", "y": ["train_loss", "val_loss", "train_accuracy", "val_accuracy"]})
        specs["energy/ledger"] = specs["energy/ledger"].with_hint({"view": "energy"})
        layers = [list(shape) for shape in self.shapes]
        specs.update({
            "train/target_levels": DatasetSpec(np.int8, (None, self.synapses), "", "target level of every synapse, per epoch",
                                               hint={"view": "weights", "role": "levels", "label": "target level",
                                                     "layers": layers, "when": "epoch"}),
            "model/shadow_weights": DatasetSpec(np.float32, (self.synapses,), "", "final shadow weights in [-1, 1], chip order",
                                                hint={"view": "weights", "role": "control", "label": "shadow weight",
                                                      "layers": layers, "when": "end"}),
            "model/levels": DatasetSpec(np.int8, (self.synapses,), "", "levels read from the chip before the test",
                                        hint={"view": "weights", "role": "levels", "label": "level read",
                                              "layers": layers, "when": "end"}),
            "model/target_levels": DatasetSpec(np.int8, (self.synapses,), "", "final target levels"),
            "model/gain_bias": DatasetSpec(np.float64, (2 * sum(o for o, _ in self.shapes),), "",
                                           "per layer: output gains, then biases (float periphery)"),
        })
        return specs

    # ------------------------------------------------------------------ helpers
    def _flat_position(self) -> Tensor:
        with torch.no_grad():
            return torch.cat([weight_position(w, self.k).reshape(-1) for w in self.w])

    def _flat_w(self) -> Tensor:
        return torch.cat([w.detach().reshape(-1) for w in self.w])

    def _account(self, key: str, before: Counters) -> None:
        delta = counters_delta(self.chip.counters, before).as_dict()
        self.ledger[key] = {k: self.ledger[key][k] + delta[k] for k in delta}

    def _program(self, idx: Tensor, target: Tensor, start: Tensor, key: str) -> Tensor:
        """Write-verify on the chip; counts pulses/energy under ``key`` and the success statistics."""
        s = self.settings
        before = self.chip.counters
        got, rounds = write_verify(self.chip, idx, target, start, i_c=s.i_c, mobility=s.mobility, width=s.width,
                                   max_attempts=s.max_attempts)
        self._account(key, before)
        st = self.prog_stats
        moved = start != target
        st["requested"] += int(moved.sum())
        st["reached"] += int((got == target)[moved].sum())
        st["rounds"] += rounds
        st["calls"] += 1
        return got

    def _read_levels(self, key: str, repeats: int = 1) -> Tensor:
        before = self.chip.counters
        levels = self.chip.read(self.idx, repeats).level.to(self.idx.device)
        self._account(key, before)
        return levels

    def _model_land(self, target: Tensor) -> Tensor:
        """Levels the device model lands on when aimed at ``target`` (landing spread ``sigma``)."""
        probs = level_probabilities(target.float(), torch.full(target.shape, self.settings.sigma), self.k)
        u = torch.rand(target.shape, generator=self.gen).unsqueeze(-1)
        return (u > probs.cumsum(-1)[..., :-1]).sum(-1)

    def device_weights(self, levels: Tensor) -> list[Tensor]:
        """Weights ``(..., o, i)`` in [-1, 1] of every layer from flat levels ``(..., synapses)``."""
        w = level_to_weight(levels, self.k)
        return [w[..., a:b].reshape(*w.shape[:-1], *shape) for a, b, shape in
                zip(self.offsets[:-1], self.offsets[1:], self.shapes)]

    def forward(self, x: Tensor, dev: list[Tensor], *, ste: bool) -> Tensor:
        """Network output; ``dev`` are device weights (per layer ``(o, i)`` or per sample ``(B, o, i)``)."""
        h = x
        for n, (w, d, g, b) in enumerate(zip(self.w, dev, self.gain, self.b)):
            weight = w + (d - w).detach() if ste else d
            if weight.dim() == 3:
                h = torch.bmm(weight, h.unsqueeze(-1)).squeeze(-1) * g + b
            else:
                h = h @ weight.T * g + b
            if n < len(self.w) - 1:
                h = torch.relu(h)
        return h

    # ------------------------------------------------------------------ the run
    def run(self, ctx: RunContext) -> Iterator[Progress]:
        with torch_threads(self.settings.threads):
            yield from self._run(ctx)

    def _run(self, ctx: RunContext) -> Iterator[Progress]:
        s, w, data = self.settings, ctx.writer, self.data
        if self.phase is Phase.PROGRAM:
            if s.mode == "insitu":
                before = self.chip.counters
                self.chip.reset(self.idx)
                self._account("programming", before)
                self.levels = self._program(self.idx, self.target, torch.zeros_like(self.target), "programming")
            else:
                self.levels = self._model_land(self.target)
            self.phase = Phase.TRAIN
            yield self.safe_point("program")
        cur = self.cursor
        while self.phase is Phase.TRAIN:
            t0 = time.perf_counter()
            while not cur.end_of_epoch:
                sel = cur.next_batch()
                loss, correct, changed = self.train_step(data.x_train[sel], data.y_train[sel])
                a = self.acc
                a["loss"] += loss
                a["batches"] += 1
                a["correct"] += correct
                a["seen"] += len(sel)
                a["reprogrammed"] += changed
                cur.advance(len(sel))
                self.t_train += time.perf_counter() - t0
                t0 = time.perf_counter()
                yield self.safe_point("train", {"epoch": cur.epoch, "loss": a["loss"] / a["batches"],
                                                "accuracy": a["correct"] / a["seen"]})
            yield from self._end_epoch(w)
        if self.phase is Phase.FINAL:
            yield from self._final(w)

    def train_step(self, x: Tensor, y: Tensor) -> tuple[float, int, int]:
        """Read (in-situ), forward with device weights + STE, Adam step, re-program changed synapses."""
        s = self.settings
        if s.mode == "insitu":
            self.levels = self._read_levels("forward_reads")[:, 0]
        out = self.forward(x, self.device_weights(self.levels), ste=True)
        loss = torch.nn.functional.cross_entropy(out, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            for w in self.w:
                w.clamp_(-1.0, 1.0)
        new, changed = retarget(self._flat_w(), self.target, self.k, s.margin)
        m = int(changed.sum())
        if m:
            sel = changed.nonzero().squeeze(1)
            if s.mode == "insitu":
                self.levels[sel] = self._program(sel, new[sel], self.levels[sel], "programming")
            else:
                self.levels[sel] = self._model_land(new[sel])
            self.target = new
        return float(loss.detach()), int((out.detach().argmax(1) == y).sum()), m

    def _evaluate_levels(self, x: Tensor, y: Tensor, levels: Tensor) -> tuple[float, float]:
        with torch.no_grad():
            out = self.forward(x, self.device_weights(levels), ste=False)
            return float(torch.nn.functional.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())

    def _end_epoch(self, w) -> Iterator[Progress]:
        s, data, epoch = self.settings, self.data, self.cursor.epoch
        levels = self._read_levels("forward_reads")[:, 0] if s.mode == "insitu" else self.levels
        val_loss, val = self._evaluate_levels(data.x_val, data.y_val, levels) if len(data.y_val) else (float("nan"), 0.0)
        a = self.acc
        spent = {k: sum(self.ledger[g][k] for g in ("programming", "forward_reads")) for k in ("pulses", "reads", "energy_j")}
        row = (epoch, a["loss"] / max(a["batches"], 1), a["correct"] / max(a["seen"], 1), val_loss, val,
               a["reprogrammed"] / self.synapses, spent["pulses"], spent["reads"], spent["energy_j"], self.t_train)
        if w is not None:
            w.append("train/metrics", np.array([row], dtype=METRICS_DTYPE))
            w.append("train/target_levels", self.target.to(torch.int8).cpu().numpy()[None])
        if val > self.best["val"]:
            self.best = {"val": val, "epoch": epoch, "w": [t.detach().clone() for t in self.w],
                         "gain": [t.detach().clone() for t in self.gain], "b": [t.detach().clone() for t in self.b],
                         "target": self.target.clone(), "levels": self.levels.clone()}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        self.acc = {"loss": 0.0, "correct": 0, "seen": 0, "batches": 0, "reprogrammed": 0}
        if self.cursor.next_epoch() or self.bad_epochs >= s.patience:
            self._restore_best()
            self.phase = Phase.FINAL
        yield self.safe_point("epoch", {"epoch": epoch, "loss": row[1], "accuracy": row[2], "val_accuracy": val,
                                        "reprogrammed": row[5]})

    def _restore_best(self) -> None:
        """Back to the best-validation parameters; in-situ, the chip is re-programmed to their targets."""
        b = self.best
        with torch.no_grad():
            for dst, src in zip(self.w + self.gain + self.b, b["w"] + b["gain"] + b["b"]):
                dst.copy_(src)
        self.target = b["target"].clone()
        if self.settings.mode == "insitu":
            now = self._read_levels("forward_reads")[:, 0]
            diff = (now != self.target).nonzero().squeeze(1)
            if len(diff):
                now[diff] = self._program(diff, self.target[diff], now[diff], "programming")
            self.levels = now
        else:
            self.levels = b["levels"].clone()

    def _final(self, w) -> Iterator[Progress]:
        s, data = self.settings, self.data
        model_loss, model_acc = self._evaluate_levels(data.x_test, data.y_test, self.levels)
        if s.mode == "exsitu":  # program the chip once, from reset, with write-verify
            before = self.chip.counters
            self.chip.reset(self.idx)
            self._account("final_programming", before)
            self._program(self.idx, self.target, torch.zeros_like(self.target), "final_programming")
        # test on the chip: one read of every synapse per test sample
        before = self.chip.counters
        correct, levels_seen = 0, None
        for b0 in range(0, len(data.y_test), s.test_batch):
            xb, yb = data.x_test[b0:b0 + s.test_batch], data.y_test[b0:b0 + s.test_batch]
            levels = self.chip.read(self.idx, len(yb)).level.T.to(xb.device)  # (B, synapses)
            levels_seen = levels[0] if levels_seen is None else levels_seen
            with torch.no_grad():
                out = self.forward(xb, self.device_weights(levels), ste=False)
            correct += int((out.argmax(1) == yb).sum())
        self._account("test", before)
        n_test = len(data.y_test)
        held = levels_seen
        st = self.prog_stats
        led = {k: Counters(**v) for k, v in self.ledger.items()}
        train_samples = max(self.cursor.epoch, 1) * len(data.y_train)
        prog = led["programming"]
        self.results = {
            "test_accuracy": correct / n_test,
            "model_test_accuracy": model_acc,
            "levels_on_target": float((held == self.target).float().mean()),
            "write_verify_success": st["reached"] / st["requested"] if st["requested"] else 1.0,
            "write_verify_rounds_mean": st["rounds"] / st["calls"] if st["calls"] else 0.0,
            "best_epoch": self.best["epoch"],
            "epochs": self.cursor.epoch,
            "val_accuracy": self.best["val"],
            "train_time_s": self.t_train,
            "programming_pulses": prog.pulses,
            "programming_energy_j": prog.energy_j,
            "programming_energy_per_train_sample_j": prog.energy_j / train_samples,
            "forward_read_energy_j": led["forward_reads"].energy_j,
            "final_programming_pulses": led["final_programming"].pulses,
            "final_programming_energy_j": led["final_programming"].energy_j,
            "inference_reads": led["test"].reads / n_test,
            "inference_energy_j": led["test"].energy_j / n_test,
        }
        if s.float_baseline:
            fl = train_float(data, self.sizes, seed=self.seed, lr=s.lr, batch_size=s.batch_size,
                             max_epochs=s.max_epochs, patience=s.patience)
            self.results["float_test_accuracy"] = fl["test_accuracy"]
        if w is not None:
            w.write("model/shadow_weights", self._flat_w().cpu().numpy())
            w.write("model/levels", held.to(torch.int8).cpu().numpy())
            w.write("model/target_levels", self.target.to(torch.int8).cpu().numpy())
            gb = torch.cat([torch.cat([g.detach(), b.detach()]) for g, b in zip(self.gain, self.b)])
            w.write("model/gain_bias", gb.double().cpu().numpy())
            w.write("energy/ledger", np.array([counters_row(k, led[k]) for k in
                                               ("programming", "forward_reads", "final_programming", "test")],
                                              dtype=COUNTER_DTYPE))
        self.phase = Phase.DONE
        yield self.safe_point("test", {"test_accuracy": self.results["test_accuracy"]}, last=True)

    # ------------------------------------------------------------------ results and resume
    def summary(self) -> dict[str, Any]:
        s = self.settings
        return {"protocol": self.kind, "mode": s.mode, "levels": self.k, "network": "-".join(map(str, self.sizes)),
                "synapses": self.synapses, "margin": s.margin, **self.results}
