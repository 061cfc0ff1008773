"""The run engine: drives a protocol from safe point to safe point (vocabulary from Bluesky's RunEngine).

A protocol's ``run(ctx)`` is a generator that yields a :class:`Progress` at every safe point (a
batch or sweep-block boundary). Between two yields the engine does nothing; at each yield it:

- tells its subscribers (progress bar, GUI) what happened;
- writes a checkpoint when the cadence says so (protocol state + chip state, atomically);
- takes the queued requests, in the order they were made: **pause** (chip to safe state,
  checkpoint, wait), **resume**, **stop** (end now, as a success) and **abort** (end now, as a
  failure; an abort overtakes every request queued before it).

Run control is a state machine (:class:`RunState`, transitions in :data:`TRANSITIONS`): only the
thread running the plan changes the state; other threads (GUI, a terminal prompt) and signal
handlers only queue requests, which never takes a lock. A request that makes no sense in the
state it is taken in (resume while running) is recorded as a ``request_ignored`` event.

Whatever happens (normal end, stop, abort, exception, Ctrl-C) the engine puts the chip in its
safe state (several tries) and the run file gets a stop event with the exit status, reason and
last step. A run whose chip could not be put in its safe state ends ``failed``, with
``RunOutcome.safe`` False. A subscriber that raises is detached (and the fact recorded); the
run goes on.
"""

from __future__ import annotations

import enum
import io
import json
import logging
import queue
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

log = logging.getLogger(__name__)

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


class RunState(str, enum.Enum):
    """Where a run is. A ``str`` enum: ``RunState.PAUSED == "paused"``."""

    IDLE = "idle"            # built, run() not called yet; requests queue up
    RUNNING = "running"      # the plan runs between safe points
    PAUSING = "pausing"      # at a safe point: chip to safe state, checkpoint
    PAUSED = "paused"        # chip in safe state, waiting for resume, stop or abort
    SUSPENDED = "suspended"  # an instrument outage holds the plan (reported by chip.on_event)
    STOPPING = "stopping"    # a stop was taken: ending as a success
    ABORTING = "aborting"    # an abort was taken (or Ctrl-C raised): ending as a failure
    DONE = "done"            # chip safe state tried, run file closed; terminal


_S = RunState
#: Valid transitions. DONE is reachable from every active state (the plan ends, or an error ends it).
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    _S.IDLE: frozenset({_S.RUNNING}),
    _S.RUNNING: frozenset({_S.PAUSING, _S.SUSPENDED, _S.STOPPING, _S.ABORTING, _S.DONE}),
    _S.PAUSING: frozenset({_S.PAUSED, _S.ABORTING, _S.DONE}),
    _S.PAUSED: frozenset({_S.RUNNING, _S.STOPPING, _S.ABORTING, _S.DONE}),
    _S.SUSPENDED: frozenset({_S.RUNNING, _S.ABORTING, _S.DONE}),
    _S.STOPPING: frozenset({_S.DONE}),
    _S.ABORTING: frozenset({_S.DONE}),
    _S.DONE: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A state change the table does not allow (a bug in the engine, not a user error)."""

    def __init__(self, old: RunState, new: RunState):
        allowed = ", ".join(s.value for s in TRANSITIONS[old]) or "none"
        super().__init__(f"run state {old.value} -> {new.value} is not allowed (from {old.value}: {allowed})")
        self.old, self.new = old, new


def check_transition(old: RunState, new: RunState) -> None:
    """Raise :class:`InvalidTransition` unless ``old -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(old, new)


@dataclass
class RunOutcome:
    status: str  # "success" or "failed"
    reason: str
    summary: dict[str, Any]
    steps: int  # the last step reached (-1: no safe point reached)
    error: BaseException | None = None  # the exception that failed the run, if any
    safe: bool = True  # False: the chip's safe state was NOT confirmed at the end (see reason)

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "success" else 1


