"""The simulated instruments over TCP sockets (pyvisa-py): the same driver calls as the
expected_protocol tests, IEEE 488.2 common commands, error queue codes, robustness to junk."""

from __future__ import annotations

import pytest
import pyvisa

from instrument_calls import CALLS
from instruments.registry import open_role
from simulated_bench.server import serve_bench

KERR = {"chip": {"family": "dw_nanowire", "n": 4, "seed": 1},
        "instruments": {"pulse_source": {"model": "Agilent33500"}, "field_supply": {"model": "KepcoBOP3612"},
                        "kerr_readout": {"model": "SR830"}, "positioner": {"model": "ESP300"}},
        "wiring": {"gain": 1.2, "coil": 5e-3, "pitch": 1e-5}}
TMR = {"chip": {"family": "stt_mtj", "n": 4, "seed": 1},
       "instruments": {"pulse_source": {"model": "Keysight81160A"}, "source_meter": {"model": "Keithley2400"},
                       "switch": {"model": "Keithley2700"}}}
TMR2 = {"chip": {"family": "dw_mtj", "n": 4, "seed": 1},
        "instruments": {"pulse_source": {"model": "Agilent33500"}, "source_meter": {"model": "Keithley2450"},
                        "switch": {"model": "Keithley2700"}}}

OUT_OF_RANGE = {  # (model) -> command with a value out of range
    "Agilent33500": "SOUR1:VOLT 50", "Keysight81160A": ":VOLT1 50", "KepcoBOP3612": "CURRent 50",
    "SR830": "SENS 99", "ESP300": "1PA1000", "Keithley2400": ":SOURCE:VOLTAGE 500",
    "Keithley2450": ":SOUR:VOLT:LEV 500", "Keithley2700": "ROUT:MULT:CLOS (@299)",
}
OUTPUT = {  # model -> (switch on, query, reply when on, switch off, reply when off)
    "Agilent33500": ("OUTP1 1", "OUTP1?", "1", "OUTP1 0", "0"),
    "Keysight81160A": ("OUTP2 ON", "OUTP2?", "1", "OUTP2 OFF", "0"),
    "KepcoBOP3612": ("OUTPut 1", "OUTPut?", "1", "OUTPut 0", "0"),
    "Keithley2400": ("OUTPUT 1", "OUTPUT?", "1", "OUTPUT 0", "0"),
    "Keithley2450": ("OUTPUT ON", "OUTPUT?", "1", "OUTPUT OFF", "0"),
    "SR830": ("STRT", "SPTS?", "0", "PAUS", "0"),
    "ESP300": ("1MO", "1MO?", "1", "1MF", "0"),
    "Keithley2700": ("ROUT:MULT:CLOS (@101)", "ROUT:MULT:CLOS?", "(@101)", "ROUT:OPEN:ALL", "(@)"),
}


@pytest.fixture(scope="module")
def benches():
    running = [serve_bench(KERR), serve_bench(TMR), serve_bench(TMR2)]
    yield running
    for r in running:
        r.stop()


def find(benches, role, model):
    for r in benches:
        sim = r.bench.instruments.get(role)
        if sim is not None and sim.model == model:
            return r, sim
    raise LookupError(model)


@pytest.fixture(scope="module")
def rm():  # noqa: D103
    return pyvisa.ResourceManager("@py")  # shared per process: never closed here


def raw(rm, resource):
    inst = rm.open_resource(resource, read_termination="\n", write_termination="\n", timeout=2000)
    return inst


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("name", sorted(CALLS))
def test_same_call_over_socket(benches, name):
    call = CALLS[name]
    running, sim = find(benches, call.role, call.model)
    with running.bench.lock:
        sim.reset()
        sim.queue.clear()
        sim.esr = 0
    role = open_role(call.role, call.model, running.resources[call.role], visa_library="@py", timeout_s=2.0,
                     **call.settings)
    try:
        if call.prepare:
            with running.bench.lock:
                call.prepare(sim)
        result = call.action(role)
        if not name.endswith("errors"):
            assert role.errors() == [], f"the simulator rejected a string of {name}"
        if call.check:
            with running.bench.lock:
                call.check(sim, result)
    finally:
        role.link.close()


ALL_MODELS = ["Agilent33500", "Keysight81160A", "KepcoBOP3612", "SR830", "ESP300", "Keithley2400",
              "Keithley2450", "Keithley2700"]
ROLE_OF = {"Agilent33500": "pulse_source", "Keysight81160A": "pulse_source", "KepcoBOP3612": "field_supply",
           "SR830": "kerr_readout", "ESP300": "positioner", "Keithley2400": "source_meter",
           "Keithley2450": "source_meter", "Keithley2700": "switch"}


