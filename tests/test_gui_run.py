"""GUI (pytest-qt, offscreen): run a protocol from the window, pause, resume, abort; review the file."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("labctl.gui.app")  # PyQt5 + pyqtgraph
pytest.importorskip("pytestqt")

from labctl.simulated_array import SimulatedArray  # noqa: E402
from labctl.store import RunReader  # noqa: E402

# a long training run (no calibration, no early stop) that the test ends by aborting it
LONG_RUN = {"calibrate": "false", "max_epochs": "1000", "patience": "1000", "float_baseline": "false"}


@pytest.fixture
def window(qtbot):
    from labctl.gui.app import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    yield win
    if win.worker is not None:
        win.worker.abort()
        win.worker.wait(30_000)
    win.close()


def set_settings(panel, values: dict[str, str]) -> None:
    for name, text in values.items():
        panel.editors[name].set_text(text)


def test_run_pause_resume_abort(qtbot, window, tmp_path, monkeypatch):
    calls: list[float] = []
    original = SimulatedArray.safe_state

    def spy(self):
        calls.append(time.time())
        return original(self)

    monkeypatch.setattr(SimulatedArray, "safe_state", spy)
    panel = window.protocol_panel
    assert panel.load("train-meanvar")
    assert window.station_panel.config.station.name == "sim-dw-640"  # the protocol's station
    set_settings(panel, LONG_RUN)
    out = tmp_path / "gui-run.h5"
    panel.out.setText(str(out))
    assert panel.validate(), panel.errors
    qtbot.mouseClick(panel.buttons["start"], 1)  # Qt.LeftButton
    assert window.worker is not None, panel.form_error.text() + panel.out_error.text()
    worker = window.worker
    state = {"step": 0}

    def progressed(minimum):
        def check():
            # progress is drained by the GUI's 5 Hz timer; its status line names the step
            text = panel.status.text()
            assert "step" in text
            step = int(text.split("step ")[1].split()[0])
            assert step >= minimum
            state["step"] = step
        return check

    qtbot.waitUntil(progressed(5), timeout=20_000)
    assert panel.buttons["pause"].isEnabled() and not panel.buttons["resume"].isEnabled()
    qtbot.mouseClick(panel.buttons["pause"], 1)
    qtbot.waitUntil(lambda: worker.state == "paused" and panel.buttons["resume"].isEnabled(), timeout=10_000)
    assert window.station_panel.table.item(0, 3).text() == "off (safe state)"
    paused_pulses = worker.chip.counters.pulses
    qtbot.wait(600)
    assert worker.chip.counters.pulses == paused_pulses  # nothing is sent while paused
    paused_at = state["step"]
    qtbot.mouseClick(panel.buttons["resume"], 1)
    qtbot.waitUntil(lambda: worker.state == "running", timeout=10_000)
    qtbot.waitUntil(progressed(paused_at + 5), timeout=20_000)
    qtbot.mouseClick(panel.buttons["abort"], 1)
    qtbot.waitUntil(lambda: window.worker is None, timeout=30_000)
    assert window.last_result["status"] == "failed"
    assert "aborted" in window.last_result["reason"]
    assert panel.buttons["start"].isEnabled() and not panel.buttons["abort"].isEnabled()

    with RunReader(out) as reader:
        events = [e for e in reader.events() if e["kind"] != "checkpoint"]
        kinds = [e["kind"] for e in events]
        assert kinds == ["start", "pause", "resume", "abort", "stop"], kinds
        pause, resume, abort, stop = events[1:]
        assert pause["step"] == resume["step"] > 0
        assert abort["step"] > resume["step"]
        assert stop["status"] == "failed" and "aborted" in stop["reason"] and "GUI" in stop["reason"]
        assert reader.exit_status() == "failed"
        assert reader.dataset("train/metrics").shape[0] >= 1  # the live run wrote its metrics
    # safe state: at the pause, and after the abort (engine), and on close (worker)
    assert any(pause["time"] - 1 <= t <= resume["time"] for t in calls)
    assert sum(t >= abort["time"] for t in calls) >= 2
    # the live views were fed: running curves and a chip state map
    assert len(window.views.training.live["step"]) > 10
    assert window.views.state.state is not None and window.views.state.state.shape == (10, 64)


def test_review_finished_file(qtbot, window, tmp_path):
    panel = window.protocol_panel
    assert panel.load("calibrate-dw")
    set_settings(panel, {"points": "7", "repeats": "50"})
    out = tmp_path / "cal.h5"
    panel.out.setText(str(out))
    assert window.start_run()
    qtbot.waitUntil(lambda: window.worker is None, timeout=30_000)
    assert window.last_result["status"] == "success"
    cal = window.views.calibration.data
    assert cal is not None and cal["fit"] is not None and cal["amplitude"].shape == (7,)
    # review: the finished file, opened from disk
    assert window.open_run_file(out)
    assert window.mode == "review"
    qtbot.waitUntil(lambda: window.watcher.status == "success", timeout=5_000)
    assert window.views.calibration.data["fit"]["names"] == ["x0", "dx", "a"]
    assert "stop" in window.log.toPlainText()
