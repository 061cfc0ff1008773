"""Fault injection on the simulated bench: one-off faults are retried and lose nothing; a persistent
fault ends the run with a clear error, the safe state, and a run file that `labctl resume` continues."""

from __future__ import annotations

import pytest
import torch

from bench_helpers import assert_safe_over_visa, served
from instruments import InstrumentError
from labctl.station import open_chip

# Messages each instrument receives while the array opens it: *IDN? (kept to check the station
# after an outage), then its configuration (see instrument_calls.py):
LOCKIN_SETUP = 7  # *IDN?, *CLS, DDEF1,0,0, SRAT 14, TSTR 0, REST, *ESR?
AWG_SETUP = 22  # *IDN?, *CLS, 8 per channel, idle waveform, 2 x OUTP, SYST:ERR?
SMU_SETUP = 24  # *IDN?, constructor, 15 settings, ramp query + 5 steps, SYST:ERR?
GRID = torch.tensor([3e-3, 4.5e-3, 6e-3])


def kerr_sweep(chip, repeats=30):
    """4 wires x 3 amplitudes x ``repeats`` trials in one call (one waveform per wire)."""
    idx = torch.arange(4).repeat(3)
    amplitude = GRID.repeat_interleave(4)
    return chip.trial(idx, amplitude, 1e-6, repeats).reshape(3, 4)


@pytest.mark.parametrize("fault", [
    {"kind": "timeout", "role": "kerr_readout", "after": LOCKIN_SETUP + 3, "count": 1},  # 2nd wire's arm (REST;STRT;SPTS?)
    {"kind": "drop", "role": "pulse_source", "after": AWG_SETUP + 3, "count": 1},  # 2nd wire's upload is lost
    {"kind": "garble", "role": "kerr_readout", "after": LOCKIN_SETUP + 2, "count": 1},  # 1st wire's TRCA?
    {"kind": "garble", "role": "positioner", "after": 4, "count": 1},  # 1st move's reply (after *IDN? and 3 set-up messages)
])
def test_one_off_fault_is_retried_and_nothing_is_lost(fault):
    running, station = served("kerr-bench", faults=[fault], timeout_s=0.5)
    try:
        with open_chip(station) as chip:
            counts = kerr_sweep(chip)
            assert chip.rig.retried == 1  # exactly one batch was repeated
            hits = [f.hits for f in running.faults.faults]
            assert hits == [1]
            # nothing lost: every trial of every entry was read and counted once
            assert chip.counters.trials == 4 * 3 * 30
            assert counts.shape == (3, 4) and (counts >= 0).all() and (counts <= 30).all()
            # the counts rise with the field on every wire: at 6 mT p > 0.8 (x0 4.6 mT +- 5 %,
            # dx 2.7/mT), at 3 mT p < 0.05; with 30 trials P(count_6mT <= count_3mT) < 1e-9
            assert (counts[2] > counts[0]).all()
        assert_safe_over_visa(running)
    finally:
        running.stop()


def test_one_off_fault_on_tmr_bench():
    fault = {"kind": "garble", "role": "source_meter", "after": SMU_SETUP + 1, "count": 1}  # 1st :TRAC:DATA?
    running, station = served("tmr-bench", faults=[fault], timeout_s=0.5)
    try:
        with open_chip(station) as chip:
            counts = chip.trial(torch.arange(3), 1.1, 1e-6, 25)
            assert chip.rig.retried == 1 and chip.counters.trials == 75
            assert (counts == 25).all()  # 1.1 V for 1 us: P(P->AP) = 1 - 1e-300
        assert_safe_over_visa(running)
    finally:
        running.stop()


