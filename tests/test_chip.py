"""The SynapseArray contract: envelope before anything, index checks, counters."""

from __future__ import annotations

import pytest
import torch

from labctl.chip import EnvelopeError
from labctl.config import load_station
from labctl.station import open_chip


@pytest.fixture
def chip():
    return open_chip(load_station("sim-dw"))


def test_pulse_outside_envelope_is_refused_and_not_counted(chip):
    before = chip.counters
    state = chip.devices.state.clone()
    with pytest.raises(EnvelopeError, match=r"amplitude 0\.05 T for synapse 3 .* envelope \[-0\.02, 0\.012\] T"):
        chip.pulse([1, 3], torch.tensor([0.001, 0.05]), 1e-6)
    with pytest.raises(EnvelopeError, match="width"):
        chip.trial(None, 4e-3, 1.0, repeats=5)  # 1 s pulse: outside [1e-8, 1e-3] s
    with pytest.raises(EnvelopeError):
        chip.trial_levels(None, float("nan"), 1e-6)
    assert chip.counters == before
    assert torch.equal(chip.devices.state, state)


def test_index_and_shape_errors_are_clear(chip):
    with pytest.raises(IndexError, match="synapse index 64 is out of range: the chip has 64 synapses"):
        chip.reset([0, 64])
    with pytest.raises(ValueError, match=r"one value per selected synapse \(2\)"):
        chip.pulse([0, 1], torch.tensor([1e-3, 2e-3, 3e-3]), 1e-6)
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        chip.trial(None, 4e-3, 1e-6, repeats=0)


def test_repeated_indices_batch_a_sweep_in_one_call(chip):
    idx = torch.arange(4).repeat(3)  # each synapse at three amplitudes
    amplitude = torch.tensor([1e-3, 4.6e-3, 1e-2]).repeat_interleave(4)
    counts = chip.trial(idx, amplitude, 1e-6, repeats=400).reshape(3, 4)
    assert bool((counts[0] < 40).all()) and bool((counts[2] > 360).all())
    assert chip.counters.trials == 12 * 400


def test_read_returns_signal_and_levels(chip):
    chip.reset(None)
    result = chip.read([0, 1, 2], repeats=4)
    assert result.signal.shape == (3, 4) and torch.equal(result.level, torch.zeros(3, 4, dtype=torch.int64))
    assert chip.counters.reads == 12


def test_values_on_the_envelope_limits_are_allowed(chip):
    """float32 amplitudes equal to the limits (1.2e-2 is not exact in float32) pass; just beyond fails."""
    chip.pulse([0, 1], torch.tensor([0.012, -0.02]), torch.tensor([1e-3, 1e-8]))
    chip.pulse(None, 0.012, 1e-8)
    with pytest.raises(EnvelopeError, match="synapse 1"):
        chip.pulse([0, 1], torch.tensor([0.012, 0.0121]), 1e-6)
