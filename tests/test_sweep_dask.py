"""``labctl sweep`` on Dask: a real scheduler and two workers on 127.0.0.1, one SIGKILLed mid-point;
and the ``labctl sweep`` process itself SIGKILLed mid-sweep, then run again. Either way the sweep
ends with the same final metrics per point as an undisturbed run (the killed point resumes from its
last checkpoint). A Ctrl-C at the terminal (SIGINT to the whole process group) lets the running
point finish and starts no other. The dashboard's address is printed (LocalCluster and scheduler).
Every process started here is torn down at the end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import psutil
import pytest

from labctl.cli import main
from labctl.store import RunReader
from labctl.sweep import load_sweep, read_index, sweep_table
from labctl.sweep_dask import run_sweep

pytestmark = pytest.mark.slow

# Four points of a reduced mean/variance training (16 -> 4 inputs and classes, 64 wires): about
# 1 s each, with a checkpoint at every safe point (40 per point), so a kill lands mid-run.
SWEEP = """
[sweep]
name = "dask-test"
protocol = "train-meanvar-small"
checkpoint_every_s = 0

[axes]
settings.measurements = [1, 4]
seed = [0, 1]
"""
TIMING = {"wall_s", "train_time_s"}  # the only columns allowed to differ between runs
DASHBOARD = re.compile(r"^dashboard: (http://127\.0\.0\.1:[1-9]\d*/status)$", re.M)


def final_metrics(table: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in table.columns if c not in TIMING | {"error"}]
    return table[keep].sort_values("index").reset_index(drop=True)


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "dask-test.toml"
    path.write_text(SWEEP)
    return path


@pytest.fixture(scope="module")
def reference(sweep_file, tmp_path_factory) -> pd.DataFrame:
    """The same sweep, undisturbed, one point at a time in this process."""
    outcome = run_sweep(load_sweep(sweep_file), tmp_path_factory.mktemp("reference"), local=True, echo=lambda _: None)
    assert outcome.complete
    table = final_metrics(sweep_table(outcome.index))
    assert table["test_accuracy"].between(0, 1).all() and len(table) == 4
    return table


def _worker_processes(parent: psutil.Process) -> list[psutil.Process]:
    """The Dask worker processes (multiprocessing spawns) under ``parent``. A short-lived child
    that ends while the list is read (a zombie, or gone) is not one of them."""
    found = []
    for child in parent.children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
        if "spawn_main" in command:
            found.append(child)
    return found


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


@pytest.fixture
def dask_cluster(tmp_path):
    """``dask scheduler`` and two ``dask worker`` processes (no nanny: the pid is the worker)."""
    procs: list[subprocess.Popen] = []
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        procs.append(subprocess.Popen(_python("-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                              "--port", "0", "--dashboard-address", "127.0.0.1:0",
                                              "--scheduler-file", str(scheduler_file)),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path))
        deadline = time.monotonic() + 30
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            assert procs[0].poll() is None, "the Dask scheduler exited"
            time.sleep(0.05)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            procs.append(subprocess.Popen(_python("-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                                  "--no-nanny", "--host", "127.0.0.1", "--no-dashboard"),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path))
        from distributed import Client

        with Client(address, timeout="20s") as client:
            client.wait_for_workers(2, timeout=30)
        yield address, [p.pid for p in procs[1:]]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            proc.wait(timeout=10)


def _point_being_written(out: Path, pids: list[int], timeout: float) -> tuple[Path, int]:
    """A point's run file that exists (first checkpoint written) while one of ``pids`` holds its lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for lock in out.glob("*.h5.lock"):
            run_file = lock.with_name(lock.name[:-len(".lock")])
            try:
                pid = json.loads(lock.read_text() or "{}").get("pid")
            except (OSError, ValueError):  # being written or just removed: look again
                continue
            if pid in pids and run_file.exists():
                return run_file, pid
        time.sleep(0.01)
    raise AssertionError(f"no point was seen running within {timeout} s")


