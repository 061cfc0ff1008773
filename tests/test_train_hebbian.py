"""train-hebbian: stochastic Hebbian WTA learning on binary STT-MTJ synapses (protocols/hebbian.py)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from analysis.switching_laws import thermal_switching, thermal_switching_voltage
from labctl.chip import EnvelopeError
from labctl.config import load_station
from labctl.engine import RunEngine
from labctl.simulated_array import SimulatedArray
from labctl.station import open_chip
from protocols import REGISTRY
from protocols.hebbian import HebbianSettings, TrainHebbian, lif_first_spike, lif_simulate
from protocols.readout import class_response_rates, vote_predict


class RecordingArray(SimulatedArray):
    """The simulated chip, recording every pulse that reached the backend."""

    def _pulse(self, idx, amplitude, width):
        self.__dict__.setdefault("log", []).append((idx.clone(), amplitude.clone().expand(len(idx)).clone()))
        super()._pulse(idx, amplitude, width)


def make_chip(n, seed=1, recording=False):
    station = load_station("sim-stt-hebbian")
    station = station.model_copy(update={"chip": station.chip.model_copy(update={"n": n, "seed": seed})})
    chip = open_chip(station)
    if recording:
        chip.__class__ = RecordingArray
    return chip


def small(**kw):
    base = dict(neurons=20, epochs=1, limit_train=300, batch=50)
    base.update(kw)
    return HebbianSettings(**base)


def ctx(chip):
    return type("Ctx", (), {"chip": chip, "writer": None})()


def test_registered():
    assert REGISTRY["train-hebbian"] is TrainHebbian


def test_inverse_thermal_law():
    p = torch.tensor([0.01, 0.1, 0.5, 0.9])
    v = thermal_switching_voltage(p, 1e-8, 42.0, 0.6)
    back = thermal_switching(v, torch.tensor(1e-8, dtype=torch.float64), torch.tensor(42.0, dtype=torch.float64),
                             torch.tensor(0.6, dtype=torch.float64))
    torch.testing.assert_close(back, p.double(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_closed_form_lif_matches_step_simulation(seed):
    g = torch.Generator().manual_seed(seed)
    current = torch.randn(200, 30, generator=g) * 4
    current[:20] = torch.round(current[:20])  # ties
    current[-20:] = current[-20:] * 0.1 - 0.5  # mostly too weak to fire
    threshold = torch.rand(30, generator=g) * 40
    w1, f1 = lif_first_spike(current, threshold, 0.1, 20)
    w2, f2 = lif_simulate(current, threshold, 0.1, 20)
    assert torch.equal(f1, f2)
    assert torch.equal(w1, w2)
    assert bool(f1.any()) and bool((~f1).any())


def test_pulses_go_to_exactly_the_winners_synapses_with_the_right_sign():
    s = small(mtjs_per_synapse=3, p_start=0.3)
    chip = make_chip(20 * 128 * 3, recording=True)
    p = TrainHebbian("t", s, chip, seed=0)
    p._initialise()
    chip.log.clear()
    x = p.x_train[5]
    fired, j = p._learn(x, 0.3)
    assert fired
    assert len(chip.log) == 1, "one pulse call per learning step"
    idx, amp = chip.log[0]
    counts = torch.bincount(idx, minlength=chip.n)
    expected = torch.zeros(chip.n, dtype=torch.int64)
    expected[p.index[j].reshape(-1)] = 1
    assert torch.equal(counts, expected), "every MTJ of the winner exactly once, nothing else"
    active = (x > 0).repeat_interleave(3)  # rows x k, row-major as the chip layout
    order = torch.argsort(idx)
    amp = amp[order]
    v_pot, v_dep = p.voltages(0.3)
    assert bool((amp[active] == v_pot).all()) and v_pot < 0, "potentiation: negative pulse (AP -> P)"
    assert bool((amp[~active] == v_dep).all()) and v_dep > 0, "depression: positive pulse (P -> AP)"


def test_certain_switching_writes_the_input_pattern():
    s = small(p_start=0.999)
    chip = make_chip(20 * 128)
    p = TrainHebbian("t", s, chip, seed=0)
    p._initialise()
    x = p.x_train[11]
    _, j = p._learn(x, 0.999)
    level = chip.read(p.index[j].reshape(-1)).level[:, 0]
    # active rows -> P (level 0), inactive rows -> AP (level 1); device-to-device spread of Delta and
    # Vc0 leaves some devices well below the nominal p = 0.999: allow up to 10 % misses
    mismatch = int((level != (x == 0).long()).sum())
    assert mismatch <= 13
    w = p.weights()[j]
    assert float(w[x > 0].mean()) > 0.8 and float(w[x == 0].mean()) < -0.8


def test_switching_probability_sets_the_learning_rate():
    flips = {}
    for prob in (0.05, 0.5):
        chip = make_chip(20 * 128)
        p = TrainHebbian("t", small(p_start=prob, init_p=0.0), chip, seed=0)  # all start in P
        p._initialise()
        x = p.x_train[3]
        _, j = p._learn(x, prob)
        level = chip.read(p.index[j].reshape(-1)).level[:, 0]
        inactive = x == 0  # these got P -> AP pulses with probability prob
        flips[prob] = float(level[inactive].float().mean())
    # each is a mean of ~64 Bernoulli draws with device spread: well separated
    assert flips[0.05] < 0.2 < flips[0.5]


def test_pulse_voltage_outside_envelope_is_refused():
    chip = make_chip(20 * 128)
    chip.envelope = dataclasses.replace(chip.envelope, amplitude_max=0.7, amplitude_min=-0.7)
    TrainHebbian("t", small(p_start=0.01), chip, seed=0)  # needs +0.67 V / -0.50 V: allowed
    with pytest.raises(EnvelopeError):
        TrainHebbian("t", small(p_start=0.1), chip, seed=0)  # depression needs +0.72 V
    with pytest.raises(EnvelopeError):
        TrainHebbian("t", small(p_start=0.01, p_end=0.1), chip, seed=0)  # the schedule's end does
    assert chip.counters.pulses == 0


def test_homeostasis_spreads_wins():
    shares = {}
    for homeostasis in (True, False):
        chip = make_chip(20 * 128)
        p = TrainHebbian("t", small(homeostasis=homeostasis, baseline=False), chip, seed=0)
        RunEngine(chip, None, checkpoint_every_s=None).run(p)
        shares[homeostasis] = p.results["max_win_fraction"]
    # 20 neurons: a fair share is 5 %
    assert shares[True] < 0.15
    assert shares[False] > 2 * shares[True]


def test_reduced_digits_run_learns():
    chip = make_chip(40 * 128)
    s = HebbianSettings(neurons=40, epochs=2, p_start=0.2, p_end=0.05, baseline=False)
    p = TrainHebbian("t", s, chip, seed=0)
    RunEngine(chip, None, checkpoint_every_s=None).run(p)
    # chance is 10 %. Measured (protocol/chip seeds 0/1 .. 3/4): 5-neuron vote 70-74 %, single winner
    # 57-66 %, the vote ahead by 6-17 points each time (the binomial std of one accuracy on 450 test
    # images is about 2 points). This run (seeds 0/1): 74 % and 57 %.
    assert p.results["accuracy"] > 0.62
    assert p.results["accuracy_winner"] > 0.50
    assert p.results["accuracy"] > p.results["accuracy_winner"]
    assert p.energy["potentiation_pulses"] == p.energy["depression_pulses"]  # complement rows: half active


def test_state_dict_round_trip_continues_identically():
    chip = make_chip(20 * 128)
    s = small(epochs=2, baseline=False)
    p = TrainHebbian("t", s, chip, seed=4)
    gen = p.run(ctx(chip))
    for _ in range(5):
        next(gen)
    state = copy.deepcopy(p.state_dict())
    chip_copy = copy.deepcopy(chip)
    for _ in gen:
        pass
    q = TrainHebbian("t", s, chip_copy, seed=4)
    q.load_state_dict(state)
    for _ in q.run(ctx(chip_copy)):
        pass
    assert torch.equal(p.conductance, q.conductance)
    assert torch.equal(p.theta, q.theta)
    assert p.results["accuracy"] == q.results["accuracy"]
    assert chip.counters.energy_j == chip_copy.counters.energy_j
    np.testing.assert_array_equal(p.wins.numpy(), q.wins.numpy())


def test_depression_ratio_sets_the_depression_probability():
    chip = make_chip(20 * 128)
    s = small(p_start=0.3, depression_ratio=0.3)
    p = TrainHebbian("t", s, chip, seed=0)
    v_pot, v_dep = p.voltages(0.3)
    sym_pot, sym_dep = TrainHebbian("t", small(p_start=0.3), chip, seed=0).voltages(0.3)
    assert v_pot == sym_pot and 0 < v_dep < sym_dep
    width = torch.tensor(s.pulse_width, dtype=torch.float64)
    law = thermal_switching(torch.tensor([v_dep, -v_pot], dtype=torch.float64), width,
                            torch.tensor([s.delta_p2ap, s.delta_ap2p], dtype=torch.float64),
                            torch.tensor([s.vc0_p2ap, s.vc0_ap2p], dtype=torch.float64))
    torch.testing.assert_close(law, torch.tensor([0.09, 0.3], dtype=torch.float64), rtol=1e-6, atol=1e-9)


def test_first_k_neurons_follow_the_lif_firing_order():
    chip = make_chip(20 * 128)
    p = TrainHebbian("t", small(), chip, seed=0)
    p._initialise()
    w = p.weights()
    winner, fired = p.classify(w, p.x_test)
    top = p.first_k(w, p.x_test, 5)
    assert top.shape == (len(p.x_test), 5)
    assert torch.equal(top[:, 0], winner), "the first of the k is the LIF winner"
    current = p.x_test.double() @ w.T
    assert bool((current.gather(1, top).diff(dim=1) <= 0).all()), "then in order of firing (current)"


def test_class_response_rates_and_vote():
    # 4 neurons, 2 classes; class 0 has 3 samples, class 1 has 1 (rates are per sample of a class)
    top = torch.tensor([[0, 1], [0, 1], [0, 2], [2, 1]])
    y = torch.tensor([0, 0, 0, 1])
    rates = class_response_rates(top, y, 4, 2)
    torch.testing.assert_close(rates.sum(1), torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64))
    # neuron 1: 2 of 3 class-0 samples, 1 of 1 class-1 samples -> (2/3, 1) / (5/3)
    torch.testing.assert_close(rates[1], torch.tensor([0.4, 0.6], dtype=torch.float64))
    torch.testing.assert_close(rates[0], torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert bool((rates[3] == 0).all()), "a neuron that never responds has no vote"
    pred = vote_predict(rates, torch.tensor([[0, 3], [1, 2], [3, 3]]))
    assert pred.tolist() == [0, 1, 0]  # neuron 2: (1/3, 1)/(4/3) -> class 1; silent neurons: lowest class


def test_labels_are_used_only_after_training():
    # training with the training labels shuffled gives the very same chip state and wins: the layer is
    # unsupervised, labels only name neurons and read out after training
    runs = []
    for shuffle in (False, True):
        chip = make_chip(20 * 128)
        p = TrainHebbian("t", small(baseline=False), chip, seed=0)
        if shuffle:
            p.y_train = p.y_train[torch.randperm(len(p.y_train), generator=torch.Generator().manual_seed(9))]
        RunEngine(chip, None, checkpoint_every_s=None).run(p)
        runs.append(p)
    assert torch.equal(runs[0].conductance, runs[1].conductance)
    assert torch.equal(runs[0].wins, runs[1].wins)
    assert runs[0].results["accuracy"] > runs[1].results["accuracy"] + 0.2  # shuffled names: near chance
