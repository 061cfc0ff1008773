"""The labctl command: the main job, info, listings, failures, and resume after SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from labctl.cli import main

ROOT = Path(__file__).parents[1]


def labctl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labctl.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_main_job_with_no_arguments_writes_a_run_file(tmp_path):
    result = labctl("run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    files = list((tmp_path / "runs").glob("*.h5"))
    assert len(files) == 1 and "run file" in result.stdout and "success" in result.stdout
    info = json.loads(labctl("info", str(files[0]), "--json", cwd=tmp_path).stdout)
    assert info["exit_status"] == "success" and info["protocol"]
    assert info["metrics"] and info["counters"]["trials"] > 0


def test_info_json_of_calibration(tmp_path, capsys):
    out = tmp_path / "cal.h5"
    assert main(["calibrate", "--station", "sim-stt", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["exit_status"] == "success" and info["protocol"] == "calibrate-stt"
    assert 40 < info["metrics"]["median_delta"] < 50 and 0.75 < info["metrics"]["median_vc0"] < 0.85
    assert [e["kind"] for e in info["events"]][0] == "start" and info["events"][-1]["status"] == "success"


def test_listings(capsys):
    assert main(["protocols"]) == 0
    assert "calibrate-dw" in capsys.readouterr().out
    assert main(["stations"]) == 0
    assert "sim-stt" in capsys.readouterr().out


def test_info_on_a_file_that_is_not_a_run_file(tmp_path, capsys):
    bogus = tmp_path / "notes.h5"
    bogus.write_text("hello")
    assert main(["info", str(bogus)]) == 2
    assert "notes.h5" in capsys.readouterr().err


def test_run_that_breaks_the_envelope_is_refused_before_anything_runs(tmp_path, capsys):
    text = (ROOT / "labctl/defaults/protocols/calibrate-dw.toml").read_text()
    protocol = tmp_path / "hot.toml"
    protocol.write_text(text.replace("amplitude_stop = 8.0e-3", "amplitude_stop = 0.05"))
    out = tmp_path / "hot.h5"
    assert main(["run", str(protocol), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "hot.toml" in err and "settings.amplitude_stop" in err and "0.05" in err and "0.012" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hot.toml"]  # no run file, no lock, no partial
    assert main(["check", str(protocol)]) == 2


KILLER = """
import os, signal, sys
from pathlib import Path
from labctl import runs
protocol, chip, station, pfile = runs.prepare(sys.argv[1])
writer = runs.create_run_file(protocol, chip, station, pfile, Path(sys.argv[2]))
inner = protocol.run
def run(ctx):
    for i, progress in enumerate(inner(ctx)):
        yield progress
        if i == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # right after the engine checkpointed this safe point
protocol.run = run
runs.execute(protocol, chip, writer, checkpoint_every_s=0)
"""


def kill_then_resume(protocol: str, kill_after: int, tmp_path: Path) -> tuple[Path, Path]:
    """Run ``protocol`` until it is SIGKILLed after safe point ``kill_after``, resume it, and run it
    again uninterrupted; returns (resumed file, uninterrupted file)."""
    killed, full = tmp_path / "killed.h5", tmp_path / "full.h5"
    crash = subprocess.run([sys.executable, "-c", KILLER, protocol, str(killed), str(kill_after)], cwd=tmp_path, timeout=300)
    assert crash.returncode == -9
    assert json.loads(labctl("info", str(killed), "--json", cwd=tmp_path).stdout)["exit_status"] == "incomplete"
    resumed = labctl("resume", str(killed), "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert labctl("run", protocol, "--out", str(full), "--no-progress", cwd=tmp_path).returncode == 0
    return killed, full


def test_resume_after_sigkill_reaches_the_uninterrupted_calibration(tmp_path):
    text = (ROOT / "labctl/defaults/protocols/calibrate-dw.toml").read_text()
    protocol = tmp_path / "blocks.toml"
    protocol.write_text(text.replace("repeats = 200", "repeats = 200\nblock = 8"))  # 8 safe points
    killed, full = kill_then_resume(str(protocol), 3, tmp_path)
    with h5py.File(killed, "r") as a, h5py.File(full, "r") as b:  # resumed file is closed cleanly
        assert np.array_equal(a["calibration/counts"][...], b["calibration/counts"][...])
        assert np.array_equal(a["calibration/fit/estimate"][...], b["calibration/fit/estimate"][...])
    info = json.loads(labctl("info", str(killed), "--json", cwd=tmp_path).stdout)
    assert "reopen" in [e["kind"] for e in info["events"]] and info["exit_status"] == "success"
    assert labctl("resume", str(killed), cwd=tmp_path).returncode == 2  # finished runs are not resumed
