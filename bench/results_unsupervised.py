"""Results tables of the DW-MTJ clustering (train-cluster) and STT-MTJ Hebbian (train-hebbian) protocols.

Runs the embedded protocol files (with the overrides below) on the simulated bench for several
chip seeds (the station's physics seed: device-to-device spread and random streams) and prints
Markdown tables for docs/results.md; the raw numbers go to a JSON file.

    python bench/results_unsupervised.py                 # both methods (about 10 minutes on 2 cores)
    python bench/results_unsupervised.py --only cluster  # or: --only hebbian
    python bench/results_unsupervised.py --quick         # one chip seed, shorter sweeps

Fixed seeds throughout: protocol seed 0, data split seed 0, chip seeds 1, 2, 3.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labctl.runs import prepare  # noqa: E402
from labctl.engine import RunEngine  # noqa: E402

CLUSTER_RUNS = [
    ("Iris", "train-cluster-iris", {}),
    ("Breast cancer", "train-cluster-iris", {"data": "breast_cancer", "clusters": 10, "readout_temperature": 0.5,
                                             "epochs": 10}),
    ("Digits", "train-cluster-digits", {}),
]


def run_protocol(ref: str, overrides: dict, chip_seed: int, seed: int = 0, station: str | None = None):
    """Run an embedded protocol with setting overrides on its station with physics seed ``chip_seed``."""
    protocol, chip, _, _ = prepare(ref, station, seed, overrides=overrides, chip_seed=chip_seed)
    start = time.perf_counter()
    outcome = RunEngine(chip, None, checkpoint_every_s=None).run(protocol)
    assert outcome.status == "success", outcome.reason
    return protocol, outcome.summary, time.perf_counter() - start


def pct(values) -> str:
    a = np.asarray(values, dtype=np.float64) * 100
    return f"{a.mean():.1f} ± {a.std(ddof=1):.1f}" if len(a) > 1 else f"{a.mean():.1f}"


def cluster_tables(chip_seeds: list[int]) -> tuple[str, dict]:
    lines, raw = [], {}
    for title, ref, overrides in CLUSTER_RUNS:
        per_seed = []
        for cs in chip_seeds:
            protocol, summary, wall = run_protocol(ref, overrides, cs)
            per_seed.append({"table": protocol.accuracy_table(), "summary": summary, "wall_s": wall})
            print(f"  cluster {title} chip seed {cs}: {wall:.1f} s", file=sys.stderr, flush=True)
        raw[title] = per_seed
        s = per_seed[0]["summary"]
        lines.append(f"### {title} ({s['clusters']} clusters x {s['inputs']} inputs, {s['levels']}-level DW-MTJs)\n")
        lines.append("| labels per class | DW-MTJ WTA + read-out | float WTA + read-out | logistic regression (raw) |")
        lines.append("| --- | --- | --- | --- |")
        for a, row in enumerate(per_seed[0]["table"]):
            # mean over chip seeds and label draws; +- is the std over chip seeds of the per-seed means
            cells = [pct([p["table"][a][key] for p in per_seed]) for key in
                     ("accuracy", "accuracy_float_wta", "accuracy_logreg")]
            lines.append(f"| {row['labels_per_class']} | " + " | ".join(cells) + " |")
        e = np.array([[p["summary"]["energy_learning_j"], p["summary"]["energy_inference_j"],
                       p["summary"]["training_pulses"] + p["summary"]["init_pulses"], p["wall_s"]] for p in per_seed])
        lines.append(f"\nLearning energy (initial programming + training pulses and reads): "
                     f"{e[:, 0].mean() * 1e9:.3g} nJ (max {e[:, 0].max() * 1e9:.3g} nJ over chip seeds; "
                     f"paper's bound 20 uJ); programming pulses {e[:, 2].mean():.0f}; "
                     f"energy per inference (one read of the whole crossbar) {e[:, 1].mean() * 1e12:.3g} pJ; "
                     f"wall time per run {e[:, 3].mean():.1f} s.\n")
    return "\n".join(lines), raw


HEBBIAN_RUNS = [
    # (row label, protocol file, overrides); every run reports both read-outs (5-neuron vote, single winner)
    ("1 MTJ, p = 0.03 fixed", "train-hebbian", {"p_start": 0.03}),
    ("1 MTJ, p = 0.1 fixed", "train-hebbian", {"p_start": 0.1}),
    ("1 MTJ, p = 0.3 fixed", "train-hebbian", {"p_start": 0.3}),
    ("1 MTJ, p = 0.5 fixed", "train-hebbian", {"p_start": 0.5}),
    ("1 MTJ, p annealed 0.3 -> 0.03", "train-hebbian", {"p_start": 0.3, "p_end": 0.03}),
    ("1 MTJ, p annealed 0.5 -> 0.1", "train-hebbian", {"p_start": 0.5, "p_end": 0.1}),
    ("1 MTJ, p = 0.3, depression p x 0.3", "train-hebbian", {"p_start": 0.3, "depression_ratio": 0.3}),
    ("1 MTJ, p = 0.1, no homeostasis", "train-hebbian", {"p_start": 0.1, "homeostasis": False}),
    ("1 MTJ, p = 0.1, no complement rows", "train-hebbian", {"p_start": 0.1, "complement": False}),
    ("5 MTJs, p = 0.1 fixed", "train-hebbian-compound", {"p_start": 0.1, "p_end": None}),
    ("5 MTJs, p = 0.3 fixed", "train-hebbian-compound", {"p_start": 0.3, "p_end": None}),
    ("5 MTJs, p annealed 0.3 -> 0.03", "train-hebbian-compound", {}),
]


def hebbian_table(chip_seeds: list[int], quick: bool) -> tuple[str, dict]:
    runs = HEBBIAN_RUNS if not quick else [HEBBIAN_RUNS[2], HEBBIAN_RUNS[-1]]
    lines = ["| synapse, switching probability | accuracy, 5-neuron vote (STT-MTJ) | accuracy, single winner "
             "| float network, same shape, vote | neurons labelled | largest share of wins | learning energy "
             "| energy / inference | wall time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    raw = {}
    for label, ref, overrides in runs:
        per_seed = []
        for cs in chip_seeds:
            _, summary, wall = run_protocol(ref, overrides, cs)
            per_seed.append({"summary": summary, "wall_s": wall})
            print(f"  hebbian {label} chip seed {cs}: {wall:.1f} s acc {summary['accuracy']:.3f} "
                  f"(winner {summary['accuracy_winner']:.3f})", file=sys.stderr,
                  flush=True)
        raw[label] = per_seed
        acc = [p["summary"]["accuracy"] for p in per_seed]
        accw = [p["summary"]["accuracy_winner"] for p in per_seed]
        accf = [p["summary"]["accuracy_float"] for p in per_seed]
        lab = np.mean([p["summary"]["neurons_labelled"] for p in per_seed])
        share = np.mean([p["summary"]["max_win_fraction"] for p in per_seed])
        el = np.mean([p["summary"]["energy_learning_j"] for p in per_seed])
        ei = np.mean([p["summary"]["energy_inference_j"] for p in per_seed])
        wall = np.mean([p["wall_s"] for p in per_seed])
        lines.append(f"| {label} | {pct(acc)} | {pct(accw)} | {pct(accf)} | {lab:.0f} | {share * 100:.1f} % "
                     f"| {el * 1e6:.3g} uJ | {ei * 1e12:.3g} pJ | {wall:.0f} s |")
    return "\n".join(lines), raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("cluster", "hebbian"))
    parser.add_argument("--quick", action="store_true", help="one chip seed, fewer Hebbian rows")
    parser.add_argument("--json", default="bench/results_unsupervised.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    chip_seeds = [1] if args.quick else [1, 2, 3]
    raw = {}
    if args.only in (None, "cluster"):
        text, raw["cluster"] = cluster_tables(chip_seeds)
        print("## Clustering plus read-out (DW-MTJ)\n\n" + text)
    if args.only in (None, "hebbian"):
        text, raw["hebbian"] = hebbian_table(chip_seeds, args.quick)
        print("## Hebbian learning (STT-MTJ)\n\n" + text + "\n")
    path = Path(args.json)  # keep the part not re-run (with --only)
    previous = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**previous, **raw}, indent=1, default=float))


if __name__ == "__main__":
    main()
