"""The labctl probe-station window: station, protocol and run control on the left, live views on the right.

``labctl gui [FILE.h5] [--station STATION]``: with a run file, watch it (a headless run writing it)
or review it (finished); without, choose a protocol and run it on the station (the simulated
bench by default). A run started here executes in a worker thread (:mod:`.run_worker`); its run
file is followed by the same watcher as a file opened from disk (:mod:`.watch`), plus the engine's
progress for the live curves, drained and redrawn at 5 Hz.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from PyQt5.QtCore import QEventLoop, Qt, QTimer
from PyQt5.QtWidgets import (QAction, QApplication, QFileDialog, QLabel, QMainWindow, QMessageBox, QPlainTextEdit,
                             QProgressBar, QSplitter, QVBoxLayout, QWidget)

from labctl.config import ConfigError
from labctl.store import RunFileError, RunReader

from .live_views import LiveViews, configure_pyqtgraph
from .protocol_panel import ProtocolPanel
from .run_worker import RunWorker
from .station_panel import StationPanel
from .watch import RunWatcher

DRAIN_MS = 200   # engine progress taken at 5 Hz (status line, progress bar)
REDRAW_MS = 1000  # plots redrawn at 1 Hz: pyqtgraph paints in Python (~15 ms a plot), competing with the run
                  # for the GIL and, on a small machine, for the CPU (bench/gui_overhead.py)


class MainWindow(QMainWindow):
    def __init__(self, station: str | None = None):
        super().__init__()
        configure_pyqtgraph()
        self.setWindowTitle("labctl \u2014 probe station")
        self.worker: RunWorker | None = None
        self.watcher: RunWatcher | None = None
        self.dialog: QMessageBox | None = None
        self.mode = "idle"  # idle | run | watch | review
        self.station_locked = station is not None

        self.station_panel = StationPanel()
        self.protocol_panel = ProtocolPanel()
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(4, 4, 4, 4)
        ll.addWidget(self.station_panel)
        ll.addWidget(self.protocol_panel, 1)
        left.setMinimumWidth(520)

        self.right = QSplitter(Qt.Vertical)
        self.views = LiveViews()
        self.right.addWidget(self.views)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(1000)
        self.log.setObjectName("event_log")
        self.right.addWidget(self.log)
        self.right.setStretchFactor(0, 5)
        self.right.setStretchFactor(1, 1)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(left)
        split.addWidget(self.right)
        split.setStretchFactor(1, 1)
        self.setCentralWidget(split)

        self.mode_label = QLabel("idle")
        self.progress = QProgressBar()
        self.progress.setMinimumWidth(220)
        self.progress.setMaximumWidth(300)
        self.progress.setFormat("step %v / %m")
        self.statusBar().addWidget(self.mode_label, 1)
        self.statusBar().addPermanentWidget(self.progress)

        menu = self.menuBar().addMenu("&File")
        act = QAction("&Open run file\u2026", self)
        act.setShortcut("Ctrl+O")
        act.triggered.connect(self._open_dialog)
        menu.addAction(act)
        quit_ = QAction("&Quit", self)
        quit_.setShortcut("Ctrl+Q")
        quit_.triggered.connect(self.close)
        menu.addAction(quit_)

        p = self.protocol_panel
        p.protocol_changed.connect(self._protocol_changed)
        p.start_clicked.connect(self.start_run)
        p.pause_clicked.connect(lambda: self.worker and self.worker.pause())
        p.resume_clicked.connect(lambda: self.worker and self.worker.resume())
        p.stop_clicked.connect(lambda: self.worker and self.worker.stop())
        p.abort_clicked.connect(lambda: self.worker and self.worker.abort())
        self.station_panel.station_changed.connect(p.set_station)  # settings checked against its envelope
        if station is not None:
            self.station_panel.select(station)
        elif p.pfile is not None:
            self.station_panel.select(p.pfile.protocol.station)
        p.set_station(self.station_panel.config)
        self.redraw_timer = QTimer(self)
        self.redraw_timer.setInterval(DRAIN_MS)
        self.last_redraw = 0.0
        self.redraw_timer.timeout.connect(self._drain)
        self.resize(1500, 950)

    # ------------------------------------------------------------------ helpers
    def _protocol_changed(self, pfile) -> None:
        if not self.station_locked:
            self.station_panel.select(pfile.protocol.station)

    def _log(self, text: str) -> None:
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    def _log_events(self, events: list[dict]) -> None:
        for e in events:
            if e["kind"] == "checkpoint":
                continue
            parts = [e["kind"]]
            if e["step"] >= 0:
                parts.append(f"at step {e['step']}")
            if e["status"]:
                parts.append(f"[{e['status']}]")
            if e["reason"]:
                parts.append(f"\u2014 {e['reason']}")
            self._log("run file: " + " ".join(parts))

    def _new_views(self) -> None:
        tab = self.views.currentIndex()
        old = self.views
        self.views = LiveViews()
        self.right.replaceWidget(0, self.views)
        old.deleteLater()
        self.views.setCurrentIndex(max(tab, 0))

    def _set_state(self, state: str) -> None:
        self.station_panel.set_run_state(state)
        self.protocol_panel.set_running_state(state)

    def show_error(self, title: str, text: str) -> None:
        """A non-blocking error dialog (kept in ``self.dialog`` so that scripts and tests can read it)."""
        box = QMessageBox(QMessageBox.Critical, title, text, QMessageBox.Ok, self)
        box.setWindowModality(Qt.WindowModal)
        box.open()
        self.dialog = box

    def _stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None

    # ------------------------------------------------------------------ running a protocol
    def start_run(self) -> bool:
        """Build the chosen protocol on the chosen station and run it in a worker thread."""
        from labctl.runs import BadInput, build, create_run_file, default_out

        if self.worker is not None:
            return False
        request = self.protocol_panel.request()
        panel = self.protocol_panel
        if request is None:
            panel.status.setText("Fix the settings marked in red first.")
            return False
        pfile, source, seed, out = request
        station = self.station_panel.config
        if station is None:
            panel.status.setText("Choose a valid station first.")
            return False
        try:
            protocol, chip = build(pfile, source, station, seed)
        except (ConfigError, ValueError) as exc:
            panel.form_error.setText(str(exc))
            return False
        path = Path(out) if out else default_out(pfile.protocol.name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = create_run_file(protocol, chip, station, pfile, path)
        except (BadInput, RunFileError, OSError) as exc:  # RunFileBusy: another writer has it
            chip.close()
            panel.out_error.setText(str(exc))
            panel.out_error.setStyleSheet("color: #c00000;")
            return False
        panel.out_error.setText("")
        self._stop_watching()
        self._new_views()
        self.worker = RunWorker(protocol, chip, writer)
        self.worker.engine_event.connect(self._on_engine_event)
        self.worker.finished.connect(self._on_finished)
        self.layer_shape = _layer_shape(protocol, chip.n)
        writer.publish()  # the file is built under a hidden name until its first checkpoint
        self.watcher = RunWatcher(RunReader(path), self.views)
        self.watcher.redraw = False
        self.watcher.new_events.connect(self._log_events)
        self.mode = "run"
        self._set_state("running")
        self.mode_label.setText(f"running {pfile.protocol.name} on {station.station.name} \u2192 {path}")
        self._log(f"started {pfile.protocol.name} ({pfile.protocol.kind}) on {station.station.name}, run file {path}")
        self.progress.setRange(0, 0)
        self.worker.start()
        self.watcher.start()
        self.redraw_timer.start()
        return True

    def _on_engine_event(self, doc: dict) -> None:
        kind = doc["kind"]
        if kind == "pause":
            self._set_state("paused")
            self.protocol_panel.status.setText(f"paused at step {doc['step']} (chip in safe state)")
        elif kind == "resume":
            self._set_state("running")
            self.protocol_panel.status.setText(f"resumed at step {doc['step']}")
        elif kind in ("abort", "stop_requested"):
            self.protocol_panel.status.setText(f"{kind.replace('_', ' ')} at step {doc['step']}: {doc['reason']}")

    def _drain(self) -> None:
        """Throttled redraw: take the engine's progress since last time and redraw the shown view."""
        worker = self.worker
        if worker is not None:
            docs, snap = worker.take()
            if docs:
                self.views.add_progress(docs)
                last = docs[-1]
                total = last["total"] or 0
                self.progress.setRange(0, max(total, last["step"]))
                self.progress.setValue(last["step"])
                metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in last["metrics"].items())
                if worker.state == "running":
                    self.protocol_panel.status.setText(f"{last['stage']}: step {last['step']}"
                                                       + (f" of {total}" if total else "") + (f" \u2014 {metrics}" if metrics else ""))
            if snap is not None:
                self.views.set_chip_snapshot(snap, self.layer_shape)
        now = time.monotonic()
        if now - self.last_redraw >= REDRAW_MS / 1000:
            self.last_redraw = now
            self.views.redraw()

    def _on_finished(self, result: dict) -> None:
        worker, self.worker = self.worker, None
        self.last_result = result
        self._drain_worker(worker)
        self.redraw_timer.stop()
        if self.watcher is not None:
            self.watcher.tick()
        self.views.redraw(all_views=True)
        self._set_state("done")
        safe = "chip in safe state" if result.get("safe", True) else "chip safe state NOT confirmed: check the outputs"
        text = f"{result['status']} ({result['reason']}) after {result['duration_s']:.1f} s; {safe}"
        if result.get("error"):
            text += f" \u2014 {result['error']}"
        self.protocol_panel.status.setText(text)
        self.mode_label.setText(f"finished: {text}")
        self._log(f"run finished: {text}")
        self.last_result = result
        if worker is not None:
            worker.wait(5000)

    def _drain_worker(self, worker) -> None:
        if worker is None:
            return
        docs, snap = worker.take()
        if docs:
            self.views.add_progress(docs)
            self.progress.setRange(0, max(docs[-1]["total"] or 0, docs[-1]["step"]))
            self.progress.setValue(docs[-1]["step"])
        if snap is not None:
            self.views.set_chip_snapshot(snap, self.layer_shape)

    # ------------------------------------------------------------------ watching and reviewing
    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open run file", "runs", "Run files (*.h5 *.hdf5);;All files (*)")
        if path:
            self.open_run_file(path)

    def open_run_file(self, path: str | Path) -> bool:
        """Watch (live) or review (finished) a run file; a bad file gets a clear dialog."""
        if self.worker is not None:
            self.show_error("A run is in progress", "Stop or abort the run in progress before opening a run file.")
            return False
        try:
            reader = RunReader(path)
            live = reader.exit_status() == "incomplete"
        except RunFileError as exc:
            self.show_error("Not a labctl run file", f"Cannot open this file as a labctl run file:\n\n{exc}")
            return False
        except Exception as exc:  # anything else h5py may raise on a damaged file: a dialog, not a traceback
            self.show_error("Cannot open run file", f"{path}: {type(exc).__name__}: {exc}")
            return False
        self._stop_watching()
        self._new_views()
        self.layer_shape = None
        attrs = reader.attrs
        self.watcher = RunWatcher(reader, self.views)
        self.watcher.new_events.connect(self._log_events)
        self.watcher.finished.connect(self._watch_finished)
        self.watcher.trouble.connect(self._watch_trouble)
        self.mode = "watch" if live else "review"
        what = f"{attrs.get('protocol_name', '?')} ({attrs.get('protocol_kind', '?')}) on {attrs.get('station_name', '?')}"
        self.mode_label.setText(f"{'watching (live)' if live else 'reviewing'} {path}: {what}")
        self._log(f"{'watching' if live else 'reviewing'} {path}: {what}")
        station = attrs.get("station")
        if isinstance(station, dict):
            from labctl.config import StationConfig

            try:
                self.station_panel.config = StationConfig.model_validate(station)
                self.station_panel._show()
            except Exception:  # an old file's station table: the panel keeps its station
                pass
        self.watcher.start()
        self.views.redraw(all_views=True)
        return True

    def _watch_finished(self, status: str) -> None:
        self.views.redraw(all_views=True)
        if self.mode == "watch":
            self.mode_label.setText(self.mode_label.text().replace("watching (live)", "finished, reviewing")
                                    + f" [finished: {status}]")
            self._log(f"the run file was closed by its writer: {status}")

    def _watch_trouble(self, error: str) -> None:
        """The watched file has not been readable for several ticks in a row (still retrying)."""
        self._log(f"cannot read the run file (still trying): {error}")
        self.mode_label.setText(f"cannot read {self.watcher.path if self.watcher else ''} (still trying): {error}")

    def closeEvent(self, event) -> None:
        worker = self.worker
        if worker is not None:
            worker.abort()
            worker.wait(30_000)
        self._stop_watching()
        super().closeEvent(event)


