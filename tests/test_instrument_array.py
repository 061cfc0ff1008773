"""InstrumentArray on the simulated benches over sockets: interface, batching, envelope, safe state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench_helpers import assert_safe_over_visa, embedded, served
from instruments import InstrumentError
from labctl.chip import EnvelopeError
from labctl.config import ConfigError, StationConfig, load_station, validate
from labctl.engine import RunEngine
from labctl.instrument_array import InstrumentArray
from labctl.station import open_chip

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kerr():
    with open_chip(load_station("kerr-bench")) as chip:
        yield chip


@pytest.fixture(scope="module")
def tmr():
    with open_chip(load_station("tmr-bench")) as chip:
        yield chip


@pytest.fixture(scope="module")
def dwmtj():
    with open_chip(load_station("tmr-dwmtj-bench")) as chip:
        yield chip


def test_embedded_stations_give_instrument_arrays(kerr, tmr, dwmtj):
    for chip, family, levels in ((kerr, "dw_nanowire", 2), (tmr, "stt_mtj", 2), (dwmtj, "dw_mtj", 5)):
        assert isinstance(chip, InstrumentArray)
        assert (chip.family, chip.n, chip.levels) == (family, 16, levels)
        assert chip.bench is not None and all(r.startswith("TCPIP0::127.0.0.1::") for r in chip.bench.resources.values())


def test_interface_shapes_and_duplicates(kerr):
    idx = torch.tensor([3, 1, 3, 3])
    amplitude = torch.tensor([1e-3, 1e-2, 1e-2, 1e-3])  # 1 mT: p = floor 0.022; 10 mT: p ~ 1
    counts = kerr.trial(idx, amplitude, 1e-6, 40)
    assert counts.shape == (4,) and counts.dtype == torch.int64
    # binomial bounds: 40 trials at p = 0.022 -> mean 0.9, P(>= 7) < 1e-4; at p >= 0.999 -> P(<= 35) < 1e-9
    assert counts[0] <= 6 and counts[3] <= 6 and counts[1] >= 36 and counts[2] >= 36
    levels = kerr.trial_levels([2], 1e-2, 1e-6, 10)
    assert levels.shape == (1, 2) and levels.sum() == 10
    r = kerr.read([0, 5, 0], 4)
    assert r.signal.shape == (3, 4) and r.level.shape == (3, 4)
    kerr.reset([5])
    assert (kerr.read([5], 5).level == 0).sum() >= 4  # one misread in 5 is already a 1e-4 event
    kerr.pulse([5, 5], [1e-2, 1e-2], 1e-6)
    assert (kerr.read([5], 5).level == 1).sum() >= 4


def test_tmr_levels(tmr, dwmtj):
    tmr.reset([0])
    assert (tmr.read([0], 3).level == 0).all()
    tmr.pulse([0], 1.1, 1e-6)  # far above Vc0: switches to AP
    r = tmr.read([0], 3)
    assert (r.level == 1).all() and (r.signal > 6000).all()
    dwmtj.reset([4])
    dwmtj.pulse([4], 400e-6, 1e-6)  # 600 sites: wall at the last site
    assert (dwmtj.read([4], 2).level == 4).all()


@pytest.mark.parametrize("fixture", ["kerr", "tmr"])
def test_batch_costs_constant_transactions(request, fixture):
    """M trials on one device cost the same transactions for M = 20 and M = 2000."""
    chip = request.getfixturevalue(fixture)
    amplitude = 5e-3 if chip.family == "dw_nanowire" else 0.7
    costs = []
    for repeats in (20, 2000):
        chip.trial([7], amplitude, 1e-6 if chip.family == "dw_nanowire" else 1e-7, 1)  # select device 7 first
        before = chip.counters.transactions
        chip.trial([7], amplitude, 1e-6 if chip.family == "dw_nanowire" else 1e-7, repeats)
        costs.append(chip.counters.transactions - before)
    assert costs[0] == costs[1] <= 6


def test_envelope_refused_before_any_visa_write(kerr):
    running = kerr.bench
    before_links = kerr.counters.transactions
    before_sim = dict(running.faults.received)
    bad = [
        lambda: kerr.pulse([0], 0.05, 1e-6),  # 50 mT > 12 mT
        lambda: kerr.trial([0, 1], torch.tensor([5e-3, -0.5]), 1e-6, 10),  # second synapse
        lambda: kerr.trial([0], 5e-3, 1.0, 10),  # 1 s pulse
        lambda: kerr.trial([0], float("nan"), 1e-6, 10),
    ]
    for call in bad:
        with pytest.raises(EnvelopeError, match="nothing was sent"):
            call()
    assert kerr.counters.transactions == before_links
    assert running.faults.received == before_sim  # no message reached any simulated instrument


def test_station_validation():
    data = embedded("kerr-bench")
    data["bench"]["start"] = False
    with pytest.raises(ConfigError, match="resource is 'auto' but"):
        validate(StationConfig, data, "test.toml")
    data = embedded("tmr-bench")
    data["instruments"]["reset_amplitude"] = -5.0
    with pytest.raises(ConfigError, match="inside the envelope"):
        validate(StationConfig, data, "test.toml")
    data = embedded("kerr-bench")
    del data["instruments"]["positioner"]
    with pytest.raises(ConfigError, match=r"needs \[instruments.positioner\]"):
        validate(StationConfig, data, "test.toml")


# ---------------------------------------------------------------------------- safe state on every exit path
def test_safe_state_after_normal_end():
    running, station = served("kerr-bench")
    try:
        with open_chip(station) as chip:
            chip.trial(torch.arange(4), 5e-3, 1e-6, 20)
            assert running.bench["field_supply"].output  # energised while running
        assert_safe_over_visa(running)
    finally:
        running.stop()


def test_safe_state_after_exception():
    running, station = served("tmr-bench")
    try:
        with pytest.raises(RuntimeError, match="protocol bug"):
            with open_chip(station) as chip:
                chip.trial(torch.arange(4), 0.7, 1e-7, 20)
                assert running.bench["source_meter"].output
                raise RuntimeError("protocol bug")
        assert_safe_over_visa(running)
    finally:
        running.stop()


def test_safe_state_after_abort():
    from protocols.calibration import Calibration, CalibrationSettings

    running, station = served("kerr-bench")
    try:
        chip = open_chip(station)
        settings = CalibrationSettings(amplitudes=[3e-3, 4.5e-3, 6e-3], widths=[1e-6], repeats=10, block=2)
        plan = Calibration("abort-test", settings, chip)
        engine = RunEngine(chip, None, checkpoint_every_s=None)
        engine.subscribe(lambda name, doc: engine.request_abort("test") if name == "progress" else None)
        outcome = engine.run(plan)
        assert outcome.status == "failed" and "aborted" in outcome.reason
        assert_safe_over_visa(running)  # the engine's safe_state, before close
        chip.close()
    finally:
        running.stop()


CHILD = """
import json, sys, torch
from labctl.config import StationConfig
from labctl.station import open_chip
station = StationConfig.model_validate(json.load(open(sys.argv[1])))
with open_chip(station) as chip:
    print("ready", flush=True)
    while True:
        chip.trial(torch.arange(4), 0.7, 1e-7, 200)
