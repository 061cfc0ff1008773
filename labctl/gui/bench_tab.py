"""The Bench tab: manual work on the station's chip, one device at a time, every action recorded.

While the tab is shown it holds a :class:`~labctl.bench_session.BenchSession` (the station's
SynapseArray, with its envelope, and the bench file ``runs/<time>-bench-<station>.h5``); leaving
the tab, or a run starting, closes it (chip to its safe state, file closed).

Actions: choose a device (its stage position or switch channel and last read state are shown),
reset it, fire one pulse or a train (amplitude in the family's unit, width in s, count), read it
(repeats; raw signal and decided level), take a single-device S-curve (start, stop, points, width,
trials per point; plotted point by point, the fitted law drawn at the end, as the calibration
protocol fits it) and, on a station with a field supply, a field sweep (field pulse then Kerr
read per point). Every action runs in a background thread (an instrument that stops answering
never freezes the window). A value outside the envelope is explained in red beside its field
and the button that would send it stays disabled: nothing is sent.

A bench file opened with ``labctl gui FILE`` is shown here for review (actions table and S-curves).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PyQt5.QtCore import QObject, Qt, pyqtSignal
from PyQt5.QtWidgets import (QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                             QSpinBox, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from labctl import families
from labctl.bench_session import BenchSession, read_bench_file

from .live_views import LABEL_STYLE, PALETTE, _pen, law_curve, make_plot

ACTION_COLUMNS = ("time", "action", "device", "amplitude", "width (s)", "count", "result")


class _Relay(QObject):
    """Results of the background thread, delivered in the GUI thread (queued signals)."""

    point = pyqtSignal(object)
    done = pyqtSignal(object)


class BenchTab(QWidget):
    """See the module docstring. ``log``: a callable taking one line of text (the window's log)."""

    session_changed = pyqtSignal(object)  # the BenchSession now open, or None

    def __init__(self, log: Callable[[str], None] | None = None, parent=None):
        super().__init__(parent)
        self.log = log or (lambda text: None)
        self.session: BenchSession | None = None
        self.station = None
        self.job: threading.Thread | None = None
        self.stop_flag = threading.Event()
        self.last_error = ""
        self.actions_shown = 0
        self.scurve: dict | None = None
        self.relay = _Relay()
        self.relay.point.connect(self._on_point)
        self.relay.done.connect(self._on_done)

        self.header = QLabel("Bench closed: it opens the station's chip when this tab is shown.")
        self.header.setWordWrap(True)
        self.header.setObjectName("bench_header")
        self.open_button = QPushButton("Open the chip")
        self.open_button.setToolTip("Open the station's chip for manual work (configures the instruments)")

        controls = QWidget()
        cl = QVBoxLayout(controls)
        cl.setContentsMargins(0, 0, 0, 0)
        self.fields: dict[str, QLineEdit] = {}
        self.errors: dict[str, QLabel] = {}
        self.buttons: dict[str, QPushButton] = {}

        box = QGroupBox("Device")
        form = QFormLayout(box)
        self.device = QSpinBox()
        self.device.setRange(0, 0)
        self.device.valueChanged.connect(self._show_device)
        form.addRow("device index", self.device)
        self.device_info = QLabel("-")
        self.device_info.setWordWrap(True)
        form.addRow("where / last state", self.device_info)
        cl.addWidget(box)

        box = QGroupBox("Reset, pulse, read")
        form = QFormLayout(box)
        self._field(form, "amplitude", "pulse amplitude", "0.006")
        self._field(form, "width", "pulse width (s)", "1e-6")
        self._field(form, "count", "pulses in the train", "1")
        self._field(form, "repeats", "read repeats", "4")
        row = QHBoxLayout()
        for name, text in (("reset", "Reset"), ("pulse", "Fire pulse(s)"), ("read", "Read")):
            self.buttons[name] = QPushButton(text)
            row.addWidget(self.buttons[name])
        form.addRow(row)
        self.read_result = QLabel("last read: -")
        self.read_result.setWordWrap(True)
        self.read_result.setObjectName("read_result")
        form.addRow(self.read_result)
        cl.addWidget(box)

        box = QGroupBox("S-curve of this device")
        form = QFormLayout(box)
        self._field(form, "sc_start", "amplitude from", "0.002")
        self._field(form, "sc_stop", "amplitude to", "0.0075")
        self._field(form, "sc_points", "points (>= 3)", "12")
        self._field(form, "sc_width", "pulse width (s)", "1e-6")
        self._field(form, "sc_trials", "trials per point", "100")
        row = QHBoxLayout()
        self.buttons["scurve"] = QPushButton("Take S-curve")
        self.buttons["stop"] = QPushButton("Stop")
        row.addWidget(self.buttons["scurve"])
        row.addWidget(self.buttons["stop"])
        form.addRow(row)
        self.fit_result = QLabel("fitted law: -")
        self.fit_result.setWordWrap(True)
        self.fit_result.setObjectName("fit_result")
        form.addRow(self.fit_result)
        cl.addWidget(box)

        self.field_box = QGroupBox("Field sweep (magnet supply): field pulse, then Kerr read")
        form = QFormLayout(self.field_box)
        self._field(form, "fs_start", "field from (T)", "-0.015")
        self._field(form, "fs_stop", "field to (T)", "0.01")
        self._field(form, "fs_points", "points (>= 2)", "11")
        self._field(form, "fs_width", "pulse width (s)", "1e-6")
        self.buttons["field"] = QPushButton("Sweep field")
        form.addRow(self.buttons["field"])
        cl.addWidget(self.field_box)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setObjectName("bench_status")
        cl.addWidget(self.status)
        cl.addStretch(1)
        controls.setMaximumWidth(520)
        for label in (self.device_info, self.read_result, self.fit_result, self.status, *self.errors.values()):
            label.setMinimumHeight(2 * label.fontMetrics().lineSpacing())  # two wrapped lines are never cut

        self.plot = make_plot("S-curve: measured (points) and fitted law (line)", ("pulse amplitude", None),
                              ("switching probability", None), legend=True)
        self.table = QTableWidget(0, len(ACTION_COLUMNS))
        self.table.setHorizontalHeaderLabels(ACTION_COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        right = QSplitter(Qt.Vertical)
        right.addWidget(self.plot)
        right.addWidget(self.table)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)

        grid = QGridLayout(self)
        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.open_button)
        grid.addLayout(top, 0, 0, 1, 2)
        grid.addWidget(controls, 1, 0)
        grid.addWidget(right, 1, 1)
        grid.setColumnStretch(1, 1)

        self.buttons["reset"].clicked.connect(lambda: self._start("reset"))
        self.buttons["pulse"].clicked.connect(lambda: self._start("pulse"))
        self.buttons["read"].clicked.connect(lambda: self._start("read"))
        self.buttons["scurve"].clicked.connect(lambda: self._start("scurve"))
        self.buttons["field"].clicked.connect(lambda: self._start("field"))
        self.buttons["stop"].clicked.connect(self.stop_flag.set)
        self.validate()

    def _field(self, form: QFormLayout, name: str, label: str, default: str) -> None:
        edit = QLineEdit(default)
        edit.setObjectName(f"bench_{name}")
        edit.textChanged.connect(self.validate)
        error = QLabel("")
        error.setStyleSheet("color: #c00000;")
        error.setWordWrap(True)
        error.hide()
        holder = QWidget()
        v = QVBoxLayout(holder)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(1)
        v.addWidget(edit)
        v.addWidget(error)
        form.addRow(label, holder)
        self.fields[name], self.errors[name] = edit, error

    # ------------------------------------------------------------------ opening and closing
    @property
    def busy(self) -> bool:
        """A background action is under way."""
        return self.job is not None

    def activate(self, station, path=None) -> bool:
        """Open the station's chip for manual work (the tab was shown); False with a message if not."""
        if self.session is not None and self.station is station:
            return True
        self.deactivate()
        self.station = station
        if station is None:
            self.header.setText("Choose a valid station first (Run tab).")
            return False
        try:
            self.session = BenchSession(station, path)
        except Exception as exc:  # noqa: BLE001 - every failure to open is shown, never raised into Qt
            self.session = None
            self.header.setText(f"Cannot open the chip of station {station.station.name}: {exc}")
            self.header.setStyleSheet("color: #c00000;")
            self.log(f"bench: cannot open {station.station.name}: {exc}")
            self.validate()
            return False
        s = self.session
        self.header.setStyleSheet("")
        env = s.chip.envelope
        self.header.setText(
            f"Station {station.station.name}: {s.chip.n} {s.chip.family} synapses open for manual work "
            f"(envelope {env.amplitude_min:g} .. {env.amplitude_max:g} {env.amplitude_unit}, widths "
            f"{env.width_min:g} .. {env.width_max:g} s); recording to {s.path}")
        self.log(f"bench: opened {station.station.name}, recording to {s.path}")
        self.device.setRange(0, s.chip.n - 1)
        self.field_box.setVisible(s.has_field_supply)
        self.table.setRowCount(0)
        self.actions_shown = 0
        start, stop, width = (f"{v:g}" for v in families.get(s.chip.family).sweep)  # about the nominal switching range
        for name, value in (("sc_start", start), ("sc_stop", stop), ("sc_width", width), ("amplitude", stop),
                            ("width", width)):
            self.fields[name].setText(value)
        for name in ("amplitude", "sc_start", "sc_stop"):
            self.fields[name].setToolTip(f"in {env.amplitude_unit}")
        self._show_device()
        self.validate()
        self.session_changed.emit(s)
        return True

    def deactivate(self, reason: str = "bench closed") -> str:
        """Stop any action, put the chip in its safe state and close the bench file. Returns what happened."""
        session, self.session = self.session, None
        if session is None:
            return ""
        self.stop_flag.set()
        session.chip.cancel_suspension()
        job = self.job
        if job is not None:
            job.join(timeout=30)
        try:
            session.close(reason)
            text = f"bench: closed {session.path} (chip in safe state)"
        except Exception as exc:  # noqa: BLE001 - said, not raised
            text = f"bench: closed {session.path}; SAFE STATE NOT CONFIRMED: {exc}"
        self.log(text)
        self.header.setText("Bench closed: it opens the station's chip when this tab is shown.")
        self.validate()
        self.session_changed.emit(None)
        return text

    # ------------------------------------------------------------------ validation (nothing sent)
    def _number(self, name: str, integer: bool = False) -> float | int | None:
        text = self.fields[name].text().strip()
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            return None
        return value

    def _problems(self) -> dict[str, str]:
        """``{field: message}`` for every bad field (parsing, counts, the station's envelope)."""
        out: dict[str, str] = {}
        integers = {"count": 1, "repeats": 1, "sc_points": 3, "sc_trials": 1, "fs_points": 2}
        for name in self.fields:
            value = self._number(name, name in integers)
            if value is None:
                out[name] = "expected a whole number" if name in integers else "expected a number"
            elif name in integers and value < integers[name]:
                out[name] = f"expected at least {integers[name]}"
            elif name in integers and value > 100_000:
                out[name] = "expected at most 100000"
        s = self.session
        if s is None:
            return out
        for name, kind in (("amplitude", "amplitude"), ("sc_start", "amplitude"), ("sc_stop", "amplitude"),
                           ("fs_start", "amplitude"), ("fs_stop", "amplitude"), ("width", "width"),
                           ("sc_width", "width"), ("fs_width", "width")):
            if name in out:
                continue
            found = s.problems(**{kind: float(self._number(name))})
            if kind in found:
                out[name] = found[kind]
        return out

    NEEDS = {"reset": (), "pulse": ("amplitude", "width", "count"), "read": ("repeats",),
             "scurve": ("sc_start", "sc_stop", "sc_points", "sc_width", "sc_trials"),
             "field": ("fs_start", "fs_stop", "fs_points", "fs_width")}

    def validate(self) -> dict[str, str]:
        """Mark every bad field in red beside it and enable only the buttons whose values are all fine."""
        problems = self._problems()
        for name, label in self.errors.items():
            label.setText(problems.get(name, ""))
            label.setVisible(name in problems)
        ready = self.session is not None and self.job is None
        for action, needs in self.NEEDS.items():
            ok = ready and not any(n in problems for n in needs)
            if action == "field":
                ok = ok and self.session.has_field_supply
            self.buttons[action].setEnabled(ok)
        self.buttons["stop"].setEnabled(self.job is not None)
        self.open_button.setVisible(self.session is None)
        return problems

    # ------------------------------------------------------------------ actions (background thread)
    def _start(self, action: str) -> bool:
        """Run ``action`` on the chosen device in a background thread; False if refused or busy."""
        if self.session is None or self.job is not None:
            return False
        problems = self.validate()
        if any(n in problems for n in self.NEEDS[action]):
            return False
        s, device = self.session, self.device.value()
        n = self._number
        self.stop_flag.clear()
        if action == "reset":
            work = lambda: s.reset(device)  # noqa: E731
        elif action == "pulse":
            work = lambda: s.pulse(device, n("amplitude"), n("width"), n("count", True))  # noqa: E731
        elif action == "read":
            work = lambda: s.read(device, n("repeats", True))  # noqa: E731
        elif action == "scurve":
            amps = np.linspace(n("sc_start"), n("sc_stop"), n("sc_points", True))
            work = self._scurve_work(s, device, amps, n("sc_width"), n("sc_trials", True))
        else:
            fields = np.linspace(n("fs_start"), n("fs_stop"), n("fs_points", True))
            work = self._field_work(s, device, fields, n("fs_width"))
        self.status.setText(f"{action} on device {device}\u2026")
        self.job = threading.Thread(target=self._run_job, args=(action, device, work), name=f"labctl-bench-{action}",
                                    daemon=True)
        self.validate()
        self.job.start()
        return True

    def _run_job(self, action: str, device: int, work) -> None:
        try:
            result = work()
            self.relay.done.emit((action, device, True, result))
        except Exception as exc:  # noqa: BLE001 - reported in the tab and the log
            self.relay.done.emit((action, device, False, f"{type(exc).__name__}: {exc}"))

    def _scurve_work(self, s: BenchSession, device: int, amps: np.ndarray, width: float, trials: int):
        def work():
            curve = s.new_curve()
            self.scurve = {"curve": curve, "device": device, "amps": [], "counts": [], "width": width,
                           "trials": trials, "fit": None, "unit": s.chip.envelope.amplitude_unit,
                           "levels": s.chip.levels, "law": s.law.name}
            self.relay.point.emit(None)
            counts = []  # this thread's own copy: the plot's copy is filled in the GUI thread
            for a in amps:
                if self.stop_flag.is_set():
                    return "stopped"
                counts.append(s.scurve_point(curve, device, float(a), width, trials))
                self.relay.point.emit((float(a), counts[-1]))
            return s.fit_scurve(curve, device, amps[:len(counts)], width, trials, np.stack(counts))

        return work

    def _field_work(self, s: BenchSession, device: int, fields: np.ndarray, width: float):
        def work():
            sweep = s.new_sweep()
            self.sweep = {"device": device, "field": [], "signal": [], "unit": s.chip.signal_unit}
            self.relay.point.emit(None)
            for f in fields:
                if self.stop_flag.is_set():
                    return "stopped"
                signal, level = s.field_point(sweep, device, float(f), width)
                self.relay.point.emit(("field", float(f), signal, level))
            return "done"

        self.scurve = None
        return work

    def _on_point(self, point) -> None:
        """A new S-curve or field-sweep point (None: a new curve starts): plotted at once."""
        if point is None:
            self._draw()
            return
        if point[0] == "field":
            _, f, signal, _level = point
            self.sweep["field"].append(f)
            self.sweep["signal"].append(signal)
        else:
            amplitude, counts = point
            self.scurve["amps"].append(amplitude)
            self.scurve["counts"].append(counts)
        self._draw()

    def _on_done(self, result) -> None:
        action, device, ok, value = result
        self.job = None
        s = self.session
        if not ok:
            self.last_error = value
            self.status.setText(f"{action} on device {device} failed: {value}")
            self.status.setStyleSheet("color: #c00000;")
            self.log(f"bench: {action} on device {device} failed: {value}")
        else:
            self.last_error = ""
            self.status.setStyleSheet("")
            self.status.setText(f"{action} on device {device}: done" if value != "stopped" else f"{action} stopped")
            if action == "read":
                signal, level = value
                unit = s.chip.signal_unit if s else ""
                self.read_result.setText("last read: signal " + ", ".join(pg.siFormat(float(v), suffix=unit) for v in signal)
                                         + "; level " + " ".join(str(int(v)) for v in level))
            if action == "scurve" and value != "stopped":
                self.scurve["fit"] = value
                fit = value
                parts = [f"{name} = {float(est):.4g} [{float(lo):.4g}, {float(hi):.4g}]"
                         for name, est, lo, hi in zip(fit.names, fit.estimate[0], fit.ci_low[0], fit.ci_high[0])]
                self.fit_result.setText(f"fitted {self.scurve['law']} law: " + "; ".join(parts)
                                        + ("" if bool(fit.converged[0]) else " (not converged)"))
                self._draw()
        self._show_device()
        self._show_actions()
        self.validate()

    # ------------------------------------------------------------------ display
    def _show_device(self) -> None:
        s = self.session
        if s is None:
            self.device_info.setText("-")
            return
        info = s.device_info(self.device.value())
        state = "not read since the last write" if info.last_level is None else (
            f"level {info.last_level} (signal {pg.siFormat(info.last_signal, suffix=s.chip.signal_unit)})")
        self.device_info.setText(f"{info.where}; {state}")

    def _show_actions(self) -> None:
        s = self.session
        if s is None:
            return
        self.add_action_rows(s.writer.read("bench/actions")[self.actions_shown:])

    def add_action_rows(self, rows: np.ndarray) -> None:
        for row in rows:
            i = self.table.rowCount()
            self.table.insertRow(i)
            cells = (time.strftime("%H:%M:%S", time.localtime(float(row["time"]))), row["kind"].decode(),
                     str(int(row["device"])) if row["device"] >= 0 else "all",
                     "" if math.isnan(row["amplitude"]) else f"{row['amplitude']:.6g}",
                     "" if math.isnan(row["width"]) else f"{row['width']:.3g}",
                     str(int(row["count"])), row["result"].decode(errors="replace"))
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(i, j, item)
            self.actions_shown += 1
        self.table.resizeColumnsToContents()
        self.table.scrollToBottom()

    def _draw(self) -> None:
        p = self.plot.getPlotItem()
        p.clear()
        if p.legend is not None:
            p.legend.clear()
        if self.scurve is None and getattr(self, "sweep", None) is not None:
            sw = self.sweep
            p.setTitle(f"Field sweep of device {sw['device']}: Kerr signal after each field pulse", size="12pt")
            p.setLabel("bottom", "field", units="T", **LABEL_STYLE)
            p.setLabel("left", "Kerr signal", units=sw["unit"], **LABEL_STYLE)
            p.plot(sw["field"], sw["signal"], pen=_pen(0, 1.5), symbol="o", symbolBrush=PALETTE[0], symbolSize=7,
                   name="signal")
            return
        sc = self.scurve
        if sc is None:
            return
        self.draw_scurves([sc])

    def draw_scurves(self, curves: list[dict]) -> None:
        """Measured points and fitted laws of S-curves (each: amps, counts (levels), trials, width, fit...)."""
        p = self.plot.getPlotItem()
        p.clear()
        if p.legend is not None:
            p.legend.clear()
        unit = curves[0]["unit"] if curves else None
        p.setTitle("S-curve: measured (points) and fitted law (line)", size="12pt")
        p.setLabel("bottom", "pulse amplitude", units=unit or None, **LABEL_STYLE)
        p.setLabel("left", "switching probability", units=None, **LABEL_STYLE)
        for k, sc in enumerate(curves):
            amps = np.asarray(sc["amps"], dtype=float)
            if amps.size == 0:
                continue
            counts = np.asarray(sc["counts"])
            frac = 1.0 - counts[:, 0] / sc["trials"] if counts.ndim == 2 else counts / sc["trials"]
            p.addItem(pg.ScatterPlotItem(amps, frac, size=8, brush=PALETTE[k % len(PALETTE)], pen=None,
                                         name=f"device {sc['device']} (curve {sc['curve']})"))
            fit = sc.get("fit")
            if fit is not None:
                names, est = (list(fit.names), fit.estimate[0].cpu().numpy()) if hasattr(fit, "names") else fit["params"]
                h = np.linspace(amps.min(), amps.max(), 200)
                y = law_curve(sc.get("law"), names, est, h, float(sc["width"]), 1e-9, sc.get("levels"))
                if y is not None:
                    p.plot(h, y, pen=_pen(k, 2.0), name=f"fitted {sc.get('law', '')} law")

    # ------------------------------------------------------------------ review of a bench file
    def show_file(self, reader) -> bool:
        """Show a bench file (read-only): its actions and its S-curves with their fits. False if it is
        not a bench file."""
        data = read_bench_file(reader)
        if data is None:
            return False
        self.deactivate()
        self.header.setText(f"Reviewing bench file {reader.path} (station {reader.attrs.get('station_name', '?')}); "
                            "the chip is not opened.")
        self.table.setRowCount(0)
        self.actions_shown = 0
        self.add_action_rows(data["actions"])
        unit = str(reader.attrs.get("amplitude_unit", ""))
        curves = []
        scurve = data.get("scurve", np.zeros(0))
        fits = data.get("fits", np.zeros(0))
        for c in np.unique(scurve["curve"]) if len(scurve) else []:
            pts = scurve[scurve["curve"] == c]
            trials = int(pts["trials"][0])
            counts = np.stack([trials - pts["switched"], pts["switched"]], axis=1)
            curve = {"curve": int(c), "device": int(pts["device"][0]), "amps": pts["amplitude"], "counts": counts,
                     "trials": trials, "width": float(pts["width"][0]), "unit": unit, "levels": None, "fit": None}
            match = fits[fits["curve"] == c] if len(fits) else []
            if len(match):
                f = match[-1]
                names = f["names"].decode().split(",")
                curve["fit"] = {"params": (names, f["estimate"][:len(names)])}
                curve["law"] = f["law"].decode()
                try:
                    per_level = families.find_law(curve["law"]).level_counts
                except KeyError:  # a law of a family not installed here: points only
                    per_level = True
                if per_level:
                    curve["fit"] = None  # a per-level law needs the level count, not stored per point
            curves.append(curve)
        if curves:
            self.draw_scurves(curves)
        return True
