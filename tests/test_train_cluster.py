"""train-cluster: DW-MTJ WTA clustering plus a delta-rule read-out (protocols/cluster.py)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from scipy.stats import binom

from labctl.chip import EnvelopeError
from labctl.config import load_station
from labctl.engine import SUMMARY, SUMMARY_SPEC, RunEngine
from labctl.simulated_array import SimulatedArray
from labctl.station import open_chip
from labctl.store import RunReader, RunWriter
from protocols import REGISTRY
from protocols.cluster import ClusterSettings, TrainCluster


def make_chip(n=512, seed=1, cls=None):
    station = load_station("sim-dwmtj-cluster")
    station = station.model_copy(update={"chip": station.chip.model_copy(update={"n": n, "seed": seed})})
    chip = open_chip(station)
    if cls is not None:
        chip.__class__ = cls
    return chip


class RecordingArray(SimulatedArray):
    """The simulated chip, recording every pulse that reached the backend."""

    def _pulse(self, idx, amplitude, width):
        self.__dict__.setdefault("log", []).append((idx.clone(), amplitude.clone().expand(len(idx)), width.clone()))
        super()._pulse(idx, amplitude, width)


def iris(**kw):
    base = dict(data="iris", clusters=8, epochs=3, readout_temperature=0.2, labels_per_class=[5], label_draws=3,
                readout_epochs=100)
    base.update(kw)
    return ClusterSettings(**base)


def test_registered():
    assert REGISTRY["train-cluster"] is TrainCluster


def test_winner_moves_toward_input_and_nothing_else_moves():
    chip = make_chip()
    p = TrainCluster("t", iris(), chip, seed=0)
    p._initialise()
    top = chip.levels - 1
    before = p.levels.clone()
    w = p.weights()
    winners = (p.x_train @ w.T - 0.5 * (w * w).sum(1)).argmax(1)
    far = ((p.x_train * top - before[winners]).abs() >= 1).sum(1)  # synapses off by at least one level
    i = int(far.argmax())  # the sample farthest from its winner
    x, winner = p.x_train[i], int(winners[i])
    target = x * top
    p._train_sample(x, eta=1.0)  # gate probability min(1, |x - w| * (K - 1)): every off-by->=1-level synapse moves
    after = chip.read(p.index.reshape(-1)).level[:, 0].reshape(before.shape)
    assert torch.equal(after, p.levels), "the shadow must hold what the chip reads"
    others = torch.arange(p.settings.clusters) != winner
    assert torch.equal(after[others], before[others]), "only the winner's synapses may move"
    up = target - before[winner] >= 1
    down = before[winner] - target >= 1
    assert bool(up.any() or down.any())
    # potentiated where the input is higher, depressed where lower (landing may over/undershoot by one site)
    assert bool((after[winner][up] >= before[winner][up]).all())
    assert bool((after[winner][down] <= before[winner][down]).all())
    moved_right = ((after[winner] - before[winner]).sign() == (target - before[winner]).sign()) & (up | down)
    assert int(moved_right.sum()) >= int((up | down).sum()) - 1
    dist_before = (target - before[winner]).abs().sum()
    dist_after = (target - after[winner]).abs().sum()
    assert dist_after < dist_before


def test_pulses_stay_in_envelope_and_are_one_call_per_sample():
    chip = make_chip(cls=RecordingArray)
    p = TrainCluster("t", iris(epochs=1), chip, seed=0)
    RunEngine(chip, None, checkpoint_every_s=None).run(p)
    log = chip.log
    env = chip.envelope
    amps = torch.cat([a for _, a, _ in log])
    widths = torch.stack([w.reshape(-1)[0] for _, _, w in log])
    assert float(amps.min()) >= env.amplitude_min and float(amps.max()) <= env.amplitude_max
    assert float(widths.min()) >= env.width_min and float(widths.max()) <= env.width_max
    assert bool((amps > 0).any()) and bool((amps < 0).any()), "both potentiating and depressing pulses are used"
    # at most one pulse call per training sample (plus at most K-1 initialisation rounds)
    assert len(log) <= len(p.x_train) + chip.levels - 1
    assert sum(len(i) for i, _, _ in log) == chip.counters.pulses


def test_pulse_outside_envelope_is_refused_up_front():
    chip = make_chip()
    with pytest.raises(EnvelopeError):
        TrainCluster("t", iris(pulse_current=1e-3), chip, seed=0)
    assert chip.counters.pulses == 0


def test_chip_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="synapses"):
        TrainCluster("t", iris(clusters=200), make_chip(n=64), seed=0)


def test_readout_from_five_labels_beats_chance():
    chip = make_chip()
    p = TrainCluster("t", iris(epochs=5), chip, seed=0)
    RunEngine(chip, None, checkpoint_every_s=None).run(p)
    n_test = len(p.data.y_test)
    # 99.9 % quantile of the accuracy of a chance classifier on this test set
    chance = binom.ppf(0.999, n_test, 1 / 3) / n_test
    acc = p.results["accuracy"][0]
    assert acc.min() > chance, (acc, chance)
    assert p.energy["learning_j"] > 0 and p.energy["inference_j"] > 0


def test_digits_reduced_run_all_labels():
    chip = make_chip(n=40 * 64)
    s = ClusterSettings(data="digits", clusters=40, epochs=2, readout_temperature=1.0, labels_per_class=[0],
                        label_draws=1, readout_epochs=100, baselines=False, batch=200)
    p = TrainCluster("t", s, chip, seed=0)
    RunEngine(chip, None, checkpoint_every_s=None).run(p)
    # 10 classes: chance is 10 %; 40 centroids on the chip with a soft read-out must reach 80 %
    assert p.results["accuracy"][0, 0] > 0.80
    assert p.energy["learning_j"] < 20e-6  # the paper's bound


def test_state_dict_round_trip_continues_identically():
    chip = make_chip()
    p = TrainCluster("t", iris(epochs=2, batch=20), chip, seed=3)
    gen = p.run(type("Ctx", (), {"chip": chip, "writer": None})())
    for _ in range(4):  # init + 3 batches, stopping mid-epoch
        next(gen)
    state = copy.deepcopy(p.state_dict())
    chip_copy = copy.deepcopy(chip)
    for _ in gen:
        pass
    q = TrainCluster("t", iris(epochs=2, batch=20), chip_copy, seed=3)
    q.load_state_dict(state)
    for _ in q.run(type("Ctx", (), {"chip": chip_copy, "writer": None})()):
        pass
    assert torch.equal(p.levels, q.levels)
    np.testing.assert_array_equal(p.results["accuracy"], q.results["accuracy"])
    assert chip.counters.energy_j == chip_copy.counters.energy_j


def test_run_file_has_metrics_energy_and_summary(tmp_path):
    chip = make_chip()
    p = TrainCluster("t", iris(epochs=2, batch=30), chip, seed=0)
    path = tmp_path / "run.h5"
    writer = RunWriter(path, attrs={"protocol_kind": p.kind}, schema={**p.describe(), SUMMARY: SUMMARY_SPEC})
    outcome = RunEngine(chip, writer, checkpoint_every_s=None).run(p)
    assert outcome.status == "success"
    with RunReader(path) as r:
        metrics = r.dataset("train/metrics")
        assert len(metrics) == 2 * -(-len(p.x_train) // 30)
        assert np.all(np.diff(metrics["samples"]) > 0) and np.all(np.diff(metrics["energy_j"]) >= 0)
        energy = r.dataset("energy")[0]
        assert energy["learning_j"] == pytest.approx(energy["init_j"] + energy["training_j"])
        assert energy["training_pulses"] > 0
        summary = json.loads(r.dataset(SUMMARY).tobytes())
        assert summary["energy_learning_j"] == pytest.approx(float(energy["learning_j"]))
        assert r.dataset("train/levels").max() <= chip.levels - 1
