"""Overnight job: calibrate the chip once, then train several seeds, safe to kill and run again.

    python examples/overnight_seeds.py --seeds 5 --out runs/overnight

Calibrates the station's DW nanowires (``calibrate-dw``: S-curves and a logistic law per wire)
into ``OUT/calibration.h5``, then trains the mean/variance rule (``train-meanvar``, chip in the
loop) once per seed into ``OUT/seed-<k>.h5``, with the law's median x0 (T), dx (1/T) and a from
the calibration. Small by default (a few seconds per seed on the simulated chip).

Run it again after a crash, a reboot or a ``kill -9``: each run file's exit status says what to
do. A finished run (``success``) is skipped, an interrupted one (killed, aborted, failed) is
resumed from its last checkpoint in the same file, a missing one is started. Ctrl-C pauses the
current run as on the command line (a second Ctrl-C aborts it, and the job stops there); SIGTERM
aborts it. Exit code 0 once every seed has finished, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labctl import api


def progress_printer(label: str):
    """A progress callback that prints one line per epoch (and the test accuracy at the end)."""
    def show(doc: dict) -> None:
        m = doc["metrics"]
        if doc["stage"] == "epoch":
            print(f"{label}: epoch {m['epoch']} train accuracy {m['accuracy']:.3f} "
                  f"validation accuracy {m['val_accuracy']:.3f} (step {doc['step']})", flush=True)
        elif "test_accuracy" in m:
            print(f"{label}: test accuracy {m['test_accuracy']:.3f}", flush=True)
    return show


def run_or_resume(label: str, spec: api.ProtocolSpec, path: Path, *, checkpoint_every_s: float) -> api.RunResult | None:
    """Skip a finished run file, resume an interrupted one, start a missing one.

    Returns the run's result, or None when the file had finished already.
    """
    show = progress_printer(label)
    overwrite = False
    if path.exists():
        data = api.read_run(path)
        if data.status == "success":
            print(f"{label}: finished already ({path})", flush=True)
            return None
        if len(data.checkpoints):
            print(f"{label}: resuming {path} ({data.status}: {data.reason or 'killed'}) "
                  f"from the checkpoint at step {int(data.checkpoints['step'].iloc[-1])}", flush=True)
            return api.resume(path, progress=show, checkpoint_every_s=checkpoint_every_s)
        print(f"{label}: {path} holds no checkpoint: starting again", flush=True)
        overwrite = True
    else:
        print(f"{label}: starting {path}", flush=True)
    return api.run(spec, out=path, overwrite=overwrite, progress=show, checkpoint_every_s=checkpoint_every_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds, 0 .. N-1 (default 3)")
    parser.add_argument("--out", default="runs/overnight", help="folder of the run files (default runs/overnight)")
    parser.add_argument("--station", default="sim-dw-640", help="station file or embedded name (default sim-dw-640)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per seed (default 10)")
    parser.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                        help="seconds between checkpoints (0: at every safe point; default 60)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    every = args.checkpoint_every

    try:
        calibration = out / "calibration.h5"
        result = run_or_resume("calibration", api.load_protocol("calibrate-dw", station=args.station), calibration,
                               checkpoint_every_s=every)
        if result is not None and not result.ok:
            print(f"calibration: {result.status} ({result.reason}); run this script again to continue", file=sys.stderr)
            return 1
        law = api.read_run(calibration).summary
        print(f"calibration: median law x0 = {law['median_x0'] * 1e3:.4f} mT, dx = {law['median_dx']:.1f} /T, "
              f"a = {law['median_a']:.4f}", flush=True)

        unfinished = 0
        for seed in range(args.seeds):
            path = out / f"seed-{seed}.h5"
            spec = api.load_protocol("train-meanvar", station=args.station, seed=seed, calibrate=False,
                                     x0=law["median_x0"], dx=law["median_dx"], a=law["median_a"],
                                     max_epochs=args.epochs, patience=args.epochs)
            result = run_or_resume(f"seed {seed}", spec, path, checkpoint_every_s=every)
            if result is None:
                continue
            if result.ok:
                print(f"seed {seed}: done, test accuracy {result.summary['test_accuracy']:.3f} ({path})", flush=True)
                continue
            unfinished += 1
            print(f"seed {seed}: {result.status} ({result.reason})", file=sys.stderr)
            if result.reason.startswith("aborted"):
                print("stopping here; run this script again to continue", file=sys.stderr)
                return 1
    except (api.ConfigError, api.RunFileError, api.BadInput) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if unfinished else 0


if __name__ == "__main__":
    sys.exit(main())
