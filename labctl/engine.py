"""The run engine: drives a protocol from safe point to safe point (vocabulary from Bluesky's RunEngine).

A protocol's ``run(ctx)`` is a generator that yields a :class:`Progress` at every safe point (a
batch or sweep-block boundary). Between two yields the engine does nothing; at each yield it:

- tells its subscribers (progress bar, GUI) what happened;
- writes a checkpoint when the cadence says so (protocol state + chip state, atomically);
- honours requests: **pause** (chip to safe state, wait for resume), **resume**, **stop** (end
  now, as a success) and **abort** (end now, as a failure).

Whatever happens (normal end, stop, abort, exception, Ctrl-C) the chip reaches its safe state
and the run file gets a stop event with the exit status and reason. Requests are thread-safe,
so a GUI or a signal handler may make them while the protocol runs in another thread.
"""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch

from .chip import SynapseArray
from .store import DatasetSpec, RunWriter

Subscriber = Callable[[str, dict], None]

SUMMARY = "summary"
SUMMARY_SPEC = DatasetSpec(np.uint8, (None,), description="JSON of the run's final metrics, written at the end")


@dataclass
class Progress:
    """What a protocol reports at a safe point: how far it is and its latest metrics."""

    step: int
    total: int | None = None
    stage: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


class Plan(Protocol):
    """What the engine needs of a protocol (protocols/base.py implements it)."""

    name: str

    def describe(self) -> dict[str, DatasetSpec]: ...
    def run(self, ctx: "RunContext") -> Iterator[Progress]: ...
    def summary(self) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class RunContext:
    """What a running protocol may use: the chip and the run file."""

    chip: SynapseArray
    writer: RunWriter | None


@dataclass
class RunOutcome:
    status: str  # "success" or "failed"
    reason: str
    summary: dict[str, Any]
    steps: int
    error: BaseException | None = None  # the exception that failed the run, if any

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "success" else 1


class AbortRequested(Exception):
    """Raised inside the engine when an abort was requested; ends the run as failed."""


