"""GUI watch mode (pytest-qt, offscreen): a headless `labctl run` in a subprocess, followed live."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("labctl.gui.app")  # PyQt5 + pyqtgraph
pytest.importorskip("pytestqt")

from labctl.store import RunFileError, RunReader  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PROTOCOL = """
[protocol]
name = "watch-test"
kind = "train-meanvar"
station = "sim-dw-640"

[settings]
measurements = 8
max_epochs = 25
patience = 1000
calibration_points = 9
calibration_repeats = 50
float_baseline = false
"""


def metrics_rows(reader: RunReader) -> int:
    return reader.dataset("train/metrics").shape[0]


def test_watch_headless_run(qtbot, tmp_path):
    from labctl.gui.app import MainWindow

    proto = tmp_path / "watch-test.toml"
    proto.write_text(PROTOCOL)
    out = tmp_path / "watched.h5"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "labctl.cli", "run", str(proto), "--out", str(out), "--no-progress"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        reader = None
        deadline = time.monotonic() + 60
        while reader is None:  # the writer creates the file and switches to SWMR: then readers may open it
            assert proc.poll() is None or out.exists(), proc.stdout.read().decode()
            try:
                reader = RunReader(out)
            except (RunFileError, OSError):
                assert time.monotonic() < deadline, "the headless run never created its run file"
                time.sleep(0.05)
        win = MainWindow()
        qtbot.addWidget(win)
        win.show()
        assert win.open_run_file(out)
        assert win.mode == "watch", "the file was finished before the GUI opened it; make the run longer"
        lags, seen = [], 0
        while True:
            reader.refresh()
            rows = metrics_rows(reader)
            done = reader.exit_status() != "incomplete"
            if rows > seen:  # a flushed update: the GUI must show it within 2 s
                t0 = time.monotonic()
                qtbot.waitUntil(lambda: win.views.rows_seen.get("train/metrics", 0) >= rows, timeout=2_000)
                lags.append(time.monotonic() - t0)
                seen = rows
            if done:
                break
            qtbot.wait(20)
        assert proc.wait(timeout=60) == 0, proc.stdout.read().decode()
        qtbot.waitUntil(lambda: win.watcher.status == "success", timeout=2_000)
        assert len(lags) >= 3, lags  # several updates were followed while the run was going
        assert max(lags) < 2.0
        assert win.views.rows_seen["train/metrics"] == metrics_rows(reader) == 25
        assert win.views.training.metrics is not None and len(win.views.training.metrics["epoch"]) == 25
        assert win.views.weights.layers and win.views.weights.layers[0]["control"].shape == (640,)
        assert "finished, reviewing" in win.mode_label.text()
        reader.close()
        win.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
