"""Follow a run file: refresh a SWMR :class:`~labctl.store.RunReader` on a timer and update the views.

The same code serves three cases: a run started in this GUI (its worker thread writes the file),
a run written by a headless ``labctl run`` in another process (watch mode), and a finished file
(review mode: one update, then the timer stops). A writer flushes every half second and at every
event, so with the default 0.5 s period the views show a flushed update within about a second.
"""

from __future__ import annotations

from pathlib import Path

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from labctl.store import RunReader


class RunWatcher(QObject):
    """Refreshes ``reader`` every ``interval_ms`` and feeds ``views`` (a LiveViews)."""

    new_events = pyqtSignal(list)   # event dicts not seen before
    updated = pyqtSignal(int)       # number of updates so far
    finished = pyqtSignal(str)      # exit status, once the file is closed by its writer

    def __init__(self, reader: RunReader, views, interval_ms: int = 500, parent=None):
        super().__init__(parent)
        self.reader, self.views = reader, views
        self.path = Path(reader.path)
        self.events_seen = 0
        self.updates = 0
        self.status = "incomplete"
        self.last_error = ""
        self.redraw = True  # False while a run started in this GUI is live: its redraw timer draws
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)

    def start(self) -> None:
        self.tick()
        if self.status == "incomplete":
            self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def close(self) -> None:
        self.timer.stop()
        self.reader.close()

    def tick(self) -> None:
        """One refresh: new events, new rows, views updated and redrawn."""
        try:
            self.reader.refresh()
            events = self.reader.events()
            status = self.reader.exit_status()
            finished = status != "incomplete"
            self.views.update_from_reader(self.reader, finished)
        except (OSError, KeyError, ValueError) as exc:  # a torn read of a live file: try again next tick
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        if self.redraw or finished:
            self.views.redraw()
        self.updates += 1
        if len(events) > self.events_seen:
            self.new_events.emit(events[self.events_seen:])
            self.events_seen = len(events)
        self.updated.emit(self.updates)
        if finished:
            self.status = status
            self.timer.stop()
            self.finished.emit(status)
