"""A reader refreshing as fast as it can while a writer in another process flushes rapidly
(first write of a fixed-size dataset, appends, checkpoints): no failed refresh, and the GUI
watcher follows a file written by another process to its end."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest

from labctl.store import DatasetSpec, RunReader, RunWriter

SCHEMA = {
    "calibration/counts": DatasetSpec("<i8", (4, 8)),
    "train/metrics": DatasetSpec([("epoch", "<i8"), ("loss", "<f8")], (None,)),
}
STEPS = 60


def write(path: str, ready, go) -> None:
    w = RunWriter(path, attrs={"protocol_name": "race", "protocol_kind": "train", "station_name": "sim"},
                  schema=SCHEMA)
    w.checkpoint(0, b"first")  # published: readers can open it
    ready.set()
    go.wait(10)
    for i in range(STEPS):
        w.append("train/metrics", (i, 1.0 / (i + 1)))
        w.flush()
        if i == STEPS // 3:
            w.write("calibration/counts", np.full((4, 8), 7))  # first write of a fixed-size dataset
            w.flush()
        if i % 15 == 0:
            w.checkpoint(i, bytes([i % 256]) * 3000)
        time.sleep(0.001)
    w.close()


def race_once(path) -> None:
    ctx = mp.get_context("fork")  # the writer needs only h5py; fork starts it fast
    ready, go = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=write, args=(str(path), ready, go))
    proc.start()
    try:
        assert ready.wait(20)
        with RunReader(path) as r:
            go.set()
            refreshes = 0
            while r.exit_status() == "incomplete":
                r.refresh()  # must never raise
                r.dataset("calibration/counts")
                r.dataset("train/metrics")
                r.latest_checkpoint()
                refreshes += 1
            assert len(r.dataset("train/metrics")) == STEPS
            assert (r.dataset("calibration/counts") == 7).all()
            assert r.exit_status() == "success"
            assert refreshes > 0
    finally:
        proc.join(20)
    assert proc.exitcode == 0


def test_reader_refreshing_against_a_writer_in_another_process(tmp_path):
    start = time.monotonic()
    for i in range(20):
        race_once(tmp_path / f"race{i}.h5")
    assert time.monotonic() - start < 60


def test_gui_watcher_follows_another_process_to_the_end(tmp_path, qtbot):
    pytest.importorskip("PyQt5")
    from labctl.gui.app import MainWindow

    path = tmp_path / "watched.h5"
    ctx = mp.get_context("fork")
    ready, go = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=write, args=(str(path), ready, go))
    proc.start()
    try:
        assert ready.wait(20)
        win = MainWindow()
        qtbot.addWidget(win)
        assert win.open_run_file(path)
        assert "watching (live)" in win.mode_label.text()
        win.watcher.timer.setInterval(20)
        go.set()
        qtbot.waitUntil(lambda: win.watcher.status != "incomplete", timeout=20_000)
        assert win.watcher.status == "success"
        assert "finished: success" in win.mode_label.text()
        with RunReader(path) as r:
            assert win.watcher.events_seen == len(r.events())
    finally:
        proc.join(20)
    assert proc.exitcode == 0
