"""Device physics: laws, random streams, exact batched trials, read errors, energy, scale."""

from __future__ import annotations

import math

import pytest
import torch

from analysis.energy import electrical_pulse_energy
from analysis.switching_laws import (
    gaussian_depinning,
    level_probabilities,
    logistic_depinning,
    read_confusion,
    thermal_switching,
)
from simulated_bench.physics import DWMTJArray, DWNanowireArray, STTMTJArray


def z_bound(p: float, n: int, z: float = 4.0) -> float:
    """Half-width of a z-sigma band for an empirical frequency of n Bernoulli(p) draws.

    With z = 4 a correct model fails such a check with probability below 1e-4.
    """
    return z * math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------------------- laws
def test_logistic_law_has_published_floor_and_midpoint():
    x0, dx, a = torch.tensor(4.63168), torch.tensor(2.72741), torch.tensor(0.97813)
    assert float(logistic_depinning(torch.tensor(-100.0), x0, dx, a)) == pytest.approx(1 - 0.97813, abs=1e-6)
    assert float(logistic_depinning(x0, x0, dx, a)) == pytest.approx(1 - 0.97813 / 2, abs=1e-6)
    # 10-90 % width of the sigmoid part: 2*ln(9)/dx, about 1.6 units of h (REFERENCES.md)
    assert 2 * math.log(9) / 2.72741 == pytest.approx(1.6, abs=0.02)


def test_gaussian_law_matches_its_logistic_approximation():
    h = torch.linspace(-4, 4, 81)
    erf_curve = gaussian_depinning(h, torch.tensor(0.0), torch.tensor(1.0))
    logistic = torch.sigmoid(1.7 * h)
    assert float((erf_curve - logistic).abs().max()) < 0.01  # the classic 1.7 approximation


def test_thermal_law_matches_closed_form_and_saturates():
    v, t = torch.tensor(0.7), torch.tensor(10e-9)
    p = thermal_switching(v, t, torch.tensor(45.0), torch.tensor(0.8), 1e-9)
    expected = 1 - math.exp(-(10e-9 / 1e-9) * math.exp(-45 * (1 - 0.7 / 0.8)))
    assert float(p) == pytest.approx(expected, rel=1e-5)
    assert float(thermal_switching(torch.tensor(5.0), t, torch.tensor(45.0), torch.tensor(0.8))) == 1.0
    longer = thermal_switching(v, torch.tensor(100e-9), torch.tensor(45.0), torch.tensor(0.8))
    assert float(longer) > float(p)


def test_level_probabilities_sum_to_one_and_match_sampling():
    gen = torch.Generator().manual_seed(0)
    probs = level_probabilities(torch.tensor([1.3]), torch.tensor([0.4]), 5)[0]
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
    x = 1.3 + 0.4 * torch.randn(200_000, generator=gen)
    empirical = torch.bincount(x.round().clamp(0, 4).long(), minlength=5).float() / len(x)
    for k in range(5):
        assert abs(float(empirical[k] - probs[k])) < z_bound(float(probs[k]), len(x)) + 1e-4


def test_read_confusion_rows_are_distributions_and_diagonal_dominant():
    levels = torch.tensor([[1000.0, 1500.0, 2000.0]])
    conf = read_confusion(levels, torch.tensor([100.0]))[0]
    assert torch.allclose(conf.sum(-1), torch.ones(3), atol=1e-6)
    # P(misread middle level) = 2 * P(N(0,100) > 250) = 2 * Q(2.5) = 0.0124
    assert float(1 - conf[1, 1]) == pytest.approx(2 * 0.5 * math.erfc(2.5 / math.sqrt(2)), rel=1e-4)
    descending = read_confusion(levels.flip(-1), torch.tensor([100.0]))[0]
    assert torch.allclose(descending, conf.flip(0).flip(1), atol=1e-6)


def test_pulse_energy_reference_value():
    # REFERENCES.md: a 0.5 V, 10 ns pulse on 5 kOhm dissipates 0.5 pJ
    e = electrical_pulse_energy(torch.tensor(0.5), torch.tensor(5e3), torch.tensor(10e-9))
    assert float(e) == pytest.approx(0.5e-12, rel=1e-6)


