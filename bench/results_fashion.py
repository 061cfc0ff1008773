"""Results on Fashion-MNIST at the published shapes (issue "the seeds' problem sizes"): the four methods.

Runs the embedded protocols on the direct simulated backend, each with training seeds 0, 1, 2 (the
same simulated chip: the station's physics seed), seed by seed so that a short run still has every
method at seed 0:

- ``train-meanvar-fashion``: mean/variance rule, 196 -> 10, 14x14 binarised, N = 8, chip in the loop
  (station ``sim-dw-1960``), tested also at N = 1 ... 64 and in the continuous limit (``test/n_sweep``);
- ``train-meanvar-mlp-fashion``: the same rule on two layers, 196-100-10 (``sim-dw-20600``);
- ``train-kstate-fashion-insitu`` / ``-exsitu``: 5-state DW-MTJ MLP 784-100-10 (``sim-dwmtj5-784``);
- ``train-cluster-fashion``: 100 DW-MTJ WTA clusters x 784 inputs + delta-rule read-out;
- ``train-hebbian-fashion``: 1568 rows (784 pixels + complements) x 100 LIF neurons, STT-MTJs.

Beside each: the float network of the same shape (the protocols' own baselines) and scikit-learn's
LogisticRegression on the same inputs (the protocol's own training split, fitted once). Results go
to a JSON file after every run (``--out``); ``--markdown`` prints the tables from it. Needs the data
set: ``apt-get install dataset-fashion-mnist`` (or ``LABCTL_DATA`` naming a folder of the IDX files).

    python bench/results_fashion.py [--seeds 3] [--only NAME ...] [--out bench/results_fashion.json]
    python bench/results_fashion.py --markdown
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labctl.engine import RunContext  # noqa: E402
from labctl.runs import prepare  # noqa: E402

PROTOCOLS = ("train-meanvar-fashion", "train-meanvar-mlp-fashion", "train-kstate-fashion-insitu",
             "train-kstate-fashion-exsitu", "train-cluster-fashion", "train-hebbian-fashion")
DEFAULT_OUT = Path(__file__).resolve().parent / "results_fashion.json"


def logreg(x_train, y_train, x_test, y_test) -> float:
    """Test accuracy of scikit-learn's LogisticRegression (lbfgs, 500 iterations) on the given inputs."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=500)
    clf.fit(x_train.numpy(), y_train.numpy())
    return float((clf.predict(x_test.numpy()) == y_test.numpy()).mean())


def inputs(proto):
    """The inputs the protocol learns from: (x_train, y_train, x_test, y_test)."""
    if hasattr(proto, "x_train"):  # cluster (encoded) and hebbian (binarised + complements)
        y_train = proto.y_train if hasattr(proto, "y_train") else proto.data.y_train
        return proto.x_train, y_train, proto.x_test, proto.data.y_test
    d = proto.data
    return d.x_train, d.y_train, d.x_test, d.y_test


def run_one(name: str, seed: int, want_logreg: bool) -> dict:
    proto, chip, _, _ = prepare(name, seed=seed)
    t0 = time.perf_counter()
    try:
        for _ in proto.run(RunContext(chip, None)):
            pass
    finally:
        chip.close()
    out = {k: v for k, v in proto.summary().items() if isinstance(v, (int, float, str, dict, list))}
    out["wall_s"] = time.perf_counter() - t0
    if want_logreg:
        with torch.no_grad():
            out["logreg_same_inputs"] = logreg(*inputs(proto))
    return out


def fmt(values, scale=100.0, digits=1) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float) * scale
    if len(v) == 0:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.{digits}f} (1 seed)"
    return f"{v.mean():.{digits}f} +- {v.std():.{digits}f}"


def markdown(res: dict) -> str:
    runs = {name: [r for _, r in sorted(res.get(name, {}).items())] for name in PROTOCOLS}
    lr = {name: next((r["logreg_same_inputs"] for r in rs if "logreg_same_inputs" in r), None) for name, rs in runs.items()}
    lines = ["| method | shape | seeds | test acc on chip | float, same shape | LogisticRegression, same inputs | wall time / run (s) |",
             "|---|---|---|---|---|---|---|"]
    rows = [("train-meanvar-fashion", "mean/variance, N = 8, in-situ", "196 -> 10", "test_accuracy", "float_test_accuracy"),
            ("train-meanvar-mlp-fashion", "mean/variance two layers, N = 8, in-situ", "196-100-10", "test_accuracy",
             "float_test_accuracy"),
            ("train-kstate-fashion-insitu", "K = 5 DW-MTJ, in-situ", "784-100-10", "test_accuracy", "float_test_accuracy"),
            ("train-kstate-fashion-exsitu", "K = 5 DW-MTJ, ex-situ", "784-100-10", "test_accuracy", "float_test_accuracy"),
            ("train-cluster-fashion", "DW-MTJ clustering + read-out (all labels)", "784 x 100 clusters", "accuracy_all",
             "float_wta_all"),
            ("train-hebbian-fashion", "Hebbian STT-MTJ, 5-neuron vote", "1568 x 100 neurons", "accuracy", "accuracy_float")]
    for name, label, shape, key, fkey in rows:
        rs = runs[name]
        if not rs:
            lines.append(f"| {label} | {shape} | 0 | not run | - | - | - |")
            continue
        lines.append(f"| {label} | {shape} | {len(rs)} | {fmt([r.get(key) for r in rs])} | "
                     f"{fmt([r.get(fkey) for r in rs])} | {fmt([lr[name]]).replace(' (1 seed)', '')} | "
                     f"{np.mean([r['wall_s'] for r in rs]):.0f} |")
    out = "\n".join(lines)
    for name in ("train-meanvar-fashion", "train-meanvar-mlp-fashion"):
        rs = [r for r in runs[name] if "n_sweep_accuracy" in r]
        if not rs:
            continue
        ns = list(rs[0]["n_sweep_accuracy"])
        out += f"\n\nTest-time N sweep, `{name}` (trained at N = 8; N = 0: continuous limit):\n\n"
        out += "| N | " + " | ".join("continuous" if n == "0" else n for n in ns) + " |\n"
        out += "|---|" + "---|" * len(ns) + "\n"
        out += "| test acc (%) | " + " | ".join(fmt([r["n_sweep_accuracy"][n] for r in rs]) for n in ns) + " |"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1 "
                    "(to share the seeds between processes, each with its own --out)")
    ap.add_argument("--only", nargs="*", default=None, help="protocol names (default: all six)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--markdown", action="store_true", help="print the tables from --out and stop")
    args = ap.parse_args(argv)
    res = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.markdown:
        print(markdown(res))
        return 0
    names = args.only or PROTOCOLS
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in names:
            if str(seed) in res.get(name, {}):
                continue  # already measured: rerunning the command finishes an interrupted table
            t0 = time.perf_counter()
            r = run_one(name, seed, want_logreg=not any("logreg_same_inputs" in v for v in res.get(name, {}).values()))
            res.setdefault(name, {})[str(seed)] = r
            args.out.write_text(json.dumps(res, indent=1, default=str))
            print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
