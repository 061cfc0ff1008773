"""An out-of-tree plugin (tests/plugin_pkg) adds a device family, an instrument model and a protocol.

The package is installed with pip into a temporary folder put on the PYTHONPATH of the labctl
subprocesses: labctl finds it through its installed entry points only (no path is imported by
labctl, nothing under labctl/, instruments/, protocols/ or simulated_bench/ names it). Its
protocol runs through the command line on the direct backend, and a run killed with SIGKILL and
resumed ends with the same metrics and counters as an uninterrupted one; it also runs on the
socket bench a station starts, whose simulators (chip and current source) are the plugin's. ``module:Class``
references in station and protocol files reach the same classes; a reference that does not
import is a one-line configuration error (exit 2) naming the file, the key and the import error.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from labctl.cli import main as cli_main

PLUGIN = Path(__file__).parent / "plugin_pkg"
FILES = PLUGIN / "sotpkg"
LABCTL = [sys.executable, "-m", "labctl"]
WALL_CLOCK = ("train_time_s", "elapsed_s", "wall_s")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Environment of subprocesses that see the plugin installed (pip --target, then PYTHONPATH)."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "src"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = root / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-warn-script-location", "--target", str(site), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "QT_QPA_PLATFORM": "offscreen"}


def labctl(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LABCTL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def python(env: dict, code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def outcome(env: dict, path: Path) -> dict:
    info = labctl(env, "info", str(path), "--json", cwd=path.parent)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    metrics = {k: v for k, v in data["metrics"].items() if k not in WALL_CLOCK}
    return {"status": data["exit_status"], "metrics": metrics, "counters": data["counters"]}


DISCOVERED = """
import json
from labctl import families
from protocols import REGISTRY
from instruments.registry import models
family = families.REGISTRY.get("sot_mtj")
print(json.dumps({"families": families.names(), "protocols": sorted(REGISTRY),
                  "pulse_sources": sorted(models("pulse_source")),
                  "unit": family and family.amplitude_unit, "law": family and family.default_law().param_names,
                  "broken": families.REGISTRY.broken}))
"""


def test_the_plugin_is_found_through_its_entry_points_only(env, tmp_path):
    found = json.loads(python(env, DISCOVERED, tmp_path))
    assert "sot_mtj" in found["families"] and "sot-sweep" in found["protocols"]
    assert "Keithley6221" in found["pulse_sources"]
    assert found["unit"] == "A" and found["law"] == ["x0", "dx", "a"] and found["broken"] == {}
    bare = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    without = json.loads(python(bare, DISCOVERED, tmp_path))
    assert "sot_mtj" not in without["families"] and "sot-sweep" not in without["protocols"]


def checkpoints(path: Path) -> int:
    """Checkpoint rows a SWMR reader sees now (0 while the file is not there or not readable)."""
    if not path.exists():
        return 0
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            return f["checkpoints/index"].shape[0] if "checkpoints/index" in f else 0
    except (OSError, KeyError):
        return 0


@pytest.mark.slow
def test_plugin_protocol_runs_on_its_family_and_resumes_after_sigkill(env, tmp_path):
    protocol, station = str(FILES / "sot-sweep.toml"), str(FILES / "sim-sot.toml")
    full = labctl(env, "run", protocol, "--station", station, "--no-progress", "--out", "full.h5", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    want = outcome(env, tmp_path / "full.h5")
    assert want["status"] == "success" and want["metrics"]["law"] == "sigmoid"
    assert want["metrics"]["converged_fraction"] == 1.0
    assert 0.9e-3 < want["metrics"]["median_x0"] < 1.1e-3  # i50 = 1 mA in sim-sot
    assert 0.02 < want["metrics"]["i50_spread"] < 0.08  # i50_spread = 5 %

    killed = tmp_path / "killed.h5"
    proc = subprocess.Popen([*LABCTL, "run", protocol, "--station", station, "--no-progress", "--out", str(killed),
                             "--checkpoint-every", "0"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while checkpoints(killed) < 3:
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert outcome(env, killed)["status"] == "incomplete"
    resumed = labctl(env, "resume", str(killed), "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(env, killed) == want


def test_calibrate_runs_the_protocol_the_family_names(env, tmp_path):
    done = labctl(env, "calibrate", "--station", str(FILES / "sim-sot.toml"), "--no-progress", "--out", "c.h5",
                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    got = outcome(env, tmp_path / "c.h5")
    assert got["metrics"]["protocol"] == "calibrate" and got["metrics"]["law"] == "sigmoid"


def test_module_class_references_in_station_and_protocol_files(env, tmp_path):
    station = (FILES / "sim-sot.toml").read_text().replace('family = "sot_mtj"', 'family = "sotpkg.family:SotMtj"')
    (tmp_path / "ref-station.toml").write_text(station)
    protocol = (FILES / "sot-sweep.toml").read_text().replace('kind = "sot-sweep"', 'kind = "sotpkg.protocols:SotSweep"')
    (tmp_path / "ref-protocol.toml").write_text(protocol)
    done = labctl(env, "check", "ref-protocol.toml", "--station", "ref-station.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ok (sotpkg.protocols:SotSweep on station sim-sot)" in done.stdout


BENCH_STATION = (Path(__file__).parents[1] / "labctl/defaults/stations/tmr-bench.toml").read_text()


def plugin_bench_station(pulse_source_table: str) -> str:
    """tmr-bench with the plugin's chip and its current source as the pulse source."""
    start = BENCH_STATION.index("[chip]")
    end = BENCH_STATION.index("[envelope]")
    text = BENCH_STATION[:start] + '[chip]\nfamily = "sot_mtj"\nn = 16\n\n' + BENCH_STATION[end:]
    text = text.replace("amplitude_min = -1.2", "amplitude_min = -3e-3").replace("amplitude_max = 1.2", "amplitude_max = 3e-3")
    text = text.replace("reset_amplitude = -1.0", "reset_amplitude = -2e-3")
    start = text.index("[instruments.pulse_source]")
    end = text.index("[instruments.source_meter]")
    return text[:start] + pulse_source_table + "\n" + text[end:]