class AbortRequested(Exception):
    """Raised inside the engine when an abort was taken; ends the run as failed."""


class UnsafeChip(Exception):
    """The chip's safe state was not confirmed after every try (the last error is ``__cause__``)."""


# Run-file event kinds the engine writes besides start/stop/pause/resume/abort/checkpoint.
IGNORED = "request_ignored"        # a request that made no sense in the state it was taken in
SUBSCRIBER_ERROR = "subscriber_err"  # a subscriber raised and was detached
SAFE_STATE_FAILED = "safe_state_fail"  # one failed try of chip.safe_state(), with the error


class RunEngine:
    """Runs one plan on one chip, writing to one run file (which it closes).

    API for other threads (GUI, a terminal prompt): ``request_pause/resume/stop/abort(reason)``
    queue a request (never blocking, safe from a signal handler); ``state`` is the current
    :class:`RunState`; :meth:`wait_for` blocks until the run is in one of some states;
    subscribers receive ``("state", {"old", "new", "reason", "step"})`` at every change, besides
    ``start``, ``progress``, ``event`` and ``stop`` documents. Subscribers are called in the
    thread running the plan and must not block.
    """

    def __init__(
        self,
        chip: SynapseArray,
        writer: RunWriter | None = None,
        *,
        checkpoint_every_s: float | None = 60.0,
        flush_every_s: float = 0.5,
        subscribers: tuple[Subscriber, ...] = (),
        checkpoint_at_start: bool = True,
        safe_state_tries: int = 3,
        safe_state_backoff_s: float = 0.1,
    ):
        """``checkpoint_every_s``: seconds between checkpoints (0: at every safe point, None: never);
        ``flush_every_s``: seconds between flushes of the run file; ``checkpoint_at_start``: False
        when resuming from a checkpoint that is already in the file; ``safe_state_tries``: how
        many times ``chip.safe_state()`` is tried before the chip counts as unsafe, waiting
        ``safe_state_backoff_s`` seconds after the first failure, doubling after each."""
        self.chip = chip
        self.writer = writer
        self.checkpoint_every_s = checkpoint_every_s
        self.flush_every_s = flush_every_s
        self.checkpoint_at_start = checkpoint_at_start
        self.safe_state_tries = max(1, int(safe_state_tries))
        self.safe_state_backoff_s = float(safe_state_backoff_s)
        self.subscribers = list(subscribers)
        self._state = RunState.IDLE
        self.reason = ""  # why the run is in its current state (the reason of the last transition)
        self.step = -1  # the last safe point reached (-1: none yet)
        self._changed = threading.Condition()  # notified at every transition; never used by requesters
        # Requests: (what, reason). SimpleQueue.put is reentrant, so signal handlers may queue.
        self._requests: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._abort: str | None = None  # set (once) by request_abort: overtakes queued requests
        self._pause_pending = False  # a Ctrl-C pause was asked and the run has not resumed since

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> RunState:
        return self._state

    def wait_for(self, *states: RunState, timeout: float | None = None) -> RunState:
        """Block until the run is in one of ``states`` (or ``timeout`` seconds pass); returns the
        state then. For another thread, e.g. a prompt that waits for PAUSED or DONE."""
        with self._changed:
            self._changed.wait_for(lambda: self._state in states, timeout=timeout)
            return self._state

    def _transition(self, new: RunState, reason: str = "") -> None:
        old = self._state
        check_transition(old, new)
        with self._changed:
            self._state, self.reason = new, reason
            self._changed.notify_all()
        self._emit("state", {"old": old.value, "new": new.value, "reason": reason, "step": self.step})

    # ------------------------------------------------------------------ requests (any thread)
    def request_pause(self, reason: str = "user request") -> None:
        self._requests.put(("pause", reason))

    def request_resume(self, reason: str = "user request") -> None:
        self._requests.put(("resume", reason))

    def request_stop(self, reason: str = "user request") -> None:
        self._requests.put(("stop", reason))

    def request_abort(self, reason: str = "user request") -> None:
        """Abort at the next safe point (or at once while paused), ahead of queued requests."""
        if self._abort is None:
            self._abort = reason
        self._requests.put(("abort", reason))  # also wakes a paused run

    def _next_request(self, wait_s: float | None) -> tuple[str, str] | None:
        """The pending abort, else the oldest queued request; waits up to ``wait_s`` s (None: no wait)."""
        if self._abort is not None:
            return "abort", self._abort
        try:
            if wait_s is None:
                return self._requests.get_nowait()
            return self._requests.get(timeout=wait_s)
        except queue.Empty:
            return None

    # ------------------------------------------------------------------ subscribers
    def subscribe(self, fn: Subscriber) -> None:
        self.subscribers.append(fn)

    def _emit(self, name: str, doc: dict) -> None:
        """Call every subscriber; one that raises is logged, detached and recorded, and the run goes on."""
        failed = []
        for fn in list(self.subscribers):
            try:
                fn(name, doc)
            except Exception as exc:  # a broken progress bar or GUI must not end the run
                log.error("run subscriber %r raised on %r; detached", fn, name, exc_info=True)
                failed.append((fn, exc))
        for fn, exc in failed:
            if fn in self.subscribers:
                self.subscribers.remove(fn)
            label = getattr(fn, "__qualname__", type(fn).__name__)
            self._event(SUBSCRIBER_ERROR, f"{label} detached after {type(exc).__name__}: {exc}", step=self.step)

    def _event(self, kind: str, reason: str = "", status: str = "", step: int = -1) -> None:
        if self.writer is not None and not self.writer.closed:
            self.writer.event(kind, reason=reason, status=status, step=step)
            self.writer.flush()
        self._emit("event", {"kind": kind, "reason": reason, "status": status, "step": step})

    def _on_chip_event(self, kind: str, reason: str = "") -> None:
        """``chip.on_event`` while a run is on: record an instrument-layer event (e.g. an outage's
        ``suspend``/``unsuspend``) at the current step and tell subscribers. ``suspend`` moves a
        running run to SUSPENDED, ``unsuspend`` back to RUNNING. Called in the plan's thread (the
        one making the chip call); never raises into the instrument layer."""
        try:
            self._event(kind, reason, step=self.step)
            if kind == "suspend" and self._state is RunState.RUNNING:
                self._transition(RunState.SUSPENDED, reason)
                threading.Thread(target=self._abort_cancels_suspension, args=(self.chip.cancel_suspension,),
                                 daemon=True, name="labctl-suspension-watch").start()
            elif kind == "unsuspend" and self._state is RunState.SUSPENDED:
                self._transition(RunState.RUNNING, reason)
        except Exception:  # the instrument layer must get on with its recovery; the failure is logged
            log.exception("could not record chip event %r (%s)", kind, reason)

    def _abort_cancels_suspension(self, cancel: Callable[[], None]) -> None:
        """While SUSPENDED, the plan's thread waits inside the instrument layer for an outage to
        end: an abort must not wait with it. This watcher (its own thread, so that no signal
        handler ever takes the chip's locks) cancels the wait once an abort is pending, and keeps
        cancelling every 0.05 s while the state is SUSPENDED, so that no cancel is lost."""
        while self._state is RunState.SUSPENDED:
            if self._abort is not None:
                cancel()
            time.sleep(0.05)

    # ------------------------------------------------------------------ the run
    def run(self, plan: Plan) -> RunOutcome:
        """Run ``plan`` to its end, a stop, an abort or an error; always tries the safe state.

        Never raises for a failed run: the outcome says why (``status``, ``reason``, ``error``,
        ``safe``). Raises :class:`InvalidTransition` if this engine already ran a plan.
        """
        self._transition(RunState.RUNNING, "run started")
        self.chip.on_event = self._on_chip_event
        status, reason, error = "success", "completed", None
        last_flush = last_checkpoint = time.monotonic()
        try:
            self._emit("start", {"plan": plan.name})
            if self.checkpoint_every_s is not None and self.checkpoint_at_start:
                self.checkpoint(plan, 0)  # so that even a run killed before its first cadence can resume
            stop = self._safe_point(plan)  # requests made before the run started (Ctrl-C while IDLE)
            if stop is None:
                for progress in plan.run(RunContext(self.chip, self.writer)):
                    self.step = progress.step
                    self._emit("progress", {"step": progress.step, "total": progress.total, "stage": progress.stage,
                                            "metrics": dict(progress.metrics)})
                    now = time.monotonic()
                    if self.writer is not None and now - last_flush >= self.flush_every_s:
                        self.writer.flush()
                        last_flush = now
                    if self.checkpoint_every_s is not None and now - last_checkpoint >= self.checkpoint_every_s:
                        self.checkpoint(plan, self.step)
                        last_checkpoint = now
                    stop = self._safe_point(plan)
                    if stop is not None:
                        break
                else:
                    self._end_of_plan()
            if stop is not None:
                reason = stop
        except AbortRequested as exc:
            status, reason = "failed", f"aborted: {exc}"
        except KeyboardInterrupt:
            status, reason = "failed", "aborted: interrupted (Ctrl-C)"
            if RunState.ABORTING in TRANSITIONS[self._state]:
                self._transition(RunState.ABORTING, reason)
        except Exception as exc:  # the run fails: recorded in the run file and returned to the caller
            status, reason, error = "failed", f"error: {type(exc).__name__}: {exc}", exc
            if self._abort is not None and RunState.ABORTING in TRANSITIONS[self._state]:
                # an abort cancelled a wait (an outage) and the plan ended with that error
                reason = f"aborted: {self._abort} ({_describe(exc)})"
                self._transition(RunState.ABORTING, self._abort)
                self._event("abort", self._abort, step=self.step)
            log.info("run failed at step %d: %s", self.step, reason)
        return self._finish(plan, status, reason, error)

    def _safe_point(self, plan: Plan) -> str | None:
        """Take the queued requests in order; returns the stop reason if the run is to end as a
        success, raises AbortRequested for an abort, None to go on."""
        while (request := self._next_request(None)) is not None:
            stop = self._take(plan, *request)
            if stop is not None:
                return stop
        return None

    def _take(self, plan: Plan, what: str, reason: str) -> str | None:
        """Act on one request in the current state (RUNNING or PAUSED)."""
        if what == "abort":
            self._abort_now(reason)
        if what == "stop":
            self._transition(RunState.STOPPING, reason)
            self._event("stop_requested", reason, step=self.step)
            return f"stopped: {reason}"
        if what == "pause" and self._state is RunState.RUNNING:
            return self._pause(plan, reason)
        if what == "resume" and self._state is RunState.PAUSED:
            self._pause_pending = False
            self._transition(RunState.RUNNING, reason)
            self._event("resume", reason, step=self.step)
            return None
        self._event(IGNORED, f"{what} while {self._state.value}: {reason}", step=self.step)
        return None

    def _abort_now(self, reason: str) -> None:
        self._transition(RunState.ABORTING, reason)
        self._event("abort", reason, step=self.step)
        raise AbortRequested(reason)

    def _pause(self, plan: Plan, reason: str) -> str | None:
        """Safe state, pause event, checkpoint, then wait for resume, stop or abort (taken in order)."""
        self._transition(RunState.PAUSING, reason)
        failure = self._reach_safe_state()
        if failure is not None:
            raise UnsafeChip(f"safe state on pause not confirmed: {_describe(failure)}") from failure
        self._event("pause", reason, step=self.step)
        self.checkpoint(plan, self.step)
        self._transition(RunState.PAUSED, reason)
        while self._state is RunState.PAUSED:
            request = self._next_request(0.2)
            if request is not None:
                stop = self._take(plan, *request)
                if stop is not None:
                    return stop
        return None

    def _end_of_plan(self) -> None:
        """The plan completed: an abort still wins; other requests came too late and are recorded."""
        while (request := self._next_request(None)) is not None:
            what, reason = request
            if what == "abort":
                self._abort_now(reason)
            self._event(IGNORED, f"{what} after the plan completed: {reason}", step=self.step)

    def _reach_safe_state(self) -> BaseException | None:
        """Try ``chip.safe_state()`` up to ``safe_state_tries`` times, recording every failure in the
        run file; returns the last error, or None once the safe state is confirmed."""
        error: BaseException | None = None
        for attempt in range(1, self.safe_state_tries + 1):
            try:
                self.chip.safe_state()
                return None
            except Exception as exc:  # recorded, retried, and reported by the caller
                error = exc
                log.info("safe state try %d/%d failed: %s", attempt, self.safe_state_tries, _describe(exc))
                self._event(SAFE_STATE_FAILED, f"try {attempt}/{self.safe_state_tries}: {_describe(exc)}",
                            step=self.step)
                if attempt < self.safe_state_tries:
                    time.sleep(self.safe_state_backoff_s * 2 ** (attempt - 1))
        return error

    def _finish(self, plan: Plan, status: str, reason: str, error: BaseException | None) -> RunOutcome:
        """Safe state (with tries), summary, stop event with the last step, file closed, DONE."""
        unsafe = self._reach_safe_state()
        if unsafe is not None:
            what = f"safe state not confirmed: {_describe(unsafe)}"
            if status == "success":
                status, reason = "failed", f"error: {what}"
            else:
                reason = f"{reason}; {what}"
            error = error if error is not None else unsafe
        summary = _safe_summary(plan)
        if status == "success" and "summary_error" in summary:
            status, reason = "failed", f"error: summary: {summary['summary_error']}"
        summary["counters"] = self.chip.counters.as_dict()
        self.chip.on_event = None
        if self.writer is not None:
            self.writer.append(SUMMARY, np.frombuffer(json.dumps(summary, default=float).encode(), dtype=np.uint8))
            self.writer.close(status=status, reason=reason, step=self.step)
        self._transition(RunState.DONE, reason)
        self._emit("stop", {"status": status, "reason": reason, "summary": summary, "step": self.step,
                            "safe": unsafe is None})
        return RunOutcome(status, reason, summary, self.step, error, safe=unsafe is None)

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
        """Within this block, one Ctrl-C pauses at the next safe point and a second one (or one
        while paused) aborts; after the run is resumed, the next Ctrl-C pauses again; Ctrl-C before the run started aborts it before its first step;
        SIGTERM (a scheduler or ``kill`` ending the job) aborts at the next safe point. Either way
        the run ends through the engine: chip in safe state, stop event written. The handlers
        only queue requests (no lock is taken in a signal handler)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_sigint(signum, frame):
            state = self._state
            if state is RunState.IDLE:
                self.request_abort("Ctrl-C before the run started")
            elif state in (RunState.RUNNING, RunState.SUSPENDED) and not self._pause_pending:
                self._pause_pending = True  # a second Ctrl-C before the pause is taken aborts
                self.request_pause("Ctrl-C (press again to abort)")
            elif self._pause_pending:
                self.request_abort("Ctrl-C pressed twice")
            else:
                self.request_abort(f"Ctrl-C while {state.value}")

        def on_sigterm(signum, frame):
            self.request_abort("SIGTERM received")

        previous = signal.signal(signal.SIGINT, on_sigint), signal.signal(signal.SIGTERM, on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _safe_summary(plan: Plan) -> dict[str, Any]:
    """The summary of a failed run: what the plan can still say, or why it cannot."""
    try:
        return plan.summary()
    except Exception as exc:  # a failed run may leave a plan unable to summarise; record why
        return {"summary_error": f"{type(exc).__name__}: {exc}"}
