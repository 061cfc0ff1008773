"""Acceptance (issue 4): reduced cases of method (a) (train-meanvar-bench) and method (d)
(train-hebbian-bench) run chip in the loop on the socket bench and agree with the direct backend.

Each case runs twice through the run engine, into a run file: on its socket-bench station (SCPI
simulators on 127.0.0.1, pyvisa-py) and on its direct twin (the same station on the direct
``simulated`` backend: same physics seed, so the very same devices; same protocol seed). The two
backends draw from different random streams, so the runs are not bit-equal; what must agree is
the statistics. The statistics and their tolerances:

1. **Every stochastic operation against the device law.** A spy records each training operation
   (meanvar: every ``chip.trial`` call -- calibration, training, validation and test -- with its
   switched counts; hebbian: every learning step, with the state of the winner's MTJs read before
   and after its pulses). The true switching probability of each attempt is known from the shared
   devices (``switch_probability`` / ``transition`` at the amplitude sent), so with ``K`` switched
   out of the attempts, ``E = sum p`` and ``V = sum p (1 - p)`` (independent Bernoulli trials,
   whatever their mix of devices and amplitudes), ``z = (K - E) / sqrt(V)`` is standard normal.
   Per backend: the pooled ``z`` and (meanvar) the ``z`` of every synapse. Bench vs direct: the
   backends see different amplitudes and device mixes, so they are compared through their residuals
   from the same true law, ``z_bd = ((K_b - E_b) - (K_d - E_d)) / sqrt(V_b + V_d)``, pooled and
   per synapse. Bound: |z| <= 4 for pooled figures (false alarm 6e-5 each), 4.5 per synapse (64
   synapses x 3 figures: below 2e-3 in all); the seeds are fixed, so a pass is reproducible.
2. **The calibration inside the meanvar run** (per wire x0, dx): as in
   ``test_instruments_calibration``, within 4 Wald standard errors of each other.
3. **The headline test accuracy.** Two runs classify the same ``n`` test samples; we accept
   ``|acc_b - acc_d| <= 3 sqrt(2 a (1 - a) / n)`` (``a`` their mean): 3 binomial standard errors
   of the difference of two accuracies on ``n`` samples. The binomial standard error is a fair
   proxy for the run-to-run spread: on the direct backend, protocol seeds 0-5 give a std of 0.037
   (meanvar, n = 181: difference std 0.052, bound 0.145) and 0.065 (hebbian, n = 38: difference std
   0.092, bound about 0.3; Hebbian WTA on 112 iris samples is itself that noisy).

Also: the socket run really went through the instruments (transactions counted at the links,
bounded by the per-device batch cost: 6 per wire batch on the Kerr bench, 5 per device on the TMR
bench, plus a fixed allowance for the final safe state), and it ended with every instrument in its
safe state, asked over its socket.
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from labctl.runs import build, create_run_file
from labctl.config import load_protocol_file, load_station
from labctl.engine import RunEngine
from labctl.store import RunReader
from protocols.meanvar import MeanVarSettings, reduce_data
from protocols.training import prepare_data

from bench_helpers import assert_safe_over_visa

Z_POOLED = 4.0
Z_SYNAPSE = 4.5
K_ACCURACY = 3.0
SAFE_STATE_ALLOWANCE = 100  # transactions of the final safe state (ramps, read-backs), generous


def direct_twin(station):
    """The same station (chip, seed, physics) on the direct simulated backend."""
    header = station.station.model_copy(update={"backend": "simulated"})
    return station.model_copy(update={"station": header, "instruments": None, "bench": None})


def devices_of(chip):
    bench = getattr(chip, "bench", None)
    return bench.bench.devices if bench is not None else chip.devices


class Spy:
    """Wraps a chip's operations on the instance: records trials and counts devices touched per call.

    ``groups``: the number of (device, width) batches the calls make (every protocol here uses one
    width per call), i.e. what the instrument backend turns into one waveform + one buffered read.
    """

    def __init__(self, chip):
        self.chip = chip
        self.groups = 0
        self.trials: list[tuple[torch.Tensor, torch.Tensor, float, int, torch.Tensor]] = []
        for name in ("reset", "pulse", "read", "trial"):
            setattr(chip, name, self._wrap(name, getattr(chip, name)))

    def _wrap(self, name, fn):
        def spied(idx, *args, **kwargs):
            self.groups += self.chip.n if idx is None else int(torch.as_tensor(idx).unique().numel())
            out = fn(idx, *args, **kwargs)
            if name == "trial":
                amplitude, width, repeats = args
                idx_t = torch.as_tensor(idx)
                amp = torch.as_tensor(amplitude, dtype=torch.float32).expand(idx_t.shape).clone()
                self.trials.append((idx_t.clone(), amp, float(width), int(repeats), out.clone()))
            return out
        return spied


def run_case(protocol: str, tmp_path, *, twin: bool, spy_learning: bool = False):
    """Run an embedded protocol through the engine into a run file; returns what the checks need."""
    pfile, source = load_protocol_file(protocol)
    station = load_station(pfile.protocol.station)
    if twin:
        station = direct_twin(station)
    plan, chip = build(pfile, source, station)
    try:
        spy = Spy(chip)
        steps = []
        if spy_learning:
            steps = spy_hebbian(plan)
        path = tmp_path / f"{protocol}-{station.station.backend}.h5"
        writer = create_run_file(plan, chip, station, pfile, path)
        tx0 = chip.counters.transactions
        t0 = time.perf_counter()
        outcome = RunEngine(chip, writer, checkpoint_every_s=None).run(plan)
        wall = time.perf_counter() - t0
        assert outcome.status == "success", outcome.reason
        counters = chip.counters
        if not twin:
            assert_safe_over_visa(chip.bench)  # the engine's final safe state, confirmed over the sockets
        with RunReader(path) as r:
            assert r.exit_status() == "success"
        return dict(plan=plan, spy=spy, steps=steps, devices=devices_of(chip), counters=counters,
                    transactions=counters.transactions - tx0, wall=wall)
    finally:
        chip.close()


def z_of(k, e, v):
    return (k - e) / math.sqrt(v) if v > 0 else 0.0


def accuracy_bound(a_b: float, a_d: float, n: int) -> float:
    a = 0.5 * (a_b + a_d)
    return K_ACCURACY * math.sqrt(2.0 * max(a * (1.0 - a), 1.0 / n) / n)


# ---------------------------------------------------------------------------- (a) mean/variance rule
def test_meanvar_reduced_data():
    """pool and classes shrink digits to a 16 -> 4 layer; a pool that does not divide the side is refused."""
    base = dict(data="digits", train_limit=500)
    data = reduce_data(prepare_data(MeanVarSettings(**base), binary=True), 2, 4)
    assert data.features == 16 and data.classes == 4
    for y in (data.y_train, data.y_val, data.y_test):
        assert len(y) and int(y.max()) == 3
    assert set(data.x_train.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="pool = 3"):
        reduce_data(prepare_data(MeanVarSettings(**base), binary=True), 3, None)


def trial_residuals(run) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per synapse: switched counts K, expected E = sum N p and variance V = sum N p (1 - p) of all trials."""
    dev = run["devices"]
    k = torch.zeros(dev.n, dtype=torch.float64)
    e = torch.zeros_like(k)
    v = torch.zeros_like(k)
    for idx, amp, width, repeats, counts in run["spy"].trials:
        p = dev.switch_probability(idx, amp, torch.tensor(width)).double()
        k.index_add_(0, idx, counts.double())
        e.index_add_(0, idx, repeats * p)
        v.index_add_(0, idx, repeats * p * (1.0 - p))
    return k, e, v


