"""Run control as a state machine: transition table, queued requests, isolated subscribers,
safe state confirmed (or the run fails), the stop event's step, and chip.on_event wiring."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from test_engine import Pulser, WatchedChip

from labctl.config import load_station
from labctl.engine import (
    IGNORED,
    SAFE_STATE_FAILED,
    SUBSCRIBER_ERROR,
    SUMMARY,
    SUMMARY_SPEC,
    TRANSITIONS,
    InvalidTransition,
    RunEngine,
    RunState,
    check_transition,
)
from labctl.station import open_chip
from labctl.store import RunReader, RunWriter

S = RunState


@pytest.fixture
def inner():
    return open_chip(load_station("sim-dw"))


@pytest.fixture
def path(tmp_path):
    return tmp_path / "run.h5"


def writer_at(path):
    return RunWriter(path, attrs={}, schema={SUMMARY: SUMMARY_SPEC})


def events(path):
    with RunReader(path) as r:
        return [e for e in r.events() if e["kind"] != "checkpoint"], r.exit_status()


def kinds(path):
    evs, status = events(path)
    return [e["kind"] for e in evs], status


def state_log(engine):
    """Subscribe; returns the list of (old, new) state changes the engine reports."""
    changes = []
    engine.subscribe(lambda name, doc: name == "state" and changes.append((doc["old"], doc["new"])))
    return changes


# ---------------------------------------------------------------------------- the table
VALID = [
    (S.IDLE, S.RUNNING),
    (S.RUNNING, S.PAUSING), (S.RUNNING, S.SUSPENDED), (S.RUNNING, S.STOPPING), (S.RUNNING, S.ABORTING),
    (S.RUNNING, S.DONE),
    (S.PAUSING, S.PAUSED), (S.PAUSING, S.ABORTING), (S.PAUSING, S.DONE),
    (S.PAUSED, S.RUNNING), (S.PAUSED, S.STOPPING), (S.PAUSED, S.ABORTING), (S.PAUSED, S.DONE),
    (S.SUSPENDED, S.RUNNING), (S.SUSPENDED, S.ABORTING), (S.SUSPENDED, S.DONE),
    (S.STOPPING, S.DONE),
    (S.ABORTING, S.DONE),
]


@pytest.mark.parametrize("old,new", VALID, ids=lambda s: s.value)
def test_valid_transitions(old, new):
    check_transition(old, new)


def test_table_is_exactly_the_valid_list_and_everything_else_raises():
    table = {(old, new) for old, targets in TRANSITIONS.items() for new in targets}
    assert table == set(VALID) and set(TRANSITIONS) == set(RunState)
    invalid = [(old, new) for old in RunState for new in RunState if (old, new) not in table]
    assert (S.DONE, S.RUNNING) in invalid and (S.IDLE, S.PAUSED) in invalid and (S.STOPPING, S.RUNNING) in invalid
    for old, new in invalid:
        with pytest.raises(InvalidTransition, match=f"{old.value} -> {new.value} is not allowed"):
            check_transition(old, new)


def test_states_compare_as_text():
    assert S.PAUSED == "paused" and S.RUNNING.value == "running"


def test_an_engine_runs_one_plan(inner, path):
    engine = RunEngine(WatchedChip(inner), writer_at(path), checkpoint_every_s=None)
    changes = state_log(engine)
    assert engine.state is S.IDLE
    assert engine.run(Pulser(3)).status == "success"
    assert changes == [("idle", "running"), ("running", "done")] and engine.state is S.DONE
    with pytest.raises(InvalidTransition, match="done -> running"):
        engine.run(Pulser(3))


# ---------------------------------------------------------------------------- queued requests
class Gate(Pulser):
    """Pulser that, before yielding step ``at``, runs ``during()`` in another thread and waits for it."""

    def __init__(self, steps, at, during):
        super().__init__(steps)
        self.at, self.during = at, during

    def run(self, ctx):
        for progress in super().run(ctx):
            if progress.step == self.at:
                t = threading.Thread(target=self.during)
                t.start()
                t.join()
            yield progress


def test_pause_then_resume_back_to_back_are_both_honoured_in_order(inner, path):
    chip = WatchedChip(inner)
    engine = RunEngine(chip, writer_at(path), checkpoint_every_s=None)
    changes = state_log(engine)
    safe_at_pause = []
    engine.subscribe(lambda name, doc: name == "event" and doc["kind"] == "pause"
                     and safe_at_pause.append(not chip.pulsed_since_safe))

    def both():
        engine.request_pause("p")
        engine.request_resume("r")

    outcome = engine.run(Gate(10, 4, both))
    assert outcome.status == "success" and outcome.summary["steps"] == 10 and outcome.steps == 10
    evs, status = events(path)
    assert [(e["kind"], e["reason"], e["step"]) for e in evs][1:3] == [("pause", "p", 4), ("resume", "r", 4)]
    assert status == "success" and safe_at_pause == [True]
    assert changes == [("idle", "running"), ("running", "pausing"), ("pausing", "paused"), ("paused", "running"),
                       ("running", "done")]
    with RunReader(path) as r:
        assert [c["step"] for c in r.checkpoints()] == [4]  # the pause checkpointed


def test_resume_while_running_is_recorded_as_ignored(inner, path):
    engine = RunEngine(WatchedChip(inner), writer_at(path), checkpoint_every_s=None)
    outcome = engine.run(Gate(6, 2, lambda: engine.request_resume("too eager")))
    assert outcome.status == "success" and outcome.summary["steps"] == 6
    evs, _ = events(path)
    ignored = [e for e in evs if e["kind"] == IGNORED]
    assert [(e["reason"], e["step"]) for e in ignored] == [("resume while running: too eager", 2)]


def test_abort_overtakes_requests_queued_before_it(inner, path):
    chip = WatchedChip(inner)
    engine = RunEngine(chip, writer_at(path), checkpoint_every_s=None)

    def three():
        engine.request_pause("p")
        engine.request_stop("s")
        engine.request_abort("red button")

    outcome = engine.run(Gate(10, 3, three))
    assert outcome.status == "failed" and outcome.reason == "aborted: red button" and outcome.steps == 3
    assert kinds(path) == (["start", "abort", "stop"], "failed")
    assert chip.counters.pulses == 3 * 64 and not chip.pulsed_since_safe


def test_stop_while_paused_ends_as_success(inner, path):
    chip = WatchedChip(inner)
    engine = RunEngine(chip, writer_at(path), checkpoint_every_s=None)

    def prompt():  # what a terminal prompt thread does: wait for PAUSED, then answer
        assert engine.wait_for(S.PAUSED, S.DONE, timeout=10) is S.PAUSED
        engine.request_stop("s pressed")

    threading.Thread(target=prompt, daemon=True).start()
    outcome = engine.run(Gate(10, 5, lambda: engine.request_pause("Enter")))
    assert outcome.status == "success" and outcome.reason == "stopped: s pressed" and outcome.steps == 5
    assert kinds(path) == (["start", "pause", "stop_requested", "stop"], "success")
    assert chip.counters.pulses == 5 * 64 and not chip.pulsed_since_safe


def test_ctrl_c_before_the_run_started_aborts_cleanly(inner, path):
    chip = WatchedChip(inner)
    engine = RunEngine(chip, writer_at(path), checkpoint_every_s=None)
    with engine.ctrl_c_pauses():
        os.kill(os.getpid(), signal.SIGINT)
        outcome = engine.run(Pulser(10))
    assert outcome.status == "failed" and outcome.reason == "aborted: Ctrl-C before the run started"
    assert kinds(path) == (["start", "abort", "stop"], "failed")
    assert chip.counters.pulses == 0 and chip.safe_calls >= 1 and outcome.steps == -1


# ---------------------------------------------------------------------------- subscribers
def test_a_subscriber_that_raises_is_detached_and_the_run_goes_on(inner, path):
    engine = RunEngine(WatchedChip(inner), writer_at(path), checkpoint_every_s=None)
    calls, seen = [], []

    def broken_bar(name, doc):
        calls.append(name)
        if name == "progress" and doc["step"] == 2:
            raise ZeroDivisionError("bar width 0")

    engine.subscribe(broken_bar)
    engine.subscribe(lambda name, doc: name == "progress" and seen.append(doc["step"]))
    outcome = engine.run(Pulser(8))
    assert outcome.status == "success" and outcome.summary["steps"] == 8 and seen == list(range(1, 9))
    assert calls.count("progress") == 2 and "stop" not in calls  # detached after raising
    evs, status = events(path)
    errors = [e for e in evs if e["kind"] == SUBSCRIBER_ERROR]
    assert status == "success" and len(errors) == 1 and errors[0]["step"] == 2
    assert "broken_bar" in errors[0]["reason"] and "ZeroDivisionError: bar width 0" in errors[0]["reason"]


# ---------------------------------------------------------------------------- safe state
class FlakyChip(WatchedChip):
    """safe_state raises ``failures`` times (None: always), as an instrument that will not answer."""

    def __init__(self, inner, failures):
        super().__init__(inner)
        self.failures = failures

    def safe_state(self):
        if self.failures is None or self.failures > 0:
            if self.failures:
                self.failures -= 1
            raise ConnectionError("pulse_source: no answer")
        super().safe_state()


def test_safe_state_confirmed_after_retries_is_a_success(inner, path):
    chip = FlakyChip(inner, failures=2)
    outcome = RunEngine(chip, writer_at(path), checkpoint_every_s=None, safe_state_backoff_s=0.01).run(Pulser(4))
    assert outcome.status == "success" and outcome.safe and outcome.error is None
    evs, status = events(path)
    fails = [e for e in evs if e["kind"] == SAFE_STATE_FAILED]
    assert status == "success" and chip.safe_calls == 1
    assert [e["reason"] for e in fails] == [f"try {i}/3: ConnectionError: pulse_source: no answer" for i in (1, 2)]
    assert all(e["step"] == 4 for e in fails)


def test_safe_state_never_confirmed_fails_the_run_without_raising(inner, path):
    chip = FlakyChip(inner, failures=None)
    engine = RunEngine(chip, writer_at(path), checkpoint_every_s=None, safe_state_backoff_s=0.01)
    outcome = engine.run(Pulser(4))
    assert outcome.status == "failed" and outcome.exit_code == 1 and not outcome.safe
    assert outcome.reason == "error: safe state not confirmed: ConnectionError: pulse_source: no answer"
    assert isinstance(outcome.error, ConnectionError) and engine.state is S.DONE
    evs, status = events(path)
    assert status == "failed" and [e["kind"] for e in evs].count(SAFE_STATE_FAILED) == 3
    assert evs[-1]["reason"] == outcome.reason


def test_unsafe_chip_after_an_error_keeps_the_first_error(inner, path):
    chip = FlakyChip(inner, failures=None)
    outcome = RunEngine(chip, writer_at(path), checkpoint_every_s=None, safe_state_backoff_s=0).run(
        Pulser(10, fail_at=3))
    assert outcome.status == "failed" and not outcome.safe and isinstance(outcome.error, RuntimeError)
    assert outcome.reason.startswith("error: RuntimeError: instrument on fire; safe state not confirmed: ")


def test_a_pause_whose_safe_state_fails_ends_the_run_failed(inner, path):
    chip = FlakyChip(inner, failures=3)  # the pause's three tries fail; the final one succeeds
    engine = RunEngine(chip, writer_at(path), checkpoint_every_s=None, safe_state_backoff_s=0)
    outcome = engine.run(Gate(10, 2, lambda: engine.request_pause("p")))
    assert outcome.status == "failed" and outcome.safe and outcome.steps == 2
    assert "safe state on pause not confirmed: ConnectionError" in outcome.reason
    assert "pause" not in kinds(path)[0] and chip.counters.pulses == 2 * 64


# ---------------------------------------------------------------------------- stop step, on_event
def test_stop_carries_the_last_step(inner, path):
    engine = RunEngine(WatchedChip(inner), writer_at(path), checkpoint_every_s=None)
    stops = []
    engine.subscribe(lambda name, doc: name == "stop" and stops.append(doc))
    outcome = engine.run(Gate(10, 7, lambda: engine.request_stop("enough")))
    assert outcome.steps == 7 and stops[0]["step"] == 7 and stops[0]["safe"] is True
    assert [e["step"] for e in events(path)[0] if e["kind"] == "stop_requested"] == [7]


def test_stop_event_in_the_file_carries_the_last_step(inner, path):
    RunEngine(WatchedChip(inner), writer_at(path), checkpoint_every_s=None).run(Pulser(5))
    assert events(path)[0][-1]["kind"] == "stop" and events(path)[0][-1]["step"] == 5


class OutageChip(WatchedChip):
    """Reports an instrument outage through ``on_event`` during its third pulse, as a suspender would."""

    def __init__(self, inner):
        super().__init__(inner)
        self.pulses, self.hooked = 0, []

    def _pulse(self, idx, amplitude, width):
        self.pulses += 1
        self.hooked.append(self.on_event is not None)
        if self.pulses == 3:
            self.on_event("suspend", "dmm: no answer, waiting")
            self.on_event("unsuspend", "dmm: back")
        super()._pulse(idx, amplitude, width)


@pytest.mark.parametrize("fail_at", [None, 4])
def test_chip_events_are_recorded_and_the_hook_reset(inner, path, fail_at):
    chip = OutageChip(inner)
    engine = RunEngine(chip, writer_at(path), checkpoint_every_s=None)
    changes = state_log(engine)
    emitted = []
    engine.subscribe(lambda name, doc: name == "event" and doc["kind"].endswith("suspend") and emitted.append(doc))
    outcome = engine.run(Pulser(6, fail_at=fail_at))
    assert outcome.status == ("success" if fail_at is None else "failed")
    assert chip.on_event is None and all(chip.hooked)
    evs, _ = events(path)
    outage = [(e["kind"], e["reason"], e["step"]) for e in evs if e["kind"].endswith("suspend")]
    assert outage == [("suspend", "dmm: no answer, waiting", 2), ("unsuspend", "dmm: back", 2)]
    assert [(d["kind"], d["step"]) for d in emitted] == [("suspend", 2), ("unsuspend", 2)]
    assert ("running", "suspended") in changes and ("suspended", "running") in changes


class StuckChip(WatchedChip):
    """An outage that lasts until ``cancel_suspension`` (as InstrumentArray's suspender): during
    the third pulse it reports ``suspend`` and waits, then gives up with an error."""

    def __init__(self, inner):
        super().__init__(inner)
        self.pulses, self.give_up, self.cancels = 0, threading.Event(), 0

    def cancel_suspension(self):
        self.cancels += 1
        self.give_up.set()

    def _pulse(self, idx, amplitude, width):
        self.pulses += 1
        if self.pulses == 3:
            self.on_event("suspend", "dmm: no answer, waiting")
            if not self.give_up.wait(20):
                raise AssertionError("the abort did not cancel the suspension")
            raise ConnectionError("dmm: still not answering (suspension cancelled)")
        super()._pulse(idx, amplitude, width)


def test_abort_while_suspended_cancels_the_wait(inner, path):
    chip = StuckChip(inner)
    engine = RunEngine(chip, writer_at(path), checkpoint_every_s=None)

    def operator():
        assert engine.wait_for(S.SUSPENDED, S.DONE, timeout=10) is S.SUSPENDED
        engine.request_abort("red button")

    threading.Thread(target=operator, daemon=True).start()
    outcome = engine.run(Pulser(10))
    assert outcome.status == "failed" and chip.cancels >= 1 and isinstance(outcome.error, ConnectionError)
    assert outcome.reason.startswith("aborted: red button (ConnectionError: dmm: still not answering")
    assert kinds(path) == (["start", "suspend", "abort", "stop"], "failed") and chip.on_event is None