# ---------------------------------------------------------------------------- random streams
def test_construction_does_not_depend_on_use_and_reads_do_not_change_writes():
    a = DWNanowireArray(1000, seed=7)
    b = DWNanowireArray(1000, seed=7)
    assert torch.equal(a.x0, b.x0) and torch.equal(a.dx, b.dx)
    a.read(None, repeats=5)  # extra reads on one chip only ...
    ca = a.trial(None, torch.tensor(4.6e-3), 1e-6, repeats=10)
    cb = b.trial(None, torch.tensor(4.6e-3), 1e-6, repeats=10)
    assert torch.equal(ca, cb)  # ... leave the write outcomes unchanged
    c = DWNanowireArray(1000, seed=8)
    assert not torch.equal(a.x0, c.x0)


def test_state_dict_round_trip_reproduces_the_future():
    chip = STTMTJArray(500, seed=3)
    chip.trial(None, torch.tensor(0.75), 1e-8, repeats=4)
    saved = chip.state_dict()
    first = chip.trial(None, torch.tensor(0.75), 1e-8, repeats=16)
    other = STTMTJArray(500, seed=3)
    other.load_state_dict(saved)
    assert torch.equal(other.trial(None, torch.tensor(0.75), 1e-8, repeats=16), first)


# ---------------------------------------------------------------------------- trials
@pytest.mark.parametrize("repeats", [1, 50])
def test_binary_trial_frequency_matches_law_with_read_errors(repeats):
    n = 20_000
    chip = DWNanowireArray(n, seed=1, x0_spread=0.0, dx_spread=0.0, a_spread=0.0, read_noise=4e-4)
    h = torch.tensor(4.8e-3)
    p = float(logistic_depinning(h, torch.tensor(4.63168e-3), torch.tensor(2.72741e3), torch.tensor(0.97813)))
    e = 0.5 * math.erfc(1e-3 / (2 * math.sqrt(2) * 4e-4))  # threshold read error, contrast 1 mV
    p_read = p * (1 - e) + (1 - p) * e
    switched = chip.trial_switched(None, h, 1e-6, repeats)
    freq = float(switched.sum()) / (n * repeats)
    assert abs(freq - p_read) < z_bound(p_read, n * repeats)
    assert chip.counters.trials == n * repeats and chip.counters.reads == n * repeats


def test_binomial_counts_have_binomial_variance():
    """One binomial sample per device must have variance N p (1 - p), not that of a single draw."""
    n, repeats = 20_000, 64
    chip = STTMTJArray(n, seed=2, delta_spread=0.0, vc0_spread=0.0, r_spread=0.0, read_noise=1.0)
    v, t = torch.tensor(0.76), 1e-8
    p = float(chip.switch_probability(None, v, torch.tensor(t))[0])
    counts = chip.trial_switched(None, v, t, repeats).double()
    var = float(counts.var())
    expected = repeats * p * (1 - p)
    # The sample variance of n draws has relative std about sqrt(2/n) (near-Gaussian counts): 4 sigma.
    assert abs(var / expected - 1) < 4 * math.sqrt(2 / n)


def test_stuck_devices_never_change():
    chip = DWNanowireArray(100, seed=0)
    chip.stuck[:10] = True
    chip.state[:5] = 1
    chip.reset(None)
    assert torch.equal(chip.state[:5], torch.ones(5, dtype=torch.int64))
    counts = chip.trial_switched(None, torch.tensor(0.02), 1e-6, 20)
    assert torch.equal(counts[:5], torch.full((5,), 20)) and torch.equal(counts[5:10], torch.zeros(5, dtype=torch.int64))
    assert int(counts[10:].min()) > 15  # far above threshold the free wires switch


def test_dw_fast_path_equals_the_logistic_law():
    chip = DWNanowireArray(1000, seed=4)
    h = torch.linspace(-2e-3, 1e-2, 1000)
    law = logistic_depinning(h, chip.x0, chip.dx, chip.a)
    assert torch.allclose(chip.switch_probability(None, h, torch.tensor(1e-6)), law, atol=1e-6)
    idx = torch.tensor([5, 5, 7])
    assert torch.allclose(chip.switch_probability(idx, h[:3], torch.tensor(1e-6)),
                          logistic_depinning(h[:3], chip.x0[idx], chip.dx[idx], chip.a[idx]), atol=1e-6)