def test_meanvar_bench_matches_direct_backend(tmp_path):
    bench = run_case("train-meanvar-bench", tmp_path, twin=False)
    direct = run_case("train-meanvar-bench", tmp_path, twin=True)
    assert torch.equal(bench["devices"].x0, direct["devices"].x0)  # the same wires

    # 1. every trial of the run against the wires' law, and the two backends against each other
    kb, eb, vb = trial_residuals(bench)
    kd, ed, vd = trial_residuals(direct)
    used = (vb > 0) & (vd > 0)
    for k, e, v in ((kb, eb, vb), (kd, ed, vd)):
        assert abs(z_of(k.sum(), e.sum(), v.sum())) <= Z_POOLED
        assert ((k - e)[used] / v[used].sqrt()).abs().max() <= Z_SYNAPSE
    z_bd = ((kb - eb) - (kd - ed))[used] / (vb + vd)[used].sqrt()
    assert z_bd.abs().max() <= Z_SYNAPSE
    assert abs(z_of((kb - eb).sum() - (kd - ed).sum(), 0.0, (vb + vd).sum())) <= Z_POOLED

    # 2. the embedded calibration: per-wire fits within 4 Wald standard errors
    fb, fd = bench["plan"].calibration.fit, direct["plan"].calibration.fit
    ok = fb.converged & fd.converged
    assert ok.float().mean() >= 0.9
    z_cal = {}
    for name in ("x0", "dx"):
        sd = (fb.stderr_of(name) ** 2 + fd.stderr_of(name) ** 2).sqrt()[ok]
        z_cal[name] = float(((fb.param(name) - fd.param(name))[ok] / sd).abs().max())
        assert z_cal[name] <= Z_POOLED

    # 3. test accuracy (mean of the stochastic test passes) on the same test set
    rb, rd = bench["plan"].results, direct["plan"].results
    n_test = len(bench["plan"].data.y_test)
    bound = accuracy_bound(rb["test_accuracy"], rd["test_accuracy"], n_test)
    assert abs(rb["test_accuracy"] - rd["test_accuracy"]) <= bound
    assert rb["test_accuracy"] > 1.5 / bench["plan"].c  # it learned something (chance: 1 / classes)

    # the bench run went through the instruments, one wire batch per wire and call
    c = bench["counters"]
    assert c.trials == direct["counters"].trials > 0
    assert 0 < bench["transactions"] <= 6 * bench["spy"].groups + SAFE_STATE_ALLOWANCE
    print(f"\nmeanvar: test accuracy bench {rb['test_accuracy']:.3f} direct {rd['test_accuracy']:.3f} "
          f"(bound {bound:.3f}, n={n_test}); "
          f"pooled z bench {z_of(kb.sum(), eb.sum(), vb.sum()):+.2f} direct {z_of(kd.sum(), ed.sum(), vd.sum()):+.2f} "
          f"bench-direct {z_of((kb - eb).sum() - (kd - ed).sum(), 0.0, (vb + vd).sum()):+.2f}, "
          f"max |z| per wire {float(z_bd.abs().max()):.2f}; calibration max |z| x0 {z_cal['x0']:.2f} "
          f"dx {z_cal['dx']:.2f}; trials {c.trials}, transactions {bench['transactions']} "
          f"({1000 * bench['transactions'] / c.trials:.1f} per 1000 trials), wall bench {bench['wall']:.1f} s "
          f"direct {direct['wall']:.1f} s")


