"""Calibration recovers the simulator's own parameters (foundation acceptance).

Coverage argument used below: if a 95 % interval is calibrated, the number of devices whose
interval holds the true value is Binomial(n, 0.95). For n = 64 the expected number of misses
is 3.2 and at least 90 % coverage (at most 6 misses) holds with probability about 0.95 for any
seed; the seeds are fixed, so the tests are deterministic, and a badly calibrated interval
(say 80 % real coverage: 12.8 misses expected) fails them with probability above 0.99.
"""

from __future__ import annotations

import torch

from labctl.runs import prepare
from labctl.engine import RunContext
from protocols.calibration import Calibration


def calibrate(protocol_name: str, station_name: str, **overrides) -> Calibration:
    protocol, chip, _, _ = prepare(protocol_name, station_name, seed=0, overrides=overrides)
    assert isinstance(protocol, Calibration)
    for _ in protocol.run(RunContext(chip, None)):
        pass
    return protocol


def coverage(fit, name: str, truth: torch.Tensor) -> float:
    low, high = fit.interval(name)
    truth = truth.double()
    return float(((low <= truth) & (truth <= high)).double().mean())


def test_dw_nanowire_x0_inside_interval_for_90_percent_of_64_wires():
    protocol = calibrate("calibrate-dw", "sim-dw")  # 64 wires, 25 amplitudes x 200 trials
    assert protocol.n == 64 and len(protocol.amplitudes) == 25 and protocol.settings.repeats == 200
    devices = protocol.chip.devices
    assert float(devices.x0.std() / devices.x0.mean()) > 0.03  # there is device-to-device spread
    fit = protocol.fit
    assert bool(fit.converged.all())
    assert coverage(fit, "x0", devices.x0) >= 0.90
    # and the estimates follow the wires, not just the nominal value
    assert torch.corrcoef(torch.stack([fit.param("x0"), devices.x0.double()]))[0, 1] > 0.95


def test_stt_delta_and_vc0_recovered_from_two_widths():
    protocol = calibrate("calibrate-stt", "sim-stt")  # two widths: 10 ns and 100 ns
    assert len(protocol.widths) == 2
    devices = protocol.chip.devices
    fit = protocol.fit
    assert bool(fit.converged.all())
    assert coverage(fit, "delta", devices.delta_p2ap) >= 0.90
    assert coverage(fit, "vc0", devices.vc0_p2ap) >= 0.90


def test_dwmtj_landing_parameters_recovered():
    protocol = calibrate("calibrate-dwmtj", "sim-dwmtj")
    devices = protocol.chip.devices
    fit = protocol.fit
    assert bool(fit.converged.all())
    for name, truth in (("i_c", devices.i_c), ("mobility", devices.mobility), ("sigma", devices.sigma)):
        assert coverage(fit, name, truth) >= 0.90, name


def test_calibration_counts_only_through_batched_trials():
    protocol = calibrate("calibrate-dw", "sim-dw", repeats=10, points=5)
    c = protocol.chip.counters
    assert c.trials == 64 * 5 * 10 and c.pulses == c.trials and c.reads == c.trials
