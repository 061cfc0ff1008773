"""Trial waveforms: what a pulse source plays for a batch of trials on one device.

A :class:`Waveform` is two synchronous channels sampled every ``dt`` seconds:

- ``volts``: the drive channel (channel 1), in volts at the pulse source's output;
- ``markers``: the read-trigger channel (channel 2), a logic level whose every *rising edge*
  asks the readout (lock-in or source meter) for one buffered reading.

One trial is laid out as (any part may be absent)::

    reset x reset_samples | 0 | write | 0 (marker high) | 0 x (read_samples - 1)

and the whole waveform starts and ends at 0 V, so the output idles at zero before and after the
burst. With ``dt`` equal to the write width the write is one sample; the reset lasts
``reset_samples * dt`` seconds. ``trials`` trials cost ``trials * samples_per_trial`` points,
which the caller keeps below the instrument's memory by splitting a batch into chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Waveform:
    """Drive samples (volts), read-trigger markers (bool) and the sample period ``dt`` (seconds)."""

    volts: np.ndarray
    markers: np.ndarray
    dt: float

    def __len__(self) -> int:
        return len(self.volts)

    @property
    def reads(self) -> int:
        """Number of read triggers (rising edges of the marker channel)."""
        m = self.markers.astype(bool)
        return int(m[0]) + int(np.count_nonzero(m[1:] & ~m[:-1]))

    @property
    def peak(self) -> float:
        """Largest absolute drive voltage, volts."""
        return float(np.abs(self.volts).max()) if len(self.volts) else 0.0


def samples_per_trial(*, reset: bool, write: bool, read: bool, reset_samples: int = 1, read_samples: int = 2) -> int:
    """Points one trial takes in :func:`compose` (without the two idle samples at the ends)."""
    n = (reset_samples + 1) if reset else 0
    n += 1 if write else 0
    if read:
        n += read_samples
    elif write:
        n += 1
    return n


def compose(
    trials: int,
    dt: float,
    *,
    write: np.ndarray | None = None,
    reset: float | None = None,
    reset_samples: int = 1,
    read: bool = False,
    read_samples: int = 2,
) -> Waveform:
    """Lay out ``trials`` trials (see the module docstring).

    ``write``: drive voltage of each trial's write pulse, shape ``(trials,)``, or None for none;
    ``reset``: drive voltage of the reset pulse, or None for none; ``read``: one read trigger per
    trial. ``dt`` is the sample period in seconds.
    """
    if trials < 1:
        raise ValueError(f"a waveform needs at least one trial, got {trials}")
    if read_samples < 1 or reset_samples < 1:
        raise ValueError("reset_samples and read_samples must be at least 1")
    columns: list[np.ndarray] = []
    marks: list[np.ndarray] = []
    zeros = np.zeros(trials)
    if reset is not None:
        columns += [np.full(trials, float(reset))] * reset_samples + [zeros]
        marks += [zeros] * (reset_samples + 1)
    if write is not None:
        write = np.asarray(write, dtype=np.float64).reshape(-1)
        if len(write) != trials:
            raise ValueError(f"need one write voltage per trial ({trials}), got {len(write)}")
        columns.append(write)
        marks.append(zeros)
    if read:
        columns += [zeros] * read_samples
        marks += [np.ones(trials)] + [zeros] * (read_samples - 1)
    elif write is not None:
        columns.append(zeros)
        marks.append(zeros)
    if not columns:
        raise ValueError("a trial needs a reset, a write or a read")
    volts = np.concatenate([[0.0], np.stack(columns, axis=1).reshape(-1), [0.0]])
    markers = np.concatenate([[0.0], np.stack(marks, axis=1).reshape(-1), [0.0]]).astype(bool)
    return Waveform(volts, markers, float(dt))
