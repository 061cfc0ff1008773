"""How a sweep scales over local Dask workers, and what the sweep machinery costs per point.

    python bench/sweep_scaling.py [--points 12] [--repeats 3]

Points: a reduced mean/variance training (16 inputs x 4 classes, 64 wires on `sim-dw`, 6 epochs;
about 1 s of work each), one seed per point. Measured in one run:

- points per minute with 1 and with 2 local worker processes (LocalCluster, one thread each),
  workers started and warmed up (labctl and torch imported) before the clock starts; the clock
  covers ``run_sweep`` against that cluster: connecting, submitting, running, writing the index
  after every point and the CSV/Parquet tables at the end;
- the per-point overhead of the sweep machinery: wall time per point with one warm worker minus
  the same point run in a warm process with ``labctl.api.run`` (validation, chip, data, run file,
  engine: everything but the sweep), and against ``labctl run`` (a fresh process per point, as a
  shell loop would do it). Each worker count is timed ``--rounds`` times, interleaved; the fastest
  round counts (the machine may be shared).
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
name = "scaling"
protocol = "train-meanvar-small"
checkpoint_every_s = 10

[axes]
seed = {{start = 0, stop = {last}, num = {num}}}
"""


def timed_sweep(plan, out: Path, workers: int) -> tuple[float, dict]:
    from distributed import Client, LocalCluster

    from labctl.sweep_dask import run_sweep

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("labctl.sweep") and __import__("torch") and None)  # warm workers
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        outcome = run_sweep(plan, out, scheduler=cluster.scheduler_address, echo=lambda _: None)
        elapsed = time.perf_counter() - start
    assert outcome.complete, "a point failed"
    return elapsed, outcome.index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3, help="labctl run repetitions for the comparison")
    parser.add_argument("--rounds", type=int, default=2,
                        help="timed sweeps per worker count, interleaved (1, 2, 2, 1, ...); the fastest counts")
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    from labctl.sweep import load_sweep

    work = Path(tempfile.mkdtemp(prefix="sweep-scaling-"))
    sweep_file = work / "scaling.toml"
    sweep_file.write_text(SWEEP.format(last=args.points - 1, num=args.points))
    plan = load_sweep(sweep_file)

    rates, run_times = {}, {}
    order = [w for r in range(args.rounds) for w in ((1, 2) if r % 2 == 0 else (2, 1))]
    for round_no, workers in enumerate(order):
        elapsed, index = timed_sweep(plan, work / f"w{workers}", workers)
        rate = 60 * len(plan.points) / elapsed
        print(f"round {round_no}: {workers} worker(s): {len(plan.points)} points in {elapsed:.1f} s = "
              f"{rate:.1f} points/min (median run {statistics.median(p['wall_s'] for p in index['points']):.2f} s)")
        if rate > rates.get(workers, 0):
            rates[workers] = rate
            run_times[workers] = [p["wall_s"] for p in index["points"]]
    one_elapsed = 60 / rates[1]  # wall time per point, one warm worker

    # The same point in a warm process (labctl.api.run: validation, chip, data, run file, engine).
    from labctl import api

    spec_task = plan.task(plan.points[0], work)
    warm = []
    for i in range(args.repeats + 1):
        start = time.perf_counter()
        result = api.run(str(sweep_protocol(work, spec_task)), out=work / f"api{i}.h5", checkpoint_every_s=10)
        warm.append(time.perf_counter() - start)
        assert result.ok
    in_process = statistics.median(warm[1:])  # the first pays the imports

    # The same point with `labctl run`: a protocol file holding the point's settings.
    protocol = sweep_protocol(work, spec_task)
    walls = []
    for i in range(args.repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "labctl", "run", str(protocol), "--out", str(work / f"run{i}.h5"),
                        "--no-progress", "--checkpoint-every", "10"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        walls.append(time.perf_counter() - start)
    labctl_run = statistics.median(walls)

    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| points per minute, 1 worker | {rates[1]:.1f} |")
    print(f"| points per minute, 2 workers | {rates[2]:.1f} |")
    print(f"| speed-up, 2 workers / 1 | {rates[2] / rates[1]:.2f}x |")
    print(f"| wall time per point in the sweep, 1 warm worker | {one_elapsed:.2f} s |")
    print(f"| the point's own run (run file start to stop), mean | {statistics.mean(run_times[1]):.2f} s |")
    print(f"| the same point in a warm process (`labctl.api.run`), median of {args.repeats} | {in_process:.2f} s |")
    print(f"| sweep machinery per point (sweep minus warm process) | {one_elapsed - in_process:+.2f} s |")
    print(f"| the same point with `labctl run` (fresh process), median of {args.repeats} | {labctl_run:.2f} s |")
    print(f"| sweep per point minus `labctl run` | {one_elapsed - labctl_run:+.2f} s |")
    shutil.rmtree(work, ignore_errors=True)


def sweep_protocol(work: Path, task) -> Path:
    """A protocol file holding the point's settings (what `labctl run` would be given)."""
    lines = ["[protocol]", 'name = "scaling-point"', 'kind = "train-meanvar"', 'station = "sim-dw"', "seed = 0",
             "[settings]"] + [f"{k} = {_toml(v)}" for k, v in task.pfile["settings"].items()]
    protocol = work / "point.toml"
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
