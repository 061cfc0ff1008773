"""Helpers for tests that need a simulated bench that outlives the chip (served separately)."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path

import pyvisa

from labctl.bench import start_bench
from labctl.config import StationConfig

SAFE_QUERIES = {  # model -> (query, check of the reply) proving outputs off and biases at zero
    "Agilent33500": [("OUTP1?", "0"), ("OUTP2?", "0")],
    "Keysight81160A": [("OUTP1?", "0"), ("OUTP2?", "0")],
    "KepcoBOP3612": [("OUTPut?", "0"), ("CURRent?", 0.0)],
    "SR830": [("*OPC?", "1")],
    "ESP300": [("TE?", "0")],
    "Keithley2400": [("OUTPUT?", "0"), (":SOURCE:VOLTAGE?", 0.0)],
    "Keithley2450": [("OUTPUT?", "0"), (":SOUR:VOLT?", 0.0)],
    "Keithley2700": [(":ROUT:MULT:CLOS?", "(@)")],
}


def embedded(name: str) -> dict:
    text = resources.files("labctl.defaults").joinpath("stations", name + ".toml").read_text()
    return tomllib.loads(text)


def reduced_protocol(name: str, changes: dict[str, str], folder: Path) -> Path:
    """The embedded protocol ``name`` with each text ``old`` replaced by ``new`` (each must be
    there), written as ``folder/name.toml``: a shorter run of the same protocol."""
    text = resources.files("labctl.defaults").joinpath("protocols", name + ".toml").read_text()
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    path = Path(folder) / f"{name}.toml"
    path.write_text(text)
    return path


def served(name: str, faults=(), latency_s: float = 0.0, timeout_s: float | None = None, retries: int | None = None,
           **chip_changes):
    """Serve the embedded station ``name``'s bench separately; return (running bench, client station).

    The client station names the served resources explicitly ([bench] start = false), as a
    station for a bench served by ``labctl bench serve`` would.
    """
    data = embedded(name)
    data["chip"].update(chip_changes)
    data["bench"]["faults"] = list(faults)
    data["bench"]["latency_s"] = latency_s
    running = start_bench(StationConfig.model_validate(data))
    client = copy.deepcopy(data)
    client["bench"] = {"start": False}
    for role, table in client["instruments"].items():
        if isinstance(table, dict):
            table["resource"] = running.resources[role]
            table["visa_library"] = "@py"
            if timeout_s is not None:
                table["timeout_s"] = timeout_s
            if retries is not None:
                table["retries"] = retries
    return running, StationConfig.model_validate(client)


def assert_safe_over_visa(running) -> None:
    """Ask every simulated instrument, over its socket, whether outputs are off and biases zero."""
    rm = pyvisa.ResourceManager("@py")  # shared with the chip's links: close resources, never the manager
    for role, server in running.servers.items():
        inst = rm.open_resource(server.resource, read_termination="\n", write_termination="\n", timeout=2000)
        try:
            for query, expected in SAFE_QUERIES[server.instrument.model]:
                reply = inst.query(query)
                if isinstance(expected, float):
                    assert float(reply) == expected, f"{role}: {query} -> {reply}"
                else:
                    assert reply == expected, f"{role}: {query} -> {reply}"
        finally:
            inst.close()
    assert all(running.bench.outputs_safe().values()), running.bench.status()