def test_persistent_fault_ends_with_clear_error_and_safe_state():
    fault = {"kind": "timeout", "role": "source_meter", "after": SMU_SETUP + 2, "count": 0}
    running, station = served("tmr-bench", faults=[fault], timeout_s=0.3, retries=1)
    try:
        chip = open_chip(station)
        chip.suspend_timeout_s = 0  # no suspension: fail at once (tests/test_instrument_outage.py suspends)
        chip.safe_state_retry_s = ()
        chip.trial([0], 0.7, 1e-7, 10)  # first batch fine
        with pytest.raises(InstrumentError, match=r"failed 2 times.*source_meter \(Keithley2400 at TCPIP0::127\.0\.0\.1"):
            chip.trial([1], 0.7, 1e-7, 10)
        # the silent source meter cannot confirm its safe state: close says so (truthfully), after
        # closing every link
        with pytest.raises(InstrumentError, match=r"safe state not confirmed for source_meter: .*Keithley2400.*"
                                                  r"\(after: batch on device 1 failed 2 times"):
            chip.close()
        assert not any(_is_open(role.link) for role in chip.rig.roles.values())
        # the other instruments confirm their safe state over VISA; the silent source meter got
        # the blind safe state (its commands are executed, only the replies are withheld)
        sim = running.bench
        assert sim["pulse_source"].outputs_safe() and sim["switch"].outputs_safe()
        assert sim["source_meter"].outputs_safe(), sim["source_meter"].status()
    finally:
        running.stop()


def test_fault_beyond_the_retries_leaves_a_resumable_run_file(tmp_path):
    from labctl.cli import main
    from labctl.runs import create_run_file, execute
    from labctl.config import load_protocol_file
    from labctl.store import RunReader
    from protocols.calibration import Calibration, CalibrationSettings

    # lock-in messages: setup, then 3 per wire batch; 2 wires per block -> block 1 uses 6. Both
    # attempts (retries = 1) of block 2's first batch time out; the lock-in answers its safe state.
    fault = {"kind": "timeout", "role": "kerr_readout", "after": LOCKIN_SETUP + 6, "count": 2}
    running, station = served("kerr-bench", faults=[fault], timeout_s=0.3, retries=1)
    try:
        pfile, _ = load_protocol_file("calibrate-dw")
        settings = CalibrationSettings(amplitudes=[3e-3, 4.5e-3, 6e-3], widths=[1e-6], repeats=20,
                                       synapses=4, block=2)
        chip = open_chip(station)
        chip.suspend_timeout_s = 0  # no suspension: the failure ends the run at once
        plan = Calibration("calibrate-dw", settings, chip)
        pfile = pfile.model_copy(update={"settings": settings.model_dump()})
        out = tmp_path / "run.h5"
        writer = create_run_file(plan, chip, station, pfile, out)
        outcome, _, _ = execute(plan, chip, writer, checkpoint_every_s=0)
        assert outcome.status == "failed"
        assert "UnreachableError" in outcome.reason and "kerr_readout (SR830" in outcome.reason
        for role in ("pulse_source", "field_supply", "positioner"):
            assert running.bench[role].outputs_safe()
        with RunReader(out) as reader:
            assert reader.exit_status() == "failed"
            step, _ = reader.latest_checkpoint()
            assert step == 1  # block 1 done and checkpointed; block 2 failed
        # the operator fixes the lock-in; `labctl resume` continues from the checkpoint
        running.faults.faults.clear()
        assert main(["resume", str(out), "--no-progress"]) == 0
        with RunReader(out) as reader:
            assert reader.exit_status() == "success"
            counts = reader.dataset("calibration/counts")
        assert counts.shape == (1, 3, 4)
        assert (counts[0, 2] > counts[0, 0]).all()  # block 2 was measured after the resume
        assert_safe_over_visa(running)
    finally:
        running.stop()


def _is_open(link) -> bool:
    """Whether the link's VISA session is still open (pyvisa raises on a closed one)."""
    try:
        link.driver.adapter.connection.session
    except Exception:  # noqa: BLE001 - pyvisa's InvalidSession: closed
        return False
    return True