@pytest.mark.parametrize("model", ALL_MODELS)
def test_common_commands_and_error_queue(benches, rm, model):
    running, sim = find(benches, ROLE_OF[model], model)
    inst = raw(rm, running.resources[ROLE_OF[model]])
    try:
        assert "SIM" in inst.query("*IDN?")
        inst.write("*RST")
        inst.write("*CLS")
        assert inst.query("*OPC?") == "1"
        assert inst.query("SYST:ERR?") == '0,"No error"'
        inst.write("FOO:BAR 1")  # unknown header
        assert inst.query("SYST:ERR?").startswith("-113,")
        inst.write(OUT_OF_RANGE[model])
        assert inst.query("SYST:ERR?").startswith("-222,")
        inst.write("FOO:BAR 1")
        inst.write(OUT_OF_RANGE[model])
        assert int(inst.query("*ESR?")) & 0b110000 == 0b110000  # command error + execution error bits
        assert inst.query("*ESR?") == "0"  # reading clears it
        inst.write("*CLS")
        assert inst.query("SYST:ERR?") == '0,"No error"'  # *CLS cleared the queue
    finally:
        inst.close()


@pytest.mark.parametrize("model", ALL_MODELS)
def test_output_state(benches, rm, model):
    running, sim = find(benches, ROLE_OF[model], model)
    on, query, when_on, off, when_off = OUTPUT[model]
    inst = raw(rm, running.resources[ROLE_OF[model]])
    try:
        inst.write("*RST")
        inst.write(on)
        assert inst.query(query) == when_on
        inst.write(off)
        assert inst.query(query) == when_off
        assert sim.outputs_safe()
        assert inst.query("SYST:ERR?") == '0,"No error"'
    finally:
        inst.close()


@pytest.mark.parametrize("model", ALL_MODELS)
def test_junk_never_crashes(benches, rm, model):
    """Malformed input gets an error-queue entry; the instrument keeps answering."""
    running, sim = find(benches, ROLE_OF[model], model)
    inst = raw(rm, running.resources[ROLE_OF[model]])
    try:
        inst.write("*CLS")
        inst.write_raw(b"\x00\xff\x7f\xfe;\x80\n")
        for junk in [";;;", "#9zzz", "SOUR1:VOLT abc", ":::", "?", "*IDN", "A" * 5000,
                     "OUTP1 maybe", "TRCA? x,y,z", "1PA", ":TRAC:POIN", "ROUT:MULT:CLOS 101", "DATA1:DAC VOLATILE,#3zz"]:
            inst.write(junk)
        errors = []
        while (e := inst.query("SYST:ERR?")) != '0,"No error"':
            errors.append(int(e.split(",")[0]))
            assert len(errors) < 50
        assert errors and all(-399 <= code <= -100 for code in errors)
        assert "SIM" in inst.query("*IDN?")
    finally:
        inst.close()


def test_lockin_buffer_fills_from_awg_markers(benches):
    """On the Kerr bench one AWG burst gives one lock-in point per marker edge, in order."""
    import numpy as np

    from instruments.waveform import compose

    running = benches[0]
    kw = dict(visa_library="@py", timeout_s=2.0)
    ps = open_role("pulse_source", "Agilent33500", running.resources["pulse_source"], **kw)
    fs = open_role("field_supply", "KepcoBOP3612", running.resources["field_supply"], gain=1.2, coil=5e-3, **kw)
    ro = open_role("kerr_readout", "SR830", running.resources["kerr_readout"], **kw)
    st = open_role("positioner", "ESP300", running.resources["positioner"], pitch=1e-5, **kw)
    try:
        for r in (ps, fs, ro, st):
            r.configure()
        st.move_to(st.position_of(2))
        tpv = fs.tesla_per_volt
        # 40 trials: 20 with no write (stay unswitched), then 20 with a huge field (switch)
        h = np.concatenate([np.zeros(20), np.full(20, 0.011)])
        ro.arm()
        ps.load(compose(40, 1e-6, write=h / tpv, reset=-0.015 / tpv, read=True))
        ps.fire()
        v = ro.fetch(40)
        switched = v > 2.5e-3
        # binomial floor 1 - a = 0.022 for h = 0 and p ~ 1 at 11 mT; read errors ~1e-3
        assert switched[:20].sum() <= 4 and switched[20:].sum() >= 18
        for r in (ps, fs, ro, st):
            r.safe_state()
        assert all(running.bench.outputs_safe().values()), running.bench.status()
    finally:
        for r in (ps, fs, ro, st):
            r.link.close()
