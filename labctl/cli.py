"""The ``labctl`` command: run protocols, calibrate, inspect and evaluate run files, list embedded files.

Exit codes: 0 success, 1 the run failed (or was aborted), 2 bad input (configuration, file,
arguments). Every expected error is one line on stderr naming the file and key at fault; no
traceback reaches the user (``--debug`` shows it for an unexpected one).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .config import ConfigError, ProtocolHeader, StationConfig, embedded_names, load_protocol_file, load_station
from .engine import RunOutcome
from .readers import read_checkpoints, read_events, read_summary
from .runs import BadInput, check, default_out, execute, open_for_resume, start_run
from .store import RunFileError, RunReader

__all__ = ["build_parser", "main", "run_info"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_PROTOCOL = "train-meanvar"


# ---------------------------------------------------------------------------- printing
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def print_summary(outcome: RunOutcome, out: Path, duration: float, header: ProtocolHeader, station: StationConfig) -> None:
    rows = [
        ("protocol", f"{header.name} ({header.kind})"),
        ("station", f"{station.station.name} ({station.station.backend}, {station.chip.family} x {station.chip.n})"),
        ("status", f"{outcome.status} ({outcome.reason})"),
        ("duration", f"{duration:.1f} s"),
    ]
    counters = outcome.summary.get("counters", {})
    rows += [(k, _fmt(v)) for k, v in outcome.summary.items() if k not in ("counters", "protocol")]
    rows += [(k, _fmt(v)) for k, v in counters.items() if k != "energy_j"]
    if "energy_j" in counters:
        rows.append(("energy", f"{counters['energy_j']:.4g} J"))
    rows.append(("run file", str(out)))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"  {k:<{width}}  {v}" for k, v in rows))


def run_info(path: str) -> dict[str, Any]:
    """What ``labctl info`` reports about a run file."""
    with RunReader(path) as reader:
        attrs = reader.attrs
        summary = read_summary(reader)
        events = read_events(reader)
        checkpoint = reader.latest_checkpoint()
        return {
            "file": str(path),
            "format": attrs.get("format"),
            "labctl_version": attrs.get("labctl_version"),
            "protocol": attrs.get("protocol_name"),
            "kind": attrs.get("protocol_kind"),
            "station": attrs.get("station_name"),
            "seed": attrs.get("seed"),
            "exit_status": reader.exit_status(),
            "reason": next((e["reason"] for e in reversed(events) if e["kind"] == "stop"), ""),
            "resumable_from_step": None if checkpoint is None else checkpoint[0],
            "checkpoints": len(read_checkpoints(reader)),
            "metrics": {k: v for k, v in summary.items() if k != "counters"},
            "counters": summary.get("counters", {}),
            "events": [{k: e[k] for k in ("kind", "status", "reason", "step")} for e in events],
            "datasets": reader.names(),
        }


# ---------------------------------------------------------------------------- commands
def cmd_run(args) -> int:
    pfile, source = load_protocol_file(args.protocol or DEFAULT_PROTOCOL)
    station_ref = args.station or pfile.protocol.station
    station = load_station(station_ref)
    check(pfile, source, station)  # before anything is opened or created
    out = Path(args.out) if args.out else default_out(pfile.protocol.name)
    protocol, chip, writer, lock = start_run(pfile, source, station, station_ref=station_ref, out=out,
                                             seed=args.seed, overwrite=args.overwrite)
    try:
        outcome, duration, _ = execute(protocol, chip, writer, progress_bar=not args.no_progress,
                                       checkpoint_every_s=args.checkpoint_every, pause_timeout_s=args.pause_timeout)
    finally:
        lock.release()
    print_summary(outcome, writer.path, duration, pfile.protocol, station)
    return report(outcome, writer.path)


def report(outcome: RunOutcome, path: Path) -> int:
    """Exit code of a finished run; a failure also says whether the chip is safe and how to go on."""
    if outcome.status == "success":
        return outcome.exit_code
    if getattr(outcome, "safe", True):
        state = "the chip was left in its safe state"
    else:
        state = "the chip's safe state could NOT be confirmed: check the instruments' outputs"
    hint = f"; to continue it: labctl resume {path}" if _resumable(path) else ""
    _fail(f"run failed: {outcome.reason} ({state}){hint}", outcome.exit_code)
    return outcome.exit_code


def _resumable(path: Path) -> bool:
    try:
        with RunReader(path) as reader:
            return reader.latest_checkpoint() is not None
    except RunFileError:
        return False


def cmd_resume(args) -> int:
    """Continue a run from its last checkpoint, in the same file (after a crash, a pause or an abort)."""
    job = open_for_resume(args.file, station_ref=args.station)
    try:
        for note in job.notes:
            print(f"labctl: {note}", file=sys.stderr)
        outcome, duration, _ = execute(job.protocol, job.chip, job.writer, progress_bar=not args.no_progress,
                                       checkpoint_every_s=args.checkpoint_every, resumed=True,
                                       pause_timeout_s=args.pause_timeout)
    finally:
        job.lock.release()
    print_summary(outcome, job.path, duration, job.pfile.protocol, job.station)
    return report(outcome, job.path)


def cmd_calibrate(args) -> int:
    from . import families

    station = load_station(args.station)
    args.protocol = families.get(station.chip.family).calibration_protocol  # a protocol file: embedded name or path
    return cmd_run(args)


def cmd_check(args) -> int:
    """Validate a protocol and its station, settings against the envelope; open and write nothing."""
    pfile, source = load_protocol_file(args.protocol or DEFAULT_PROTOCOL)
    station_ref = args.station or pfile.protocol.station
    station = load_station(station_ref)
    check(pfile, source, station)
    print(f"{source}: ok ({pfile.protocol.kind} on station {station.station.name})")
    return EXIT_OK


def cmd_info(args) -> int:
    info = run_info(args.file)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return EXIT_OK
    for key in ("file", "protocol", "kind", "station", "seed", "exit_status", "reason", "labctl_version"):
        print(f"{key:>15}: {info[key]}")
    if info["exit_status"] != "success":
        step = info["resumable_from_step"]
        print(f"{'resume':>15}: " + ("no checkpoint: cannot be resumed" if step is None
                                   else f"from step {step}: labctl resume {info['file']}"))
    for key, value in {**info["metrics"], **info["counters"]}.items():
        print(f"{key:>15}: {_fmt(value)}")
    print(f"{'events':>15}: " + ", ".join(e["kind"] for e in info["events"]))
    return EXIT_OK


def cmd_evaluate(args) -> int:
    """Test a finished train-meanvar run's model at other measurement counts N, without retraining."""
    from .evaluate import (DATASET, check_csv_target, evaluate_run, format_table, parse_measurements, parse_passes,
                           write_csv)

    try:  # before anything is opened
        measurements, passes = parse_measurements(args.measurements), parse_passes(args.passes)
        if args.csv:
            check_csv_target(args.csv)
    except BadInput as exc:
        raise BadInput(f"{args.file}: {exc}") from None
    try:
        evaluation = evaluate_run(args.file, measurements, passes, station_ref=args.station,
                                  progress=lambda line: print(f"labctl: {line}", file=sys.stderr))
    except KeyboardInterrupt:
        return _fail(f"interrupted: nothing was recorded; {args.file} was left as it was", EXIT_FAILED)
    for note in evaluation.notes:
        print(f"labctl: {note}", file=sys.stderr)
    print(f"{evaluation.protocol_name} ({evaluation.kind}, forward = {evaluation.forward}) on station "
          f"{evaluation.station_name}: {evaluation.passes} test pass{'' if evaluation.passes == 1 else 'es'} per N")
    print(format_table(evaluation))
    print(f"recorded in {evaluation.path} as /{DATASET}")
    if args.csv:
        print(f"table: {write_csv(evaluation, args.csv)}")
    return EXIT_OK


