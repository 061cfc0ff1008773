"""Training throughput of the mean/variance rule: time per epoch and peak memory.

Method (a), chip in the loop on the direct simulated backend (``SimulatedArray``, station
``sim-dw-640``: 640 DW nanowires, a 64 -> 10 layer on binarised 8x8 digits, batch 64), at N = 1
and N = 64 measurements per synapse, and the float single layer of the same shape, all in this
process. Time per epoch is the training pass only (forward, chip trials, backward, Adam step;
validation excluded), in seconds: the minimum over epochs (the figure least disturbed by other
jobs on a shared machine; the ratios use it) and the median. Memory: peak resident set size of
the process after each configuration (``resource.getrusage``, MiB; monotone, so a step up is the
configuration's own peak) and the peak of Python-heap allocations during it (``tracemalloc``).

Targets: N = 64 costs at most 2x N = 1 (the physics draws the switched count of N trials as one
binomial sample per synapse and sample), and N = 1 at most 8x the float baseline.

``--case fashion``: the same at the published shape, 196 -> 10 on 14x14 binarised Fashion-MNIST
(station ``sim-dw-1960``, the first ``--train-limit`` training images, 80 % of them trained on).
``--case kstate``: the 784-100-10 K-state (5 levels) DW-MTJ MLP in-situ on 28x28 Fashion-MNIST
(station ``sim-dwmtj5-784``, 79 400 devices): seconds per training epoch and the process's peak
RSS (target < 2 GiB); run it as its own process so the peak is its own. The Fashion-MNIST cases
need ``apt-get install dataset-fashion-mnist`` (or ``LABCTL_DATA``).

    python bench/train_throughput.py [--epochs 12] [--threads 1]
    python bench/train_throughput.py --case fashion --epochs 5
    python bench/train_throughput.py --case kstate --epochs 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from labctl.config import load_station  # noqa: E402
from labctl.engine import RunContext  # noqa: E402
from labctl.station import open_chip  # noqa: E402
from protocols.meanvar import MeanVarSettings, MeanVarTraining  # noqa: E402
from protocols.training import prepare_data, train_float  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def meanvar_epoch_times(n_meas: int, epochs: int, station: str = "sim-dw-640", **data) -> list[float]:
    """Per-epoch training time (s) of chip-in-the-loop training at N = ``n_meas``."""
    chip = open_chip(load_station(station))
    s = MeanVarSettings(forward="chip", measurements=n_meas, max_epochs=epochs, patience=epochs + 1,
                        calibrate=False, float_baseline=False, test_passes=1, threads=None, **data)
    proto = MeanVarTraining("bench", s, chip, seed=0)
    times, last = [], 0.0
    for prog in proto.run(RunContext(chip, None)):
        if prog.stage == "epoch":
            times.append(proto.t_train - last)
            last = proto.t_train
    return times


def kstate_epoch_times(epochs: int, train_limit: int) -> tuple[list[float], dict]:
    """Per-epoch training time (s) of the 784-100-10 5-state DW-MTJ MLP, chip in the loop."""
    from protocols.kstate import KStateSettings, KStateTraining

    chip = open_chip(load_station("sim-dwmtj5-784"))
    s = KStateSettings(mode="insitu", hidden=[100], data="fashion-mnist", mnist_pool=1, train_limit=train_limit,
                       test_limit=1000, max_epochs=epochs, patience=epochs + 1, float_baseline=False, threads=None)
    proto = KStateTraining("bench", s, chip, seed=0)
    times, last = [], 0.0
    for prog in proto.run(RunContext(chip, None)):
        if prog.stage == "epoch":
            times.append(proto.t_train - last)
            last = proto.t_train
    return times, proto.summary()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12, help="epochs timed per configuration")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--case", choices=("digits", "fashion", "kstate"), default="digits")
    ap.add_argument("--train-limit", type=int, default=6000, help="Fashion-MNIST training images used (cases "
                    "fashion and kstate; 80 %% trained on, 20 %% validation)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.case == "kstate":
        t0 = time.perf_counter()
        times, summary = kstate_epoch_times(args.epochs, args.train_limit)
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, K-state 784-100-10 in-situ, "
              f"{summary['synapses']} devices, {int(0.8 * args.train_limit)} training samples, {len(times)} epochs")
        print(f"min s/epoch {min(times):.2f}, median {statistics.median(times):.2f}, whole run {time.perf_counter() - t0:.1f} s, "
              f"peak RSS {rss_mib():.0f} MiB (target < 2048) {'OK' if rss_mib() < 2048 else 'MISSED'}, "
              f"test accuracy {summary['test_accuracy']:.3f}")
        return 0
    extra = {}
    if args.case == "fashion":
        extra = dict(station="sim-dw-1960", data="fashion-mnist", train_limit=args.train_limit, val_passes=1)
    s = MeanVarSettings(**{k: v for k, v in extra.items() if k != "station"})
    data = prepare_data(s, binary=True)
    results = {}

    def measure(label, fn):
        tracemalloc.start()
        t0 = time.perf_counter()
        times = fn()
        wall = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        results[label] = {"epoch_s": min(times), "median_s": statistics.median(times), "wall_s": wall, "rss_mib": rss_mib(),
                          "py_peak_mib": peak / 2**20, "epochs": len(times)}

    def float_times():
        times: list[float] = []
        train_float(data, [data.features, data.classes], seed=0, lr=s.lr, batch_size=s.batch_size,
                    max_epochs=args.epochs, patience=args.epochs + 1, epoch_times=times)
        return times

    shape = f"{data.features}->{data.classes}"
    measure(f"float {shape}", float_times)
    measure("meanvar N=1 (chip)", lambda: meanvar_epoch_times(1, args.epochs, **extra))
    measure("meanvar N=64 (chip)", lambda: meanvar_epoch_times(64, args.epochs, **extra))

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {len(data.y_train)} training samples, "
          f"batch {s.batch_size}, {args.epochs} epochs each")
    print(f"{'configuration':<22} {'min s/epoch':>12} {'median':>9} {'peak RSS MiB':>13} {'py peak MiB':>12}")
    for label, r in results.items():
        print(f"{label:<22} {r['epoch_s']:>12.4f} {r['median_s']:>9.4f} {r['rss_mib']:>13.1f} {r['py_peak_mib']:>12.2f}")
    f, n1, n64 = (results[k]["epoch_s"] for k in results)
    r64, r1 = n64 / n1, n1 / f
    print(f"ratio N=64 / N=1   : {r64:.2f}  (target <= 2)  {'OK' if r64 <= 2 else 'MISSED'}")
    print(f"ratio N=1 / float  : {r1:.2f}  (target <= 8)  {'OK' if r1 <= 8 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