LOAD = """
import json
from labctl.config import ConfigError, load_station
from labctl.instrument_station import role_settings
results = {}
for name, path in PATHS.items():
    try:
        station = load_station(path)
    except ConfigError as exc:
        results[name] = f"error: {exc}"
    else:
        results[name] = f"ok: {role_settings(station, 'pulse_source')}"
print(json.dumps(results))
"""


def test_instrument_settings_are_validated_against_the_plugin_adapters_model(env, tmp_path):
    good = '[instruments.pulse_source]\nmodel = "Keithley6221"\nresource = "auto"\ncompliance_v = 20.0\n'
    cases = {
        "good": good,
        "by-reference": good.replace('"Keithley6221"', '"sotpkg.drivers:Keithley6221PulseSource"'),
        "out-of-range": good.replace("compliance_v = 20.0", "compliance_v = 500.0"),
        "unknown": good.replace("compliance_v", "complience_v"),
    }
    for name, table in cases.items():
        (tmp_path / f"{name}.toml").write_text(plugin_bench_station(table))
    paths = {name: str(tmp_path / f"{name}.toml") for name in cases}
    results = json.loads(python(env, f"PATHS = {paths!r}\n" + LOAD, tmp_path))
    assert results["good"] == "ok: {'max_points': 65536, 'compliance_v': 20.0}"
    assert results["by-reference"] == results["good"]
    assert "key 'instruments.pulse_source.compliance_v': expected a number at most 105" in results["out-of-range"]
    assert "key 'instruments.pulse_source.complience_v': unknown key (did you mean 'compliance_v'?)" in results["unknown"]


# ---------------------------------------------------------------------------- without the plugin (in process)
def refused(argv: list[str], capsys) -> str:
    code = cli_main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    return err


