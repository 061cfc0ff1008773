"""How a sweep scales over local Dask workers, and what the sweep machinery costs per point.

    python bench/sweep_scaling.py [--points 16] [--rounds 2] [--repeats 3] [--sizes short,long]

Two point sizes, both reduced mean/variance trainings (16 inputs x 4 classes on the 64-wire
`sim-dw`, one seed per point):

- ``long`` (the representative one): 2000 training samples, N = 8, 50 epochs: about 2.5 s of run
  per point, the order of a real (small) training point;
- ``short``: `train-meanvar-small` as it is (500 samples, N = 4, 6 epochs): about 0.4 s per point,
  where any fixed cost per point shows most.

Measured, for each size:

- points per minute with 1 and with 2 local worker processes (a LocalCluster, one thread each, as
  ``labctl sweep --workers N`` starts it). The cluster is started and its workers warmed up
  (:func:`labctl.sweep.warm_up`: imports, one torch thread; the one-time cost is printed) before
  the clock starts; the clock covers ``run_sweep`` against that cluster: connecting, warming
  (again: already done), submitting, running, filing every record into the index, the CSV/Parquet
  tables at the end. Worker counts are interleaved over ``--rounds`` rounds (1, 2, then 2, 1, ...);
  each round's figures are printed and the fastest round of each counts (the machine may be shared);
- the per-point overhead of the sweep machinery: wall time per point with one warm worker minus the
  same point run in a warm process with ``labctl.api.run`` (validation, chip, data, run file,
  engine: everything but the sweep; one torch thread, median of ``--repeats``), and against
  ``labctl run`` (a fresh process per point, as a shell loop would run it).

The load average (``/proc/loadavg``) is printed at the start and at the end: compare figures only
from an idle machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = """
[sweep]
name = "scaling-{size}"
protocol = "train-meanvar-small"
checkpoint_every_s = 10
{fixed}
[axes]
seed = {{start = 0, stop = {last}, num = {num}}}
"""
SIZES = {
    "long": "[fixed]\nsettings.train_limit = 2000\nsettings.measurements = 8\nsettings.max_epochs = 50\n"
            "settings.patience = 50\n",
    "short": "",
}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def timed_round(plans: dict, work: Path, workers: int) -> dict[str, tuple[float, dict]]:
    """One LocalCluster of ``workers`` processes, warmed up; then each size's sweep, timed."""
    from distributed import Client, LocalCluster

    from labctl.sweep import warm_up
    from labctl.sweep_dask import run_sweep

    results = {}
    start = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        for plan in plans.values():
            client.run(warm_up, plan.task(plan.points[0], work))
        cold = time.perf_counter() - start
        for size, plan in plans.items():
            out = work / f"{size}-w{workers}"
            shutil.rmtree(out, ignore_errors=True)
            begin = time.perf_counter()
            outcome = run_sweep(plan, out, scheduler=cluster.scheduler_address, echo=lambda _: None)
            results[size] = (time.perf_counter() - begin, outcome.index)
            assert outcome.complete, [(p["name"], p["status"], p["error"]) for p in outcome.index["points"]]
    print(f"  ({workers} worker(s) started and warmed up in {cold:.1f} s, outside the clock; load {loadavg()})")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=16, help="points per sweep (one seed each)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="timed sweeps per worker count, interleaved (1, 2, 2, 1, ...); the fastest counts")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of the same point in a warm process and with labctl run, for the overhead")
    parser.add_argument("--sizes", default="long,short", help="point sizes to measure: long, short or both")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if not sizes or set(sizes) - set(SIZES):
        parser.error(f"--sizes: a comma-separated list of {', '.join(SIZES)}")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    import torch

    from labctl.sweep import load_sweep

    torch.set_num_threads(1)  # as a worker: the warm-process comparison runs on one thread too
    print(f"sweep scaling: {args.points} points per sweep, sizes {', '.join(sizes)}, {os.cpu_count()} CPUs; "
          f"load average at the start {loadavg()}")
    work = Path(tempfile.mkdtemp(prefix="sweep-scaling-"))
    plans = {}
    for size in sizes:
        sweep_file = work / f"scaling-{size}.toml"
        sweep_file.write_text(SWEEP.format(size=size, fixed=SIZES[size], last=args.points - 1, num=args.points))
        plans[size] = load_sweep(sweep_file)

    rates: dict[tuple[str, int], float] = {}
    run_times: dict[str, list[float]] = {}
    order = [w for r in range(args.rounds) for w in ((1, 2) if r % 2 == 0 else (2, 1))]
    for round_no, workers in enumerate(order):
        print(f"round {round_no}: {workers} worker(s)")
        for size, (elapsed, index) in timed_round(plans, work, workers).items():
            rate = 60 * args.points / elapsed
            print(f"  {size}: {args.points} points in {elapsed:.1f} s = {rate:.1f} points/min "
                  f"(median run {statistics.median(p['wall_s'] for p in index['points']):.2f} s)")
            if rate > rates.get((size, workers), 0):
                rates[size, workers] = rate
                if workers == 1:
                    run_times[size] = [p["wall_s"] for p in index["points"]]

    from labctl import api

    rows = []
    for size, plan in plans.items():
        protocol = sweep_protocol(work, plan.task(plan.points[0], work), size)
        warm = []
        for i in range(args.repeats + 1):  # the same point in a warm process; the first pays the imports
            start = time.perf_counter()
            result = api.run(str(protocol), out=work / f"api-{size}-{i}.h5", checkpoint_every_s=10)
            warm.append(time.perf_counter() - start)
            assert result.ok
        in_process = statistics.median(warm[1:])
        walls = []
        for i in range(args.repeats):  # the same point with `labctl run`, a fresh process each
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "labctl", "run", str(protocol), "--out",
                            str(work / f"run-{size}-{i}.h5"), "--no-progress", "--checkpoint-every", "10"],
                           check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
            walls.append(time.perf_counter() - start)
        labctl_run = statistics.median(walls)
        one, two = rates[size, 1], rates[size, 2]
        per_point = 60 / one  # wall time per point, one warm worker
        rows += [(f"{size}: points per minute, 1 worker", f"{one:.1f}"),
                 (f"{size}: points per minute, 2 workers", f"{two:.1f}"),
                 (f"{size}: speed-up, 2 workers / 1 (target >= 1.7x)", f"{two / one:.2f}x"),
                 (f"{size}: wall time per point in the sweep, 1 warm worker", f"{per_point:.2f} s"),
                 (f"{size}: the point's own run (run file start to stop), mean",
                  f"{statistics.mean(run_times[size]):.2f} s"),
                 (f"{size}: the same point in a warm process (`labctl.api.run`), median of {args.repeats}",
                  f"{in_process:.2f} s"),
                 (f"{size}: sweep machinery per point (sweep minus warm process; target < 0.5 s)",
                  f"{per_point - in_process:+.2f} s"),
                 (f"{size}: the same point with `labctl run` (fresh process), median of {args.repeats}",
                  f"{labctl_run:.2f} s"),
                 (f"{size}: sweep per point minus `labctl run`", f"{per_point - labctl_run:+.2f} s")]
    print()
    print(f"load average at the end {loadavg()}")
    print()
    print("| measure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    shutil.rmtree(work, ignore_errors=True)


def sweep_protocol(work: Path, task, size: str) -> Path:
    """A protocol file holding the point's settings (what `labctl run` would be given)."""
    lines = ["[protocol]", f'name = "scaling-point-{size}"', 'kind = "train-meanvar"', 'station = "sim-dw"',
             f"seed = {task.seed or 0}", "[settings]"]
    lines += [f"{k} = {_toml(v)}" for k, v in task.pfile["settings"].items()]
    protocol = work / f"point-{size}.toml"
    protocol.write_text("\n".join(lines) + "\n")
    return protocol


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        raise ValueError("None is not TOML")
    return repr(value)


if __name__ == "__main__":
    main()
