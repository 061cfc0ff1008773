"""Acceptance: the calibration protocol, unchanged, on the Kerr bench and on the TMR bench over
sockets recovers the same parameters as the direct simulated backend with the same physics seed.

Tolerance: the bench and the direct backend draw independent trials from the same devices, so
for each synapse and parameter the two maximum-likelihood estimates differ by a normal variable
of standard deviation sqrt(se_bench^2 + se_direct^2) (Wald standard errors from the fits). We
accept |difference| <= 4 such deviations: per comparison a false alarm has probability 6e-5, so
over the <= 32 comparisons of one test below 2e-3 (and the seeds are fixed). Each estimate is
also checked against the device's true parameter with the same 4-sigma bound.
"""

from __future__ import annotations

import torch

from labctl.config import load_station
from labctl.engine import RunEngine
from labctl.station import open_chip
from protocols.calibration import Calibration, CalibrationSettings

Z = 4.0


def calibrate(station, settings):
    with open_chip(station) as chip:
        plan = Calibration("calibrate", settings, chip)
        outcome = RunEngine(chip, None, checkpoint_every_s=None).run(plan)
        assert outcome.status == "success", outcome.reason
        bench = getattr(chip, "bench", None)
        truth = bench.bench.devices if bench is not None else chip.devices
        return plan.fit, truth, chip.counters


def direct_twin(station):
    """The same station (chip, seed, physics) on the direct simulated backend."""
    header = station.station.model_copy(update={"backend": "simulated"})
    return station.model_copy(update={"station": header, "instruments": None, "bench": None})


def compare(fit_bench, fit_direct, names):
    ok = fit_bench.converged & fit_direct.converged
    assert ok.float().mean() >= 0.9
    for name in names:
        diff = (fit_bench.param(name) - fit_direct.param(name))[ok]
        sd = (fit_bench.stderr_of(name) ** 2 + fit_direct.stderr_of(name) ** 2).sqrt()[ok]
        z = (diff / sd).abs()
        assert (z <= Z).all(), f"{name}: bench and direct differ by up to {float(z.max()):.1f} sigma"
    return ok


def test_kerr_bench_calibration_matches_direct_backend():
    station = load_station("kerr-bench")
    # 12 fields x 100 trials per wire: x0 to about +-0.1 mT (se from the fit)
    settings = CalibrationSettings(amplitude_start=2.0e-3, amplitude_stop=7.5e-3, points=12, widths=[1e-6],
                                   repeats=100, law="logistic")
    fit_b, truth, counters = calibrate(station, settings)
    fit_d, truth_d, _ = calibrate(direct_twin(station), settings)
    assert torch.equal(truth.x0, truth_d.x0)  # same physics seed: the same wires
    ok = compare(fit_b, fit_d, ["x0", "dx"])
    z_true = ((fit_b.param("x0") - truth.x0.double()) / fit_b.stderr_of("x0")).abs()[ok]
    assert (z_true <= Z).all()
    trials = 16 * 12 * 100
    assert counters.trials == trials
    assert counters.transactions / trials * 1000 <= 10  # O(1) per wire: 6 per wire batch


def test_tmr_bench_calibration_matches_direct_backend():
    station = load_station("tmr-bench")
    # the embedded calibrate-stt grid, fewer points and trials: Delta, Vc0 jointly from two widths
    settings = CalibrationSettings(amplitude_start=0.5, amplitude_stop=0.95, points=10, widths=[1e-8, 1e-7],
                                   repeats=100, law="thermal", tau0=1e-9)
    fit_b, truth, counters = calibrate(station, settings)
    fit_d, truth_d, _ = calibrate(direct_twin(station), settings)
    assert torch.equal(truth.vc0_p2ap, truth_d.vc0_p2ap)
    ok = compare(fit_b, fit_d, ["delta", "vc0"])
    z_true = ((fit_b.param("vc0") - truth.vc0_p2ap.double()) / fit_b.stderr_of("vc0")).abs()[ok]
    assert (z_true <= Z).all()
    assert counters.trials == 16 * 2 * 10 * 100


def test_dwmtj_bench_calibration_matches_direct_backend():
    station = load_station("tmr-dwmtj-bench")
    # the embedded calibrate-dwmtj grid with half the points and trials: level histograms per point
    settings = CalibrationSettings(amplitude_start=80e-6, amplitude_stop=330e-6, points=13, widths=[1e-8, 2e-8],
                                   repeats=50, law="landing")
    fit_b, truth, counters = calibrate(station, settings)
    fit_d, truth_d, _ = calibrate(direct_twin(station), settings)
    assert torch.equal(truth.i_c, truth_d.i_c)
    ok = compare(fit_b, fit_d, ["i_c", "mobility", "sigma"])
    z_true = ((fit_b.param("i_c") - truth.i_c.double()) / fit_b.stderr_of("i_c")).abs()[ok]
    assert (z_true <= Z).all()
    assert counters.trials == 16 * 2 * 13 * 50
