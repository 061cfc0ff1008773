"""SIGKILL at random moments, then ``labctl resume`` until the run is done: nothing is lost.

Each run file is killed several times (the run, then its resumes) at random moments drawn
from a fixed seed, including the first 0.3 s (before the run file exists) and moments when
checkpoints are being written (``--checkpoint-every 0``: one at every safe point). Every file
must either end with exactly the final metrics, counters and metric rows of an uninterrupted
run with the same seeds, or have been killed before its first checkpoint, in which case
``labctl resume`` says so (exit 2) and the same ``run --out`` starts it again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.slow

LABCTL = [sys.executable, "-m", "labctl"]
ENV = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}


def labctl(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*LABCTL, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def killed_after(args: list[str], cwd: Path, delay_s: float) -> int | None:
    """Start ``labctl ARGS``, SIGKILL it after ``delay_s`` seconds; its exit code if it ended first."""
    proc = subprocess.Popen([*LABCTL, *args], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        return proc.wait(timeout=delay_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def final_state(cwd: Path, name: str) -> dict:
    info = labctl("info", name, "--json", cwd=cwd)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    with h5py.File(cwd / name, "r") as f:
        rows = f["train/metrics"][()]
    return {"status": data["exit_status"], "metrics": data["metrics"], "counters": data["counters"], "rows": rows}


WALL_CLOCK = ("train_time_s", "elapsed_s")  # seconds of wall time: differ between any two runs


def assert_same_run(got: dict, want: dict) -> None:
    assert got["status"] == "success"
    strip = lambda metrics: {k: v for k, v in metrics.items() if k not in WALL_CLOCK}  # noqa: E731
    assert strip(got["metrics"]) == strip(want["metrics"])
    for key, value in want["counters"].items():
        assert got["counters"][key] == pytest.approx(value, rel=1e-12), key
    assert got["rows"].dtype == want["rows"].dtype
    for name in want["rows"].dtype.names:
        if name not in WALL_CLOCK:
            np.testing.assert_array_equal(got["rows"][name], want["rows"][name], err_msg=name)


def kill_and_resume(cwd: Path, name: str, run_args: list[str], delays: list[float]) -> dict:
    """Kill the run (and then its resumes) after each delay; then resume to the end. What happened.

    A run file exists only once it holds its start checkpoint, so every file found after a kill
    must resume; a run killed before that leaves no file and is started again with the same --out.
    """
    history = {"kills": 0, "before_first_checkpoint": 0}
    for delay in delays:
        if (cwd / name).exists():
            code = killed_after(["resume", name, "--no-progress", "--checkpoint-every", "0"], cwd, delay)
        else:
            code = killed_after(["run", *run_args, "--out", name], cwd, delay)
        if code is not None:
            assert code == 0, f"ended with exit code {code} before its kill"
            return history
        history["kills"] += 1
        history["before_first_checkpoint"] += not (cwd / name).exists()
    if not (cwd / name).exists():
        done = labctl("run", *run_args, "--out", name, cwd=cwd)
    else:
        done = labctl("resume", name, "--no-progress", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return history


def test_main_job_survives_random_sigkills(tmp_path):
    run_args = ["--no-progress", "--checkpoint-every", "0"]
    reference = labctl("run", *run_args, "--out", "reference.h5", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    want = final_state(tmp_path, "reference.h5")

    rng = random.Random(20261130)
    plans = []
    for i in range(4):  # 4 files x 5 kills = 20 SIGKILLs
        delays = [rng.uniform(0.05, 0.3) if i == 0 and k == 0 else rng.uniform(0.3, 5.5) for k in range(5)]
        plans.append((f"killed-{i}.h5", delays))
    with ThreadPoolExecutor(max_workers=2) as pool:
        histories = list(pool.map(lambda plan: kill_and_resume(tmp_path, plan[0], run_args, plan[1]), plans))

    assert sum(h["kills"] for h in histories) >= 20, histories
    assert histories[0]["before_first_checkpoint"] >= 1, histories  # the first 0.3 s
    for name, _ in plans:
        assert_same_run(final_state(tmp_path, name), want)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") or "recover" in p.name or p.suffix == ".tmp"]
    assert all(p.endswith(".lock") for p in leftovers), leftovers


def test_socket_bench_run_survives_sigkills(tmp_path):
    from test_bench_resume import reduced  # train-meanvar-bench with fewer epochs and samples

    run_args = [str(reduced("train-meanvar-bench", tmp_path)), "--no-progress", "--checkpoint-every", "0"]
    reference = labctl("run", *run_args, "--out", "reference.h5", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    want = final_state(tmp_path, "reference.h5")

    rng = random.Random(7)
    history = kill_and_resume(tmp_path, "killed.h5", run_args, [rng.uniform(2.0, 4.0) for _ in range(3)])
    assert history["kills"] >= 2, history
    assert_same_run(final_state(tmp_path, "killed.h5"), want)
    assert not _labctl_processes_on(tmp_path), "a labctl process (and its simulated bench) was left behind"


def _labctl_processes_on(folder: Path) -> list[int]:
    """PIDs of processes still running labctl in ``folder`` (the simulated bench runs inside them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"labctl" in b" ".join(cmdline) and cwd == str(folder):
            pids.append(int(entry.name))
    return pids