# ---------------------------------------------------------------------------- (d) Hebbian WTA
def spy_hebbian(plan) -> list:
    """Record, for every learning step, the winner's MTJ indices, pulse voltages and states before and after.

    The state before is the protocol's shadow (the last read of those MTJs: only the winner's own
    pulses change them between reads); after is the read-back that ``_learn`` does.
    """
    steps = []
    learn = plan._learn

    def spied(x, p):
        before = plan.conductance.clone()
        mid = 0.5 * (plan.g_p + plan.g_ap)
        fired, j = learn(x, p)
        if fired:
            v_pot, v_dep = plan.voltages(p)
            active = (x > 0).unsqueeze(1).expand(plan.rows, plan.k).reshape(-1)
            amplitude = torch.where(active, torch.tensor(v_pot), torch.tensor(v_dep)).float()
            start = (before[j].reshape(-1) < mid).long()  # 1 = AP (low conductance)
            end = (plan.conductance[j].reshape(-1) < mid).long()
            steps.append((plan.index[j].reshape(-1).clone(), amplitude, start, end, active))
        return fired, j

    plan._learn = spied
    return steps


def learning_residuals(run, which: str) -> tuple[float, float, float, int]:
    """Pooled K (MTJs that changed state), E = sum p_change, V = sum p (1 - p), attempts, over learning pulses.

    which: "potentiation" (negative pulses on MTJs in AP: AP -> P), "depression" (positive pulses on
    MTJs in P: P -> AP), "learning" (both) or "hold" (pulses toward the state an MTJ is already in:
    must not change it).
    """
    dev = run["devices"]
    width = torch.tensor(run["plan"].settings.pulse_width)
    k = e = v = 0.0
    attempts = 0
    for idx, amplitude, start, end, active in run["steps"]:
        p_ap = dev.transition(idx, start, amplitude, width)[:, 1].double()
        p_change = torch.where(start == 0, p_ap, 1.0 - p_ap)
        pot, dep = active & (start == 1), ~active & (start == 0)
        sel = {"potentiation": pot, "depression": dep, "learning": pot | dep,
               "hold": (active & (start == 0)) | (~active & (start == 1))}[which]
        changed = (end != start)[sel].double()
        q = p_change[sel]
        k += float(changed.sum())
        e += float(q.sum())
        v += float((q * (1.0 - q)).sum())
        attempts += int(sel.sum())
    return k, e, v, attempts


