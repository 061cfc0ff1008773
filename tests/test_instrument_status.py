"""Instrument status, queried per role (labctl/instrument_status.py) and ``labctl bench status``:
identity, outputs and error queue of every instrument; one that stopped answering is shown as
such with its error and makes the command exit 1; 0 when all answer; 2 for a bad station."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench_helpers import served
from labctl.cli import main
from labctl.config import load_station
from labctl.instrument_status import format_table, query_station, safe_state_station
from labctl.station import open_chip

ROOT = Path(__file__).resolve().parents[1]


def toml_text(data: dict, prefix: str = "") -> str:
    """A station dict as TOML (scalars, lists of scalars, nested tables; enough for station files)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None
             and not (isinstance(v, list) and v and isinstance(v[0], dict))]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"\n[{prefix}{k}]")
            lines.append(toml_text(v, f"{prefix}{k}."))
    return "\n".join(lines)


def test_status_of_a_served_bench_with_one_instrument_down(tmp_path, capsys):
    running, station = served("tmr-bench", retries=1, timeout_s=1.0)
    try:
        path = tmp_path / "served.toml"
        path.write_text(toml_text(station.model_dump(mode="json", exclude_none=True)))
        status = query_station(station)
        assert [r.role for r in status.rows] == ["pulse_source", "source_meter", "switch"]
        assert status.all_answer
        models = {r.role: r.identity for r in status.rows}
        assert "81160A" in models["pulse_source"] and "MODEL 2400" in models["source_meter"]
        assert {r.role: r.off for r in status.rows} == {"pulse_source": True, "source_meter": True, "switch": True}
        assert all(r.errors == [] for r in status.rows)
        assert main(["bench", "status", "--station", str(path)]) == 0

        # the chip energises the instruments: the status says so (queried, not inferred)
        with open_chip(station) as chip:
            chip.read([0])
            on = {r.role: r for r in query_station(station).rows}
            assert on["source_meter"].off is False and "output on" in on["source_meter"].output
            assert on["switch"].output.startswith("closed (@")
        # an error in an instrument's queue is reported (and read out of it)
        import pyvisa

        inst = pyvisa.ResourceManager("@py").open_resource(running.resources["pulse_source"], read_termination="\n",
                                                           write_termination="\n", timeout=2000)
        inst.write(":NO:SUCH:COMMAND")
        assert inst.query("*OPC?") == "1"  # the bad command has been taken
        inst.close()
        rows = {r.role: r for r in query_station(station).rows}
        assert rows["pulse_source"].errors and rows["pulse_source"].errors[0].startswith("-113")
        assert rows["switch"].off is True  # the chip closed: matrix open again

        running.servers["source_meter"].stop_answering()
        status = query_station(station)
        rows = {r.role: r for r in status.rows}
        assert not rows["source_meter"].answers and "source_meter" in rows["source_meter"].problem
        assert "refused" in rows["source_meter"].problem.lower()
        assert rows["pulse_source"].answers and rows["switch"].answers
        assert "NOT ANSWERING" in "\n".join(format_table(status))
        capsys.readouterr()
        assert main(["bench", "status", "--station", str(path)]) == 1
        out = capsys.readouterr()
        assert "NOT ANSWERING" in out.out and "not answering: source_meter" in out.err
        # safe state of what answers; the silent one is said
        safe = {r.role: r for r in safe_state_station(station).rows}
        assert safe["pulse_source"].off is True and not safe["source_meter"].answers
        running.servers["source_meter"].resume_answering()
        assert main(["bench", "status", "--station", str(path)]) == 0
    finally:
        running.stop()


def test_bench_status_command_in_a_subprocess():
    done = subprocess.run([sys.executable, "-m", "labctl", "bench", "status", "--station", "kerr-bench"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "self-served simulated bench" in done.stdout
    lines = [line for line in done.stdout.splitlines() if " live " in line]
    assert [line.split()[0] for line in lines] == ["pulse_source", "field_supply", "kerr_readout", "positioner"]
    assert "ch1 off, ch2 off" in done.stdout and "output off, current setpoint 0 A" in done.stdout


def test_bench_status_simulated_backend_and_bad_input(capsys, tmp_path):
    assert main(["bench", "status", "--station", "sim-dw"]) == 0
    assert "simulated backend: no instruments" in capsys.readouterr().out
    assert main(["bench", "status", "--station", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.toml" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["kerr-bench"])
def test_query_station_starts_and_stops_a_self_served_bench(name):
    status = query_station(load_station(name))
    assert status.all_answer and "self-served" in status.note
    assert len(status.rows) == 4
