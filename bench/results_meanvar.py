"""Results table of the mean/variance rule (binary stochastic DW synapses): accuracy against measurements per synapse.

Single layer 64 -> 10 of stochastic binary DW synapses on the binarised 8x8 digits (test split:
25 %, split seed 0; validation: 20 % of the training split), station ``sim-dw-640`` (640 wires
with device-to-device spread, calibrated at the start of every run). For each N the
``train-meanvar`` protocol itself is run on the direct simulated backend:

- in-situ: ``forward = "chip"`` -- every forward pass measures the chip (N trials per synapse and
  sample), the backward pass uses the calibrated law;
- ex-situ: ``forward = "model"`` -- trained against binomial draws from the calibrated law, then
  tested on the chip;

plus the continuous-probability limit (``forward = "continuous"``: deterministic p from the same
device curves) and an unconstrained float single layer of the same shape. Test accuracy is the
mean over 16 stochastic passes with N measurements each, then mean +- std over training seeds.
``mid p`` is the fraction of synapses with 0.1 < p < 0.9 after training (in-situ runs).

    python bench/results_meanvar.py [--seeds 3] [--markdown]
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
from protocols.meanvar import MeanVarSettings, MeanVarTraining  # noqa: E402
from protocols.training import prepare_data, train_float  # noqa: E402

NS = (1, 2, 4, 8, 16, 32, 64)


def run_one(forward: str, n_meas: int, seed: int, **overrides) -> dict:
    chip = open_chip(load_station("sim-dw-640"))
    s = MeanVarSettings(forward=forward, measurements=n_meas, float_baseline=False, **overrides)
    proto = MeanVarTraining(f"{forward}-{n_meas}", s, chip, seed=seed)
    for _ in proto.run(RunContext(chip, None)):
        pass
    return proto.summary()


def fmt(values, scale=100.0, digits=1):
    v = np.asarray(values, dtype=float) * scale
    return f"{v.mean():.{digits}f} +- {v.std():.{digits}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--no-exsitu", action="store_true", help="skip the ex-situ column")
    ap.add_argument("--select", choices=("accuracy", "loss"), default="accuracy",
                    help="model-selection criterion (train-meanvar's select; default: mean validation accuracy "
                         "over 16 passes)")
    ap.add_argument("--val-passes", type=int, default=16, help="validation passes averaged for model selection "
                    "(1: the criterion before the low-noise change)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    t0 = time.perf_counter()
    rows = []
    for n in NS:
        ins = [run_one("chip", n, sd, select=args.select, val_passes=args.val_passes) for sd in seeds]
        exs = [] if args.no_exsitu else [run_one("model", n, sd, select=args.select, val_passes=args.val_passes) for sd in seeds]
        rows.append((f"N = {n}", ins, exs))
        print(f"  done N = {n} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    cont = [run_one("continuous", 1, sd, select=args.select, val_passes=args.val_passes) for sd in seeds]
    data = prepare_data(MeanVarSettings(), binary=True)
    s = MeanVarSettings()
    flo = [train_float(data, [data.features, data.classes], seed=sd, lr=s.lr, batch_size=s.batch_size,
                       max_epochs=s.max_epochs, patience=s.patience)["test_accuracy"] for sd in seeds]

    print(f"Digits 8x8 binarised, 64 -> 10, station sim-dw-640, {args.seeds} seeds, 16 test passes; "
          f"accuracy in % (mean +- std over seeds)\n")
    print("| measurements | in-situ test acc | ex-situ test acc (on chip) | mid p (0.1<p<0.9) | epochs (best) "
          "| training energy (J) | trials / inference | energy / inference (J) | s / training epoch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, ins, exs in rows:
        ex = fmt([r["test_accuracy"] for r in exs]) if exs else "-"
        print(f"| {label} | {fmt([r['test_accuracy'] for r in ins])} | {ex} | "
              f"{fmt([r['fraction_mid'] for r in ins], 1.0, 3)} | "
              f"{np.mean([r['best_epoch'] for r in ins]):.0f} | {np.mean([r['training_energy_j'] for r in ins]):.3g} | "
              f"{np.mean([r['inference_trials'] for r in ins]):.0f} | {np.mean([r['inference_energy_j'] for r in ins]):.3g} | "
              f"{np.mean([r['train_time_s'] / max(r['epochs'], 1) for r in ins]):.3f} |")
    print(f"| continuous p | {fmt([r['test_accuracy'] for r in cont])} | - | "
          f"{fmt([r['fraction_mid'] for r in cont], 1.0, 3)} | {np.mean([r['best_epoch'] for r in cont]):.0f} | - | - | - | - |")
    print(f"| float 64->10 | {fmt(flo)} | - | - | - | - | - | - | - |")
    n64 = np.mean([r["test_accuracy"] for r in rows[-1][1]])
    c = np.mean([r["test_accuracy"] for r in cont])
    accs = [np.mean([r["test_accuracy"] for r in ins]) for _, ins, _ in rows]
    print(f"\nN = 64 vs continuous limit: {100 * (c - n64):+.2f} points (criterion: within 1.5)")
    print("accuracy non-decreasing in N (means): " + ("yes" if all(b >= a - 1e-9 for a, b in zip(accs, accs[1:]))
                                                   else "no: " + ", ".join(f"{100 * a:.1f}" for a in accs)))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
