"""Suspenders: an instrument that stops answering for a while (its server really refuses and drops
connections, then comes back on the same port) suspends the run instead of ending it; the run
then completes with the results of an undisturbed run. An outage that outlasts the suspend
timeout ends the run as before: UnreachableError, the reachable instruments in their safe state."""

from __future__ import annotations

import socket

import pytest
import pyvisa

from bench_helpers import assert_safe_over_visa, served
from instruments import InstrumentError, UnreachableError
from labctl.engine import SUMMARY, SUMMARY_SPEC, RunEngine
from labctl.station import open_chip
from labctl.store import RunReader, RunWriter
from protocols.calibration import Calibration, CalibrationSettings
from simulated_bench.server import Fault

AWG_SETUP = 22  # messages to the pulse source while the array opens it (*IDN? + configuration)
SETTINGS = CalibrationSettings(amplitudes=[3e-3, 4.5e-3, 6e-3], widths=[1e-6], repeats=20, synapses=4, block=2)


def calibrate(running, station, path, *, outage: Fault | None = None, suspend_timeout_s: float | None = None):
    """The reduced calibration through the run engine into ``path``; returns (outcome, chip)."""
    chip = open_chip(station)
    if suspend_timeout_s is not None:
        chip.suspend_timeout_s = suspend_timeout_s
    if outage is not None:
        running.faults.faults.append(outage)
    plan = Calibration("outage-test", SETTINGS, chip)
    writer = RunWriter(path, attrs={}, schema={**plan.describe(), SUMMARY: SUMMARY_SPEC})
    outcome = RunEngine(chip, writer, checkpoint_every_s=0).run(plan)  # the engine sets chip.on_event
    return outcome, chip


def events(path):
    with RunReader(path) as reader:
        return [(e["kind"], e["reason"]) for e in reader.events()]


def test_outage_of_the_pulse_source_is_ridden_out_with_identical_results(tmp_path):
    running, station = served("kerr-bench")
    try:
        outcome, chip = calibrate(running, station, tmp_path / "undisturbed.h5")
        assert outcome.status == "success", outcome.reason
        chip.close()
    finally:
        running.stop()
    undisturbed = RunReader(tmp_path / "undisturbed.h5")

    # The same bench (same physics seed); the pulse source goes away on its 3rd message after set-up
    # (the 2nd wire's upload: nothing of that batch has fired) for 1.2 s: longer than the link's one
    # retry and the first reconnection attempt 0.5 s into the suspension; back on the same port.
    running, station = served("kerr-bench", timeout_s=0.5, retries=1)
    resource = running.servers["pulse_source"].resource
    try:
        outage = Fault("outage", "pulse_source", after=AWG_SETUP + 2, count=1, duration_s=1.2)
        path = tmp_path / "outage.h5"
        outcome, chip = calibrate(running, station, path, outage=outage)
        assert outage.hits == 1
        assert outcome.status == "success", outcome.reason
        assert running.servers["pulse_source"].resource == resource  # the same port throughout
        kinds = [k for k, _ in events(path)]
        assert kinds.count("suspend") == 1 and kinds.count("unsuspend") == 1
        assert kinds.index("suspend") < kinds.index("unsuspend") < kinds.index("stop")
        suspend = next(r for k, r in events(path) if k == "suspend")
        unsuspend = next(r for k, r in events(path) if k == "unsuspend")
        assert f"pulse_source (Agilent33500 at {resource}) stopped answering" in suspend
        assert "ConnectionRefusedError" in suspend or "VISA error" in suspend or "ConnectionResetError" in suspend
        assert "safe state confirmed for field_supply, kerr_readout, positioner, not for pulse_source" in suspend
        lasted = float(unsuspend.split("outage lasted ")[1].split(" s")[0])
        assert 1.0 <= lasted <= 10.0  # at least the outage; back at the next reconnection attempt
        with RunReader(path) as reader:  # the redo is exact: identical counts and fits
            for name in ("calibration/counts", "calibration/fit/estimate"):
                assert (reader.dataset(name) == undisturbed.dataset(name)).all(), name
        assert chip.counters.trials == 4 * 3 * 20
        chip.close()
        assert_safe_over_visa(running)
    finally:
        undisturbed.close()
        running.stop()


def test_outage_beyond_the_suspend_timeout_ends_the_run(tmp_path):
    running, station = served("kerr-bench", timeout_s=0.5, retries=1)
    try:
        # 2 messages per wire batch, 2 wires per block: the outage starts with block 2
        outage = Fault("outage", "pulse_source", after=AWG_SETUP + 4, count=1, duration_s=60.0)
        path = tmp_path / "outage.h5"
        outcome, chip = calibrate(running, station, path, outage=outage, suspend_timeout_s=1.0)
        assert outcome.status == "failed"
        assert isinstance(outcome.error, UnreachableError)
        assert "still not answering after" in outcome.reason and "suspend_timeout_s = 1" in outcome.reason
        assert "pulse_source (Agilent33500 at" in outcome.reason
        kinds = [k for k, _ in events(path)]
        assert "suspend" in kinds and "unsuspend" not in kinds
        # every instrument that answers is in its safe state (the magnet supply off above all)
        for role in ("field_supply", "kerr_readout", "positioner"):
            assert running.bench[role].outputs_safe(), running.bench[role].status()
        with RunReader(path) as reader:
            assert reader.exit_status() == "failed"
            assert reader.latest_checkpoint()[0] == 1  # the first block, resumable
        # the pulse source cannot confirm its safe state while it is away: said, not assumed
        with pytest.raises(InstrumentError, match=r"safe state not confirmed for pulse_source"):
            chip.safe_state()
        running.servers["pulse_source"].resume_answering()  # the operator powers it back on
        chip.close()
        assert_safe_over_visa(running)
    finally:
        running.stop()


def test_cancel_suspension_ends_the_wait_at_once():
    import threading
    import time

    running, station = served("tmr-bench", timeout_s=0.5, retries=0)
    try:
        chip = open_chip(station)
        seen = []
        chip.on_event = lambda kind, reason: seen.append(kind)
        running.servers["pulse_source"].stop_answering()  # until told otherwise
        threading.Timer(1.0, chip.cancel_suspension).start()
        start = time.monotonic()
        with pytest.raises(UnreachableError, match="still not answering"):
            chip.trial([0], 0.7, 1e-7, 5)
        assert time.monotonic() - start < 5 and seen == ["suspend"]
        running.servers["pulse_source"].resume_answering()
        chip.close()
    finally:
        running.stop()


def test_simulated_outage_refuses_then_answers_on_the_same_port():
    running, _ = served("tmr-bench")
    try:
        server = running.servers["switch"]
        rm = pyvisa.ResourceManager("@py")
        inst = rm.open_resource(server.resource, read_termination="\n", write_termination="\n", timeout=1000)
        assert "2700" in inst.query("*IDN?")
        server.stop_answering()
        with pytest.raises(Exception):  # the open connection was dropped
            inst.query("*IDN?")
        inst.close()
        with pytest.raises(ConnectionRefusedError):  # and the port refuses new ones
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        server.resume_answering()
        inst = rm.open_resource(server.resource, read_termination="\n", write_termination="\n", timeout=1000)
        assert "2700" in inst.query("*IDN?")
        inst.close()
    finally:
        running.stop()
