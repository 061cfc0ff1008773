"""The ``labctl`` command: run protocols, calibrate, inspect run files, list embedded files.

Exit codes: 0 success, 1 the run failed (or was aborted), 2 bad input (configuration, file,
arguments). Errors are one line on stderr naming the file and key at fault.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import torch

from . import __version__
from .config import (ConfigError, ProtocolFile, ProtocolHeader, StationConfig, embedded_names,
                     load_protocol_file, load_station, validate)
from .engine import SUMMARY, SUMMARY_SPEC, RunEngine, RunOutcome
from .station import open_chip
from .store import RunFileError, RunReader, RunWriter, recover

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_PROTOCOL = "train-meanvar"


class BadInput(Exception):
    """Bad command-line input; the message is shown as is and the exit code is 2."""


# ---------------------------------------------------------------------------- building a run
def build(pfile: ProtocolFile, source: str, station: StationConfig, seed: int | None = None, *,
          overrides: dict | None = None, chip_seed: int | None = None):
    """Open the station's chip and build the protocol a validated protocol file describes.

    ``overrides`` replace settings of the file (validated like them); ``chip_seed`` replaces the
    station's physics seed (another simulated chip of the same design).
    """
    from protocols import REGISTRY

    header = pfile.protocol
    cls = REGISTRY.get(header.kind)
    if cls is None:
        raise ConfigError(f"{source}: key 'protocol.kind': expected one of {sorted(REGISTRY)} (got {header.kind!r})")
    settings = validate(cls.settings_model, {**pfile.settings, **(overrides or {})}, source, prefix="settings")
    chip = open_chip(station, seed=chip_seed)
    try:
        protocol = cls(header.name, settings, chip, seed=header.seed if seed is None else seed)
    except ValueError as exc:
        chip.close()
        raise ConfigError(f"{source}: {exc}") from None
    return protocol, chip


def prepare(protocol_ref: str, station_ref: str | None = None, seed: int | None = None, *,
            overrides: dict | None = None, chip_seed: int | None = None):
    """Load a protocol file and its station (the protocol's default unless given), build both.

    Returns (protocol, chip, station config, protocol file). Raises ConfigError for bad input.
    ``overrides`` and ``chip_seed`` as in :func:`build` (for sweeps and tests).
    """
    pfile, source = load_protocol_file(protocol_ref)
    station = load_station(station_ref or pfile.protocol.station)
    protocol, chip = build(pfile, source, station, seed, overrides=overrides, chip_seed=chip_seed)
    return protocol, chip, station, pfile


def default_out(name: str) -> Path:
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{name}.h5"


def create_run_file(protocol, chip, station: StationConfig, pfile: ProtocolFile, out: Path) -> RunWriter:
    """A new run file with everything needed to understand and resume the run in its attributes."""
    attrs = {
        "protocol_name": pfile.protocol.name,
        "protocol_kind": pfile.protocol.kind,
        "protocol": pfile.model_dump(),
        "station_name": station.station.name,
        "station": station.model_dump(),
        "seed": protocol.seed,
        "command": " ".join(sys.argv),
    }
    schema = {**protocol.describe(), SUMMARY: SUMMARY_SPEC}
    try:
        return RunWriter(out, attrs=attrs, schema=schema)
    except FileExistsError as exc:
        chip.close()
        raise BadInput(str(exc)) from None


def execute(protocol, chip, writer: RunWriter, *, progress: bool = True, checkpoint_every_s: float | None = 60.0,
            resumed: bool = False) -> tuple[RunOutcome, float]:
    """Run a protocol into its run file under the engine; returns the outcome and the duration (s)."""
    engine = RunEngine(chip, writer, checkpoint_every_s=checkpoint_every_s, checkpoint_at_start=not resumed)
    bar = _progress_bar(engine) if progress else None
    start = time.perf_counter()
    try:
        with engine.ctrl_c_pauses():
            outcome = engine.run(protocol)
    finally:
        if bar is not None:
            bar.close()
        chip.close()
    return outcome, time.perf_counter() - start


def _progress_bar(engine: RunEngine):
    from tqdm import tqdm

    bar = tqdm(total=None, unit="step", disable=None, file=sys.stderr, leave=False)

    def on(name: str, doc: dict) -> None:
        if name == "progress":
            if doc["total"] is not None and bar.total != doc["total"]:
                bar.total = doc["total"]
            bar.set_description(doc["stage"] or "run")
            bar.n = doc["step"]
            bar.refresh()
        elif name == "event" and doc["kind"] in ("pause", "resume", "abort"):
            bar.write(f"{doc['kind']}: {doc['reason']}")

    engine.subscribe(on)
    return bar


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
        summary: dict[str, Any] = {}
        if SUMMARY in reader.names():
            raw = reader.dataset(SUMMARY).tobytes()
            summary = json.loads(raw.decode()) if raw else {}
        events = reader.events()
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
            "metrics": {k: v for k, v in summary.items() if k != "counters"},
            "counters": summary.get("counters", {}),
            "events": [{k: e[k] for k in ("kind", "status", "reason", "step")} for e in events],
            "datasets": reader.names(),
        }


# ---------------------------------------------------------------------------- commands
def cmd_run(args) -> int:
    protocol, chip, station, pfile = prepare(args.protocol or DEFAULT_PROTOCOL, args.station, args.seed)
    out = Path(args.out) if args.out else default_out(pfile.protocol.name)
    writer = create_run_file(protocol, chip, station, pfile, out)
    outcome, duration = execute(protocol, chip, writer, progress=not args.no_progress,
                                checkpoint_every_s=args.checkpoint_every)
    print_summary(outcome, out, duration, pfile.protocol, station)
    return report(outcome)


def report(outcome: RunOutcome) -> int:
    """Exit code of a finished run; a failure also gets one line on stderr."""
    if outcome.status != "success":
        print(f"labctl: run failed: {outcome.reason} (the chip was left in its safe state)", file=sys.stderr)
    return outcome.exit_code


def cmd_resume(args) -> int:
    """Continue a run from its last checkpoint, in the same file (after a crash, a pause or an abort)."""
    path = Path(args.file)
    with RunReader(path) as reader:
        attrs, status, latest = reader.attrs, reader.exit_status(), reader.latest_checkpoint()
    if status == "success":
        raise BadInput(f"{path}: the run finished successfully; there is nothing to resume")
    if latest is None:
        raise BadInput(f"{path}: holds no checkpoint to resume from")
    step, payload = latest
    pfile = validate(ProtocolFile, attrs.get("protocol"), f"{path} (attribute 'protocol')")
    station = validate(StationConfig, attrs.get("station"), f"{path} (attribute 'station')")
    protocol, chip = build(pfile, str(path), station, attrs.get("seed"))
    try:  # weights_only: a run file is data, and loading it must not run code
        state = torch.load(io.BytesIO(payload), weights_only=True)
        protocol.load_state_dict(state["plan"])
    except Exception as exc:  # a checkpoint this version cannot use: say so, do not crash
        chip.close()
        raise BadInput(f"{path}: the checkpoint at step {step} cannot be loaded ({type(exc).__name__}: {exc})") from None
    if "chip" in state and hasattr(chip, "load_state_dict"):
        chip.load_state_dict(state["chip"])
    if status == "incomplete":  # left by a killed writer: copy it into a clean file, then continue that
        clean = recover(path, path.with_name(path.stem + ".recovering.h5"))
        os.replace(clean, path)
    writer = RunWriter.reopen(path, reason=f"resume from checkpoint at step {step}",
                              truncate={**state["rows"], SUMMARY: 0})
    outcome, duration = execute(protocol, chip, writer, progress=not args.no_progress,
                                checkpoint_every_s=args.checkpoint_every, resumed=True)
    print_summary(outcome, path, duration, pfile.protocol, station)
    return report(outcome)


def cmd_calibrate(args) -> int:
    station = load_station(args.station)
    suffix = {"dw_nanowire": "dw", "stt_mtj": "stt", "dw_mtj": "dwmtj"}[station.chip.family]
    args.protocol = f"calibrate-{suffix}"
    return cmd_run(args)


def cmd_info(args) -> int:
    info = run_info(args.file)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return EXIT_OK
    for key in ("file", "protocol", "kind", "station", "seed", "exit_status", "reason", "labctl_version"):
        print(f"{key:>15}: {info[key]}")
    for key, value in {**info["metrics"], **info["counters"]}.items():
        print(f"{key:>15}: {_fmt(value)}")
    print(f"{'events':>15}: " + ", ".join(e["kind"] for e in info["events"]))
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


def cmd_list(kind: str):
    def command(args) -> int:
        for name in embedded_names(kind):
            loader = load_station if kind == "stations" else (lambda n: load_protocol_file(n)[0].protocol)
            item = loader(name)
            description = item.station.description if kind == "stations" else f"[{item.kind}] {item.description}"
            print(f"{name:<22} {description}")
        return EXIT_OK

    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labctl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"labctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def run_options(p):
        p.add_argument("--station", help="station TOML file or embedded name (default: the protocol's)")
        p.add_argument("--out", help="run file to write (default: runs/<time>-<protocol>.h5)")
        p.add_argument("--seed", type=int, help="seed of the protocol's randomness (default: the protocol file's)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                       help="seconds between checkpoints (0: at every safe point; default 60)")

    p = sub.add_parser("run", help="run a protocol (default: the embedded main job)")
    p.add_argument("protocol", nargs="?", help=f"protocol TOML file or embedded name (default: {DEFAULT_PROTOCOL})")
    run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("calibrate", help="calibrate the station's chip (S-curves and law fits)")
    run_options(p)
    p.set_defaults(func=cmd_calibrate, station="sim-dw")

    p = sub.add_parser("resume", help="continue a run file from its last checkpoint")
    p.add_argument("file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("info", help="summarise a run file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("gui", help="the probe-station GUI: run a protocol, or watch/review a run file")
    p.add_argument("file", nargs="?", help="run file to watch (while a headless run writes it) or review")
    p.add_argument("--station", help="station TOML file or embedded name (default: the protocol's)")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("bench", help="the simulated bench")
    bench_sub = p.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    p = bench_sub.add_parser("serve", help="serve a station's simulated instruments over TCP on 127.0.0.1")
    p.add_argument("--station", required=True, help="station TOML file or embedded name with [instruments]")
    p.add_argument("--seed", type=int, help="physics seed of the simulated chip (default: the station's)")
    p.set_defaults(func=cmd_bench_serve)

    sub.add_parser("protocols", help="list embedded protocols").set_defaults(func=cmd_list("protocols"))
    sub.add_parser("stations", help="list embedded stations").set_defaults(func=cmd_list("stations"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except (ConfigError, RunFileError, BadInput) as exc:
        print(f"labctl: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