def cmd_gui(args) -> int:
    """The probe-station GUI; Qt is imported only here, so the other commands work without a display."""
    try:
        from .gui import main as gui_main
    except ImportError as exc:
        raise BadInput(f"the GUI needs PyQt5 and pyqtgraph ({exc})") from None
    return gui_main([*([args.file] if args.file else []), *(["--station", args.station] if args.station else [])])


def cmd_bench_serve(args) -> int:
    """Serve the station's simulated instruments on 127.0.0.1 until SIGINT or SIGTERM."""
    from .bench import serve

    return serve(args.station, seed=args.seed)


def cmd_bench_status(args) -> int:
    """Query every instrument of the station: identity, outputs, error queue; 1 if any does not answer."""
    from .instrument_status import status

    return status(args.station)


def cmd_list(kind: str):
    def command(args) -> int:
        for name in embedded_names(kind):
            loader = load_station if kind == "stations" else (lambda n: load_protocol_file(n)[0].protocol)
            item = loader(name)
            description = item.station.description if kind == "stations" else f"[{item.kind}] {item.description}"
            print(f"{name:<22} {description}")
        return EXIT_OK

    return command



# ---------------------------------------------------------------------------- sweeps
SWEEP_ACTIONS = ("run", "info", "plot")


def cmd_sweep(args) -> int:
    """``labctl sweep [run] SWEEP.toml`` | ``labctl sweep info DIR`` | ``labctl sweep plot DIR``."""
    words = list(args.words)
    action = words.pop(0) if words[0] in SWEEP_ACTIONS else "run"
    if len(words) != 1:
        raise BadInput(f"labctl sweep {action}: expected one {'sweep file' if action == 'run' else 'sweep folder'}"
                       f" (got {' '.join(words) or 'none'})")
    misplaced = [opt for opt, value, used_by in (("--out", args.out, "run"), ("--scheduler", args.scheduler, "run"),
                                                 ("--workers", args.workers, "run"), ("--metric", args.metric, "plot"),
                                                 ("--axis", args.axis, "plot")) if value is not None and used_by != action]
    if misplaced:
        raise BadInput(f"labctl sweep {action}: {', '.join(misplaced)} belongs to another action (labctl sweep --help)")
    args.target = words[0]
    return {"run": cmd_sweep_run, "info": cmd_sweep_info, "plot": cmd_sweep_plot}[action](args)