"""


def test_safe_state_after_sigint(tmp_path):
    running, station = served("tmr-bench")
    try:
        path = tmp_path / "station.json"
        path.write_text(json.dumps(station.model_dump()))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # in the middle of the trial loop
        assert running.bench["source_meter"].output
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        assert "KeyboardInterrupt" in err
        assert_safe_over_visa(running)
    finally:
        running.stop()


def test_envelope_beyond_the_pulse_source_is_refused_at_open():
    import threading

    before = set(threading.enumerate())
    data = embedded("kerr-bench")
    data["instruments"]["field_supply"]["coil"] = 1e-3  # 1.2 mT/V: the 20 mT envelope would need 16.7 V
    with pytest.raises(InstrumentError, match=r"16.67 V from the pulse source.*\[instruments.field_supply\] gain"):
        open_chip(StationConfig.model_validate(data))
    for t in set(threading.enumerate()) - before:
        if t.name.startswith("bench-"):
            t.join(timeout=2)
            assert not t.is_alive()  # the bench it started was stopped


def test_read_bias_outside_envelope_never_reaches_the_source_meter():
    """Config validation refuses such a station; a programmatic copy that skips validation is still
    refused when the instruments are opened, before the source meter is configured."""
    station = load_station("tmr-bench")
    unsafe = station.model_copy(update={"envelope": station.envelope.model_copy(update={"read_bias_max": 0.001})})
    with pytest.raises(InstrumentError, match=r"\[instruments.source_meter\] read_bias: read bias 0.05 V is outside "
                                              r"the station envelope"):
        open_chip(unsafe)


# ---------------------------------------------------------------------------- bad settings: one clear error
def bench_threads() -> set:
    import threading

    return {t for t in threading.enumerate() if t.name.startswith("bench-")}


def kerr_station(changes: dict) -> StationConfig:
    """kerr-bench with instrument table changes ``{(role, key): value}``, built without validation
    (as a programmatic station would be), so that what reaches open_chip is exactly that."""
    station = load_station("kerr-bench")
    ins = station.instruments
    for (role, key), value in changes.items():
        table = getattr(ins, role)
        ins = ins.model_copy(update={role: table.model_copy(update={key: value})})
    return station.model_copy(update={"instruments": ins})


@pytest.mark.parametrize("changes, expected", [
    ({("field_supply", "gain"): float("inf")}, r"\[instruments.field_supply\] gain \(A/V\) and coil \(T/A\) give inf"),
    ({("field_supply", "gain"): 0.0}, r"\[instruments.field_supply\] gain \(A/V\) and coil \(T/A\) give 0 T/V"),
    ({("field_supply", "gain"): 1e30}, r"reset_amplitude -0.015 T is .* V at the pulse source, below its smallest step.*gain"),
    ({("field_supply", "coil"): 1e-300}, r"needs .* V from the pulse source, beyond its \+-5.0 V: check \[instruments.field_supply\]"),
])
def test_bad_calibration_constants_name_the_station_key(changes, expected):
    before = bench_threads()
    with pytest.raises(InstrumentError, match=expected) as info:
        open_chip(kerr_station(changes))
    assert "\n" not in str(info.value)
    for t in bench_threads() - before:  # the bench it started was stopped
        t.join(timeout=2)
        assert not t.is_alive()


@pytest.mark.parametrize("resource, library, expected", [
    ("GPIB0::99::INSTR", "@py", r"role 'pulse_source' \(Agilent33500\) at 'GPIB0::99::INSTR': cannot open: .*gpib"),
    ("not a resource", "@py", r"role 'pulse_source' \(Agilent33500\) at 'not a resource': cannot open: .*expected a VISA resource"),
    ("TCPIP0::127.0.0.1::1::SOCKET", "@py", r"role 'pulse_source' \(Agilent33500\) at 'TCPIP0::127.0.0.1::1::SOCKET': cannot open: "
                                            r"no answer.*refused; expected the instrument on and reachable"),
    ("TCPIP0::127.0.0.1::1::SOCKET", "@nope", r"cannot open: .*pyvisa_nope"),
])
def test_bad_visa_settings_are_one_clear_instrument_error(resource, library, expected):
    running, station = served("kerr-bench")
    try:
        ins = station.instruments
        table = ins.pulse_source.model_copy(update={"resource": resource, "visa_library": library, "retries": 0})
        bad = station.model_copy(update={"instruments": ins.model_copy(update={"pulse_source": table})})
        with pytest.raises(InstrumentError, match=expected) as info:
            open_chip(bad)
        assert "\n" not in str(info.value)
    finally:
        running.stop()


def test_auto_resource_without_a_bench_is_a_clear_error():
    station = load_station("kerr-bench")
    with pytest.raises(InstrumentError, match=r"\[instruments.pulse_source\] resource = 'auto' needs \[bench\] start = true"):
        open_chip(station.model_copy(update={"bench": None}))
