"""Play a time-ordered list of resets, pulses and reads on one device of the shared chip.

This is how the simulated bench turns a waveform into physics. The device's law comes from its
family (``DeviceArray.transition``, ``signal_levels``, ``read_noise``, ``pulse_energy``) and the
randomness from the chip's own seeded write and read streams, so the bench and the direct
backend draw from the same devices and the same laws. The work is vectorised: the level
probabilities of all pulses, from every possible starting level, are computed in one call per
level, and one uniform per pulse decides its outcome; only the walk along the sequence (a list
lookup per operation) is sequential, because each pulse starts where the previous one left.

Operations (``kinds``): ``RESET`` puts the device in level 0 (a re-nucleating field pulse on a
DW nanowire), ``PULSE`` applies ``amplitude`` (family unit) for ``width`` seconds, ``READ``
returns the raw signal (volts or ohms) with read noise. Stuck devices keep their level.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

RESET, PULSE, READ = 0, 1, 2


@contextmanager
def single_threaded():
    """Run torch on one intra-op thread: the tensors here are small, and on a loaded machine an
    OpenMP team of two is a hundred times slower than one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def play(devices, k: int, kinds: np.ndarray, amplitudes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Run ``kinds[i]`` (with ``amplitudes[i]``, ``widths[i]``) in order on device ``k``.

    Returns the signal of every READ, in order (float64). Updates the device's state and the
    chip's counters (pulses, resets, reads, energy).
    """
    with single_threaded():
        return _play(devices, k, kinds, amplitudes, widths)


def _play(devices, k, kinds, amplitudes, widths) -> np.ndarray:
    kinds = np.asarray(kinds, dtype=np.int64)
    amplitudes = np.asarray(amplitudes, dtype=np.float64)
    widths = np.asarray(widths, dtype=np.float64)
    pulse_at = np.flatnonzero(kinds == PULSE)
    n_pulses = len(pulse_at)
    levels = devices.levels
    state = int(devices.state[k])
    stuck = bool(devices.stuck[k])

    outcome: list[list[int]] = []
    if n_pulses:
        idx = torch.full((n_pulses,), k, dtype=torch.int64)
        amp = torch.as_tensor(amplitudes[pulse_at], dtype=torch.float32)
        width = torch.as_tensor(widths[pulse_at], dtype=torch.float32)
        u = torch.rand(n_pulses, generator=devices.streams.write, dtype=torch.float64).unsqueeze(-1)
        table = np.empty((n_pulses, levels), dtype=np.int64)
        for start in range(levels):
            probs = devices.transition(idx, torch.full((n_pulses,), start, dtype=torch.int64), amp, width)
            cdf = probs.double().cumsum(-1)
            table[:, start] = (u > cdf[:, :-1]).sum(-1).numpy()
        outcome = table.tolist()

    read_states: list[int] = []
    start_states: list[int] = []
    p = 0
    for kind in kinds.tolist():
        if kind == PULSE:
            start_states.append(state)
            if not stuck:
                state = outcome[p][state]
            p += 1
        elif kind == RESET:
            if not stuck:
                state = 0
        else:
            read_states.append(state)
    devices.state[k] = state

    c = devices.counters
    resets = int(np.count_nonzero(kinds == RESET))
    c.resets += resets
    c.energy_j += resets * devices.reset_energy_j
    if n_pulses:
        c.pulses += n_pulses
        c.energy_j += float(devices.pulse_energy(idx, torch.tensor(start_states), amp, width).sum())

    n_reads = len(read_states)
    if not n_reads:
        return np.empty(0)
    one = torch.tensor([k])
    signal_levels = devices.signal_levels(one)[0].double()
    noise = float(devices.read_noise(one)[0])
    z = torch.randn(n_reads, generator=devices.streams.read, dtype=torch.float64)
    signal = signal_levels[torch.tensor(read_states)] + noise * z
    c.reads += n_reads
    c.energy_j += n_reads * devices.read_energy_j
    return signal.numpy()


def operations(drive: np.ndarray, drive_dt: float, markers: np.ndarray | None, marker_dt: float,
               reset_at_or_below: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn a played waveform into operations: (kinds, amplitudes, widths), in time order.

    ``drive``: the physical amplitude per sample (tesla, amperes or volts at the device), every
    run of equal non-zero samples one pulse of ``run length * drive_dt`` seconds; a pulse at or
    below ``reset_at_or_below`` is a RESET. ``markers``: logic level per sample; each rising edge
    is a READ. A read and a pulse starting at the same instant: the read comes first.
    """
    drive = np.asarray(drive, dtype=np.float64)
    if len(drive):
        change = np.flatnonzero(np.diff(drive) != 0) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(drive)]])
        values = drive[starts]
        on = values != 0
        p_time = starts[on] * drive_dt
        p_width = (ends - starts)[on] * drive_dt
        p_amp = values[on]
    else:
        p_time = p_width = p_amp = np.empty(0)
    p_kind = np.full(len(p_amp), PULSE)
    if reset_at_or_below is not None:
        p_kind[p_amp <= reset_at_or_below] = RESET
    if markers is not None and len(markers):
        m = np.asarray(markers, dtype=bool)
        rises = np.flatnonzero(m & ~np.concatenate([[False], m[:-1]]))
    else:
        rises = np.empty(0, dtype=np.int64)
    r_time = rises * marker_dt
    times = np.concatenate([p_time, r_time])
    priority = np.concatenate([np.ones(len(p_time)), np.zeros(len(r_time))])
    order = np.lexsort((priority, times))
    kinds = np.concatenate([p_kind, np.full(len(r_time), READ)])[order]
    amps = np.concatenate([p_amp, np.zeros(len(r_time))])[order]
    widths = np.concatenate([p_width, np.zeros(len(r_time))])[order]
    return kinds, amps, widths
