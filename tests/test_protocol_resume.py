"""Resuming from a checkpoint continues every protocol exactly; the declared state is checked on load.

For every registered protocol (reduced settings on the simulated stations): run to a mid-run safe
point, save the protocol's and the chip's state through torch.save / torch.load(weights_only=True),
build a fresh protocol and chip, load both, continue in the same run file, and compare the
continuation's safe points, the run file's datasets and the summary with an uninterrupted run.
"""

from __future__ import annotations

import importlib.util
import io
import math
from enum import Enum
from pathlib import Path

import numpy as np
import pytest
import torch

from labctl import runs
from labctl.config import load_station
from labctl.engine import RunContext
from labctl.station import open_chip
from protocols import REGISTRY
from protocols.base import ChipProtocol, Kind, Settings

TIME_KEYS = {"elapsed_s", "wall_s", "train_time_s"}  # wall-clock times differ between runs

# embedded protocol file -> settings overrides that make it a few seconds long
CASES = {
    "calibrate-dw": {"points": 5, "repeats": 20, "synapses": 8, "block": 3},
    "calibrate-dwmtj": {"points": 5, "repeats": 10, "synapses": 8, "block": 3},
    "train-meanvar": {"max_epochs": 2, "train_limit": 200, "test_passes": 2, "calibration_points": 5,
                      "calibration_repeats": 20},
    "train-meanvar-exsitu": {"max_epochs": 2, "train_limit": 200, "test_passes": 2, "calibration_points": 5,
                             "calibration_repeats": 20},
    "train-kstate-insitu": {"max_epochs": 2, "train_limit": 200, "hidden": [8]},
    "train-kstate-exsitu": {"max_epochs": 2, "train_limit": 200, "hidden": [8]},
    "train-cluster-iris": {"epochs": 2, "batch": 30, "label_draws": 2, "readout_epochs": 20},
    "train-hebbian": {"neurons": 10, "epochs": 2, "limit_train": 100, "batch": 40, "p_end": 0.1},
}