def test_hebbian_bench_matches_direct_backend(tmp_path):
    bench = run_case("train-hebbian-bench", tmp_path, twin=False, spy_learning=True)
    direct = run_case("train-hebbian-bench", tmp_path, twin=True, spy_learning=True)
    assert torch.equal(bench["devices"].vc0_ap2p, direct["devices"].vc0_ap2p)  # the same MTJs

    # 1. every learning pulse against the MTJs' thermal law, and the backends against each other
    figures = {}
    for which in ("learning", "potentiation", "depression"):
        kb, eb, vb, nb = learning_residuals(bench, which)
        kd, ed, vd, nd = learning_residuals(direct, which)
        least = 80 if which == "learning" else 20  # enough attempts for the check to mean something
        assert nb >= least and nd >= least, (which, nb, nd)
        zb, zd = z_of(kb, eb, vb), z_of(kd, ed, vd)
        z_bd = z_of((kb - eb) - (kd - ed), 0.0, vb + vd)
        assert max(abs(zb), abs(zd), abs(z_bd)) <= Z_POOLED, (which, zb, zd, z_bd)
        figures[which] = (kb / nb, eb / nb, nb, kd / nd, ed / nd, nd, z_bd)
    for run in (bench, direct):  # a pulse toward the state an MTJ is in never changes it (p < 1e-12)
        k, e, _, n = learning_residuals(run, "hold")
        assert n > 0 and k == 0 and e < 1e-6

    # 3. test accuracy (vote read-out) on the same test set
    rb, rd = bench["plan"].results, direct["plan"].results
    n_test = len(bench["plan"].data.y_test)
    bound = accuracy_bound(rb["accuracy"], rd["accuracy"], n_test)
    assert abs(rb["accuracy"] - rd["accuracy"]) <= bound

    # the bench run went through the instruments: at most 5 transactions per device batch
    c = bench["counters"]
    assert c.pulses > 0 and c.reads > 0 and c.transactions > 0
    assert 0 < bench["transactions"] <= 5 * bench["spy"].groups + SAFE_STATE_ALLOWANCE
    ops = c.pulses + c.reads + c.resets
    print(f"\nhebbian: accuracy bench {rb['accuracy']:.3f} direct {rd['accuracy']:.3f} "
          f"(bound {bound:.3f}, n={n_test}); "
          + "; ".join(f"{w} rate bench {f[0]:.3f} (law {f[1]:.3f}, n={f[2]}) direct {f[3]:.3f} (law {f[4]:.3f}, "
                      f"n={f[5]}) z_bd {f[6]:+.2f}" for w, f in figures.items())
          + f"; operations {ops}, transactions {bench['transactions']} ({1000 * bench['transactions'] / ops:.0f} per "
          f"1000 pulses/reads, {bench['transactions'] / bench['spy'].groups:.2f} per device batch), "
          f"wall bench {bench['wall']:.1f} s direct {direct['wall']:.1f} s")
