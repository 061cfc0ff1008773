"""Kill + resume on the socket bench continues the same simulated chip and the same totals.

Each reduced case runs twice with the same seeds through ``python -m labctl.cli run`` on its
socket-bench station (the CLI serves the SCPI simulators itself, in process): once undisturbed,
once SIGKILLed after a mid-run checkpoint and then ``labctl resume``d. The checkpoint holds the
instrument array's counters and the simulated chip's state (levels and random streams), so the
resumed run must end with every total (pulses, resets, reads, trials, energy) and every metric and
data row equal to the undisturbed run. Transactions are not compared exactly: the resumed session
opens and configures the instruments once more (they must still be counted from the saved total).
Both runs go on at the same time (two processes) to keep the wall time down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from bench_helpers import reduced_protocol

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

CASES = {  # reduced settings: a few seconds per run; several checkpoints (safe points) in each
    "train-meanvar-bench": {"max_epochs = 8": "max_epochs = 2", "patience = 8": "patience = 2",
                            "train_limit = 500 ": "train_limit = 250 ", "calibration_points = 12": "calibration_points = 4",
                            "calibration_repeats = 50": "calibration_repeats = 10", "test_passes = 4": "test_passes = 1"},
    "train-hebbian-bench": {"epochs = 16": "epochs = 3"},
}
WALL_CLOCK_FIELDS = ("train_time_s", "elapsed", "time", "wall")  # differ between any two runs


def reduced(name: str, tmp_path: Path) -> Path:
    return reduced_protocol(name, CASES[name], tmp_path)


def labctl(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labctl.cli", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=120)


def start(protocol: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "labctl.cli", "run", str(protocol), "--out", str(out),
                             "--checkpoint-every", "0", "--no-progress"], cwd=out.parent, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def checkpoints(path: Path) -> int:
    """Checkpoint index rows visible to a SWMR reader now (0 if the file is not there or not readable yet)."""
    if not path.exists():  # built under a hidden name, moved into place at its first checkpoint
        return 0
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            return f["checkpoints/index"].shape[0] if "checkpoints/index" in f else 0
    except (OSError, KeyError):
        return 0


def kill_after_checkpoints(proc: subprocess.Popen, path: Path, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while checkpoints(path) < count:
        assert proc.poll() is None, f"the run ended before {count} checkpoints: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no mid-run checkpoint in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


def our_processes(tmp_path: Path) -> list[int]:
    """Live processes whose command line names ``tmp_path`` (the runs, their simulators, their sockets)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(tmp_path).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def comparable(dataset: np.ndarray) -> np.ndarray:
    if dataset.dtype.names:
        keep = [n for n in dataset.dtype.names if not any(w in n for w in WALL_CLOCK_FIELDS)]
        return dataset[keep]
    return dataset


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_kill_and_resume_on_the_socket_bench_matches_the_undisturbed_run(name, tmp_path):
    protocol = reduced(name, tmp_path)
    full, killed = tmp_path / "full.h5", tmp_path / "killed.h5"
    undisturbed = start(protocol, full)
    try:
        victim = start(protocol, killed)
        kill_after_checkpoints(victim, killed, 3)
        assert json.loads(labctl("info", str(killed), "--json", cwd=tmp_path).stdout)["exit_status"] == "incomplete"
        resumed = labctl("resume", str(killed), "--no-progress", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert undisturbed.wait(timeout=120) == 0, undisturbed.stderr.read()
    finally:
        for proc in (undisturbed,):
            if proc.poll() is None:
                proc.kill()
    a = json.loads(labctl("info", str(killed), "--json", cwd=tmp_path).stdout)
    b = json.loads(labctl("info", str(full), "--json", cwd=tmp_path).stdout)
    assert a["exit_status"] == b["exit_status"] == "success"
    assert "reopen" in [e["kind"] for e in a["events"]]
    for key in ("pulses", "resets", "reads", "trials", "energy_j"):
        assert a["counters"][key] == b["counters"][key], key
    assert a["counters"]["pulses"] > 0 and a["counters"]["reads"] > 0
    assert a["counters"]["transactions"] >= b["counters"]["transactions"]  # the resumed session's set-up on top
    metrics = {k: v for k, v in b["metrics"].items() if not any(w in k for w in WALL_CLOCK_FIELDS)}
    assert {k: a["metrics"][k] for k in metrics} == metrics
    with h5py.File(killed, "r") as fa, h5py.File(full, "r") as fb:
        names = []
        fb.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        data = [n for n in names if not n.startswith(("checkpoints", "events", "summary"))]
        assert data
        for n in data:
            assert np.array_equal(comparable(fa[n][()]), comparable(fb[n][()])), n
    assert our_processes(tmp_path) == []  # no run, simulator thread or listening socket left behind
