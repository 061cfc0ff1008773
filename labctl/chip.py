"""The chip as protocols see it: the vectorised ``SynapseArray`` interface and its safety envelope.

Every operation takes an index array of synapses (a ``LongTensor``, a sequence of ints, or None
for all of them), never a Python object per device. Amplitudes and widths are a scalar or one
value per selected synapse. Units follow the chip's family: field pulses in tesla (DW
nanowires), current pulses in amperes (DW-MTJs), voltage pulses in volts (STT-MTJs); widths in
seconds; raw signals in volts (Kerr) or ohms (TMR).

The envelope is checked here, in the base class, before any backend (simulator or instrument)
sees the pulse: a refused pulse reaches nothing and is not counted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Callable, NamedTuple, Sequence

import torch

Tensor = torch.Tensor
IndexLike = Tensor | Sequence[int] | None


class EnvelopeError(ValueError):
    """A pulse or bias outside the station's safe limits was asked for; nothing was sent."""


@dataclass(frozen=True)
class Envelope:
    """Safe limits of the station: pulse amplitude (family unit), width (seconds), read bias (volts)."""

    amplitude_min: float
    amplitude_max: float
    width_min: float
    width_max: float
    read_bias_max: float
    amplitude_unit: str = ""

    def check_pulse(self, amplitude: Tensor, width: Tensor, idx: Tensor | None) -> None:
        """Raise EnvelopeError naming the first offending synapse if any value is outside limits."""
        for name, value, lo, hi, unit in (
            ("amplitude", amplitude, self.amplitude_min, self.amplitude_max, self.amplitude_unit),
            ("width", width, self.width_min, self.width_max, "s"),
        ):
            # One pass; compared exactly as the per-element test below compares (in the tensor's
            # dtype), so a value on the limit passes both. NaN propagates and fails both.
            smallest, largest = torch.aminmax(value)
            if not bool((smallest >= lo) & (largest <= hi)):
                bad = ~((value >= lo) & (value <= hi))
                k = int(bad.reshape(-1).nonzero()[0])
                where = ""
                if value.numel() > 1:
                    where = f" for synapse {int(idx[k]) if idx is not None else k}"
                raise EnvelopeError(
                    f"pulse {name} {float(value.reshape(-1)[k]):.6g} {unit}{where} is outside the station "
                    f"envelope [{lo:.6g}, {hi:.6g}] {unit}; nothing was sent"
                )

    def check_read_bias(self, bias: float) -> None:
        if not abs(bias) <= self.read_bias_max:
            raise EnvelopeError(
                f"read bias {bias:.6g} V is outside the station envelope (|bias| <= {self.read_bias_max:.6g} V)"
            )


@dataclass
class Counters:
    """Work done on the chip: operations, instrument transactions and energy (joules)."""

    pulses: int = 0
    resets: int = 0
    reads: int = 0
    trials: int = 0
    transactions: int = 0
    energy_j: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ReadResult(NamedTuple):
    """Raw signal ``(m, repeats)`` in volts or ohms, and the decoded level ``(m, repeats)``."""

    signal: Tensor
    level: Tensor


