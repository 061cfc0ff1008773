"""`labctl bench serve` (labctl.bench.serve): one line per instrument, loopback only, clean stop on
SIGINT and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pyvisa

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_bench_serve_prints_resources_and_stops_cleanly(sig):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "labctl.cli", "bench", "serve", "--station", "tmr-bench"],
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        lines = [child.stdout.readline().split() for _ in range(3)]
        roles = {line[0]: line[2] for line in lines}
        assert set(roles) == {"pulse_source", "source_meter", "switch"}
        assert all(r.startswith("TCPIP0::127.0.0.1::") and r.endswith("::SOCKET") for r in roles.values())
        rm = pyvisa.ResourceManager("@py")
        inst = rm.open_resource(roles["switch"], read_termination="\n", write_termination="\n", timeout=2000)
        assert "MODEL 2700" in inst.query("*IDN?")
        inst.close()
        child.send_signal(sig)
        out, err = child.communicate(timeout=20)
        assert child.returncode == 0, err
        assert "bench stopped" in out
    finally:
        if child.poll() is None:
            child.kill()


def test_servers_bind_to_loopback_only():
    from labctl.bench import start_bench
    from labctl.config import load_station

    running = start_bench(load_station("kerr-bench"))
    try:
        for server in running.servers.values():
            assert server.listener.getsockname()[0] == "127.0.0.1"
    finally:
        running.stop()


def test_bad_station_is_reported():
    from labctl.bench import serve

    assert serve("sim-dw") == 2  # no [instruments] to simulate
