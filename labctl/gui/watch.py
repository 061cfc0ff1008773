"""Follow a run file: refresh a SWMR :class:`~labctl.store.RunReader` on a timer and update the views.

The same code serves three cases: a run started in this GUI (its worker thread writes the file),
a run written by a headless ``labctl run`` in another process (watch mode), and a finished file
(review mode: one update, then the timer stops). A writer flushes every half second and at every
event, so with the default 0.5 s period the views show a flushed update within about a second.
"""

from __future__ import annotations

from pathlib import Path

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from labctl.store import RunFileError, RunReader

# What a read of a live file may raise while its writer is flushing (HDF5 errors surface as
# OSError, RuntimeError or ValueError for an invalidated dataset id; RunReader turns most into
# RunFileError): the reader is reopened and the read retried at the next tick.
TRANSIENT = (RunFileError, OSError, RuntimeError, KeyError, ValueError)


class RunWatcher(QObject):
    """Refreshes ``reader`` every ``interval_ms`` and feeds ``views`` (a LiveViews).

    A failed read is retried at the next tick with a freshly opened reader, so the view follows
    the file to its end; after ``give_up_after`` failures in a row (the file is damaged, not
    merely mid-flush) ``trouble`` is emitted once with the error, and retrying goes on.
    """

    new_events = pyqtSignal(list)   # event dicts not seen before
    updated = pyqtSignal(int)       # number of updates so far
    finished = pyqtSignal(str)      # exit status, once the file is closed by its writer
    trouble = pyqtSignal(str)       # the file could not be read for give_up_after ticks in a row

    def __init__(self, reader: RunReader, views, interval_ms: int = 500, parent=None, give_up_after: int = 10):
        super().__init__(parent)
        self.reader: RunReader | None = reader
        self.views = views
        self.path = Path(reader.path)
        self.events_seen = 0
        self.updates = 0
        self.failures = 0  # failed ticks in a row
        self.give_up_after = give_up_after
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
        self._drop_reader()

    def _drop_reader(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.close()

    def tick(self) -> None:
        """One refresh: new events, new rows, views updated and redrawn."""
        try:
            if self.reader is None:  # the last read failed: start again from a fresh view
                self.reader = RunReader(self.path)
            else:
                self.reader.refresh()
            events = self.reader.events()
            status = self.reader.exit_status()
            finished = status != "incomplete"
            self.views.update_from_reader(self.reader, finished)
        except TRANSIENT as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.failures += 1
            self._drop_reader()
            if self.failures == self.give_up_after:
                self.trouble.emit(self.last_error)
            return
        self.failures = 0
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
