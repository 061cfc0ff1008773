"""The measurement-count explorer: how many measurements N should the mean/variance rule pay for?

    python bench/explorer_meanvar.py [--out sweeps/explorer-meanvar] [--workers 2] [--png docs/explorer-meanvar.png]

Runs the embedded sweep ``explorer-meanvar`` (train-meanvar, N = 1, 2, 4, ..., 64, seeds 0-4; the
same as ``labctl sweep explorer-meanvar``; safe to interrupt and run again: finished points are
kept, interrupted ones resume), then draws one figure (accuracy against N, and accuracy against
the energy per inference and per training run, and against wall time, mean +- std over seeds, with
the Pareto front) and prints the table for docs/results.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from labctl.sweep import load_sweep, pareto_front, read_index, sweep_table  # noqa: E402
from labctl.sweep_dask import run_sweep  # noqa: E402

AXIS = "settings.measurements"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="sweeps/explorer-meanvar", help="the sweep's folder")
    parser.add_argument("--workers", type=int, default=None, help="local Dask workers (default: one per core)")
    parser.add_argument("--scheduler", help="a running Dask scheduler instead of a local cluster")
    parser.add_argument("--png", default="docs/explorer-meanvar.png")
    args = parser.parse_args()

    out = Path(args.out)
    outcome = run_sweep(load_sweep("explorer-meanvar"), out, scheduler=args.scheduler, workers=args.workers)
    if not outcome.complete:
        raise SystemExit("the sweep is not complete; run the same command again to finish it")
    table = sweep_table(read_index(out))
    columns = ["test_accuracy", "inference_energy_j", "training_energy_j", "wall_s", "epochs", "fraction_mid",
               "inference_trials"]
    grouped = table.groupby(AXIS)[columns]
    mean, std, count = grouped.mean(), grouped.std(), grouped.count()["test_accuracy"]

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    n = mean.index.to_numpy()
    axes[0].errorbar(n, 100 * mean["test_accuracy"], yerr=100 * std["test_accuracy"], marker="o", capsize=3)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("measurements N (trials per synapse per sample)")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title("accuracy against N", fontsize=10)
    for ax, cost, label in ((axes[1], "inference_energy_j", "energy per inference (J)"),
                            (axes[2], "training_energy_j", "energy per training run (J)"),
                            (axes[3], "wall_s", "wall time per training run (s)")):
        ax.errorbar(mean[cost], 100 * mean["test_accuracy"], xerr=std[cost], yerr=100 * std["test_accuracy"],
                    fmt="o", capsize=3, color="0.45")
        front = pareto_front(list(mean[cost]), list(mean["test_accuracy"]))
        ax.plot(mean[cost].iloc[front], 100 * mean["test_accuracy"].iloc[front], "-", color="C3",
                label="Pareto front")
        for value, x, y in zip(n, mean[cost], 100 * mean["test_accuracy"]):
            ax.annotate(f"N={value}", (x, y), fontsize=7, xytext=(4, -9), textcoords="offset points")
        if cost != "wall_s":
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_title(f"accuracy against {label.split(' (')[0]}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"train-meanvar on sim-dw-640: mean +- std over {int(count.min())} seeds per N", fontsize=10)
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=100)
    print(f"figure: {args.png}")

    print("| N | test accuracy (%) | energy / inference (J) | trials / inference | training energy (J) "
          "| wall time / run (s) | epochs | mid p (0.1<p<0.9) |")
    print("|---|---|---|---|---|---|---|---|")
    for value in n:
        m, s = mean.loc[value], std.loc[value]
        print(f"| {value} | {100 * m['test_accuracy']:.1f} +- {100 * s['test_accuracy']:.1f} "
              f"| {m['inference_energy_j']:.3g} | {m['inference_trials']:.0f} "
              f"| {m['training_energy_j']:.3g} +- {s['training_energy_j']:.2g} "
              f"| {m['wall_s']:.1f} +- {s['wall_s']:.1f} | {m['epochs']:.0f} | {m['fraction_mid']:.3f} |")


if __name__ == "__main__":
    main()
