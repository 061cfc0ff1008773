"""The labctl probe-station window: station, protocol and run control on the left, live views on the right.

``labctl gui [FILE.h5] [--station STATION]``: with a run file, watch it (a headless run writing it)
or review it (finished); without, choose a protocol and run it on the station (the simulated
bench by default). A run started here executes in a worker thread (:mod:`.run_worker`); its run
file is followed by the same watcher as a file opened from disk (:mod:`.watch`), plus the engine's
progress for the live curves, drained and redrawn at 5 Hz.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from PyQt5.QtCore import QEventLoop, QObject, Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import (QAction, QApplication, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox,
                             QPlainTextEdit, QProgressBar, QPushButton, QShortcut, QSplitter, QTabWidget, QToolBar,
                             QVBoxLayout, QWidget)

from labctl.config import ConfigError
from labctl.store import RunFileError, RunReader

from .bench_tab import BenchTab
from .live_views import LiveViews, configure_pyqtgraph
from .protocol_panel import ProtocolPanel
from .run_worker import RunWorker
from .station_panel import StationPanel
from .status_view import StatusView
from .watch import RunWatcher

SAFE_STATE_KEYS = ("F12", "Ctrl+Shift+S")  # "Safe state now", from every tab, during a run too
DRAIN_MS = 200   # engine progress taken at 5 Hz (status line, progress bar)
REDRAW_MS = 1000  # plots redrawn at 1 Hz: pyqtgraph paints in Python (~15 ms a plot), competing with the run
                  # for the GIL and, on a small machine, for the CPU (bench/gui_overhead.py)

log = logging.getLogger(__name__)


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
        self.tabs = QTabWidget()
        self.tabs.addTab(split, "Run")
        self.bench_tab = BenchTab(log=self._log)
        self.tabs.addTab(self.bench_tab, "Bench")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.bench_tab.open_button.clicked.connect(lambda: self._tab_changed(self.tabs.currentIndex(), True))
        self.setCentralWidget(self.tabs)

        # "Safe state now": always visible (toolbar), on F12 / Ctrl+Shift+S from every tab
        self.safe_button = QPushButton("\u26a0 Safe state now (F12)")
        self.safe_button.setObjectName("safe_state_now")
        self.safe_button.setStyleSheet("QPushButton { background: #c00000; color: white; font-weight: bold; "
                                       "padding: 4px 14px; }")
        self.safe_button.setToolTip("Abort the run if there is one and put every instrument in its safe state "
                                    "(F12 or Ctrl+Shift+S)")
        self.safe_button.clicked.connect(self.safe_state_now)
        bar = QToolBar("Safety")
        bar.setObjectName("safety_toolbar")
        bar.setMovable(False)
        bar.addWidget(self.safe_button)
        self.addToolBar(Qt.TopToolBarArea, bar)
        self.safe_shortcuts = []
        for keys in SAFE_STATE_KEYS:
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ApplicationShortcut)
            shortcut.activated.connect(self.safe_state_now)
            self.safe_shortcuts.append(shortcut)
        self.safe_relay = _Relay()
        self.safe_relay.done.connect(self._safe_state_report)
        self.safe_pending = False  # a run was aborted by "Safe state now": report when it has ended
        self.safe_report = ""

        # live instrument status, queried (never while a run drives the instruments)
        self.status_view = StatusView(self._status_source)
        dock = QDockWidget("Instrument status", self)
        dock.setObjectName("instrument_status")
        dock.setWidget(self.status_view)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(Qt.BottomDockWidgetArea, dock)
        self.status_dock = dock

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
        act = QAction("Open &sweep folder\u2026", self)
        act.triggered.connect(self._open_sweep_dialog)
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
        self.bench_tab.deactivate("a run starts")  # the run opens the chip itself
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
        self.status_view.refresh()  # shows "busy (run in progress)"
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
        if self.safe_pending:
            self.safe_pending = False
            self._safe_state_after_run(result)
        if self.tabs.currentWidget() is self.bench_tab:  # not reopened by itself: that would energise it again
            self.bench_tab.header.setText("The run has ended: press \u201cOpen the chip\u201d to work on it.")

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
    def _open_sweep_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open sweep folder", "sweeps")
        if path:
            self.open_sweep_folder(path)

    def open_sweep_folder(self, path: str | Path) -> bool:
        """A sweep folder in the Sweep tab (labctl.gui.sweep_view); double-clicking a point reviews its run file."""
        from .sweep_view import SweepView

        try:
            view = SweepView(path)
        except (ConfigError, OSError) as exc:
            self.show_error("Not a sweep folder", str(exc))
            return False
        old = getattr(self, "sweep_view", None)
        if old is not None:
            self.tabs.removeTab(self.tabs.indexOf(old))
            old.deleteLater()
        self.sweep_view = view
        view.open_run.connect(lambda p: self.open_run_file(p) and self.tabs.setCurrentIndex(0))
        self.tabs.setCurrentIndex(self.tabs.addTab(view, "Sweep"))
        self._log(f"sweep folder {path}: {len(view.table)} points")
        return True

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
        if reader.attrs.get("protocol_kind") == "bench":
            return self._review_bench_file(reader, path)
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
            except Exception as exc:  # an old file's station table: the panel keeps its station
                log.debug("run file's station table not shown (%s)", exc)
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
        self.status_view.timer.stop()
        self.bench_tab.deactivate("window closed")
        self._stop_watching()
        super().closeEvent(event)


    # ------------------------------------------------------------------ the Bench tab, status, safe state
    def _tab_changed(self, index: int, asked: bool = False) -> None:
        """Open the bench's chip when its tab is shown (unless a run holds the instruments, or a bench
        file is reviewed there: then only when ``asked``, its Open button); close it (safe state)
        when another tab is."""
        if self.tabs.widget(index) is self.bench_tab:
            if self.worker is not None:
                self.bench_tab.header.setText("A run is in progress: the bench can open the chip when it has ended.")
            elif self.mode != "review-bench" or asked:
                if asked and self.mode == "review-bench":
                    self.mode = "idle"
                self.bench_tab.activate(self.station_panel.config)
        else:
            self.bench_tab.deactivate("left the Bench tab")
        self.status_view.refresh()

    def _status_source(self) -> tuple:
        """Where the status view asks (see labctl.gui.status_view)."""
        if self.worker is not None:
            return ("busy", "busy (run in progress)")
        session = self.bench_tab.session
        if session is not None:
            rig = getattr(session.chip, "rig", None)
            if rig is None:
                return ("note", f"station {session.station.station.name}: simulated backend, no instruments")
            return ("roles", rig.roles, session.lock)
        station = self.station_panel.config
        if station is None:
            return ("note", "no valid station chosen")
        if station.instruments is None:
            return ("note", f"station {station.station.name}: simulated backend, no instruments")
        if station.bench is not None and station.bench.start:
            return ("note", f"station {station.station.name}: self-served simulated bench, not running (it runs "
                            "while the Bench tab or a run holds the chip)")
        return ("station", station)

    def safe_state_now(self) -> None:
        """Abort the run if there is one, put every instrument in its safe state, then say what each
        instrument reported (dialog and log). From the toolbar button, F12 or Ctrl+Shift+S."""
        self._log("SAFE STATE NOW requested")
        worker = self.worker
        if worker is not None:
            self.safe_pending = True
            worker.engine.request_abort("GUI: safe state now")
            self.protocol_panel.status.setText("safe state now: aborting the run\u2026")
            return
        bench = self.bench_tab
        session = bench.session
        station = self.station_panel.config
        if session is not None:
            bench.stop_flag.set()
            session.chip.cancel_suspension()

            def work():
                from labctl.instrument_status import query_roles

                try:
                    outcome = f"bench chip: safe state {session.safe_state()}"
                except Exception as exc:  # noqa: BLE001 - said, not raised
                    outcome = f"bench chip: SAFE STATE NOT CONFIRMED: {exc}"
                rig = getattr(session.chip, "rig", None)
                rows = [] if rig is None else query_roles(rig.roles)
                return outcome, rows

        elif station is not None and station.instruments is not None and not (station.bench and station.bench.start):
            def work():
                from labctl.instrument_status import safe_state_station

                status = safe_state_station(station)
                bad = [r.role for r in status.rows if r.problem or not r.answers]
                return (f"station {station.station.name}: " + (f"safe state NOT confirmed for {', '.join(bad)}"
                                                               if bad else "safe state confirmed")), status.rows
        else:
            note = ("no chip is open and the station has no instruments reachable without one (simulated backend or "
                    "a self-served bench that is not running): nothing is energised")
            self._safe_state_report((note, []))
            return

        def run():
            try:
                self.safe_relay.done.emit(work())
            except Exception as exc:  # noqa: BLE001 - said in the dialog
                self.safe_relay.done.emit((f"safe state now failed: {type(exc).__name__}: {exc}", []))

        threading.Thread(target=run, name="labctl-safe-state", daemon=True).start()

    def _safe_state_after_run(self, result: dict) -> None:
        """After a run aborted by "Safe state now": what the engine confirmed, and each instrument queried."""
        outcome = (f"run ended {result['status']} ({result['reason']}); the engine "
                   + ("confirmed the chip's safe state" if result.get("safe") else "did NOT confirm the safe state"))
        station = self.station_panel.config
        if station is None or station.instruments is None or (station.bench and station.bench.start):
            self._safe_state_report((outcome + (" (simulated backend: no instruments)" if station is not None and
                                                station.instruments is None else
                                                " (self-served bench: stopped with the run's chip)"), []))
            return

        def run():
            from labctl.instrument_status import safe_state_station

            try:
                status = safe_state_station(station)
                self.safe_relay.done.emit((outcome, status.rows))
            except Exception as exc:  # noqa: BLE001
                self.safe_relay.done.emit((f"{outcome}; querying the instruments failed: {exc}", []))

        threading.Thread(target=run, name="labctl-safe-state", daemon=True).start()

    def _safe_state_report(self, result: tuple) -> None:
        outcome, rows = result
        lines = [outcome]
        for r in rows:
            if r.answers:
                lines.append(f"{r.role} ({r.model}): {r.output}; errors: {'; '.join(r.errors) or 'none'}"
                             + (f"; {r.problem}" if r.problem else ""))
            else:
                lines.append(f"{r.role} ({r.model}): NOT ANSWERING: {r.problem}")
        self.safe_report = "\n".join(lines)
        for line in lines:
            self._log(f"safe state now: {line}")
        ok = all(r.answers and not r.problem and r.off is not False for r in rows) and "NOT" not in outcome
        box = QMessageBox(QMessageBox.Information if ok else QMessageBox.Warning, "Safe state now",
                          self.safe_report, QMessageBox.Ok, self)
        box.setWindowModality(Qt.NonModal)  # show(), not open(): the window (and F12) must stay usable
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.show()
        self.dialog = box
        self.status_view.refresh()

    def _review_bench_file(self, reader, path) -> bool:
        """A bench file: its actions and S-curves in the Bench tab, its events in the log."""
        self._stop_watching()
        self.mode = "review-bench"
        self.bench_tab.show_file(reader)
        self.tabs.setCurrentWidget(self.bench_tab)
        self.mode_label.setText(f"reviewing bench file {path} ({reader.exit_status()})")
        self._log(f"reviewing bench file {path}")
        self._log_events(reader.events())
        reader.close()
        return True


class _Relay(QObject):
    """Carries a background thread's result to the GUI thread."""

    done = pyqtSignal(object)


def _layer_shape(protocol, n: int) -> tuple[int, int] | None:
    """(outputs, inputs) of the first layer in chip order, for the state map: from the first dataset
    the protocol declares with a weights hint (``layers`` or ``shape``)."""
    for spec in protocol.describe().values():
        hint = spec.hint or {}
        shapes = hint.get("layers") or ([hint["shape"]] if hint.get("shape") else [])
        if hint.get("view") == "weights" and shapes:
            o, i = (int(v) for v in shapes[0])
            return (o, i) if o * i <= n else None
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
    parser.add_argument("file", nargs="?", help="run file to watch (while a headless run writes it) or review, "
                        "or a sweep folder")
    parser.add_argument("--station", help="station TOML file or embedded name (default: the protocol's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(station=args.station)
    window.show()
    if args.file:
        (window.open_sweep_folder if Path(args.file).is_dir() else window.open_run_file)(args.file)
    return app.exec_()


if __name__ == "__main__":
    sys.exit(main())
