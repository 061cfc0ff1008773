"""The simulated bench as labctl sees it: a station's bench spec, starting it, ``labctl bench serve``.

A station whose instruments are simulated (``[bench]``) can be served two ways:

- by the station itself: with ``[bench] start = true`` and ``resource = "auto"``, ``open_chip``
  starts the SCPI servers on 127.0.0.1 (ephemeral ports) in this process, points the
  instruments at them, and stops them when the chip is closed;
- by ``labctl bench serve --station FILE`` (:func:`serve`), in a process of its own, printing one
  line per instrument with its VISA resource; another station then names those resources (fix
  the ports with ``port = ...`` in each ``[instruments.<role>]`` table to keep them stable).
"""

from __future__ import annotations

import sys
from typing import TextIO

from simulated_bench.server import RunningBench, run_until_signal, serve_bench, spec_from_station

from . import families
from .config import ConfigError, StationConfig, load_station


def bench_spec(station: StationConfig, seed: int | None = None) -> dict:
    """Plain-data spec of the station's simulated bench; ``seed`` overrides the physics seed.

    The bench is told which classes to simulate: the chip's simulator (the family descriptor's,
    as a ``module:Class`` reference) and, for each instrument, the simulator its adapter names
    (``simulator = "module:Class"`` on a plugin's adapter class; built-in models have theirs on
    the bench). The bench never imports labctl, so it gets references, not classes.
    """
    from instruments.registry import resolve

    if station.instruments is None:
        raise ConfigError(f"station {station.station.name!r} has no [instruments] tables to simulate")
    spec = spec_from_station(station.model_dump())
    spec["chip"]["simulator"] = families.reference(families.get(station.chip.family).simulator)
    for role, table in spec["instruments"].items():
        simulator = getattr(resolve(role, table["model"]).adapter, "simulator", None)
        if simulator:
            table["simulator"] = simulator
    if seed is not None:
        spec["chip"]["seed"] = seed
    return spec


def start_bench(station: StationConfig, seed: int | None = None) -> RunningBench:
    """Serve the station's simulated instruments on 127.0.0.1 (returns at once)."""
    return serve_bench(bench_spec(station, seed))


def serve(station: str, out: TextIO = sys.stdout, seed: int | None = None) -> int:
    """``labctl bench serve --station FILE``: serve until SIGINT or SIGTERM; returns the exit code.

    ``station`` is a TOML path or an embedded station name. Prints one line per instrument
    (role, model, VISA resource), then ``bench stopped`` when it ends.
    """
    try:
        config = load_station(station)
        running = start_bench(config, seed)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"labctl bench serve: {exc}", file=sys.stderr)
        return 2
    return run_until_signal(running, out)
