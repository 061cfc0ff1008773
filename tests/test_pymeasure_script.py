"""A lab's own PyMeasure script against ``labctl bench serve``: only PyMeasure and pyvisa, no labctl.

The bench is served in a process of its own (``labctl bench serve --station ...``), its printed
VISA resources are parsed, and a script that imports nothing but PyMeasure drivers and pyvisa
runs as a subprocess against it: a pulse burst on the 33500B moves the DW nanowire under the spot
and the SR830 sees it; the 2400 and 2450 source a read bias and measure a device resistance
within the chip's levels. The server stops on SIGINT with exit code 0.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

LABCTL = str(Path(sys.executable).parent / "labctl")

KERR_SCRIPT = r'''
import json, sys
from statistics import mean
from pymeasure.adapters import VISAAdapter
from pymeasure.instruments.agilent import Agilent33500
from pymeasure.instruments.kepco import KepcoBOP3612
from pymeasure.instruments.newport import ESP300
from pymeasure.instruments.srs import SR830

res = json.loads(sys.argv[1])
def open_(cls, role):
    return cls(VISAAdapter(res[role], visa_library="@py", timeout=3000,
                           read_termination="\n", write_termination="\n"))
awg, bop, lia, stage = (open_(Agilent33500, "pulse_source"), open_(KepcoBOP3612, "field_supply"),
                        open_(SR830, "kerr_readout"), open_(ESP300, "positioner"))
out = {}
stage.x.units = "millimeter"; stage.x.enable(); stage.x.position = 0.02   # wire 2 (10 um pitch)
out["position"] = stage.x.position
lia.sensitivity = 0.005; lia.time_constant = 0.01
out["sensitivity"], out["time_constant"] = lia.sensitivity, lia.time_constant
bop.operating_mode = "CURR"; bop.output_enabled = True
bop.current_setpoint = -3.0                   # -15 mT steady: re-nucleates the wall (reset)
bop.current_setpoint = 0.0
out["mode"], out["output"] = bop.operating_mode, bop.output_enabled
out["x_before"] = mean(lia.x for _ in range(8))
ch = awg.ch_1
ch.shape = "PULS"; ch.amplitude = 2.0; ch.offset = 1.0     # 0 V -> 2 V pulses: 12 mT at the wire
ch.pulse_period = 1e-5; ch.pulse_width = 1e-6
ch.burst_state = True; ch.burst_mode = "TRIG"; ch.burst_ncycles = 5
awg.trigger_source = "BUS"; ch.output = True
out["pulse"] = [ch.shape, ch.amplitude, ch.pulse_width, ch.burst_ncycles, ch.output]
awg.trigger(); awg.complete
out["x_after"] = mean(lia.x for _ in range(8))
out["y"], out["magnitude"] = lia.y, lia.magnitude
out["errors"] = [awg.ask("SYST:ERR?").strip(), bop.ask("SYST:ERR?").strip(), int(lia.ask("*ESR?"))]
ch.output = False; bop.output_enabled = False
print(json.dumps(out))
'''

TMR_SCRIPT = r'''
import json, sys
from pymeasure.adapters import VISAAdapter
from pymeasure.instruments.keithley import Keithley2400, Keithley2450, Keithley2700

res, model = json.loads(sys.argv[1]), sys.argv[2]
def open_(cls, role):
    return cls(VISAAdapter(res[role], visa_library="@py", timeout=3000,
                           read_termination="\n", write_termination="\n"))
smu = open_({"Keithley2400": Keithley2400, "Keithley2450": Keithley2450}[model], "source_meter")
switch = open_(Keithley2700, "switch")
switch.closed_channels = [101]                # device 0 on the 7709
out = {}
smu.apply_voltage(compliance_current=1e-3)
smu.source_voltage = 0.05
smu.enable_source()
out["source_voltage"], out["compliance"] = smu.source_voltage, smu.compliance_current
smu.measure_current(); out["current"] = smu.current
smu.measure_resistance(); out["resistance"] = smu.resistance
smu.compliance_current = 1e-6                 # below V / R: the source meter limits the current
smu.measure_current(); out["limited_current"] = smu.current
out["error"] = smu.ask("SYST:ERR?").strip()
smu.source_voltage = 0.0; smu.disable_source(); switch.open_channels = [101]
print(json.dumps(out))
'''


STATIONS = {"kerr-bench": 4, "tmr-bench": 3, "tmr-dwmtj-bench": 3}  # station -> instruments printed


def serve(station: str):
    return subprocess.Popen([LABCTL, "bench", "serve", "--station", station], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def resources_of(proc, roles: int) -> dict[str, str]:
    """role -> VISA resource, from the lines ``labctl bench serve`` prints (role, model, resource)."""
    resources = {}
    for _ in range(roles):
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        role, _model, resource = line.split()
        resources[role] = resource
    return resources


@pytest.fixture(scope="module")
def benches():
    """The three stations served at once (their start-ups overlap), stopped with SIGINT at the end."""
    procs = {station: serve(station) for station in STATIONS}
    try:
        yield {station: resources_of(proc, STATIONS[station]) for station, proc in procs.items()}
    finally:
        for proc in procs.values():
            stop(proc)


def stop(proc) -> None:
    """SIGINT: the server stops cleanly and exits 0."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "bench stopped" in out


def run_script(tmp_path, source: str, *args: str) -> dict:
    script = tmp_path / "lab_script.py"
    script.write_text(source)
    assert "labctl" not in source and "simulated_bench" not in source and "instruments." not in source.replace(
        "pymeasure.instruments.", "")
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_kerr_bench_pulse_moves_the_wall_and_the_lockin_sees_it(tmp_path, benches):
    out = run_script(tmp_path, KERR_SCRIPT, json.dumps(benches["kerr-bench"]))
    assert out["position"] == pytest.approx(0.02)
    assert out["sensitivity"] == 0.005 and out["time_constant"] == 0.01
    assert out["mode"] == "CURR" and out["output"] is True
    assert out["pulse"] == ["PULS", 2.0, 1e-6, 5, True]
    # Kerr signal: offset 2 mV before switching, +1 mV contrast after, 0.15 mV read noise
    assert out["x_before"] == pytest.approx(2e-3, abs=5e-4)
    assert out["x_after"] - out["x_before"] == pytest.approx(1e-3, abs=5e-4)
    assert out["y"] == 0.0 and out["magnitude"] > 0
    assert out["errors"] == ['0,"No error"', '0,"No error"', 0]


@pytest.mark.parametrize(("station", "model", "r_p", "tmr"), [("tmr-bench", "Keithley2400", 3e3, 1.5),
                                                               ("tmr-dwmtj-bench", "Keithley2450", 3e3, 1.0)])
def test_tmr_bench_source_meter_measures_the_routed_device(tmp_path, benches, station, model, r_p, tmr):
    out = run_script(tmp_path, TMR_SCRIPT, json.dumps(benches[station]), model)
    assert out["source_voltage"] == pytest.approx(0.05) and out["compliance"] == pytest.approx(1e-3)
    r = out["resistance"]
    assert 0.7 * r_p < r < 1.3 * r_p * (1 + tmr)  # within the chip's levels (with spread and noise)
    assert out["current"] == pytest.approx(0.05 / r, rel=0.05)
    assert out["limited_current"] == pytest.approx(1e-6)
    assert out["error"].startswith("0,")