def cmd_sweep_run(args) -> int:
    """Run (or finish) a sweep: every point an ordinary run file in the sweep's folder, on Dask."""
    from .sweep import load_sweep
    from .sweep_dask import run_sweep

    plan = load_sweep(args.target)  # every point validated before any runs: exit 2 otherwise
    out = Path(args.out) if args.out else Path("sweeps") / plan.name
    outcome = run_sweep(plan, out, scheduler=args.scheduler, workers=args.workers)
    counts = {s: outcome.count(s) for s in ("success", "failed", "busy", "pending", "incomplete", "aborted")}
    print(f"sweep {plan.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
          + f"; {len(outcome.ran)} ran now; index {out / 'sweep.json'}")
    if outcome.complete:
        return EXIT_OK
    print(f"labctl: the sweep is not complete; run the same command to finish it (labctl sweep info {out})",
          file=sys.stderr)
    return EXIT_FAILED


def _sweep_index(folder: str):
    from .sweep import read_index

    index = read_index(Path(folder)) if Path(folder).is_dir() else None
    if index is None:
        raise BadInput(f"{folder}: not a sweep folder (no sweep.json; run labctl sweep SWEEP.toml --out {folder})")
    return index


def cmd_sweep_info(args) -> int:
    """The sweep's table (also written as sweep.csv and sweep.parquet in the folder)."""
    import pandas as pd

    from .sweep import refresh_from_files, sweep_table, write_tables

    index = _sweep_index(args.target)
    refresh_from_files(index, Path(args.target))
    table = sweep_table(index)
    written = write_tables(Path(args.target), index)
    shown = table.drop(columns=[c for c in ("name", "error") if c in table])
    with pd.option_context("display.max_columns", 30, "display.width", 200, "display.precision", 4):
        print(f"sweep {index['name']} ({index['protocol']} on {index['station']}): {len(table)} points")
        print(shown.to_string(index=False))
    for _, row in table[table["error"].astype(bool)].iterrows():
        print(f"  {row['name']}: {row['error']}")
    print("tables: " + ", ".join(str(p) for p in written))
    return EXIT_OK


