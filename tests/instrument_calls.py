"""Every driver call labctl makes, once: the action, the exact strings it must send, and what the
simulated instrument must show afterwards.

Used twice: ``test_instruments_protocol.py`` pins the strings with PyMeasure's
``expected_protocol``; ``test_sim_bench_instruments.py`` makes the same calls over a socket to the
simulated instrument (so the simulator answers what the real driver sends).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from instruments.registry import MODELS
from instruments.waveform import compose

NO_ERROR = '0,"No error"'


@dataclass
class Call:
    role: str
    model: str
    action: Callable[[Any], Any]
    pairs: list[tuple]
    settings: dict = field(default_factory=dict)
    prepare: Callable[[Any], None] | None = None  # sets the simulator up before the socket call
    check: Callable[[Any, Any], None] | None = None  # (simulator, action result) after the socket call

    @property
    def driver_cls(self):
        return MODELS[self.role][self.model][0]

    @property
    def adapter_cls(self):
        return MODELS[self.role][self.model][1]


CONSTRUCTOR = {
    "Keithley2400": [(":FORMAT:ELEMENTS VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS", None)],
    "Keithley2700": [("SYST:ERR?", NO_ERROR), ("*OPT?", "7709,none")],
}

# ---------------------------------------------------------------------------- pulse sources
SMALL = compose(2, 1e-6, write=np.array([0.5, 1.0]), reset=-1.5, read=True)  # 12 samples
SMALL_DAC = "0, -32767, 0, 10922, 0, 0, -32767, 0, 21845, 0, 0, 0"
SMALL_MARK = "0, 0, 0, 0, 32767, 0, 0, 0, 0, 32767, 0, 0"


def _agilent_idle(ch: int) -> str:
    vpp = "0.010000" if ch == 1 else "5.000000"
    return (f"SOUR{ch}:DATA:VOL:CLE;:SOUR{ch}:DATA:ARB:DAC LABCTL{ch}, {', '.join(['0'] * 8)};"
            f":SOUR{ch}:FUNC:ARB LABCTL{ch};:SOUR{ch}:FUNC:ARB:SRAT 1.000000e+06;:SOUR{ch}:VOLT {vpp}")


AGILENT_CONFIGURE = (
    [("*CLS", None)]
    + [p for ch in (1, 2) for p in [
        (f"OUTP{ch} 0", None), (f"SOUR{ch}:FUNC ARB", None), (f"SOUR{ch}:FUNC:ARB:FILT STEP", None),
        (f"SOUR{ch}:VOLT:OFFS 0.000000", None), (f"SOUR{ch}:BURS:MODE TRIG", None),
        (f"SOUR{ch}:BURS:NCYC 1", None), (f"SOUR{ch}:BURS:STAT 1", None), (f"TRIG{ch}:SOUR BUS", None)]]
    + [(_agilent_idle(1) + ";:" + _agilent_idle(2), None), ("OUTP1 1", None), ("OUTP2 1", None),
       ("SYST:ERR?", NO_ERROR)]
)

AGILENT_LOAD = (
    f"SOUR1:DATA:VOL:CLE;:SOUR1:DATA:ARB:DAC LABCTL1, {SMALL_DAC};:SOUR1:FUNC:ARB LABCTL1;"
    f":SOUR1:FUNC:ARB:SRAT 1.000000e+06;:SOUR1:VOLT 3.000000;"
    f":SOUR2:DATA:VOL:CLE;:SOUR2:DATA:ARB:DAC LABCTL2, {SMALL_MARK};:SOUR2:FUNC:ARB LABCTL2;"
    f":SOUR2:FUNC:ARB:SRAT 1.000000e+06;:SOUR2:VOLT 5.000000"
)


def _block(values: list[int]) -> bytes:
    body = np.asarray(values, dtype=">i2").tobytes()
    return f"#{len(str(len(body)))}{len(body)}".encode() + body


def _keysight_load(dac1: list[int], dac2: list[int], frequency: str, vpp: str) -> bytes:
    return (b":DATA1:DAC VOLATILE," + _block(dac1) + b";:DATA2:DAC VOLATILE," + _block(dac2)
            + f";:FUNC1:USER VOLATILE;:FREQ1 {frequency};:VOLT1 {vpp}"
              f";:FUNC2:USER VOLATILE;:FREQ2 {frequency};:VOLT2 5.000000\n".encode())


KEYSIGHT_CONFIGURE = (
    [("*CLS", None), ("OUTP1 0", None), ("OUTP2 0", None),
     (_keysight_load([0] * 8, [0] * 8, "125000.000000", "0.050000"), None)]
    + [p for ch in (1, 2) for p in [(f":FUNC{ch} USER", None), (f":VOLT{ch}:OFFS 0.000000", None),
                                    (f":ARM:SOUR{ch} MAN", None), (f":TRIG{ch}:COUN 1", None)]]
    + [("OUTP1 1", None), ("OUTP2 1", None), ("SYST:ERR?", NO_ERROR)]
)
KEYSIGHT_LOAD = _keysight_load(
    [0, -8191, 0, 2730, 0, 0, -8191, 0, 5461, 0, 0, 0],
    [0, 0, 0, 0, 8191, 0, 0, 0, 0, 8191, 0, 0],
    "83333.333333", "3.000000",
)


def _awg_configured(sim, result):
    assert all(c.output for c in sim.channels.values())
    assert sim.channels[1].offset == 0.0


def _awg_loaded(sim, result):
    c = sim.channels[1]
    assert c.arbs[c.arb].tolist()[:4] == ([0, -32767, 0, 10922] if sim.dac_max == 32767 else [0, -8191, 0, 2730])
    assert c.amplitude == 3.0


def _awg_off(sim, result):
    assert sim.outputs_safe()


def _queue(*errors):
    def prepare(sim):
        for code in errors:
            sim.push_error(code)
    return prepare


def _errors_read(sim, result):
    assert len(result) == 1 and result[0].startswith("-113")
    assert not sim.queue


def _fired(sim, result):
    assert sim.bursts == 1


# ---------------------------------------------------------------------------- the table
CALLS: dict[str, Call] = {
    # Agilent 33500B
    "33500-configure": Call("pulse_source", "Agilent33500", lambda r: r.configure(), AGILENT_CONFIGURE,
                            check=_awg_configured),
    "33500-load": Call("pulse_source", "Agilent33500", lambda r: r.load(SMALL), [(AGILENT_LOAD, None)],
                       check=_awg_loaded),
    "33500-fire": Call("pulse_source", "Agilent33500", lambda r: r.fire(), [("*TRG;*OPC?", "1")], check=_fired),
    "33500-safe": Call("pulse_source", "Agilent33500", lambda r: r.safe_state(),
                       [("OUTP1 0", None), ("OUTP2 0", None), ("OUTP1?", "0"), ("OUTP2?", "0")],
                       check=_awg_off),
    "33500-errors": Call("pulse_source", "Agilent33500", lambda r: r.errors(),
                         [("SYST:ERR?", '-113,"Undefined header"'), ("SYST:ERR?", NO_ERROR)],
                         prepare=_queue(-113), check=_errors_read),
    # Keysight 81160A
    "81160A-configure": Call("pulse_source", "Keysight81160A", lambda r: r.configure(), KEYSIGHT_CONFIGURE,
                             check=_awg_configured),
    "81160A-load": Call("pulse_source", "Keysight81160A", lambda r: r.load(SMALL), [(KEYSIGHT_LOAD, None)],
                        check=_awg_loaded),
    "81160A-fire": Call("pulse_source", "Keysight81160A", lambda r: r.fire(), [("*TRG;*OPC?", "1")], check=_fired),
    "81160A-safe": Call("pulse_source", "Keysight81160A", lambda r: r.safe_state(),
                       [("OUTP1 0", None), ("OUTP2 0", None), ("OUTP1?", "0"), ("OUTP2?", "0")],
                        check=_awg_off),
    "81160A-errors": Call("pulse_source", "Keysight81160A", lambda r: r.errors(),
                          [("SYST:ERR?", '-113,"Undefined header"'), ("SYST:ERR?", NO_ERROR)],
                          prepare=_queue(-113), check=_errors_read),
    # Kepco BOP 36-12
    "kepco-configure": Call(
        "field_supply", "KepcoBOP3612", lambda r: r.configure(),
        [("*CLS", None), ("OUTPut 0", None), ("FUNCtion:MODE CURR", None), ("CURRent 0", None),
         ("VOLTage 20", None), ("OUTPut 1", None), ("SYST:ERR?", NO_ERROR)],
        settings={"gain": 1.2, "coil": 5e-3},
        check=lambda sim, r: (sim.output and sim.mode == "CURR" and sim.current == 0.0) or _fail(sim)),
    "kepco-safe": Call(
        "field_supply", "KepcoBOP3612", lambda r: r.safe_state(),
        [("CURRent?", "1.00000E+00"), ("CURRent 0.8", None), ("CURRent 0.6", None), ("CURRent 0.4", None),
         ("CURRent 0.2", None), ("CURRent 0", None), ("OUTPut 0", None), ("OUTPut?", "0")],
        settings={"gain": 1.2, "coil": 5e-3, "ramp_pause_s": 0.0},
        prepare=lambda sim: (setattr(sim, "current", 1.0), setattr(sim, "output", True)),
        check=lambda sim, r: sim.outputs_safe() or _fail(sim)),
    "kepco-errors": Call("field_supply", "KepcoBOP3612", lambda r: r.errors(),
                         [("SYST:ERR?", '-113,"Undefined header"'), ("SYST:ERR?", NO_ERROR)],
                         settings={"gain": 1.2, "coil": 5e-3}, prepare=_queue(-113), check=_errors_read),
    # SR830
    "sr830-configure": Call(
        "kerr_readout", "SR830", lambda r: r.configure(),
        [("*CLS", None), ("DDEF1,0,0", None), ("SRAT 14", None), ("TSTR 0", None), ("REST", None), ("*ESR?", "0")],
        check=lambda sim, r: (sim.srat == 14 and sim.ddef[1] == 0) or _fail(sim)),
    "sr830-arm": Call("kerr_readout", "SR830", lambda r: r.arm(), [("REST;STRT;SPTS?", "0")],
                      check=lambda sim, r: (sim.recording and not sim.buffer) or _fail(sim)),
    "sr830-fetch": Call(
        "kerr_readout", "SR830", lambda r: r.fetch(3),
        [("SPTS?", "3"), ("TRCA? 1,0,3", "1.000000e-03,2.000000e-03,3.000000e-03,")],
        prepare=lambda sim: sim.buffer.extend([1e-3, 2e-3, 3e-3]),
        check=lambda sim, r: np.testing.assert_allclose(r, [1e-3, 2e-3, 3e-3])),
    "sr830-safe": Call("kerr_readout", "SR830", lambda r: r.safe_state(), [("PAUS", None), ("*OPC?", "1")],
                       prepare=lambda sim: setattr(sim, "recording", True),
                       check=lambda sim, r: (not sim.recording) or _fail(sim)),
    "sr830-errors": Call("kerr_readout", "SR830", lambda r: r.errors(), [("*ESR?", "48")],
                         prepare=_queue(-113, -222),
                         check=lambda sim, r: (len(r) == 2 and sim.esr == 0) or _fail(sim)),
    # ESP300
    "esp300-configure": Call("positioner", "ESP300", lambda r: r.configure(),
                             [("1SN2", None), ("1MO", None), ("TE?", "0")], settings={"pitch": 1e-5},
                             check=lambda sim, r: (sim.enabled[1] and sim.units[1] == 2) or _fail(sim)),
    "esp300-move": Call("positioner", "ESP300", lambda r: r.move_to(r.position_of(2)),
                        [("1PA0.020000;1WS;1MD?", "1")], settings={"pitch": 1e-5},
                        check=lambda sim, r: np.testing.assert_allclose(sim.position[1], 0.02)),
    "esp300-errors": Call("positioner", "ESP300", lambda r: r.errors(), [("TE?", "6"), ("TE?", "0")],
                          settings={"pitch": 1e-5}, prepare=_queue(-113),
                          check=lambda sim, r: (r == ["6: COMMAND DOES NOT EXIST"]) or _fail(r)),
    # Keithley 2400
    "2400-configure": Call(
        "source_meter", "Keithley2400", lambda r: r.configure(),
        CONSTRUCTOR["Keithley2400"] + [
            ("*CLS", None), (":ABOR", None), ("OUTPUT 0", None), (":SOURCE:FUNCTION VOLT", None),
            (":SOURCE:VOLTAGE:RANGE 0.2", None), (":SOURCE:VOLTAGE 0", None),
            (":SENSE:CURRENT:PROTECTION 0.001", None), (":SENS:FUNC 'RES'", None),
            (":SENSE:RESISTANCE:MODE MAN", None), (":SENSE:RESISTANCE:NPLCYCLES 0.01", None),
            (":FORM:DATA ASCII", None), (":ARM:SOURCE IMM", None), (":TRIGGER:SOURCE TLIN", None),
            (":TRIGGER:ILINE 1", None), ("OUTPUT 1", None), (":SOURCE:VOLTAGE?", "+0.000000E+00"),
            (":SOURCE:VOLTAGE 0.01", None), (":SOURCE:VOLTAGE 0.02", None), (":SOURCE:VOLTAGE 0.03", None),
            (":SOURCE:VOLTAGE 0.04", None), (":SOURCE:VOLTAGE 0.05", None), ("SYST:ERR?", NO_ERROR)],
        settings={"read_bias": 0.05, "ramp_pause_s": 0.0},
        check=lambda sim, r: (sim.output and sim.source_voltage == 0.05 and sim.trigger_source == "TLIN"
                              and sim.sense == "RES") or _fail(sim)),
    "2400-arm": Call(
        "source_meter", "Keithley2400", lambda r: r.arm(4),
        CONSTRUCTOR["Keithley2400"] + [(":TRAC:CLE;:TRAC:POIN 4;:TRIG:COUN 4;:TRAC:FEED SENS;:TRAC:FEED:CONT NEXT;:INIT;:TRAC:POIN:ACT?", "0")],
        settings={"read_bias": 0.05},
        prepare=lambda sim: (setattr(sim, "output", True), setattr(sim, "trigger_source", "TLIN")),
        check=lambda sim, r: (sim.pending == 4 and sim.trace_points == 4) or _fail(sim)),
    "2400-fetch": Call(
        "source_meter", "Keithley2400", lambda r: r.fetch(2),
        CONSTRUCTOR["Keithley2400"] + [(":TRAC:DATA?", "+5.000000E-02,+1.666667E-05,+3.000000E+03,+1.000000E-03,+0.000000E+00,"
                                                       "+5.000000E-02,+6.666667E-06,+7.500000E+03,+2.000000E-03,+0.000000E+00")],
        settings={"read_bias": 0.05},
        prepare=lambda sim: sim.buffer.extend([(0.05, 0.05 / 3000, 3000.0, 1e-3, 0.0), (0.05, 0.05 / 7500, 7500.0, 2e-3, 0.0)]),
        check=lambda sim, r: np.testing.assert_allclose(r, [3000.0, 7500.0])),
    "2400-safe": Call(
        "source_meter", "Keithley2400", lambda r: r.safe_state(),
        CONSTRUCTOR["Keithley2400"] + [
            (":ABOR", None), (":SOURCE:VOLTAGE?", "+5.000000E-02"), (":SOURCE:VOLTAGE 0.04", None),
            (":SOURCE:VOLTAGE 0.03", None), (":SOURCE:VOLTAGE 0.02", None), (":SOURCE:VOLTAGE 0.01", None),
            (":SOURCE:VOLTAGE 0", None), ("OUTPUT 0", None), ("OUTPUT?", "0")],
        settings={"read_bias": 0.05, "ramp_pause_s": 0.0},
        prepare=lambda sim: (setattr(sim, "output", True), setattr(sim, "source_voltage", 0.05)),
        check=lambda sim, r: sim.outputs_safe() or _fail(sim)),
    "2400-errors": Call("source_meter", "Keithley2400", lambda r: r.errors(),
                        CONSTRUCTOR["Keithley2400"] + [("SYST:ERR?", '-113,"Undefined header"'), ("SYST:ERR?", NO_ERROR)],
                        settings={"read_bias": 0.05}, prepare=_queue(-113), check=_errors_read),
    # Keithley 2450
    "2450-configure": Call(
        "source_meter", "Keithley2450", lambda r: r.configure(),
        [("*CLS", None), (":ABOR", None), ("OUTPUT OFF", None), (":SOUR:FUNC VOLT", None),
         (":SOUR:VOLT:RANG:AUTO 0;:SOUR:VOLT:RANG 0.2", None), (":SOUR:VOLT:LEV 0", None),
         (":SOUR:VOLT:ILIM 0.001", None), (":SENS:FUNC 'RES'", None), (":SENS:RES:NPLC 0.01", None),
         (":FORM:DATA ASCII", None), (":ARM:SOUR IMM;:TRIG:SOUR TLIN;:TRIG:ILIN 1", None), ("OUTPUT ON", None),
         (":SOUR:VOLT?", "+0.000000E+00"), (":SOUR:VOLT:LEV 0.01", None), (":SOUR:VOLT:LEV 0.02", None),
         (":SOUR:VOLT:LEV 0.03", None), (":SOUR:VOLT:LEV 0.04", None), (":SOUR:VOLT:LEV 0.05", None),
         ("SYST:ERR?", NO_ERROR)],
        settings={"read_bias": 0.05, "ramp_pause_s": 0.0},
        check=lambda sim, r: (sim.output and sim.source_voltage == 0.05 and sim.trigger_source == "TLIN") or _fail(sim)),
    "2450-safe": Call(
        "source_meter", "Keithley2450", lambda r: r.safe_state(),
        [(":ABOR", None), (":SOUR:VOLT?", "+5.000000E-02"), (":SOUR:VOLT:LEV 0.04", None),
         (":SOUR:VOLT:LEV 0.03", None), (":SOUR:VOLT:LEV 0.02", None), (":SOUR:VOLT:LEV 0.01", None),
         (":SOUR:VOLT:LEV 0", None), ("OUTPUT OFF", None), ("OUTPUT?", "0")],
        settings={"read_bias": 0.05, "ramp_pause_s": 0.0},
        prepare=lambda sim: (setattr(sim, "output", True), setattr(sim, "source_voltage", 0.05)),
        check=lambda sim, r: sim.outputs_safe() or _fail(sim)),
    "2450-arm": Call(
        "source_meter", "Keithley2450", lambda r: r.arm(3),
        [(":TRAC:CLE;:TRAC:POIN 3;:TRIG:COUN 3;:TRAC:FEED SENS;:TRAC:FEED:CONT NEXT;:INIT;:TRAC:POIN:ACT?", "0")],
        settings={"read_bias": 0.05},
        prepare=lambda sim: (setattr(sim, "output", True), setattr(sim, "trigger_source", "TLIN")),
        check=lambda sim, r: (sim.pending == 3) or _fail(sim)),
    "2450-fetch": Call(
        "source_meter", "Keithley2450", lambda r: r.fetch(1),
        [(":TRAC:DATA?", "+5.000000E-02,+1.666667E-05,+3.000000E+03,+1.000000E-03,+0.000000E+00")],
        settings={"read_bias": 0.05},
        prepare=lambda sim: sim.buffer.append((0.05, 0.05 / 3000, 3000.0, 1e-3, 0.0)),
        check=lambda sim, r: np.testing.assert_allclose(r, [3000.0])),
    "2450-errors": Call("source_meter", "Keithley2450", lambda r: r.errors(),
                        [("SYST:ERR?", '-113,"Undefined header"'), ("SYST:ERR?", NO_ERROR)],
                        settings={"read_bias": 0.05}, prepare=_queue(-113), check=_errors_read),
    # Keithley 2700 + 7709
    "2700-configure": Call(
        "switch", "Keithley2700", lambda r: r.configure(),
        CONSTRUCTOR["Keithley2700"] + [("*CLS", None), (":ROUTe:OPEN:ALL", None), ("SYST:ERR?", NO_ERROR)],
        prepare=lambda sim: sim.closed.add(101),
        check=lambda sim, r: (not sim.closed) or _fail(sim)),
    "2700-route": Call(
        "switch", "Keithley2700", lambda r: r.route(9),
        CONSTRUCTOR["Keithley2700"] + [(":ROUT:OPEN:ALL;:ROUT:MULT:CLOS (@110);:ROUT:MULT:CLOS?", "(@110)")],
        prepare=lambda sim: sim.closed.add(101),
        check=lambda sim, r: (sim.closed == {110} and sim.routed() == [9]) or _fail(sim)),
    "2700-safe": Call("switch", "Keithley2700", lambda r: r.safe_state(),
                      CONSTRUCTOR["Keithley2700"] + [(":ROUTe:OPEN:ALL", None), (":ROUT:MULT:CLOS?", "(@)")],
                      prepare=lambda sim: sim.closed.add(110), check=lambda sim, r: sim.outputs_safe() or _fail(sim)),
    "2700-errors": Call("switch", "Keithley2700", lambda r: r.errors(),
                        CONSTRUCTOR["Keithley2700"] + [("SYST:ERR?", '-113,"Undefined header"'), ("SYST:ERR?", NO_ERROR)],
                        prepare=_queue(-113), check=_errors_read),
}

BLIND = {  # write-only safe state, sent when an instrument stops answering
    "Agilent33500": ("pulse_source", [("OUTP1 0", None), ("OUTP2 0", None)], {}),
    "Keysight81160A": ("pulse_source", [("OUTP1 0", None), ("OUTP2 0", None)], {}),
    "KepcoBOP3612": ("field_supply", [("CURRent 0", None), ("OUTPut 0", None)], {"gain": 1.2, "coil": 5e-3}),
    "SR830": ("kerr_readout", [("PAUS", None)], {}),
    "Keithley2400": ("source_meter", CONSTRUCTOR["Keithley2400"] + [(":ABOR", None), (":SOURCE:VOLTAGE 0", None),
                                                                    ("OUTPUT 0", None)], {"read_bias": 0.05}),
    "Keithley2450": ("source_meter", [(":ABOR", None), (":SOUR:VOLT:LEV 0", None), ("OUTPUT OFF", None)],
                     {"read_bias": 0.05}),
    "Keithley2700": ("switch", CONSTRUCTOR["Keithley2700"] + [(":ROUTe:OPEN:ALL", None)], {}),
}
for _model, (_role, _pairs, _settings) in BLIND.items():
    CALLS[f"{_model}-blind-safe"] = Call(
        _role, _model, lambda r: r.link.attempt(r._blind_safe_state), _pairs, settings=_settings,
        check=lambda sim, r: sim.outputs_safe() or _fail(sim))
    CALLS[f"{_model}-identify"] = Call(
        _role, _model, lambda r: r.identify(),
        CONSTRUCTOR.get(_model, []) + [("*IDN?", "VENDOR,MODEL,SIM0,1.0")], settings=_settings,
        check=lambda sim, r: ("SIM" in r) or _fail(r))

CALLS["ESP300-identify"] = Call("positioner", "ESP300", lambda r: r.identify(), [("*IDN?", "ESP300 SIM0")],
                                settings={"pitch": 1e-5}, check=lambda sim, r: ("SIM" in r) or _fail(r))


def _fail(what) -> None:
    raise AssertionError(f"unexpected simulator state: {getattr(what, '__dict__', what)}")