class SynapseArray(ABC):
    """A chip of ``n`` synapses of one family with ``levels`` states each.

    Subclasses implement the ``_reset``, ``_pulse``, ``_read``, ``_trial_levels`` (and may
    specialise ``_trial``) hooks on validated arguments; this class validates indices, enforces
    the envelope, and guarantees ``safe_state`` on ``close`` and on leaving a ``with`` block.
    """

    family: str
    n: int
    levels: int
    envelope: Envelope
    signal_unit: str
    # Set by the run engine while a run is on: ``on_event(kind, reason)`` records an event
    # (e.g. an instrument outage: "suspend", "unsuspend") in the run file. None outside a run.
    on_event: Callable[[str, str], None] | None = None

    # ------------------------------------------------------------------ public interface
    def reset(self, idx: IndexLike = None) -> None:
        """Put synapses into their reference state (DW re-nucleated, MTJ in P, wall at site 0)."""
        self._reset(self._index(idx))

    def pulse(self, idx: IndexLike, amplitude, width) -> None:
        """One write pulse per selected synapse; refused (EnvelopeError) before anything is sent."""
        index = self._index(idx)
        amplitude, width = self._checked(index, amplitude, width)
        self._pulse(index, amplitude, width)

    def read(self, idx: IndexLike = None, repeats: int = 1) -> ReadResult:
        """Read ``repeats`` times: raw signal and decoded level, each ``(m, repeats)``."""
        return self._read(self._index(idx), self._repeats(repeats))

    def trial(self, idx: IndexLike, amplitude, width, repeats: int = 1) -> Tensor:
        """``repeats`` times reset + pulse + read; returns how often each synapse read as switched.

        Switched means read in any level other than the reference level 0. Shape ``(m,)``, int64.
        """
        index = self._index(idx)
        amplitude, width = self._checked(index, amplitude, width)
        return self._trial(index, amplitude, width, self._repeats(repeats))

    def trial_levels(self, idx: IndexLike, amplitude, width, repeats: int = 1) -> Tensor:
        """Like :meth:`trial`, but counts how often each level was read: ``(m, levels)`` int64."""
        index = self._index(idx)
        amplitude, width = self._checked(index, amplitude, width)
        return self._trial_levels(index, amplitude, width, self._repeats(repeats))

    @property
    @abstractmethod
    def counters(self) -> Counters:
        """Pulses, resets, reads, trials, instrument transactions and energy so far."""

    @abstractmethod
    def safe_state(self) -> None:
        """Outputs off, biases ramped to zero. Must be safe to call at any time, repeatedly."""

    def cancel_suspension(self) -> None:
        """Give up waiting out an instrument outage (an abort while suspended); from any thread.

        Backends without instruments never suspend, so this does nothing for them."""

    def close(self) -> None:
        """Reach the safe state and release the backend."""
        self.safe_state()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ backend hooks
    @abstractmethod
    def _reset(self, idx: Tensor | None) -> None: ...

    @abstractmethod
    def _pulse(self, idx: Tensor | None, amplitude: Tensor, width: Tensor) -> None: ...

    @abstractmethod
    def _read(self, idx: Tensor | None, repeats: int) -> ReadResult: ...

    @abstractmethod
    def _trial_levels(self, idx: Tensor | None, amplitude: Tensor, width: Tensor, repeats: int) -> Tensor: ...

    def _trial(self, idx: Tensor | None, amplitude: Tensor, width: Tensor, repeats: int) -> Tensor:
        return repeats - self._trial_levels(idx, amplitude, width, repeats)[:, 0]

    # ------------------------------------------------------------------ validation
    def _index(self, idx: IndexLike) -> Tensor | None:
        """None (all synapses) or a LongTensor of in-range synapse indices."""
        if idx is None:
            return None
        index = torch.as_tensor(idx, dtype=torch.int64).reshape(-1)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.n):
            bad = index[(index < 0) | (index >= self.n)][0]
            raise IndexError(f"synapse index {int(bad)} is out of range: the chip has {self.n} synapses (0..{self.n - 1})")
        return index

    def _count(self, idx: Tensor | None) -> int:
        return self.n if idx is None else len(idx)

    def _checked(self, idx: Tensor | None, amplitude, width) -> tuple[Tensor, Tensor]:
        m = self._count(idx)
        amplitude = torch.as_tensor(amplitude, dtype=torch.float32)
        width = torch.as_tensor(width, dtype=torch.float32)
        for name, value in (("amplitude", amplitude), ("width", width)):
            if value.numel() not in (1, m):
                raise ValueError(f"pulse {name} must be a scalar or one value per selected synapse ({m}), got shape {tuple(value.shape)}")
        self.envelope.check_pulse(amplitude, width, idx)
        return amplitude.reshape(-1) if amplitude.numel() > 1 else amplitude.reshape(()), (
            width.reshape(-1) if width.numel() > 1 else width.reshape(())
        )

    @staticmethod
    def _repeats(repeats: int) -> int:
        if int(repeats) != repeats or repeats < 1:
            raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
        return int(repeats)