def test_worker_sigkilled_mid_point_the_sweep_completes_with_the_same_metrics(dask_cluster, sweep_file, reference,
                                                                             tmp_path, capsys):
    address, worker_pids = dask_cluster
    out = tmp_path / "out"
    result: dict = {}
    runner = threading.Thread(target=lambda: result.setdefault(
        "rc", main(["sweep", str(sweep_file), "--out", str(out), "--scheduler", address])))
    runner.start()
    try:
        run_file, victim = _point_being_written(out, worker_pids, timeout=60)
        os.kill(victim, signal.SIGKILL)
    finally:
        runner.join(120)
    assert not runner.is_alive()
    assert result["rc"] == 0
    said = capsys.readouterr().out
    assert len(DASHBOARD.findall(said)) == 1, said  # the scheduler's dashboard (a free port), said once
    assert "workers warmed up in" in said, said  # the warm-up plugin reached the `dask worker` processes
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
    table = final_metrics(sweep_table(read_index(out)))
    pd.testing.assert_frame_equal(table, reference)
    with RunReader(run_file) as reader:  # the killed point was resumed from its checkpoint, not restarted
        kinds = [e["kind"] for e in reader.events()]
        assert "reopen" in kinds and reader.exit_status() == "success"
    assert not list(out.glob("*.lock"))


def test_sweep_process_sigkilled_then_rerun_finishes_with_the_same_table(sweep_file, reference, tmp_path):
    out = tmp_path / "out"
    command = _python("-m", "labctl", "sweep", str(sweep_file), "--out", str(out), "--workers", "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    children: list[psutil.Process] = []
    try:
        me = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while not children:  # the LocalCluster's worker process
            assert time.monotonic() < deadline and proc.poll() is None, "no worker process started"
            children = _worker_processes(me)
            time.sleep(0.05)
        run_file, _ = _point_being_written(out, [c.pid for c in children], timeout=60)
        children = me.children(recursive=True)
        proc.kill()
        proc.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, f"processes left behind by the killed sweep: {[p.pid for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for child in children:
            if child.is_running():
                child.kill()
    assert run_file.exists() and (read_index(out) is not None)
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{run_file.stem}: success (resumed from step" in rerun.stdout
    table = final_metrics(pd.read_parquet(out / "sweep.parquet"))
    pd.testing.assert_frame_equal(table, reference, check_dtype=False)


def test_ctrl_c_at_the_terminal_lets_the_running_point_finish_and_starts_no_other(sweep_file, tmp_path):
    """SIGINT to the process group, as a terminal's Ctrl-C: the LocalCluster's workers ignore it, the
    running point goes on to its end, the points not started (queued on the scheduler, or on the
    worker) are not run; exit code 1 (the sweep is not complete). Also: the dashboard is served."""
    out = tmp_path / "out"
    command = _python("-m", "labctl", "sweep", str(sweep_file), "--out", str(out), "--workers", "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=tmp_path, start_new_session=True)  # its own process group, as at a terminal
    lines: list[str] = []
    collector = threading.Thread(target=lambda: [lines.append(line) for line in proc.stdout], daemon=True)
    collector.start()
    children: list[psutil.Process] = []
    try:
        me = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while not children or not DASHBOARD.search("".join(lines)):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            children = _worker_processes(me)
            time.sleep(0.05)
        dashboard = DASHBOARD.search("".join(lines)).group(1)
        with urllib.request.urlopen(dashboard, timeout=20) as page:  # bokeh is installed: a real page
            assert page.status == 200
        run_file, _ = _point_being_written(out, [c.pid for c in children], timeout=60)
        children = me.children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 1
        _, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, f"processes left behind: {[p.pid for p in alive]}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for child in children:
            if child.is_running():
                child.kill()
    collector.join(10)
    said = "".join(lines)
    assert "Ctrl-C: no new points" in said and "Traceback" not in said and "KeyboardInterrupt" not in said, said
    points = {p["file"]: p for p in read_index(out)["points"]}
    assert points[run_file.name]["status"] == "success", said  # the running point went on to its end
    with RunReader(run_file) as run:
        assert run.exit_status() == "success"
    pending = [name for name, p in points.items() if p["status"] == "pending"]
    assert len(pending) >= 2 and not any((out / name).exists() for name in pending), said  # never started
    assert set(p["status"] for p in points.values()) <= {"success", "pending"}
    assert not list(out.glob("*.lock"))