class RunEngine:
    """Runs one plan on one chip, writing to one run file (which it closes)."""

    def __init__(
        self,
        chip: SynapseArray,
        writer: RunWriter | None = None,
        *,
        checkpoint_every_s: float | None = 60.0,
        flush_every_s: float = 0.5,
        subscribers: tuple[Subscriber, ...] = (),
        checkpoint_at_start: bool = True,
    ):
        """``checkpoint_every_s``: seconds between checkpoints (0: at every safe point, None: never);
        ``flush_every_s``: seconds between flushes of the run file; ``checkpoint_at_start``: False
        when resuming from a checkpoint that is already in the file."""
        self.chip = chip
        self.writer = writer
        self.checkpoint_every_s = checkpoint_every_s
        self.flush_every_s = flush_every_s
        self.checkpoint_at_start = checkpoint_at_start
        self.subscribers = list(subscribers)
        self.state = "idle"
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._request: tuple[str, str] | None = None  # (what, reason), latest wins except abort

    # ------------------------------------------------------------------ requests (thread-safe)
    def request_pause(self, reason: str = "user request") -> None:
        self._ask("pause", reason)

    def request_resume(self, reason: str = "user request") -> None:
        self._ask("resume", reason)

    def request_stop(self, reason: str = "user request") -> None:
        self._ask("stop", reason)

    def request_abort(self, reason: str = "user request") -> None:
        self._ask("abort", reason)

    def _ask(self, what: str, reason: str) -> None:
        with self._wake:
            if self._request is None or self._request[0] != "abort":
                self._request = (what, reason)
            self._wake.notify_all()

    def _take(self) -> tuple[str, str] | None:
        with self._lock:
            request, self._request = self._request, None
            return request

    # ------------------------------------------------------------------ subscribers
    def subscribe(self, fn: Subscriber) -> None:
        self.subscribers.append(fn)

    def _emit(self, name: str, doc: dict) -> None:
        for fn in list(self.subscribers):
            fn(name, doc)

    def _event(self, kind: str, reason: str = "", status: str = "", step: int = -1) -> None:
        if self.writer is not None:
            self.writer.event(kind, reason=reason, status=status, step=step)
            self.writer.flush()
        self._emit("event", {"kind": kind, "reason": reason, "status": status, "step": step})

    # ------------------------------------------------------------------ the run
    def run(self, plan: Plan) -> RunOutcome:
        """Run ``plan`` to its end, a stop, an abort or an error; always reaches safe state."""
        status, reason, step = "success", "completed", -1
        last_flush = last_checkpoint = time.monotonic()
        self.state = "running"
        self._emit("start", {"plan": plan.name})
        try:
            if self.checkpoint_every_s is not None and self.checkpoint_at_start:
                self.checkpoint(plan, 0)  # so that even a run killed before its first cadence can resume
            for progress in plan.run(RunContext(self.chip, self.writer)):
                step = progress.step
                self._emit("progress", {"step": progress.step, "total": progress.total, "stage": progress.stage,
                                        "metrics": dict(progress.metrics)})
                now = time.monotonic()
                if self.writer is not None and now - last_flush >= self.flush_every_s:
                    self.writer.flush()
                    last_flush = now
                if self.checkpoint_every_s is not None and now - last_checkpoint >= self.checkpoint_every_s:
                    self.checkpoint(plan, step)
                    last_checkpoint = now
                if self._handle_requests(plan, step) == "stop":
                    reason = self._stop_reason
                    break
        except AbortRequested as exc:
            status, reason = "failed", f"aborted: {exc}"
        except KeyboardInterrupt:
            status, reason = "failed", "aborted: interrupted (Ctrl-C)"
        except Exception as exc:  # the run fails: recorded in the run file and returned to the caller
            outcome = self._finish(plan, "failed", f"error: {type(exc).__name__}: {exc}", step)
            outcome.error = exc
            return outcome
        return self._finish(plan, status, reason, step)

    def _finish(self, plan: Plan, status: str, reason: str, step: int) -> RunOutcome:
        try:
            self.chip.safe_state()
        finally:
            summary = plan.summary() if status == "success" else _safe_summary(plan)
            summary["counters"] = self.chip.counters.as_dict()
            if self.writer is not None:
                self.writer.append(SUMMARY, np.frombuffer(json.dumps(summary, default=float).encode(), dtype=np.uint8))
                self.writer.close(status=status, reason=reason)
            self.state = "done"
            self._emit("stop", {"status": status, "reason": reason, "summary": summary})
        return RunOutcome(status, reason, summary, step)

    _stop_reason = ""

    def _handle_requests(self, plan: Plan, step: int) -> str | None:
        request = self._take()
        while request is not None:
            what, reason = request
            if what == "abort":
                self._event("abort", reason, step=step)
                raise AbortRequested(reason)
            if what == "stop":
                self._event("stop_requested", reason, step=step)
                self._stop_reason = f"stopped: {reason}"
                return "stop"
            if what == "pause":
                self.chip.safe_state()
                self.state = "paused"
                self._event("pause", reason, step=step)
                self.checkpoint(plan, step)
                request = self._wait_while_paused()
                continue
            if what == "resume" and self.state == "paused":
                self.state = "running"
                self._event("resume", reason, step=step)
            request = None
        return None

    def _wait_while_paused(self) -> tuple[str, str]:
        with self._wake:
            while self._request is None:
                self._wake.wait(timeout=0.2)
            request, self._request = self._request, None
        return request

    def checkpoint(self, plan: Plan, step: int) -> None:
        """Write the plan's and the chip's state into the run file, atomically."""
        if self.writer is None:
            return
        state = {"step": step, "plan": plan.state_dict(), "rows": self.writer.rows()}
        chip_state = getattr(self.chip, "state_dict", None)
        if chip_state is not None:
            state["chip"] = chip_state()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.writer.checkpoint(step, buffer.getvalue())
        self._emit("event", {"kind": "checkpoint", "reason": "", "status": "", "step": step})

    @contextmanager
    def ctrl_c_pauses(self):
        """Within this block, one Ctrl-C pauses at the next safe point and a second one aborts;
        SIGTERM (a scheduler or ``kill`` ending the job) aborts at the next safe point. Either way
        the run ends through the engine: chip in safe state, stop event written."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        presses = 0

        def on_sigint(signum, frame):
            nonlocal presses
            presses += 1
            if presses == 1 and self.state == "running":
                self.request_pause("Ctrl-C (press again to abort)")
            else:
                self.request_abort("Ctrl-C pressed twice")

        def on_sigterm(signum, frame):
            self.request_abort("SIGTERM received")

        previous = signal.signal(signal.SIGINT, on_sigint), signal.signal(signal.SIGTERM, on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])


def _safe_summary(plan: Plan) -> dict[str, Any]:
    """The summary of a failed run: what the plan can still say, or why it cannot."""
    try:
        return plan.summary()
    except Exception as exc:  # a failed run may leave a plan unable to summarise; record why
        return {"summary_error": f"{type(exc).__name__}: {exc}"}
