"""The command line as a user meets it: one writer per run file, Ctrl-C, and errors without tracebacks.

Every test here runs ``labctl`` as its own process, as a user in a second terminal would.
"""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from bench_helpers import reduced_protocol

LABCTL = [sys.executable, "-m", "labctl"]
ENV = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}


def start(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen([*LABCTL, *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def labctl(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*LABCTL, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def wait_for_checkpoints(path: Path, count: int, timeout: float = 60) -> None:
    """Wait until the run file at ``path`` exists and holds ``count`` checkpoints."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            try:
                with h5py.File(path, "r", swmr=True) as f:
                    if f["checkpoints/index"].shape[0] >= count:
                        return
            except (OSError, KeyError, RuntimeError):
                pass  # the writer is mid-flush; look again
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {count} checkpoints in {timeout} s")


def short_main_job(tmp_path: Path) -> str:
    """A protocol file: the main job (``train-meanvar``) with 12 epochs instead of up to 100, so
    that a test that races a second command against a live run, or interrupts one, does not then
    wait ~30 s for the rest of the training. The race itself is the main job's: the same
    calibration, checkpoints and file writes."""
    return str(reduced_protocol("train-meanvar", {"max_epochs = 100": "max_epochs = 12"}, tmp_path))


def assert_one_line_error(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert stderr.strip().count("\n") == 0, stderr
    assert stderr.startswith("labctl: ")


# ---------------------------------------------------------------------------- one writer per file
@pytest.mark.slow
def test_resume_while_the_run_writes_is_refused(tmp_path):
    run = start("run", short_main_job(tmp_path), "--no-progress",
                "--checkpoint-every", "0", "--out", "live.h5", cwd=tmp_path)
    wait_for_checkpoints(tmp_path / "live.h5", 2)
    second = labctl("resume", "live.h5", "--no-progress", cwd=tmp_path)
    assert second.returncode == 2
    assert_one_line_error(second.stderr)
    assert f"pid {run.pid}" in second.stderr and "live.h5" in second.stderr
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    info = labctl("info", "live.h5", cwd=tmp_path)
    assert re.search(r"exit_status: success", info.stdout)
    assert "reopen" not in info.stdout  # the second writer never touched the file


@pytest.mark.slow
def test_two_resumes_at_once_one_proceeds(tmp_path):
    run = start("run", short_main_job(tmp_path), "--no-progress",
                "--checkpoint-every", "0", "--out", "k.h5", cwd=tmp_path)
    wait_for_checkpoints(tmp_path / "k.h5", 3)
    run.send_signal(signal.SIGKILL)
    run.wait()
    inode = (tmp_path / "k.h5").stat().st_ino
    first = start("resume", "k.h5", "--no-progress", cwd=tmp_path)
    second = start("resume", "k.h5", "--no-progress", cwd=tmp_path)
    results = [(p, *p.communicate(timeout=300)) for p in (first, second)]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 2], [(p.returncode, err) for p, _, err in results]
    loser = next(err for p, _, err in results if p.returncode == 2)
    assert_one_line_error(loser)
    assert "pid" in loser
    info = labctl("info", "k.h5", cwd=tmp_path)
    assert "exit_status: success" in info.stdout
    assert (tmp_path / "k.h5").exists()
    del inode  # the winner may have copied a killed file into a clean one; the name is what counts


def test_two_runs_on_one_file_one_proceeds(tmp_path):
    procs = [start("run", "calibrate-stt", "--no-progress", "--out", "same.h5", cwd=tmp_path) for _ in range(2)]
    results = [(p.returncode, err) for p in procs for _, err in [p.communicate(timeout=300)]]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert_one_line_error(loser)
    assert "same.h5" in loser


# ---------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_without_a_terminal_says_how_to_go_on(tmp_path):
    run = start("run", short_main_job(tmp_path), "--no-progress",
                "--checkpoint-every", "0", "--out", "c.h5", cwd=tmp_path)
    wait_for_checkpoints(tmp_path / "c.h5", 2)
    run.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _has_event(tmp_path / "c.h5", b"pause"):
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert "Traceback" not in err
    assert "paused at step" in err and "Ctrl-C again" in err  # said although --no-progress
    assert "labctl resume c.h5" in err
    resumed = labctl("resume", "c.h5", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr


def test_ctrl_c_in_a_terminal_then_enter_resumes(tmp_path):
    master, slave = pty.openpty()
    run = start("run", short_main_job(tmp_path), "--no-progress",
                "--checkpoint-every", "0", "--out", "t.h5", cwd=tmp_path, stdin=slave)
    os.close(slave)
    try:
        wait_for_checkpoints(tmp_path / "t.h5", 2)
        run.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _has_event(tmp_path / "t.h5", b"pause"):
            time.sleep(0.05)
        os.write(master, b"\n")
        out, err = run.communicate(timeout=120)
    finally:
        os.close(master)
    assert run.returncode == 0, err
    assert "Enter or r + Enter resumes" in err
    assert "resume: terminal: resume" in err


def test_unanswered_pause_ends_resumable(tmp_path):
    run = start("run", "--no-progress", "--checkpoint-every", "0", "--pause-timeout", "1", "--out", "p.h5", cwd=tmp_path)
    wait_for_checkpoints(tmp_path / "p.h5", 2)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert "without an answer" in err and "labctl resume p.h5" in err


def test_ctrl_c_at_start_up_exits_cleanly(tmp_path):
    for delay in (0.2, 0.6):  # before the run starts (importing takes longer than that)
        run = start("run", "--no-progress", "--out", "early.h5", cwd=tmp_path)
        time.sleep(delay)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=120)
        # 1: labctl caught it; -SIGINT: it came before Python had set up its own handler (the
        # interpreter's default action, as for any program); either way no traceback, no file
        assert run.returncode in (1, -signal.SIGINT), (run.returncode, err)
        assert "Traceback" not in err, err
        assert not (tmp_path / "early.h5").exists() or run.returncode == 1


def _has_event(path: Path, kind: bytes) -> bool:
    try:
        with h5py.File(path, "r", swmr=True) as f:
            return kind in set(f["events"]["kind"])
    except (OSError, KeyError, RuntimeError):
        return False


# ---------------------------------------------------------------------------- expected errors: exit 2, one line
@pytest.mark.parametrize("args, words", [
    (["run", "calibrate-stt", "--out", "a-file/x.h5"], "a-file"),
    (["run", "--seed", "-1"], "seed"),
    (["run", "--checkpoint-every", "-5"], "seconds"),
    (["info", "."], "."),
    (["resume", "missing.h5"], "missing.h5"),
])
def test_expected_errors_are_one_line_with_exit_2(tmp_path, args, words):
    (tmp_path / "a-file").write_text("not a folder")
    result = labctl(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert words in result.stderr


def test_existing_out_file_is_not_replaced_without_overwrite(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"precious")
    result = labctl("run", "calibrate-stt", "--no-progress", "--out", "x.h5", cwd=tmp_path)
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert "--overwrite" in result.stderr
    assert (tmp_path / "x.h5").read_bytes() == b"precious"


# ---------------------------------------------------------------------------- the envelope on resume
def test_resume_never_widens_the_envelope_recorded_in_an_edited_run_file(tmp_path):
    """A run file whose recorded envelope was edited wider than the station's is resumed with the
    station's limits (the intersection of both), and the difference is said."""
    import json

    run = start("run", short_main_job(tmp_path), "--no-progress",
                "--checkpoint-every", "0", "--out", "e.h5", cwd=tmp_path)
    wait_for_checkpoints(tmp_path / "e.h5", 3)
    run.send_signal(signal.SIGTERM)  # aborted: a cleanly closed, resumable file
    assert run.wait() == 1
    with h5py.File(tmp_path / "e.h5", "r+") as f:  # edit the recorded envelope as a careless hand would
        station = json.loads(f.attrs["station"])
        assert station["envelope"]["amplitude_max"] == 0.012
        station["envelope"]["amplitude_max"] = 0.025
        f.attrs["station"] = json.dumps(station)
    resumed = labctl("resume", "e.h5", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "envelope.amplitude_max: run file 0.025, station now 0.012, using 0.012" in resumed.stderr


def test_intersection_of_envelopes_takes_the_narrower_limit_of_each():
    from labctl.config import load_station
    from labctl.runs import intersect_envelopes

    current = load_station("sim-dw")
    wide = current.model_copy(update={"envelope": current.envelope.model_copy(
        update={"amplitude_max": 0.025, "width_min": current.envelope.width_min * 10})})
    merged, notes = intersect_envelopes(wide, current)
    assert merged.envelope.amplitude_max == current.envelope.amplitude_max  # the station's narrower one
    assert merged.envelope.width_min == wide.envelope.width_min  # the run file's narrower one
    assert len(notes) == 2