def cmd_sweep_plot(args) -> int:
    """PNG figures of a metric against an axis (mean +- std over seeds) and the Pareto fronts."""
    from .sweep import plot_sweep, refresh_from_files

    index = _sweep_index(args.target)
    refresh_from_files(index, Path(args.target))
    for path in plot_sweep(Path(args.target), index, metric=args.metric, axis=args.axis):
        print(path)
    return EXIT_OK


# ---------------------------------------------------------------------------- arguments
def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected 0 <= seed < 2**63, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"expected 1 <= N <= 4096, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labctl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"labctl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def control_options(p):
        p.add_argument("--no-progress", action="store_true", help="no progress bar (messages are still shown)")
        p.add_argument("--checkpoint-every", type=_seconds, default=60.0, metavar="SECONDS",
                       help="seconds between checkpoints (0: at every safe point; default 60)")
        p.add_argument("--pause-timeout", type=_seconds, default=600.0, metavar="SECONDS",
                       help="a run paused with Ctrl-C that gets no answer for this long ends, resumable "
                            "(0: wait for ever; default 600)")

    def run_options(p, station_default: str):
        p.add_argument("--station", help=f"station TOML file or embedded name (default: {station_default})")
        p.add_argument("--out", help="run file to write (default: runs/<time>-<protocol>.h5)")
        p.add_argument("--overwrite", action="store_true", help="replace the --out file if it exists")
        p.add_argument("--seed", type=_seed, help="seed of the protocol's randomness (default: the protocol file's)")
        control_options(p)

    p = sub.add_parser("run", help="run a protocol (default: the embedded main job)")
    p.add_argument("protocol", nargs="?", help=f"protocol TOML file or embedded name (default: {DEFAULT_PROTOCOL})")
    run_options(p, "the protocol's")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("calibrate", help="calibrate the station's chip (S-curves and law fits)")
    run_options(p, "sim-dw")
    p.set_defaults(func=cmd_calibrate, station="sim-dw")

    p = sub.add_parser("check", help="validate a protocol and its station (settings against the envelope); runs nothing")
    p.add_argument("protocol", nargs="?", help=f"protocol TOML file or embedded name (default: {DEFAULT_PROTOCOL})")
    p.add_argument("--station", help="station TOML file or embedded name (default: the protocol's)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("resume", help="continue a run file from its last checkpoint")
    p.add_argument("file")
    p.add_argument("--station", help="the station's current file or embedded name (default: the one the run used); "
                                     "its envelope, intersected with the run file's, limits the resumed run")
    control_options(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("info", help="summarise a run file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("evaluate", help="test a finished train-meanvar run's model at other measurement counts N "
                                        "(no retraining); the table goes into the run file")
    p.add_argument("file", help="run file of a finished train-meanvar run")
    p.add_argument("--measurements", metavar="N,N,...",
                   help="measurement counts N to test, comma-separated (default: 1,2,4,8,16,32,64); "
                        "the continuous limit is always added")
    p.add_argument("--passes", metavar="P", help="stochastic test passes per N (default: the run's test_passes)")
    p.add_argument("--station", help="the station's current file or embedded name (default: the one the run used); "
                                     "its envelope, intersected with the run file's, limits the test")
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("gui", help="the probe-station GUI: run a protocol, or watch/review a run file")
    p.add_argument("file", nargs="?", help="run file to watch (while a headless run writes it) or review, or a sweep folder")
    p.add_argument("--station", help="station TOML file or embedded name (default: the protocol's)")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("bench", help="the simulated bench")
    bench_sub = p.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    p = bench_sub.add_parser("serve", help="serve a station's simulated instruments over TCP on 127.0.0.1")
    p.add_argument("--station", required=True, help="station TOML file or embedded name with [instruments]")
    p.add_argument("--seed", type=_seed, help="physics seed of the simulated chip (default: the station's)")
    p.set_defaults(func=cmd_bench_serve)
    p = bench_sub.add_parser("status", help="query every instrument of a station: identity, outputs, error queue "
                                            "(exit 1 if any does not answer)")
    p.add_argument("--station", required=True, help="station TOML file or embedded name")
    p.set_defaults(func=cmd_bench_status)

    p = sub.add_parser("sweep", help="run a sweep over settings, station physics and seeds on Dask; info, plot",
                       usage="labctl sweep [run] SWEEP.toml [--out DIR] [--scheduler ADDRESS] [--workers N]\n"
                             "       labctl sweep info DIR\n"
                             "       labctl sweep plot DIR [--metric M] [--axis A]")
    p.add_argument("words", nargs="+", metavar="[ACTION] TARGET",
                   help="run (default): a sweep TOML file or embedded sweep name; info, plot: a sweep folder")
    p.add_argument("--out", help="run: the sweep's folder (default: sweeps/<name>; the same folder resumes it)")
    p.add_argument("--scheduler", help="run: address (tcp://host:8786) or scheduler file of a running Dask "
                                       "scheduler (default: a local cluster)")
    p.add_argument("--workers", type=_positive_int, help="run: local worker processes (default: one per core)")
    p.add_argument("--metric", help="plot: the metric (default: test_accuracy, or the first one)")
    p.add_argument("--axis", help="plot: the axis (default: the first that is not a seed)")
    p.set_defaults(func=cmd_sweep)

    sub.add_parser("protocols", help="list embedded protocols").set_defaults(func=cmd_list("protocols"))
    sub.add_parser("stations", help="list embedded stations").set_defaults(func=cmd_list("stations"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``labctl`` command; returns its exit code (0, 1 or 2), never raises for an expected error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    _log_to_terminal(args.debug)
    try:
        return args.func(args)
    except (ConfigError, RunFileError, BadInput) as exc:
        return _fail(f"error: {exc}", EXIT_BAD_INPUT)
    except OSError as exc:  # a folder that cannot be written, a disk that is full, ...
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return _fail(f"error: {where}{exc.strerror or exc}", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return _fail("interrupted before the run started; no run file was written", EXIT_FAILED)
    except Exception as exc:
        from instruments import InstrumentError

        if args.debug:
            raise
        if isinstance(exc, InstrumentError):
            return _fail(f"instrument error: {exc}", EXIT_FAILED)
        return _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_FAILED)


class _OneLine(logging.Formatter):
    """``labctl: warning: message`` on one line, without a traceback (``--debug`` shows those)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"labctl: {record.levelname.lower()}: " + " ".join(record.getMessage().splitlines())


def _log_to_terminal(debug: bool) -> None:
    """Warnings and errors on stderr, one line each (with ``--debug``: also retries and other details).

    Does nothing when the process already set up logging (a script, a test runner)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s") if debug else _OneLine())
    root.addHandler(handler)
    root.setLevel(logging.INFO if debug else logging.WARNING)


def _fail(message: str, code: int) -> int:
    print("labctl: " + " ".join(message.splitlines()), file=sys.stderr)  # one line, always
    return code


if __name__ == "__main__":
    sys.exit(main())
