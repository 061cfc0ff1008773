"""Every driver call labctl makes, pinned to the exact strings with PyMeasure's expected_protocol.

The same calls run against the simulated instruments over sockets in test_sim_bench_instruments.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from instrument_calls import CALLS, Call
from instruments import InstrumentError, Link, ReplyError, TransientError
from instruments.waveform import compose, samples_per_trial


def run_with_protocol(call: Call, pairs=None):
    with expected_protocol(call.driver_cls, pairs if pairs is not None else call.pairs) as driver:
        role = call.adapter_cls(Link.attach(call.role, call.model, driver), **call.settings)
        return call.action(role)


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("name", sorted(CALLS))
def test_exact_strings(name):
    run_with_protocol(CALLS[name])


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_errors_after_configuring_are_raised():
    """A configuration the instrument rejects ends in an InstrumentError naming role and errors."""
    call = CALLS["33500-configure"]
    pairs = call.pairs[:-1] + [("SYST:ERR?", '-222,"Data out of range"'), ("SYST:ERR?", '0,"No error"')]
    with pytest.raises(InstrumentError, match=r"pulse_source .*after configuring: -222"):
        run_with_protocol(call, pairs)


def test_garbled_reply_is_a_transient_error():
    call = CALLS["33500-fire"]
    with pytest.raises(TransientError) as info:
        run_with_protocol(call, [("*TRG;*OPC?", "~?x")])
    assert isinstance(info.value.cause, ReplyError)


def test_lockin_count_mismatch_is_transient():
    call = CALLS["sr830-fetch"]
    with pytest.raises(TransientError, match="holds 2 points, expected 3"):
        run_with_protocol(call, [("SPTS?", "2")])


def test_waveform_layout():
    w = compose(3, 1e-8, write=np.array([1.0, 2.0, 3.0]), reset=-4.0, reset_samples=2, read=True, read_samples=3)
    per = samples_per_trial(reset=True, write=True, read=True, reset_samples=2, read_samples=3)
    assert len(w) == 3 * per + 2 and w.reads == 3
    assert w.volts[0] == 0 and w.volts[-1] == 0  # idles at 0 V before and after
    assert w.volts[1:1 + per].tolist() == [-4.0, -4.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert compose(2, 1e-8, write=np.array([1.0, 1.0])).volts.tolist() == [0, 1, 0, 1, 0, 0]
