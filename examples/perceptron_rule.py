"""A stochastic perceptron rule on binary DW synapses, chip in the loop: a learning rule in about 150 lines.

One layer, ``D`` binary inputs -> ``C`` classes. Synapse (i, j) is wire ``i * D + j``; its weight is
``+1`` when the wire reads switched and ``-1`` when it reads unswitched; inputs count as ``+-1``
too (pixel on / off), and a class's score is ``sum_j (2 x_j - 1) w_ij``. For each training sample
the protocol predicts from the states it last read; when the prediction ``p`` is wrong (true class
``y``), row ``y`` moves toward the input's signs and row ``p`` away from them, each synapse that
should move doing so with probability ``q``: a wire that should become +1 gets a field pulse whose
switching probability is ``q`` (from the nominal logistic law of the wires), one that should become
-1 is reset with probability ``q`` (drawn by the protocol). The touched wires are read back, so the
next prediction uses measured states. Test accuracy is measured after every
epoch from one read of all wires. Amplitudes in tesla, widths in seconds.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, Iterator

import numpy as np
import torch
from pydantic import Field

from labctl.engine import Progress, RunContext
from labctl.store import DatasetSpec
from protocols.base import ChipProtocol, EpochCursor, Kind
from protocols.meanvar import reduce_data
from protocols.training import TrainingSettings, prepare_data

METRICS = np.dtype([("epoch", "<i8"), ("train_accuracy", "<f8"), ("test_accuracy", "<f8"), ("pulses", "<i8"),
                    ("resets", "<i8"), ("energy_j", "<f8")])


class PerceptronSettings(TrainingSettings):
    """Settings of the stochastic perceptron rule (inherits data, batch_size and max_epochs)."""

    data: str = Field("breast_cancer", description="30 features, binarised: 30 x 2 wires fit the 64-wire sim-dw")
    q: float = Field(0.1, gt=0.025, lt=0.95, description="probability that a synapse asked to move does (above "
                     "1 - a, the law's floor)")
    width: float = Field(1e-6, gt=0, description="field pulse width, seconds")
    x0: float = Field(4.63168e-3, description="nominal law mid-point, tesla")
    dx: float = Field(2.72741e3, gt=0, description="nominal law slope, 1/tesla")
    a: float = Field(0.97813, gt=0.9, le=1, description="nominal law contrast")
    pool: int = Field(1, ge=1, le=8, description="max-pool square binarised images by this factor (digits)")
    classes: int | None = Field(None, ge=2, description="keep classes 0 .. N-1 (None: all)")


class Phase(str, Enum):
    INIT = "init"
    TRAIN = "train"
    DONE = "done"


class PerceptronRule(ChipProtocol):
    """Stochastic multi-class perceptron on binary DW synapses (see the module docstring)."""

    kind = "train-perceptron"
    settings_model = PerceptronSettings
    families = ("dw_nanowire",)
    envelope_fields = {"width": "width"}
    resumable = {"phase": Kind.PHASE, "cursor": Kind.CURSOR, "states": Kind.TENSOR, "gen": Kind.GENERATOR,
                 "correct": Kind.VALUE, "test_accuracies": Kind.VALUE}
    fixed_safe_points = 1  # the initialisation

    def __init__(self, name: str, settings: PerceptronSettings, chip, seed: int = 0):
        super().__init__(name, settings, chip, seed)
        s = settings
        self.data = reduce_data(prepare_data(s, binary=True), s.pool, s.classes)
        self.d, self.c = self.data.features, self.data.classes
        if self.d * self.c > chip.n:
            raise ValueError(f"a {self.d} -> {self.c} layer needs {self.d * self.c} wires; the chip has {chip.n}")
        self.index = torch.arange(self.d * self.c).reshape(self.c, self.d)
        self.amplitude = self.field_for(s.q)
        self.phase = Phase.INIT
        self.cursor = EpochCursor(len(self.data.y_train), s.max_epochs, s.batch_size, seed, epoch_end_points=1)
        self.states = torch.zeros(self.c, self.d, dtype=torch.int64)  # wire levels last read (0 or 1)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.correct = 0  # training samples classified right this epoch
        self.test_accuracies: list[float] = []

    def describe(self) -> dict[str, DatasetSpec]:
        return {"train/metrics": DatasetSpec(METRICS, (None,), "", "per epoch: online train accuracy, test "
                                             "accuracy, chip pulses, resets and energy (J) so far")}

    def field_for(self, q: float) -> float:
        """Field (T) that switches a wire with probability ``q``: ``(1 - a) + a * sigmoid(dx (h - x0)) = q``."""
        s = self.settings
        u = (q - (1.0 - s.a)) / s.a
        return s.x0 + math.log(u / (1.0 - u)) / s.dx

    def scores(self, x: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """Class scores ``(B, C)`` of binary inputs ``x (B, D)``: inputs and weights as +-1 (``2 x - 1``)."""
        return (2.0 * x - 1.0) @ (2.0 * states.float() - 1.0).T

    def _read(self, idx: torch.Tensor) -> torch.Tensor:
        return self.chip.read(idx.reshape(-1)).level[:, 0]

    def _learn(self, x: torch.Tensor, y: int) -> bool:
        """Present one sample; on a mistake, move rows y and p toward +x and -x. True if it was right."""
        p = int(self.scores(x[None], self.states).argmax())
        if p == y:
            return True
        want = torch.stack([x > 0, x <= 0])  # the levels rows y and p should hold
        rows = torch.tensor([y, p])
        have = self.states[rows] == 1
        up = self.index[rows][want & ~have]  # pulsed: the wire switches with probability q
        down = self.index[rows][~want & have]  # reset, each with probability q
        down = down[torch.rand(len(down), generator=self.gen) < self.settings.q]
        if len(up):
            self.chip.pulse(up, self.amplitude, self.settings.width)
        if len(down):
            self.chip.reset(down)
        touched = torch.cat([up, down])
        if len(touched):
            self.states.view(-1)[touched] = self._read(touched)
        return False

    def run(self, ctx: RunContext) -> Iterator[Progress]:
        s, w, data, cur = self.settings, ctx.writer, self.data, self.cursor
        if self.phase is Phase.INIT:  # random start: every wire pulsed at switching probability 1/2
            self.chip.reset(self.index.reshape(-1))
            self.chip.pulse(self.index.reshape(-1), self.field_for(0.5), s.width)
            self.states = self._read(self.index).reshape(self.c, self.d)
            cur.shuffle()
            self.phase = Phase.TRAIN
            yield self.safe_point("init")
        while self.phase is Phase.TRAIN:
            while not cur.end_of_epoch:
                batch = cur.next_batch()
                self.correct += sum(self._learn(data.x_train[i], int(data.y_train[i])) for i in batch)
                cur.advance(len(batch))
                yield self.safe_point("train", {"epoch": cur.epoch, "accuracy": self.correct / cur.pos})
            yield self._end_epoch(w)

    def _end_epoch(self, w) -> Progress:
        data, epoch = self.data, self.cursor.epoch
        self.states = self._read(self.index).reshape(self.c, self.d)
        test = float((self.scores(data.x_test, self.states).argmax(1) == data.y_test).float().mean())
        self.test_accuracies.append(test)
        train = self.correct / self.cursor.samples
        c = self.chip.counters
        if w is not None:
            w.append("train/metrics", np.array([(epoch, train, test, c.pulses, c.resets, c.energy_j)], dtype=METRICS))
        self.correct = 0
        if self.cursor.next_epoch():
            self.phase = Phase.DONE
        return self.safe_point("epoch", {"epoch": epoch, "accuracy": train, "test_accuracy": test},
                               last=self.phase is Phase.DONE)

    def summary(self) -> dict[str, Any]:
        c = self.chip.counters
        return {"protocol": self.kind, "synapses": self.d * self.c, "classes": self.c, "q": self.settings.q,
                "epochs": self.cursor.epoch, "test_accuracy": self.test_accuracies[-1] if self.test_accuracies
                else float("nan"), "pulses": c.pulses, "resets": c.resets, "energy_j": c.energy_j}
