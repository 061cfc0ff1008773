"""Simulated trials per second on 10^6 synapses, as a ratio to the physical floor of the same run.

The floor is the least any simulator of these trials must do: draw one uniform random number per
trial with ``torch.rand`` and compare it with a precomputed switching probability. The
simulator does more (evaluate the law per device, fold in read errors, count energy, keep
state, go through the SynapseArray envelope check); the target is at least 0.25 of the floor.

For K-level devices (DW-MTJ) the floor is a categorical draw: one uniform compared with the
K-1 cumulative probabilities of each device.

For ``repeats`` > 1 the floor draws ``repeats`` uniforms per synapse; the simulator draws one
binomial count per synapse (exact, since trials are independent given the device), so its
ratio can exceed 1.

Floor and simulator are timed alternately, several rounds, and the median of each is used, so
that load from other processes on a shared machine affects both alike.

Elementwise torch operations use every thread, but ``torch.rand`` with a generator draws on
one; on a loaded shared machine a multi-threaded operation waits on descheduled threads, so the
figures are given for one thread and for torch's default, each in the same run as its floor.

    python bench/physics_throughput.py [--synapses 1000000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from labctl.config import load_station
from labctl.station import open_chip

FAMILIES = {  # station, pulse amplitude near the middle of the S-curve, width (s)
    "dw_nanowire": ("sim-dw", 4.6e-3, 1e-6),
    "stt_mtj": ("sim-stt", 0.75, 1e-8),
    "dw_mtj": ("sim-dwmtj", 150e-6, 1e-8),
}


def open_big_chip(station_name: str, n: int):
    station = load_station(station_name)
    chip = station.chip.model_copy(update={"n": n})
    return open_chip(station.model_copy(update={"chip": chip}))


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(family: str, n: int, repeats: int, rounds: int) -> tuple[float, float]:
    station_name, amplitude, width = FAMILIES[family]
    chip = open_big_chip(station_name, n)
    amplitudes = torch.full((n,), amplitude)
    gen = torch.Generator().manual_seed(0)
    if chip.levels == 2:
        thresholds = torch.rand(n, generator=gen)
    else:  # cumulative probabilities of K levels, one row per device
        thresholds = torch.rand(n, chip.levels - 1, generator=gen).sort(dim=-1).values

    def floor():
        for _ in range(repeats):
            u = torch.rand(n, generator=gen)
            u < thresholds if chip.levels == 2 else (u.unsqueeze(-1) > thresholds).sum(-1)

    def simulator():
        chip.trial(None, amplitudes, width, repeats)

    floor(), simulator()  # warm up
    floor_times, sim_times = [], []
    for _ in range(rounds):
        floor_times.append(seconds(floor))
        sim_times.append(seconds(simulator))
    return statistics.median(floor_times), statistics.median(sim_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synapses", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    n = args.synapses
    default_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {n:,} synapses, median of {args.rounds} alternating rounds")
    print(f"{'threads':>7} {'family':<12} {'repeats':>7} {'floor trials/s':>15} {'sim trials/s':>14} {'ratio':>6}  target")
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        worst = float("inf")
        for family in FAMILIES:
            for repeats in (1, 64):
                t_floor, t_sim = measure(family, n, repeats, args.rounds)
                trials = n * repeats
                ratio = t_floor / t_sim
                worst = min(worst, ratio)
                print(f"{threads:>7} {family:<12} {repeats:>7} {trials / t_floor:>15.3e} {trials / t_sim:>14.3e} {ratio:>6.2f}  >= 0.25")
        print(f"{threads:>7} worst ratio: {worst:.2f} ({'meets' if worst >= 0.25 else 'MISSES'} the 0.25 target)")


if __name__ == "__main__":
    main()
