"""Results table of K-state DW-MTJ training: K = 2, 3, 5, in-situ and ex-situ.

A 64-32-10 MLP on the 8x8 digits (analog inputs in [0, 1]; test split 25 %, split seed 0;
validation 20 % of the training split), one K-state DW-MTJ per weight, stations
``sim-dwmtj{K}-mlp`` (2368 devices with device-to-device spread). The ``train-kstate`` protocol
is run on the direct simulated backend with its defaults (Adam lr 0.02, batch 64, up to 100
epochs, patience 20, margin 0.2 level units, write-verify with at most 5 rounds); the float
network of the same shape is trained with the same optimiser and early stopping. Accuracy in %,
mean +- std over training seeds; energies in joules, per run (programming) or per test
inference (one read of every synapse).

    python bench/results_kstate.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labctl.config import load_station  # noqa: E402
from labctl.engine import RunContext  # noqa: E402
from labctl.station import open_chip  # noqa: E402
from protocols.kstate import KStateSettings, KStateTraining  # noqa: E402
from protocols.training import prepare_data, train_float  # noqa: E402


def run_one(k: int, mode: str, seed: int) -> dict:
    chip = open_chip(load_station(f"sim-dwmtj{k}-mlp"))
    proto = KStateTraining(f"k{k}-{mode}", KStateSettings(mode=mode, float_baseline=False), chip, seed=seed)
    for _ in proto.run(RunContext(chip, None)):
        pass
    return proto.summary()


def fmt(values, scale=100.0, digits=1):
    v = np.asarray(values, dtype=float) * scale
    return f"{v.mean():.{digits}f} +- {v.std():.{digits}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    t0 = time.perf_counter()
    s = KStateSettings()
    data = prepare_data(s, binary=False)
    flo = [train_float(data, [data.features, *s.hidden, data.classes], seed=sd, lr=s.lr, batch_size=s.batch_size,
                       max_epochs=s.max_epochs, patience=s.patience)["test_accuracy"] for sd in seeds]
    print(f"Digits 8x8 (analog inputs), MLP 64-32-10, {args.seeds} seeds; accuracy in % (mean +- std)\n")
    print("| K | mode | test acc on chip | model acc | epochs (best) | programming pulses | programming energy (J) "
          "| write-verify success | final programming (J) | reads / inference | energy / inference (J) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    table = {}
    for k in (2, 3, 5):
        for mode in ("insitu", "exsitu"):
            rs = [run_one(k, mode, sd) for sd in seeds]
            table[(k, mode)] = rs
            m = lambda key: np.mean([r[key] for r in rs])  # noqa: E731
            print(f"| {k} | {mode} | {fmt([r['test_accuracy'] for r in rs])} | {fmt([r['model_test_accuracy'] for r in rs])} "
                  f"| {m('best_epoch'):.0f} | {m('programming_pulses'):.0f} | {m('programming_energy_j'):.3g} "
                  f"| {100 * m('write_verify_success'):.2f} % | {m('final_programming_energy_j'):.3g} "
                  f"| {m('inference_reads'):.0f} | {m('inference_energy_j'):.3g} |", flush=True)
    print(f"| float | - | {fmt(flo)} | - | - | - | - | - | - | - | - |")
    gap = 100 * (np.mean(flo) - np.mean([r["test_accuracy"] for r in table[(5, "insitu")]]))
    print(f"\n5-state in-situ vs float: {gap:+.2f} points below float (criterion: within 2)")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
