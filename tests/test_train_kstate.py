"""K-state DW-MTJ quantised training (protocols/kstate.py): real behaviour on the simulated chip, fixed seeds."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from labctl.config import load_station
from labctl.engine import RunContext, RunEngine, SUMMARY, SUMMARY_SPEC
from labctl.station import open_chip
from labctl.store import RunReader, RunWriter
from protocols import REGISTRY
from protocols.kstate import KStateSettings, KStateTraining, retarget, weight_position, write_verify


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def chip_k(k=5, n=None, envelope=None):
    st = load_station(f"sim-dwmtj{k}-mlp")
    update = {}
    if n is not None:
        update["chip"] = st.chip.model_copy(update={"n": n})
    if envelope:
        update["envelope"] = st.envelope.model_copy(update=envelope)
    return open_chip(st.model_copy(update=update))


def small(**kw):
    base = dict(hidden=[16], max_epochs=3, patience=3, float_baseline=False)
    base.update(kw)
    return KStateSettings(**base)


def run_all(proto, chip):
    for _ in proto.run(RunContext(chip, None)):
        pass
    return proto.summary()


def test_registered_and_stations():
    assert REGISTRY["train-kstate"] is KStateTraining
    for k in (2, 3, 5):
        chip = chip_k(k)
        assert chip.levels == k and chip.n >= 64 * 32 + 32 * 10


def test_hysteresis_margin():
    """A synapse moves to a new level only when its shadow weight is past the boundary by > margin."""
    k, margin = 5, 0.2
    target = torch.zeros(6, dtype=torch.long) + 2
    pos = torch.tensor([2.0, 2.6, 2.69, 2.71, 1.29, 0.2])  # level coordinates
    w = pos / (k - 1) * 2 - 1
    assert torch.allclose(weight_position(w, k), pos)
    new, changed = retarget(w, target, k, margin)
    # |pos - 2| > 0.7 only for 2.71 (-> 3), 1.29 (-> 1) and 0.2 (-> 0)
    assert changed.tolist() == [False, False, False, True, True, True]
    assert new.tolist() == [2, 2, 2, 3, 1, 0]
    # with no margin the plain rounding quantiser is recovered
    new0, _ = retarget(w, target, k, 0.0)
    assert torch.equal(new0, pos.round().long())


def test_write_verify_reaches_targets():
    """From reset, bounded write-verify reaches >= 99 % of random targets; one shot alone does worse.

    The device model's nominal I_c and mobility are off by the devices' 5 % spreads, so a single
    pulse misses a few per cent of targets (by a site); each verify round re-pulses those from
    where they landed. 99 % after 5 rounds is the documented guarantee (observed: all of them).
    """
    n = 2000
    out = {}
    for rounds in (1, 5):
        chip = chip_k(5, n=n)
        target = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(0))
        idx = torch.arange(n)
        chip.reset(idx)
        before = chip.counters.pulses
        got, used = write_verify(chip, idx, target, torch.zeros(n, dtype=torch.long), i_c=100e-6, mobility=2e12,
                                 width=1e-8, max_attempts=rounds)
        assert torch.equal(chip.read(idx).level[:, 0], got)  # what it reports is what the chip holds
        out[rounds] = (float((got == target).float().mean()), chip.counters.pulses - before, used)
    assert out[5][0] >= 0.99
    assert out[1][0] < out[5][0]
    assert out[1][1] == int((torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(0)) != 0).sum())
    assert out[5][1] > out[1][1]  # the extra pulses went to the misses only
    assert out[5][1] - out[1][1] < 0.2 * n


def test_only_changed_synapses_are_reprogrammed():
    chip = chip_k(5)
    proto = KStateTraining("t", small(hidden=[32]), chip, seed=0)
    gen = proto.run(RunContext(chip, None))
    next(gen)  # initial programming
    pulsed = []
    original = chip.pulse

    def spy(idx, amplitude, width):
        pulsed.append(torch.as_tensor(idx).clone())
        return original(idx, amplitude, width)

    chip.pulse = spy
    total_changed = 0
    for _ in range(6):
        old_target = proto.target.clone()
        pulsed.clear()
        next(gen)
        changed = (proto.target != old_target).nonzero().squeeze(1)
        total_changed += len(changed)
        hit = torch.cat(pulsed).unique() if pulsed else torch.empty(0, dtype=torch.long)
        assert set(hit.tolist()) <= set(changed.tolist())
        # every changed synapse whose level differed from its new target got at least one pulse
        assert len(hit) >= len(changed) - 5
    gen.close()
    assert total_changed > 0  # the test exercised re-programming
    assert total_changed < 0.2 * 6 * proto.synapses


@pytest.mark.parametrize("mode", ["insitu", "exsitu"])
def test_training_beats_chance_and_accounts_energy(tmp_path, mode):
    chip = chip_k(5)
    proto = KStateTraining("t", small(mode=mode, hidden=[32], max_epochs=6, patience=6), chip, seed=0)
    out = tmp_path / "run.h5"
    writer = RunWriter(out, attrs={"seed": 0}, schema={**proto.describe(), SUMMARY: SUMMARY_SPEC})
    outcome = RunEngine(chip, writer, checkpoint_every_s=None).run(proto)
    assert outcome.status == "success"
    s = outcome.summary
    assert s["test_accuracy"] > 0.7  # chance: 0.1
    assert s["levels_on_target"] > 0.99
    assert s["inference_reads"] == proto.synapses and s["inference_energy_j"] > 0
    if mode == "insitu":
        assert s["programming_pulses"] > 0 and s["programming_energy_j"] > 0 and s["final_programming_pulses"] == 0
    else:  # no chip access during training; programmed once at the end
        assert s["programming_pulses"] == 0 and s["final_programming_pulses"] >= int((proto.target != 0).sum())
    with RunReader(out) as r:
        assert len(r.dataset("train/metrics")) == s["epochs"]
        assert np.array_equal(r.dataset("model/target_levels"), proto.target.numpy())
        ledger = r.dataset("energy/ledger")
        assert ledger["pulses"][0] == s["programming_pulses"]


def test_envelope_is_never_exceeded():
    """A tight current envelope (one pulse cannot move the wall 4 sites) clips, and verify finishes the job."""
    amax = 250e-6
    chip = chip_k(5, envelope={"amplitude_min": -amax, "amplitude_max": amax})
    seen = []
    original = chip.pulse

    def spy(idx, amplitude, width):
        seen.append(float(torch.as_tensor(amplitude).abs().max()))
        return original(idx, amplitude, width)

    chip.pulse = spy
    proto = KStateTraining("t", small(max_epochs=2), chip, seed=0)
    summary = run_all(proto, chip)
    assert max(seen) <= amax and max(seen) == pytest.approx(amax)
    assert summary["levels_on_target"] > 0.99


@pytest.mark.parametrize("mode", ["insitu", "exsitu"])
def test_state_dict_round_trip_continues_identically(mode):
    s = small(mode=mode)
    chip_a = chip_k(5)
    a = KStateTraining("a", s, chip_a, seed=2)
    summary_a = run_all(a, chip_a)
    chip_b = chip_k(5)
    b = KStateTraining("b", s, chip_b, seed=2)
    gen = b.run(RunContext(chip_b, None))
    for _ in range(b.batches + 4):
        next(gen)
    buffer = io.BytesIO()
    torch.save(b.state_dict(), buffer)
    gen.close()
    buffer.seek(0)
    c = KStateTraining("c", s, chip_b, seed=2)
    c.load_state_dict(torch.load(buffer, weights_only=False))
    summary_c = run_all(c, chip_b)
    for wa, wc in zip(a.w, c.w):
        assert torch.equal(wa, wc)
    assert torch.equal(a.target, c.target)
    assert summary_a["test_accuracy"] == summary_c["test_accuracy"]
    assert summary_a["programming_pulses"] == summary_c["programming_pulses"]