def _layer_shape(protocol, n: int) -> tuple[int, int] | None:
    """(outputs, inputs) of the first layer in chip order, for the state map."""
    c, d = getattr(protocol, "c", None), getattr(protocol, "d", None)
    if isinstance(c, int) and isinstance(d, int) and c * d <= n:
        return (c, d)
    shapes = getattr(protocol, "shapes", None)
    if shapes:
        o, i = shapes[0]
        return (int(o), int(i)) if o * i <= n else None
    return None


def application() -> QApplication:
    """The process's QApplication (created if needed), for scripts outside labctl/gui."""
    return QApplication.instance() or QApplication(sys.argv[:1])


def run_until(condition, timeout_s: float, poll_ms: int = 50) -> bool:
    """Run the Qt event loop until ``condition()`` is true or ``timeout_s`` passes; returns condition()."""
    loop = QEventLoop()
    timer = QTimer()
    deadline = time.monotonic() + timeout_s
    timer.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() > deadline else None)
    timer.start(poll_ms)
    if not condition():
        loop.exec_()
    timer.stop()
    return bool(condition())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labctl gui", description="labctl probe-station GUI")
    parser.add_argument("file", nargs="?", help="run file to watch (while a headless run writes it) or review")
    parser.add_argument("--station", help="station TOML file or embedded name (default: the protocol's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(station=args.station)
    window.show()
    if args.file:
        window.open_run_file(args.file)
    return app.exec_()


if __name__ == "__main__":
    sys.exit(main())