def plain(value):
    """Comparable plain data: tensors and arrays as lists, wall-clock times dropped."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in TIME_KEYS}
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def datasets(writer, protocol) -> dict:
    out = {}
    for name in protocol.describe():
        a = writer.read(name)
        out[name] = plain({k: a[k] for k in a.dtype.names} if a.dtype.names else a)
    return out


def steps(protocol, chip, writer, stop: int | None = None) -> list:
    """The safe points of ``protocol.run`` (all, or the first ``stop``)."""
    out = []
    run = protocol.run(RunContext(chip, writer))
    for progress in run:
        out.append(plain(vars(progress)))
        if stop is not None and len(out) == stop:
            run.close()
            break
    return out


def test_every_registered_protocol_has_a_case():
    kinds = {runs.prepare(name, overrides=o)[0].kind for name, o in CASES.items()}
    assert kinds == set(REGISTRY)


@pytest.mark.parametrize("name", CASES)
def test_resume_continues_exactly(name, tmp_path):
    protocol, chip, station, pfile = runs.prepare(name, overrides=CASES[name])
    writer = runs.create_run_file(protocol, chip, station, pfile, tmp_path / "whole.h5")
    whole = steps(protocol, chip, writer)
    expected = datasets(writer, protocol), plain(protocol.summary())
    writer.close()

    for stop in sorted({len(whole) // 3, 2 * len(whole) // 3}):  # two safe points: mid-epoch and later
        first, chip1, station, pfile = runs.prepare(name, overrides=CASES[name])
        writer = runs.create_run_file(first, chip1, station, pfile, tmp_path / f"resumed-{stop}.h5")
        assert steps(first, chip1, writer, stop) == whole[:stop]
        buffer = io.BytesIO()
        torch.save({"plan": first.state_dict(), "chip": chip1.state_dict()}, buffer)
        state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
        fresh, chip2, _, _ = runs.prepare(name, overrides=CASES[name])
        fresh.load_state_dict(state["plan"])
        chip2.load_state_dict(state["chip"])
        rest = steps(fresh, chip2, writer)
        assert rest == whole[stop:], f"resumed after safe point {stop}"
        assert (datasets(writer, fresh), plain(fresh.summary())) == expected, f"resumed after safe point {stop}"
        writer.close()


# ---------------------------------------------------------------------------- the declaration itself
class Phase(str, Enum):
    A = "a"
    B = "b"


class Toy(ChipProtocol):
    """A protocol with one of every kind of state, for the checks of load_state_dict."""

    kind = "toy"
    settings_model = Settings
    families = ("dw_nanowire",)
    resumable = {"phase": Kind.PHASE, "w": Kind.TENSOR, "opt": Kind.OPTIMIZER, "gen": Kind.GENERATOR,
                 "rng": Kind.NUMPY_GENERATOR, "values": Kind.VALUE}

    def __init__(self, chip, n: int = 3):
        super().__init__("toy", Settings(), chip)
        self.phase = Phase.A
        self.w = torch.zeros(n, requires_grad=True)
        self.opt = torch.optim.Adam([self.w], lr=0.1)
        self.gen = torch.Generator().manual_seed(1)
        self.rng = np.random.default_rng(2)
        self.values = [0.5]

    def describe(self):
        return {}

    def run(self, ctx):
        yield self.safe_point("x")

    def summary(self):
        return {}


@pytest.fixture(scope="module")
def dw_chip():
    return open_chip(load_station("sim-dw"))


def saved(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


def test_declared_state_round_trips_every_kind(dw_chip):
    a = Toy(dw_chip)
    a.w.sum().backward()
    a.opt.step()
    a.phase, a.values = Phase.B, [0.5, 0.25]
    a.rng.random(5), torch.rand(4, generator=a.gen)
    b = Toy(dw_chip)
    w_before = b.w
    b.load_state_dict(saved(a.state_dict()))
    assert b.phase is Phase.B and b.values == [0.5, 0.25] and b.w is w_before and torch.equal(b.w, a.w)
    assert b.rng.random() == a.rng.random()
    assert torch.equal(torch.rand(3, generator=b.gen), torch.rand(3, generator=a.gen))
    for opt in (a, b):  # the optimiser's moments came back: the next steps agree
        opt.opt.zero_grad()
        opt.w.sum().backward()
        opt.opt.step()
    assert torch.equal(a.w, b.w)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("w"), "'w' is missing"),
    (lambda s: s.update(w=torch.zeros(4)), "'w' is shape (4,)"),
    (lambda s: s.update(w=torch.zeros(3, dtype=torch.float64)), "torch.float64"),
    (lambda s: s.update(phase="c"), "'phase' is 'c'"),
    (lambda s: s.update(protocol="train-meanvar"), "not of a toy protocol"),
    (lambda s: s.update(extra=1), "'extra' is not part of the toy state"),
    (lambda s: s.update(gen=torch.zeros(3, dtype=torch.uint8)), "'gen' is shape (3,)"),
])
def test_a_checkpoint_that_does_not_fit_names_its_key(dw_chip, change, message):
    state = Toy(dw_chip).state_dict()
    change(state)
    fresh = Toy(dw_chip)
    with pytest.raises(ValueError) as err:
        fresh.load_state_dict(state)
    assert message in str(err.value)
    assert fresh.phase is Phase.A  # nothing was changed


def test_a_protocol_state_of_another_shape_is_refused_by_name():
    small, _, _, _ = runs.prepare("train-kstate-insitu", overrides={"max_epochs": 1, "hidden": [8]})
    large, _, _, _ = runs.prepare("train-kstate-insitu", overrides={"max_epochs": 1, "hidden": [16]})
    with pytest.raises(ValueError, match=r"checkpoint key 'w\[0\]' is shape \(8, 64\)"):
        large.load_state_dict(small.state_dict())


def test_state_that_is_not_plain_data_is_refused(dw_chip):
    toy = Toy(dw_chip)
    toy.values = [np.zeros(2)]
    with pytest.raises(TypeError, match="'values\\[0\\]' holds a ndarray"):
        toy.state_dict()


# ---------------------------------------------------------------------------- a new rule in ~150 lines
def load_example():
    path = Path(__file__).resolve().parents[1] / "examples" / "perceptron_rule.py"
    spec = importlib.util.spec_from_file_location("perceptron_rule", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_perceptron_example_learns_above_chance_and_resumes(tmp_path):
    ex = load_example()
    settings = ex.PerceptronSettings(max_epochs=4, batch_size=50)
    chip = open_chip(load_station("sim-dw"))
    rule = ex.PerceptronRule("perceptron", settings, chip, seed=0)
    whole = [plain(vars(p)) for p in rule.run(RunContext(chip, None))]
    y = rule.data.y_test
    # chance: always answering the most frequent test class; a label-blind guesser with the class
    # frequencies scores this on average, with a binomial spread of sd; demand 2 sd above it
    chance = float(torch.bincount(y).max()) / len(y)
    sd = math.sqrt(chance * (1 - chance) / len(y))
    assert rule.test_accuracies[-1] > chance + 2 * sd, (rule.test_accuracies, chance, sd)
    assert whole[-1]["step"] == whole[-1]["total"] == rule.progress_total()
    # the declaration is all it needs to resume exactly
    chip1 = open_chip(load_station("sim-dw"))
    first = ex.PerceptronRule("perceptron", settings, chip1, seed=0)
    run = first.run(RunContext(chip1, None))
    head = [plain(vars(next(run))) for _ in range(len(whole) // 2)]
    run.close()
    state = saved({"plan": first.state_dict(), "chip": chip1.state_dict()})
    chip2 = open_chip(load_station("sim-dw"))
    fresh = ex.PerceptronRule("perceptron", settings, chip2, seed=0)
    fresh.load_state_dict(state["plan"])
    chip2.load_state_dict(state["chip"])
    assert head + [plain(vars(p)) for p in fresh.run(RunContext(chip2, None))] == whole
    assert plain(fresh.summary()) == plain(rule.summary())
