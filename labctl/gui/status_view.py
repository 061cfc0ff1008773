"""The live instrument status table: identity, connection, outputs and error queue of each role, queried.

Rows come from :mod:`labctl.instrument_status` (Qt-free), asked in a background thread so that an
instrument that does not answer (VISA timeouts, retries) never freezes the window. The window
says where to ask (:attr:`StatusView.source`, a callable returning one of):

- ``("busy", text)``: a run is driving the instruments; nothing is asked, the rows say so;
- ``("roles", roles, lock)``: the roles of the chip the Bench tab holds open, asked under the
  bench session's lock (skipped, "busy", while a bench action holds it);
- ``("station", station)``: connect to the station's instruments and ask them;
- ``("note", text)``: nothing to ask (simulated backend, self-served bench not running).

Refreshed on demand (button) and every ``interval_ms`` (5 s) while the window is idle.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from PyQt5.QtCore import QObject, QTimer, pyqtSignal
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from labctl.instrument_status import StatusRow, query_roles, query_station

COLUMNS = ("role", "model", "state", "outputs", "error queue", "identity / VISA error")
LIVE, DEAD, BUSY = QColor("#1a7f1a"), QColor("#c00000"), QColor("#8a6d00")


class _Relay(QObject):
    """Carries a background thread's result to the GUI thread (queued signal)."""

    done = pyqtSignal(object)


class StatusView(QWidget):
    """The table and its refresh button (see module docstring)."""

    refreshed = pyqtSignal(int)  # number of completed refreshes

    def __init__(self, source: Callable[[], tuple], interval_ms: int = 5000, parent=None):
        super().__init__(parent)
        self.source = source
        self.rows: list[StatusRow] = []
        self.busy_text = ""
        self.refreshes = 0
        self.querying = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        self.note = QLabel("instrument status: not asked yet")
        self.note.setWordWrap(True)
        self.button = QPushButton("Refresh status")
        self.button.clicked.connect(self.refresh)
        top.addWidget(self.note, 1)
        top.addWidget(self.button)
        layout.addLayout(top)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        layout.addWidget(self.table)
        self.table.setMinimumHeight(130)
        self.relay = _Relay()
        self.relay.done.connect(self._show)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def refresh(self) -> bool:
        """Ask again (in a background thread); False if a query is still under way."""
        if self.querying:
            return False
        what = self.source()
        kind = what[0]
        if kind in ("busy", "note"):
            self._show((kind, what[1], list(self.rows) if kind == "busy" else []))
            return True
        self.querying = True
        self.button.setEnabled(False)
        threading.Thread(target=self._query, args=(what,), name="labctl-status", daemon=True).start()
        return True

    def _query(self, what: tuple) -> None:
        try:
            if what[0] == "roles":
                _, roles, lock = what
                if not lock.acquire(timeout=0.5):
                    self.relay.done.emit(("busy", "busy (bench action in progress)", list(self.rows)))
                    return
                try:
                    rows = query_roles(roles)
                finally:
                    lock.release()
                self.relay.done.emit(("rows", "queried through the Bench tab's open chip", rows))
            else:
                status = query_station(what[1])
                self.relay.done.emit(("rows", status.note or f"queried station {status.station}", status.rows))
        except Exception as exc:  # noqa: BLE001 - shown in the view, never raised into Qt
            self.relay.done.emit(("note", f"status query failed: {type(exc).__name__}: {exc}", []))

    def _show(self, result: tuple) -> None:
        kind, text, rows = result
        self.querying = False
        self.button.setEnabled(True)
        self.busy_text = text if kind == "busy" else ""
        self.rows = rows
        stamp = time.strftime("%H:%M:%S")
        if kind == "rows":
            dead = [r.role for r in rows if not r.answers]
            text = f"{stamp}: {text}; " + (f"NOT ANSWERING: {', '.join(dead)}" if dead else "all instruments answer")
        else:
            text = f"{stamp}: {text}"
        self.note.setText(text)
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            state = self.busy_text or r.state
            errors = "; ".join(r.errors) if r.errors else ("none" if r.answers else "-")
            cells = (r.role, r.model, state, r.output or "-", errors,
                     r.problem if (r.problem or not r.answers) else r.identity)
            for j, value in enumerate(cells):
                item = QTableWidgetItem(value)
                if j == 2:
                    item.setForeground(BUSY if self.busy_text else (LIVE if r.answers else DEAD))
                item.setToolTip(value)
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()
        self.refreshes += 1
        self.refreshed.emit(self.refreshes)

    def state_of(self, role: str) -> str:
        """The state column of ``role`` as shown (live, NOT ANSWERING, busy ...), or "" if not shown."""
        for i in range(self.table.rowCount()):
            if self.table.item(i, 0).text() == role:
                return self.table.item(i, 2).text()
        return ""
