"""Every embedded protocol's checkpoint is plain data: it loads with torch.load(weights_only=True)
(a run file must never execute code when resumed) and restores into a fresh protocol."""

from __future__ import annotations

import io
from itertools import islice

import pytest
import torch

from labctl import runs
from labctl.config import embedded_names, load_protocol_file
from labctl.engine import RunContext
from test_fashion_shapes import tiny_idx

PROTOCOLS = [name for name in embedded_names("protocols")
             if load_protocol_file(name)[0].protocol.station.startswith("sim-")]


@pytest.fixture(autouse=True)
def tiny_fashion_mnist(tmp_path, monkeypatch):
    """The Fashion-MNIST protocols read a small IDX set written here, not the system's data set
    (which CI does not have, and which would make each case take tens of seconds)."""
    tiny_idx(tmp_path / "data" / "fashion-mnist")
    monkeypatch.setenv("LABCTL_DATA", str(tmp_path / "data"))


@pytest.mark.parametrize("name", PROTOCOLS)
def test_checkpoint_loads_safely_and_restores(name, tmp_path):
    protocol, chip, station, pfile = runs.prepare(name)
    writer = runs.create_run_file(protocol, chip, station, pfile, tmp_path / "run.h5")
    steps = list(islice(protocol.run(RunContext(chip, writer)), 3))
    assert steps, "the protocol reached no safe point"
    buffer = io.BytesIO()
    torch.save({"plan": protocol.state_dict(), "chip": chip.state_dict()}, buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    fresh, fresh_chip, _, _ = runs.prepare(name)
    fresh.load_state_dict(state["plan"])
    fresh_chip.load_state_dict(state["chip"])
    assert torch.equal(fresh_chip.devices.state, chip.devices.state)
    writer.close()
