"""Station panel: the chip, its backend, the safety envelope and each instrument's resource and state.

A simulated station has no instruments: the panel shows the chip family, size, backend and the
envelope. A station with an ``[instruments]`` table lists every role with its model and VISA
resource, whether it is connected (only while a run holds it: the GUI opens instruments through
the run, never behind its back) and its output state (off whenever the chip is in its safe state:
idle, paused, finished).
"""

from __future__ import annotations

from PyQt5.QtCore import pyqtSignal
from PyQt5.QtWidgets import (QComboBox, QFileDialog, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QTableWidget,
                             QTableWidgetItem, QVBoxLayout)

from labctl import families
from labctl.config import ConfigError, StationConfig, embedded_names, load_station

OPEN_FILE = "Open station file\u2026"


def _si(value: float, unit: str) -> str:
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1, ""), (1e-3, "m"), (1e-6, "\u00b5"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= factor * 0.9999:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


class StationPanel(QGroupBox):
    """See module docstring. ``station_changed(StationConfig)`` when another station is chosen."""

    station_changed = pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__("Station", parent)
        self.config: StationConfig | None = None
        self.ref = ""
        self.run_state = "idle"
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.choice = QComboBox()
        self.choice.setObjectName("station_choice")
        self.choice.addItems(embedded_names("stations"))
        self.choice.addItem(OPEN_FILE)
        row.addWidget(QLabel("station"))
        row.addWidget(self.choice, 1)
        lay.addLayout(row)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        self.table = QTableWidget(0, 4)
        self.table.setObjectName("instrument_table")
        self.table.setHorizontalHeaderLabels(["instrument", "resource", "connection", "output"])
        header = self.table.horizontalHeader()
        for col in range(4):
            header.setSectionResizeMode(col, QHeaderView.Stretch if col == 1 else QHeaderView.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        lay.addWidget(self.table)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #c00000;")
        self.error.setWordWrap(True)
        lay.addWidget(self.error)
        self.choice.currentTextChanged.connect(self._chosen)
        self.select("sim-dw-640" if "sim-dw-640" in embedded_names("stations") else self.choice.itemText(0))

    def _chosen(self, text: str) -> None:
        if text == OPEN_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Open station file", "", "Station files (*.toml)")
            if path:
                self.select(path)
            return
        self.select(text)

    def select(self, ref: str) -> bool:
        """Show station ``ref`` (embedded name or TOML path); False (message shown) if it is bad."""
        try:
            config = load_station(ref)
        except ConfigError as exc:
            self.error.setText(str(exc))
            return False
        self.error.setText("")
        self.choice.blockSignals(True)
        if self.choice.findText(ref) < 0:
            self.choice.insertItem(self.choice.count() - 1, ref)
        self.choice.setCurrentText(ref)
        self.choice.blockSignals(False)
        self.config, self.ref = config, ref
        self._show()
        self.station_changed.emit(config)
        return True

    def set_run_state(self, state: str) -> None:
        """idle | starting | running | paused | done: updates connection and output columns."""
        self.run_state = state
        self.choice.setEnabled(state not in ("starting", "running", "paused"))
        self._show()

    def _show(self) -> None:
        c = self.config
        if c is None:
            return
        family = families.get(c.chip.family)
        unit = family.amplitude_unit
        e = c.envelope
        self.summary.setText(
            f"<b>{c.station.name}</b> \u2014 {c.station.description}<br>"
            f"chip: {family.label or family.name}, {c.chip.n} synapses, physics seed {c.chip.seed}<br>"
            f"backend: {c.station.backend}<br>"
            f"<b>safety envelope</b>: amplitude {_si(e.amplitude_min, unit)} \u2026 {_si(e.amplitude_max, unit)}, "
            f"width {_si(e.width_min, 's')} \u2026 {_si(e.width_max, 's')}, "
            f"read bias \u2264 {_si(e.read_bias_max, 'V')}")
        active = self.run_state in ("running", "paused", "starting")
        energised = self.run_state == "running"
        rows: list[tuple[str, str, str, str]] = []
        ins = c.instruments
        if ins is None:
            rows.append(("chip (simulated)", "in-process physics", "in use by the run" if active else "ready",
                         "pulsing" if energised else "off (safe state)"))
        else:
            for role, table in ins.roles().items():
                resource = table.resource
                if resource == "auto":
                    resource = "auto (simulated bench on 127.0.0.1)"
                rows.append((f"{role} ({table.model})", resource,
                             "connected (run)" if active else "not connected",
                             "on" if energised else "off (safe state)"))
        self.table.setRowCount(len(rows))
        for r, values in enumerate(rows):
            for k, v in enumerate(values):
                self.table.setItem(r, k, QTableWidgetItem(v))
        self.table.setFixedHeight(self.table.horizontalHeader().height() + 4
                                  + sum(self.table.rowHeight(r) for r in range(len(rows))))
