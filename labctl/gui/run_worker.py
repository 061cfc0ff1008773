"""Run a protocol under the RunEngine in a worker thread, and hand its news to the GUI thread.

The engine calls its subscribers in the worker thread at every safe point. Events (start, pause,
resume, abort, stop) are rare and go to the GUI thread at once through Qt signals (queued
connections). Progress documents are frequent (one per minibatch): the subscriber only appends
them to a list under a lock, and the GUI takes the whole list on its redraw timer (``take``), so
a fast protocol never floods the GUI's event queue and the GUI never slows the run.

While the GUI asks for it (``want_chip``), the subscriber also copies the chip's counters and, on
the simulated backend, its device states (a cheap tensor copy, no chip operation), at most once
per redraw period.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from PyQt5.QtCore import QObject, QThread, pyqtSignal, pyqtSlot

from labctl.engine import RunEngine


class RunWorker(QObject):
    """Runs ``protocol`` on ``chip`` into ``writer`` in its own QThread (see module docstring)."""

    engine_event = pyqtSignal(dict)  # {"kind", "reason", "status", "step"} (engine "event" documents)
    # {"status", "reason", "summary", "steps", "duration_s", "error", "safe"}; safe: the engine
    # confirmed the chip's safe state at the end (False: the chip may still be energised)
    finished = pyqtSignal(dict)

    def __init__(self, protocol, chip, writer, *, checkpoint_every_s: float | None = 60.0,
                 snapshot_every_s: float = 0.2):
        super().__init__()
        self.protocol, self.chip, self.writer = protocol, chip, writer
        self.path = str(writer.path) if writer is not None else None
        self.engine = RunEngine(chip, writer, checkpoint_every_s=checkpoint_every_s, subscribers=(self._on_doc,))
        self.snapshot_every_s = snapshot_every_s
        self._lock = threading.Lock()
        self._pending: list[dict] = []
        self._chip_snapshot: dict | None = None
        self._last_snapshot = 0.0
        self.want_chip = True
        self.outcome = None
        self.qthread = QThread()
        self.qthread.setObjectName(f"labctl-run-{protocol.name}")
        self.moveToThread(self.qthread)
        self.qthread.started.connect(self._run)

    # ------------------------------------------------------------------ control (GUI thread)
    def start(self) -> None:
        self.qthread.start()

    def pause(self) -> None:
        self.engine.request_pause("GUI: pause")

    def resume(self) -> None:
        self.engine.request_resume("GUI: resume")

    def stop(self) -> None:
        self.engine.request_stop("GUI: stop")

    def abort(self) -> None:
        self.engine.request_abort("GUI: abort")

    @property
    def state(self) -> str:
        """The engine's run state as text: idle, running, pausing, paused, suspended, stopping,
        aborting or done (labctl.engine.RunState)."""
        return self.engine.state.value

    def take(self) -> tuple[list[dict], dict | None]:
        """Progress documents since the last call, and the latest chip snapshot (or None)."""
        with self._lock:
            pending, self._pending = self._pending, []
            snapshot, self._chip_snapshot = self._chip_snapshot, None
        return pending, snapshot

    def wait(self, ms: int = 30_000) -> bool:
        return self.qthread.wait(ms)

    # ------------------------------------------------------------------ worker thread
    def _on_doc(self, name: str, doc: dict) -> None:
        if name == "progress":
            now = time.monotonic()
            snapshot = None
            if self.want_chip and now - self._last_snapshot >= self.snapshot_every_s:
                self._last_snapshot = now
                snapshot = self._snapshot(doc["step"])
            with self._lock:
                self._pending.append(doc)
                if snapshot is not None:
                    self._chip_snapshot = snapshot
        elif name == "event":
            self.engine_event.emit(dict(doc))

    def _snapshot(self, step: int) -> dict:
        snap: dict[str, Any] = {"step": step, "counters": self.chip.counters.as_dict()}
        devices = getattr(self.chip, "devices", None)  # simulated backend: the true device states
        state = getattr(devices, "state", None)
        if state is not None:
            snap["state"] = state.detach().clone().cpu().numpy()
        return snap

    @pyqtSlot()
    def _run(self) -> None:
        t0 = time.perf_counter()
        result: dict[str, Any] = {"status": "failed", "reason": "", "summary": {}, "steps": -1, "error": "",
                                  "safe": False}
        try:
            outcome = self.engine.run(self.protocol)
            self.outcome = outcome
            result.update(status=outcome.status, reason=outcome.reason, summary=outcome.summary,
                          steps=outcome.steps, safe=outcome.safe,
                          error="" if outcome.error is None else f"{type(outcome.error).__name__}: {outcome.error}")
        except BaseException as exc:  # the engine records errors itself; this is a last resort
            result.update(reason=f"error: {type(exc).__name__}: {exc}", error=str(exc))
        finally:
            try:
                self.chip.close()  # safe state and release, as `labctl run` does
            except Exception as exc:  # reported, never raised into Qt
                result["error"] = (result["error"] + f"; close failed: {exc}").strip("; ")
                result["safe"] = False
            with self._lock:
                self._chip_snapshot = self._snapshot(result["steps"]) if self.want_chip else None
            result["duration_s"] = time.perf_counter() - t0
            self.finished.emit(result)
            self.qthread.quit()