def test_stt_fast_path_equals_the_thermal_law():
    chip = STTMTJArray(1000, seed=4)
    v = torch.linspace(-0.2, 1.1, 1000)
    for width in (1e-8, 1e-7):
        fast = chip.switch_probability(None, v, torch.tensor(width))
        law = thermal_switching(v, torch.tensor(width), chip.delta_p2ap, chip.vc0_p2ap, chip.tau0)
        assert torch.allclose(fast, law, atol=2e-6, rtol=1e-4)
    # the opposite polarity raises the barrier: P -> AP is negligible, not a special case
    assert float(chip.switch_probability(None, torch.tensor(-0.5), torch.tensor(1e-8)).max()) < 1e-25


def test_stt_polarity_and_energy():
    chip = STTMTJArray(1000, seed=0, read_noise=1.0)
    chip.reset(None)
    chip.pulse(None, torch.tensor(-1.0), torch.tensor(1e-7))  # AP->P polarity on devices already in P
    assert int(chip.state.sum()) == 0
    chip.pulse(None, torch.tensor(1.2), torch.tensor(1e-7))
    assert int(chip.state.sum()) == 1000  # far above Vc0: all switch to AP
    before = chip.counters.energy_j
    chip.pulse(None, torch.tensor(-1.2), torch.tensor(1e-7))
    assert int(chip.state.sum()) == 0
    expected = float((1.2**2 / chip.r_ap * 1e-7).sum())  # V^2/R*t with R = R_AP at pulse time
    assert chip.counters.energy_j - before == pytest.approx(expected, rel=1e-4)


def test_million_synapses_fit_in_memory_and_time():
    chip = DWNanowireArray(1_000_000, seed=0)
    counts = chip.trial_switched(None, torch.full((1_000_000,), 4.6e-3), 1e-6, 8)
    assert counts.shape == (1_000_000,) and 0.3 < float(counts.float().mean()) / 8 < 0.7


# ---------------------------------------------------------------------------- DW-MTJ levels
def test_dwmtj_programming_error_rate_matches_landing_model():
    """Program every level from reset with each device's exact pulse; compare the empirical
    level-error rate with the rate the landing model predicts for those devices.

    Each device contributes an independent Bernoulli(error_i) outcome, so the count of errors
    over m programmings has variance sum error_i (1 - error_i); we allow 4 standard deviations.
    """
    n, levels, width = 4000, 5, 10e-9
    chip = DWMTJArray(n, levels=levels, seed=5, sigma=0.3, read_noise=1.0)
    for target in range(1, levels):
        chip.reset(None)
        current = chip.programming_current(None, torch.full((n,), float(target)), width)
        chip.pulse(None, current, torch.tensor(width))
        wrong = (chip.state != target).double()
        probs = level_probabilities(torch.full((n,), float(target)), chip.sigma, levels)
        predicted = 1.0 - probs[:, target].double()
        sd = math.sqrt(float((predicted * (1 - predicted)).sum()))
        assert abs(float(wrong.sum() - predicted.sum())) < 4 * sd + 1
        # the configured spread shows in the rate: interior levels miss on both sides
        if 0 < target < levels - 1:
            nominal = math.erfc(0.5 / (0.3 * math.sqrt(2)))
            assert 0.5 * nominal < float(wrong.mean()) < 2 * nominal
    # a read of the programmed chip decodes the levels it holds (read noise of 1 ohm is negligible)
    assert torch.equal(chip.read(None)[1][:, 0], chip.state)


def test_dwmtj_trial_levels_match_multinomial_expectation():
    n, repeats = 2000, 200
    chip = DWMTJArray(n, levels=3, seed=9, i_c_spread=0.0, mobility_spread=0.0, sigma_spread=0.0, read_noise=1.0)
    current = chip.programming_current(None, torch.full((n,), 1.0), 10e-9)
    counts = chip.trial(None, current, torch.tensor(10e-9), repeats)
    assert torch.equal(counts.sum(-1), torch.full((n,), repeats))
    expected = level_probabilities(torch.tensor([1.0]), torch.tensor([0.15]), 3)[0]
    freq = counts.sum(0).double() / (n * repeats)
    for k in range(3):
        assert abs(float(freq[k] - expected[k])) < z_bound(float(expected[k]), n * repeats) + 1e-6
