"""Instrument transactions per 1,000 trials, and trials per second over the socket bench.

For each simulated bench (Kerr: DW nanowires; TMR: STT-MTJs and DW-MTJs) it runs the batched
call a calibration sweep makes -- every synapse at every amplitude of a grid, ``repeats`` trials
each, in one ``chip.trial`` -- once through the SCPI simulators on 127.0.0.1 sockets (pyvisa-py)
and once on the direct simulated backend built from the same station (same physics seed), and
prints:

- transactions per 1,000 trials (every VISA write or query counts one; target: at most 10);
- trials per second on the socket bench and on the direct backend (best of ``--runs`` calls, the
  least disturbed by other jobs), and their ratio.

Usage: ``python bench/bench_transactions.py [--repeats 100] [--points 10] [--devices 16] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labctl.config import load_station  # noqa: E402
from labctl.station import open_chip  # noqa: E402

CASES = {  # station, amplitude grid (family unit), pulse width (s)
    "kerr-bench": (2.0e-3, 7.5e-3, 1e-6),
    "tmr-bench": (0.5, 0.95, 1e-7),
    "tmr-dwmtj-bench": (80e-6, 330e-6, 2e-8),
}


def direct_twin(station):
    header = station.station.model_copy(update={"backend": "simulated"})
    return station.model_copy(update={"station": header, "instruments": None, "bench": None})


def sweep(chip, devices: int, points: int, repeats: int, lo: float, hi: float, width: float) -> tuple[int, float]:
    """One calibration-style call; returns (trials, seconds)."""
    idx = torch.arange(devices).repeat(points)
    amplitude = torch.linspace(lo, hi, points).repeat_interleave(devices)
    start = time.perf_counter()
    if chip.family == "dw_mtj":
        chip.trial_levels(idx, amplitude, width, repeats)
    else:
        chip.trial(idx, amplitude, width, repeats)
    return devices * points * repeats, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100, help="trials per synapse per amplitude")
    parser.add_argument("--points", type=int, default=10, help="amplitudes in the grid")
    parser.add_argument("--devices", type=int, default=16, help="synapses swept (at most 16)")
    parser.add_argument("--runs", type=int, default=3, help="calls timed per backend; the fastest counts")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"workload: {args.devices} synapses x {args.points} amplitudes x {args.repeats} trials per call; "
          f"best of {args.runs}; {args.threads} torch thread(s)")
    header = f"{'station':<17}{'trials':>8}{'transact.':>11}{'per 1000':>10}{'socket/s':>11}{'direct/s':>12}{'ratio':>10}"
    print(header)
    print("-" * len(header))
    for name, (lo, hi, width) in CASES.items():
        station = load_station(name)
        with open_chip(station) as chip:
            sweep(chip, args.devices, 2, 1, lo, hi, width)  # warm up: configure, first moves
            before = chip.counters.transactions
            trials, seconds = sweep(chip, args.devices, args.points, args.repeats, lo, hi, width)
            transactions = chip.counters.transactions - before
            for _ in range(args.runs - 1):
                seconds = min(seconds, sweep(chip, args.devices, args.points, args.repeats, lo, hi, width)[1])
        with open_chip(direct_twin(station)) as direct:
            sweep(direct, args.devices, 2, 1, lo, hi, width)
            direct_seconds = min(sweep(direct, args.devices, args.points, args.repeats, lo, hi, width)[1]
                                 for _ in range(args.runs))
        socket_rate, direct_rate = trials / seconds, trials / direct_seconds
        print(f"{name:<17}{trials:>8}{transactions:>11}{1000 * transactions / trials:>10.2f}"
              f"{socket_rate:>11.0f}{direct_rate:>12.0f}{socket_rate / direct_rate:>10.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
