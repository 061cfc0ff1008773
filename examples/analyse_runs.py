"""Compare training runs: accuracy per epoch and seed from a folder of run files, as a PNG and a table.

    python examples/analyse_runs.py runs/overnight --png runs/overnight/accuracy.png

Reads every ``*.h5`` run file in the folder with ``labctl.api.read_run`` (finished, interrupted or
still being written), keeps those with per-epoch accuracies in ``train/metrics`` (the training
protocols), plots validation (solid) and training (dashed) accuracy against epoch, one colour per
run, and prints one row per run: protocol, seed, exit status, epochs, best validation accuracy
and the test accuracy of the summary (empty until the run has finished). Files that are not run
files, or are damaged, are listed and skipped. Exit code 0, or 1 if no run had accuracies.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from labctl import api  # noqa: E402


def load_runs(folder: Path) -> list[api.RunData]:
    """The run files of ``folder`` that hold per-epoch accuracies, in name order."""
    runs = []
    for path in sorted(folder.glob("*.h5")):
        try:
            data = api.read_run(path)
        except api.RunFileError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        if "epoch" in data.metrics and any(c.endswith("accuracy") for c in data.metrics.columns):
            runs.append(data)
    return runs


def table(runs: list[api.RunData]) -> pd.DataFrame:
    """One row per run: file, protocol, seed, status, epochs, best validation and test accuracy (fractions)."""
    rows = []
    for data in runs:
        m = data.metrics
        rows.append({
            "file": data.path.name,
            "protocol": data.protocol,
            "seed": data.seed,
            "status": data.status,
            "epochs": len(m),
            "best_val_accuracy": m["val_accuracy"].max() if "val_accuracy" in m else float("nan"),
            "test_accuracy": data.summary.get("test_accuracy", float("nan")),
        })
    return pd.DataFrame(rows)


def plot(runs: list[api.RunData], png: Path) -> None:
    """Validation (solid) and training (dashed) accuracy against epoch, one colour per run, into ``png``."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for k, data in enumerate(runs):
        colour = f"C{k % 10}"
        m = data.metrics
        label = f"{data.protocol} seed {data.seed}"
        if "val_accuracy" in m:
            ax.plot(m["epoch"], 100 * m["val_accuracy"], "-o", color=colour, markersize=3, label=f"{label} (validation)")
        if "train_accuracy" in m:
            ax.plot(m["epoch"], 100 * m["train_accuracy"], "--", color=colour, label=f"{label} (training)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Accuracy per epoch, {len(runs)} runs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="folder of run files (*.h5)")
    parser.add_argument("--png", help="figure to write (default: FOLDER/accuracy.png)")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"error: {folder}: not a folder", file=sys.stderr)
        return 2
    runs = load_runs(folder)
    if not runs:
        print(f"{folder}: no run file with per-epoch accuracies", file=sys.stderr)
        return 1
    print(table(runs).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    png = Path(args.png) if args.png else folder / "accuracy.png"
    plot(runs, png)
    print(f"figure: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
