"""Common machinery of the simulated device families: state, random streams, sampling, counters.

A device family is a struct of arrays: one torch tensor per parameter, with one entry per
device, never a Python object per device. Subclasses supply the physics through four hooks:

- ``transition(idx, start, amplitude, width)``: probability of each level after one pulse
  from level ``start`` (write-time randomness, CrossSim's "write error");
- ``signal_levels(idx)``: the raw signal of each level (Kerr volts, ohms);
- ``read_noise(idx)``: standard deviation of that signal (CrossSim's "read error");
- ``pulse_energy(idx, start, amplitude, width)``: joules dissipated by one pulse.

Level 0 is the reference state that ``reset`` puts a device in (DW before the notch, MTJ in P,
DW-MTJ wall at the first site).

Device (CPU or CUDA). A device array is built on the CPU and moved with :meth:`DeviceArray.to`
(the station does it with ``resolve_device(station.station.device)``). The construction stream
stays on the CPU, so one seed builds the same devices whatever the device; the write and read
streams are re-created on the target device from the same seeds, so on CUDA the random
outcomes follow CUDA's generator (reproducible per seed on that device, not equal to the
CPU's). Every tensor an operation creates (states, uniforms, counts, level indices) is made on
``self.device``; amplitudes, widths and indices passed in are moved there; results stay there.
On the CPU nothing is copied and the outcomes are those of a chip that was never moved.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from analysis.switching_laws import read_confusion, threshold_read_errors

Tensor = torch.Tensor
Index = Tensor | slice | None


@dataclass
class PhysicsCounters:
    """What the simulated chip has been asked to do, and the energy it dissipated (joules)."""

    pulses: int = 0
    resets: int = 0
    reads: int = 0
    trials: int = 0
    energy_j: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class RandomStreams:
    """Separate, seeded random streams for construction, writing and reading.

    Keeping them apart means that, for one seed, the devices built are the same whatever is
    later written or read, and adding reads to a protocol does not change its write outcomes.
    """

    def __init__(self, seed: int):
        construction, write, read = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64)
        self._seeds = (int(write) >> 1, int(read) >> 1)
        self.construction = torch.Generator().manual_seed(int(construction) >> 1)
        self.write = torch.Generator().manual_seed(self._seeds[0])
        self.read = torch.Generator().manual_seed(self._seeds[1])

    def to(self, device: torch.device) -> None:
        """Write and read streams on ``device``, re-seeded from this seed (construction stays on the CPU).

        Called before the chip is first used; a stream already on ``device`` is kept as it is.
        """
        device = torch.device(device)
        if self.write.device != device:
            self.write = torch.Generator(device=device).manual_seed(self._seeds[0])
        if self.read.device != device:
            self.read = torch.Generator(device=device).manual_seed(self._seeds[1])


def spread(nominal: float, relative: float, n: int, gen: torch.Generator, *, lognormal: bool = False):
    """Device-to-device spread: ``n`` values around ``nominal`` with relative std ``relative``.

    Normal by default; lognormal (always positive, same relative std to first order) for
    quantities that must stay positive.
    """
    z = torch.randn(n, generator=gen, dtype=torch.float64)
    if lognormal:
        return (nominal * torch.exp(relative * z)).float()
    return (nominal * (1.0 + relative * z)).float()


def any_set(mask: Tensor) -> bool:
    """Whether any entry of a bool tensor is set: a uint8 max, ~30x faster than ``Tensor.any``."""
    return mask.numel() > 0 and bool(mask.reshape(-1).view(torch.uint8).max())


def sample_levels(probs: Tensor, gen: torch.Generator) -> Tensor:
    """One categorical draw per row of ``probs`` (rows sum to 1), using one uniform per row."""
    u = torch.rand(probs.shape[:-1], generator=gen, dtype=probs.dtype, device=probs.device).unsqueeze(-1)
    cdf = probs.cumsum(-1)
    return (u > cdf[..., :-1]).sum(-1)


def multinomial_counts(repeats: int, probs: Tensor, gen: torch.Generator) -> Tensor:
    """Counts of ``repeats`` independent categorical draws per row, as K-1 binomial samples.

    Exact (the conditional-binomial construction of the multinomial) and far cheaper than
    ``repeats`` separate draws when ``repeats`` is large.
    """
    n_rows, levels = probs.shape
    counts = torch.zeros(n_rows, levels, dtype=torch.int64, device=probs.device)
    remaining = torch.full((n_rows,), float(repeats), dtype=probs.dtype, device=probs.device)
    left = torch.ones(n_rows, dtype=probs.dtype, device=probs.device)
    for k in range(levels - 1):
        p = (probs[:, k] / left.clamp(min=1e-12)).clamp(0.0, 1.0)
        c = torch.binomial(remaining, p, generator=gen)
        counts[:, k] = c.long()
        remaining = remaining - c
        left = left - probs[:, k]
    counts[:, -1] = remaining.long()
    return counts


class PhysicsParams(BaseModel):
    """Base of a family's physics parameters (SI units): the one place their defaults and bounds live.

    A station file's ``[chip.physics]`` table is validated against the family's subclass; the
    simulator is built from it. Unknown keys are errors, values are taken as written (no bool for
    a number, no text for a number) and every float is finite.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DeviceArray(ABC):
    """Base of the simulated device families (see the module docstring).

    ``params_model``: the family's :class:`PhysicsParams` subclass; a subclass's constructor takes
    ``n``, ``seed`` and that model's fields as keyword arguments (defaults from the model).
    """

    family: str = ""
    amplitude_unit: str = ""
    signal_unit: str = ""
    readout: str = "tmr"  # "kerr" (optical, lock-in volts) or "tmr" (a resistance): which bench reads it
    params_model: type[PhysicsParams] = PhysicsParams

    def __init__(self, n: int, levels: int, seed: int, read_energy_j: float, reset_energy_j: float):
        if n < 1:
            raise ValueError(f"number of devices must be >= 1, got {n}")
        self.n = n
        self.levels = levels
        self.streams = RandomStreams(seed)
        self.state = torch.zeros(n, dtype=torch.int64)
        self.stuck = torch.zeros(n, dtype=torch.bool)
        self.read_energy_j = read_energy_j
        self.reset_energy_j = reset_energy_j
        self.counters = PhysicsCounters()
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> DeviceArray:
        """Move the chip to ``device`` ("cpu", "cuda", "cuda:1"; see the module docstring); returns self.

        Every tensor attribute (parameters, levels, stuck flags, caches) is moved and the write
        and read streams are re-created there. A no-op on the device the chip is on.
        """
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device == self.device:
            return self
        for name, value in list(vars(self).items()):
            if isinstance(value, Tensor):
                setattr(self, name, value.to(device))
            elif isinstance(value, tuple) and value and all(isinstance(v, Tensor) for v in value):
                setattr(self, name, tuple(v.to(device) for v in value))
        self.streams.to(device)
        self.device = device
        return self

    def _on_device(self, x):
        """``x`` (a tensor, or anything ``torch.as_tensor`` takes) on this chip's device, float32."""
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """What changes as the chip is used: levels, stuck flags, counters, write and read streams.

        The device parameters are not included: they are rebuilt from the seed.
        """
        return {
            "state": self.state.to(torch.int8).cpu(),  # levels < 128: an eighth of the checkpoint size
            "stuck": self.stuck.clone().cpu(),
            "counters": self.counters.as_dict(),
            "write_rng": self.streams.write.get_state(),
            "read_rng": self.streams.read.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["state"].shape != self.state.shape:
            raise ValueError(f"checkpoint holds {state['state'].shape[0]} devices, this chip has {self.n}")
        self.state = state["state"].to(torch.int64).to(self.device)
        self.stuck = state["stuck"].clone().to(self.device)
        self.counters = PhysicsCounters(**state["counters"])
        self.streams.write.set_state(state["write_rng"])
        self.streams.read.set_state(state["read_rng"])

    # ------------------------------------------------------------------ family hooks
    @abstractmethod
    def transition(self, idx: Index, start: Tensor, amplitude: Tensor, width: Tensor) -> Tensor:
        ...

    @abstractmethod
    def signal_levels(self, idx: Index) -> Tensor:
        ...

    @abstractmethod
    def read_noise(self, idx: Index) -> Tensor:
        ...

    @abstractmethod
    def pulse_energy(self, idx: Index, start: Tensor, amplitude: Tensor, width: Tensor) -> Tensor:
        ...

    def reference_pulse_energy(self, idx: Index, amplitude: Tensor, width: Tensor, m: int) -> float:
        """Total energy (joules) of one pulse on each of ``m`` devices in the reference state."""
        return float(self.pulse_energy(idx, torch.zeros(m, dtype=torch.int64, device=self.device), amplitude, width).sum())

    def reference_transition(self, idx: Index, amplitude: Tensor, width: Tensor) -> Tensor:
        """Level probabilities after one pulse from the reference state; families may speed it up."""
        start = torch.zeros(self._count(idx), dtype=torch.int64, device=self.device)
        return self.transition(idx, start, amplitude, width)

    def reference_cdf(self, idx: Index, amplitude: Tensor, width: Tensor) -> Tensor:
        """Cumulative level probabilities ``(m, K-1)`` after one pulse from the reference state."""
        return self.reference_transition(idx, amplitude, width).cumsum(-1)[:, :-1]

    # ------------------------------------------------------------------ operations
    def _count(self, idx: Index) -> int:
        return self.n if idx is None else len(range(self.n)[idx]) if isinstance(idx, slice) else len(idx)

    @staticmethod
    def _sel(t: Tensor, idx: Index) -> Tensor:
        return t if idx is None else t[idx]

    def reset(self, idx: Index) -> None:
        """Put devices into the reference state (stuck devices stay where they are)."""
        count = self._count(idx)
        self._set_state(idx, torch.zeros(count, dtype=torch.int64, device=self.device))
        self.counters.resets += count
        self.counters.energy_j += count * self.reset_energy_j

    def pulse(self, idx: Index, amplitude: Tensor, width: Tensor) -> None:
        """Apply one write pulse per selected device; the outcome is random (write stream)."""
        start = self._sel(self.state, idx)
        probs = self.transition(idx, start, amplitude, width)
        self._set_state(idx, sample_levels(probs, self.streams.write))
        self.counters.pulses += len(start)
        self.counters.energy_j += float(self.pulse_energy(idx, start, amplitude, width).sum())

    def read(self, idx: Index, repeats: int = 1) -> tuple[Tensor, Tensor]:
        """Read ``repeats`` times: raw signal ``(len(idx), repeats)`` and decoded level (nearest level)."""
        levels = self.signal_levels(idx)  # (m, K)
        state = self._sel(self.state, idx)
        true_signal = levels.gather(1, state.unsqueeze(1))
        noise = self.read_noise(idx).unsqueeze(1)
        z = torch.randn(len(state), repeats, generator=self.streams.read, device=self.device)
        signal = true_signal + noise * z
        decoded = (signal.unsqueeze(-1) - levels.unsqueeze(1)).abs().argmin(-1)
        self.counters.reads += len(state) * repeats
        self.counters.energy_j += len(state) * repeats * self.read_energy_j
        return signal, decoded

    _confusion: Tensor | None = None

    def confusion(self, idx: Index) -> Tensor:
        """Read confusion matrices ``(m, K, K)`` (or one shared ``(1, K, K)``), cached.

        Signal levels and read noise are fixed at construction, so the matrices are computed
        once; when every device has the same levels and noise a single matrix serves them all.
        """
        if self._confusion is None:
            levels, noise = self.signal_levels(None), self.read_noise(None)
            if bool((levels == levels[:1]).all()) and bool((noise == noise[:1]).all()):
                levels, noise = levels[:1], noise[:1]
            self._confusion = read_confusion(levels.double(), noise.double()).float()
        if len(self._confusion) == 1:
            return self._confusion
        return self._sel(self._confusion, idx)

    def _pin_stuck(self, idx: Index, probs: Tensor) -> Tensor:
        """Stuck devices stay in (and read as) the level they are stuck in."""
        stuck = self._sel(self.stuck, idx)
        if not any_set(stuck):
            return probs
        pinned = torch.nn.functional.one_hot(self._sel(self.state, idx), self.levels).to(probs.dtype)
        return torch.where(stuck.unsqueeze(-1), pinned, probs)

    def _read_out(self, idx: Index, probs: Tensor) -> Tensor:
        """Probabilities of the level *read* after a pulse: true-level probabilities times the confusion."""
        confusion = self.confusion(idx)
        if len(confusion) == 1:
            return probs @ confusion[0]
        return torch.matmul(probs.unsqueeze(-2), confusion).squeeze(-2)

    def trial(self, idx: Index, amplitude: Tensor, width: Tensor, repeats: int = 1) -> Tensor:
        """``repeats`` times reset + pulse + read; returns read-out level counts ``(len(idx), levels)``.

        Trials are independent given the device, so the counts are one multinomial sample
        (K-1 binomials), exact and much cheaper than ``repeats`` draws. Read errors are folded
        in through the confusion matrix, so no signal needs simulating.
        """
        probs = self._pin_stuck(idx, self.reference_transition(idx, amplitude, width))
        observed = self._read_out(idx, probs)
        gen = self.streams.write
        if repeats == 1:
            counts = torch.nn.functional.one_hot(sample_levels(observed, gen), self.levels)
        else:
            counts = multinomial_counts(repeats, observed, gen)
        self._set_state(idx, sample_levels(probs, gen))
        self._count_trials(idx, amplitude, width, len(counts), repeats)
        return counts

    def trial_switched(self, idx: Index, amplitude: Tensor, width: Tensor, repeats: int = 1) -> Tensor:
        """How many of ``repeats`` trials read as any level but the reference: ``(len(idx),)`` int64.

        The count is one binomial sample (exact). With ``repeats == 1`` a single uniform ``u``
        decides both the level left in the device and the read-out, coupled monotonically
        (low ``u``: level 0 and read as 0). Both marginals are exact; the two disagree with
        probability at most the read-error rate, as they physically should, though not with
        exactly the physical joint law. The device keeps the level of its last trial.

        Only the cumulative level probabilities F are needed: with confusion matrix C, the
        probability of reading level 0 is ``sum_s (F_s - F_{s-1}) C[s, 0]``
        ``= F @ (C[:-1, 0] - C[1:, 0]) + C[-1, 0]``.
        """
        cdf = self.reference_cdf(idx, amplitude, width)
        stuck = self._sel(self.stuck, idx)
        if any_set(stuck):
            levels = torch.arange(self.levels - 1, device=self.device)
            pinned = (levels >= self._sel(self.state, idx).unsqueeze(-1)).to(cdf.dtype)
            cdf = torch.where(stuck.unsqueeze(-1), pinned, cdf)
        confusion = self.confusion(idx)
        column = confusion[..., :, 0]  # P(read 0 | true s): (1 or m, K)
        if len(confusion) == 1:
            read_zero = cdf @ (column[0, :-1] - column[0, 1:]) + column[0, -1]
        else:
            read_zero = (cdf * (column[:, :-1] - column[:, 1:])).sum(-1) + column[:, -1]
        gen = self.streams.write
        if repeats == 1:
            u = torch.rand(read_zero.shape, generator=gen, dtype=read_zero.dtype, device=read_zero.device)
            switched = (u >= read_zero).long()
            final = (u.unsqueeze(-1) > cdf).sum(-1)
        else:
            switched = torch.binomial(torch.full_like(read_zero, float(repeats)), 1.0 - read_zero, generator=gen).long()
            u = torch.rand(read_zero.shape, generator=gen, dtype=read_zero.dtype, device=read_zero.device)
            final = (u.unsqueeze(-1) > cdf).sum(-1)
        self._set_state(idx, final)
        self._count_trials(idx, amplitude, width, len(switched), repeats)
        return switched

    def _set_state(self, idx: Index, new: Tensor) -> None:
        """Store new levels for the selected devices; stuck devices keep theirs."""
        stuck = self._sel(self.stuck, idx)
        if any_set(stuck):
            new = torch.where(stuck, self._sel(self.state, idx), new)
        if idx is None:
            self.state = new
        else:
            self.state[idx] = new

    def _count_trials(self, idx: Index, amplitude: Tensor, width: Tensor, m: int, repeats: int) -> None:
        """Count ``repeats`` resets, pulses and reads on ``m`` devices, and their energy."""
        energy = self.reference_pulse_energy(idx, amplitude, width, m)
        c = self.counters
        c.trials += m * repeats
        c.pulses += m * repeats
        c.resets += m * repeats
        c.reads += m * repeats
        c.energy_j += repeats * (energy + m * (self.reset_energy_j + self.read_energy_j))


class BinaryDeviceArray(DeviceArray):
    """A two-level family: switching has one probability per pulse, read errors one rate.

    ``trial`` takes a fast path here: one uniform per trial for ``repeats == 1`` and one
    binomial sample per device otherwise, with the read error folded into the probability.
    """

    @abstractmethod
    def switch_probability(self, idx: Index, amplitude: Tensor, width: Tensor) -> Tensor:
        """Probability of leaving the reference state in one pulse."""
        ...

    def reference_transition(self, idx: Index, amplitude: Tensor, width: Tensor) -> Tensor:
        p = self.switch_probability(idx, amplitude, width)
        return torch.stack([1.0 - p, p], dim=-1)

    _read_error: tuple[Tensor, Tensor] | None = None

    def read_error(self, idx: Index) -> tuple[Tensor, Tensor]:
        """Per-device misread probability ``e`` and ``1 - 2e`` (cached: levels and noise are fixed)."""
        if self._read_error is None:
            levels = self.signal_levels(None)
            e = threshold_read_errors(levels[:, 1] - levels[:, 0], self.read_noise(None))
            self._read_error = (e, 1.0 - 2.0 * e)
        e, one_minus_2e = self._read_error
        return self._sel(e, idx), self._sel(one_minus_2e, idx)

    def trial_switched(self, idx: Index, amplitude: Tensor, width: Tensor, repeats: int = 1) -> Tensor:
        """As DeviceArray.trial_switched, on one switching probability and one read-error rate."""
        p = self.switch_probability(idx, amplitude, width)
        stuck = self._sel(self.stuck, idx)
        if any_set(stuck):
            p = torch.where(stuck, self._sel(self.state, idx).to(p.dtype), p)
        e, one_minus_2e = self.read_error(idx)
        read_one = torch.addcmul(e, p, one_minus_2e)  # p (1-e) + (1-p) e
        gen = self.streams.write
        if repeats == 1:
            u = torch.rand(p.shape, generator=gen, dtype=p.dtype, device=p.device)
            switched = (u < read_one).long()
            final = u < p  # coupled monotonically with the read-out (see the base class)
        else:
            switched = torch.binomial(torch.full_like(p, float(repeats)), read_one, generator=gen).long()
            final = torch.rand(p.shape, generator=gen, dtype=p.dtype, device=p.device) < p
        self._set_state(idx, final.long())
        self._count_trials(idx, amplitude, width, len(switched), repeats)
        return switched
