"""The epoch cursor: where a protocol that iterates over data is, and in which order it visits it.

One cursor serves every loop over data: training samples in epochs (shuffled by the cursor's own
generator, or in an order that is a function of (seed, epoch)), and a calibration sweep's blocks
(one epoch, in order). It is part of a protocol's checkpoint (``Kind.CURSOR``), and the base
class counts its safe points for the progress total.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

Order = Literal["shuffle", "keyed", "sequential"]


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Order of the training samples in ``epoch``: a function of (seed, epoch) only, so resumes replay it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(1_000_003 * (seed + 1) + epoch))


class EpochCursor:
    """Position in a loop of ``epochs`` passes over ``samples`` items, ``batch`` items per safe point.

    ``order``: ``"shuffle"`` -- a fresh order from the cursor's own generator ``gen`` at each
    :meth:`shuffle` (the protocol calls it once before the first epoch; :meth:`next_epoch` calls
    it after); ``"keyed"`` -- :func:`epoch_permutation` of (seed, epoch), ready from the start;
    ``"sequential"`` -- 0, 1, 2, ... every epoch. ``epoch_end_points``: safe points the protocol
    yields after each epoch's batches (e.g. 1 for a validation pass), counted in :attr:`safe_points`.

    A loop: ``while not cursor.end_of_epoch: idx = cursor.next_batch(); ...; cursor.advance(len(idx))``,
    then ``cursor.next_epoch()`` (True once the last epoch is done).
    """

    def __init__(self, samples: int, epochs: int, batch: int, seed: int, *, order: Order = "shuffle",
                 epoch_end_points: int = 0):
        self.samples, self.epochs, self.batch = samples, epochs, batch
        self.seed, self.order, self.epoch_end_points = seed, order, epoch_end_points
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.pos = 0  # items done in this epoch
        self.perm = epoch_permutation(seed, 0, samples) if order == "keyed" else torch.arange(samples)

    @property
    def per_epoch(self) -> int:
        """Batches (safe points) per epoch."""
        return -(-self.samples // self.batch)

    @property
    def safe_points(self) -> int:
        """Safe points of the whole loop: every batch of every epoch, plus the epoch-end ones."""
        return self.epochs * (self.per_epoch + self.epoch_end_points)

    @property
    def total(self) -> int:
        """Items in the whole run."""
        return self.epochs * self.samples

    @property
    def done(self) -> int:
        """Items done so far."""
        return self.epoch * self.samples + self.pos

    @property
    def step(self) -> int:
        """Batches done so far."""
        return self.epoch * self.per_epoch + -(-self.pos // self.batch)

    @property
    def end_of_epoch(self) -> bool:
        """All items of this epoch are done (``next_epoch`` not called yet)."""
        return self.pos >= self.samples

    @property
    def finished(self) -> bool:
        """The last epoch is done."""
        return self.epoch >= self.epochs

    def shuffle(self) -> None:
        """The order of the current epoch (drawn from ``gen`` for ``"shuffle"``)."""
        if self.order == "shuffle":
            self.perm = torch.randperm(self.samples, generator=self.gen)
        elif self.order == "keyed":
            self.perm = epoch_permutation(self.seed, self.epoch, self.samples)

    def next_batch(self) -> torch.Tensor:
        """Indices of the next batch of items."""
        return self.perm[self.pos:min(self.pos + self.batch, self.samples)]

    def advance(self, k: int) -> bool:
        """Move past ``k`` items; True when that ends the epoch."""
        self.pos += k
        return self.end_of_epoch

    def next_epoch(self) -> bool:
        """Start the next epoch (new order); True once the last epoch is done."""
        self.epoch += 1
        self.pos = 0
        self.shuffle()
        return self.finished

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "perm": self.perm.clone(), "gen": self.gen.get_state()}

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """ValueError naming the first entry of ``state`` that does not fit this cursor."""
        for key in ("epoch", "pos", "perm", "gen"):
            if key not in state:
                raise ValueError(f"'{key}' is missing")
        perm = state["perm"]
        if not isinstance(perm, torch.Tensor) or perm.shape != self.perm.shape or perm.dtype != self.perm.dtype:
            got = f"{tuple(perm.shape)} {perm.dtype}" if isinstance(perm, torch.Tensor) else type(perm).__name__
            raise ValueError(f"'perm' is {got}, this loop has {self.samples} items ({self.perm.dtype})")
        if not 0 <= int(state["pos"]) <= self.samples or not 0 <= int(state["epoch"]) <= self.epochs:
            raise ValueError(f"position epoch {state['epoch']}, item {state['pos']} is outside this loop "
                             f"({self.epochs} epochs of {self.samples} items)")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_dict(state)
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self.perm = state["perm"].clone()
        self.gen.set_state(state["gen"])