def test_a_reference_that_does_not_import_is_a_config_error(tmp_path, capsys):
    station = tmp_path / "st.toml"
    station.write_text((FILES / "sim-sot.toml").read_text().replace('family = "sot_mtj"', 'family = "nopkg.devices:SotMtj"'))
    err = refused(["check", "calibrate-dw", "--station", str(station)], capsys)
    assert f"{station}: key 'chip.family': cannot import 'nopkg.devices:SotMtj' " \
           "(ModuleNotFoundError: No module named 'nopkg')" in err

    protocol = tmp_path / "p.toml"
    protocol.write_text('[protocol]\nname = "p"\nkind = "protocols.calibration:NoSuchRule"\n')
    err = refused(["check", str(protocol)], capsys)
    assert f"{protocol}: key 'protocol.kind': cannot import 'protocols.calibration:NoSuchRule' (AttributeError: " in err

    bench = tmp_path / "bench.toml"
    bench.write_text(BENCH_STATION.replace('model = "Keysight81160A"', 'model = "nopkg.drivers:Keithley6221"'))
    err = refused(["check", "calibrate-stt", "--station", str(bench)], capsys)
    assert f"{bench}: key 'instruments.pulse_source.model': cannot import 'nopkg.drivers:Keithley6221'" in err


def test_an_unknown_family_lists_the_known_ones(tmp_path, capsys):
    station = tmp_path / "st.toml"
    station.write_text((FILES / "sim-sot.toml").read_text())  # the plugin is not installed in this process
    err = refused(["check", "calibrate-dw", "--station", str(station)], capsys)
    assert ("key 'chip.family': expected one of 'dw_nanowire', 'stt_mtj', 'dw_mtj' (got 'sot_mtj'), "
            "or a 'module:Class' reference") in err


def test_plugin_protocol_runs_on_the_socket_bench(env, tmp_path):
    """The plugin's chip and its current source served by the simulated bench the station starts
    (`[bench] start = true`): the bench builds the plugin's simulator classes from the references
    labctl passes (the family's simulator, the adapter's `simulator`)."""
    table = '[instruments.pulse_source]\nmodel = "Keithley6221"\nresource = "auto"\ncompliance_v = 20.0\n'
    station = plugin_bench_station(table).replace('name = "tmr-bench"', 'name = "sot-bench"')
    assert 'backend = "instruments"' in station and "start = true" in station
    (tmp_path / "sot-bench.toml").write_text(station)
    protocol = (FILES / "sot-sweep.toml").read_text().replace("points = 13", "points = 5").replace(
        "widths = [1e-8, 2e-8]", "widths = [1e-8]").replace("repeats = 100", "repeats = 20").replace("block = 1", "block = 16")
    (tmp_path / "sweep.toml").write_text(protocol)
    done = labctl(env, "run", "sweep.toml", "--station", "sot-bench.toml", "--no-progress", "--out", "bench.h5",
                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    got = outcome(env, tmp_path / "bench.h5")
    assert got["status"] == "success" and got["metrics"]["law"] == "sigmoid"
    assert got["metrics"]["synapses"] == 16 and got["counters"]["pulses"] > 0
    assert 0.5e-3 < got["metrics"]["median_x0"] < 1.5e-3  # the plugin simulator's i50 (1 mA by default)


# ---------------------------------------------------------------------------- a rule in a Python file
def test_a_file_reference_names_a_rule_in_a_python_file(tmp_path, monkeypatch):
    """examples/perceptron.toml names its rule `perceptron_rule.py:PerceptronRule`, relative to the
    TOML's folder, from any working directory; `labctl.plugins.references_from(folder)` makes such a
    path relative to a folder for other readers."""
    from labctl import api, plugins

    root = Path(__file__).parents[1]
    monkeypatch.chdir(tmp_path)
    result = api.run(root / "examples/perceptron.toml", out=tmp_path / "perceptron.h5", overrides={"max_epochs": 1})
    assert result.status == "success" and 0.6 < result.summary["test_accuracy"] <= 1.0
    assert api.read_run(tmp_path / "perceptron.h5").attrs["protocol_kind"].endswith("examples/perceptron_rule.py:PerceptronRule")
    monkeypatch.chdir(root)
    with plugins.references_from(root / "examples"):
        cls = plugins.load_reference("perceptron_rule.py:PerceptronRule")
    assert cls is plugins.load_reference("examples/perceptron_rule.py:PerceptronRule")  # imported once
    with pytest.raises(plugins.PluginError, match=r"cannot import 'nope.py:Rule' \(FileNotFoundError: no such file: "):
        plugins.load_reference("nope.py:Rule")
