"""Run engine: pause, resume, stop, abort, errors and Ctrl-C each leave their events and a safe chip."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from labctl.config import load_station
from labctl.engine import SUMMARY, SUMMARY_SPEC, Progress, RunEngine
from labctl.simulated_array import SimulatedArray
from labctl.station import open_chip
from labctl.store import RunReader, RunWriter


class Pulser:
    """A minimal plan: one pulse on every synapse per step, ``steps`` steps; fails at ``fail_at``."""

    name = "pulser"

    def __init__(self, steps: int = 20, fail_at: int | None = None):
        self.steps, self.fail_at, self.done = steps, fail_at, 0

    def describe(self):
        return {}

    def run(self, ctx):
        while self.done < self.steps:
            if self.done == self.fail_at:
                raise RuntimeError("instrument on fire")
            ctx.chip.pulse(None, 4e-3, 1e-6)
            self.done += 1
            yield Progress(self.done, self.steps)

    def summary(self):
        return {"steps": self.done}

    def state_dict(self):
        return {"done": self.done}

    def load_state_dict(self, state):
        self.done = state["done"]


class WatchedChip(SimulatedArray):
    """The simulated chip, recording every safe_state call and whether pulses came after it."""

    def __init__(self, inner: SimulatedArray):
        super().__init__(inner.devices, inner.envelope)
        self.safe_calls = 0
        self.pulsed_since_safe = False

    def safe_state(self):
        self.safe_calls += 1
        self.pulsed_since_safe = False

    def _pulse(self, idx, amplitude, width):
        self.pulsed_since_safe = True
        super()._pulse(idx, amplitude, width)


@pytest.fixture
def setup(tmp_path):
    chip = WatchedChip(open_chip(load_station("sim-dw")))
    writer = RunWriter(tmp_path / "run.h5", attrs={}, schema={SUMMARY: SUMMARY_SPEC})
    return chip, writer, tmp_path / "run.h5"


def kinds(path):
    with RunReader(path) as r:
        return [(e["kind"], e["status"]) for e in r.events() if e["kind"] != "checkpoint"], r.exit_status()


def test_normal_end(setup):
    chip, writer, path = setup
    outcome = RunEngine(chip, writer).run(Pulser(5))
    assert outcome.status == "success" and outcome.exit_code == 0 and outcome.summary["steps"] == 5
    assert kinds(path) == ([("start", ""), ("stop", "success")], "success")
    assert chip.safe_calls >= 1 and not chip.pulsed_since_safe


def test_pause_resume_then_stop(setup):
    chip, writer, path = setup
    engine = RunEngine(chip, writer, checkpoint_every_s=None)
    seen = []

    def on(name, doc):
        if name == "progress":
            seen.append(doc["step"])
            if doc["step"] == 3:
                engine.request_pause("test pause")
                threading.Timer(0.3, engine.request_resume, args=("test resume",)).start()
            if doc["step"] == 8:
                engine.request_stop("enough")
        if name == "event" and doc["kind"] == "pause":
            assert not chip.pulsed_since_safe  # safe state reached before waiting

    engine.subscribe(on)
    outcome = engine.run(Pulser(20))
    assert outcome.status == "success" and "stopped: enough" in outcome.reason
    assert seen == list(range(1, 9))  # nothing ran while paused or after the stop
    events, status = kinds(path)
    assert events == [("start", ""), ("pause", ""), ("resume", ""), ("stop_requested", ""), ("stop", "success")]
    with RunReader(path) as r:
        reasons = {e["kind"]: e["reason"] for e in r.events()}
        assert reasons["pause"] == "test pause" and reasons["resume"] == "test resume"
        assert any(e["kind"] == "checkpoint" for e in r.events())  # a pause writes a checkpoint
    assert not chip.pulsed_since_safe


def test_abort_ends_failed_and_safe(setup):
    chip, writer, path = setup
    engine = RunEngine(chip, writer)
    engine.subscribe(lambda name, doc: name == "progress" and doc["step"] == 2 and engine.request_abort("red button"))
    outcome = engine.run(Pulser(20))
    assert outcome.status == "failed" and outcome.exit_code == 1 and "red button" in outcome.reason
    assert kinds(path) == ([("start", ""), ("abort", ""), ("stop", "failed")], "failed")
    assert not chip.pulsed_since_safe and chip.counters.pulses == 2 * 64


def test_exception_is_recorded_and_chip_made_safe(setup):
    chip, writer, path = setup
    outcome = RunEngine(chip, writer).run(Pulser(20, fail_at=4))
    assert outcome.status == "failed" and isinstance(outcome.error, RuntimeError)
    assert "instrument on fire" in outcome.reason
    assert kinds(path) == ([("start", ""), ("stop", "failed")], "failed")
    assert not chip.pulsed_since_safe


def test_one_ctrl_c_pauses_two_abort(setup):
    chip, writer, path = setup
    engine = RunEngine(chip, writer, checkpoint_every_s=None)

    def on(name, doc):
        if name == "progress" and doc["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        if name == "event" and doc["kind"] == "pause":
            threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGINT)).start()

    engine.subscribe(on)
    with engine.ctrl_c_pauses():
        outcome = engine.run(Pulser(20))
    assert outcome.status == "failed" and "Ctrl-C pressed twice" in outcome.reason
    assert kinds(path)[0] == [("start", ""), ("pause", ""), ("abort", ""), ("stop", "failed")]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    assert not chip.pulsed_since_safe


def test_sigterm_aborts_through_the_engine(setup):
    chip, writer, path = setup
    engine = RunEngine(chip, writer, checkpoint_every_s=None)
    engine.subscribe(lambda name, doc: name == "progress" and doc["step"] == 3 and os.kill(os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    with engine.ctrl_c_pauses():
        outcome = engine.run(Pulser(20))
    assert outcome.status == "failed" and "SIGTERM" in outcome.reason
    assert kinds(path) == ([("start", ""), ("abort", ""), ("stop", "failed")], "failed")
    assert signal.getsignal(signal.SIGTERM) is before and not chip.pulsed_since_safe


def test_ctrl_c_after_a_resume_pauses_again(setup):
    """A run resumed after a Ctrl-C pause pauses again on the next Ctrl-C (it does not abort)."""
    chip, writer, path = setup
    engine = RunEngine(chip, writer, checkpoint_every_s=None)

    def on(name, doc):
        if name == "progress" and doc["step"] in (2, 5):
            os.kill(os.getpid(), signal.SIGINT)
        if name == "state" and doc["new"] == "paused":
            engine.request_resume("test")

    engine.subscribe(on)
    with engine.ctrl_c_pauses():
        outcome = engine.run(Pulser(8))
    assert outcome.status == "success", outcome.reason
    assert [k for k, _ in kinds(path)[0] if k in ("pause", "resume", "abort")] == ["pause", "resume", "pause", "resume"]
