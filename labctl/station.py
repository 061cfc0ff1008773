"""From a station configuration to a live chip: the one place a backend is chosen."""

from __future__ import annotations

from simulated_bench.physics import FAMILIES

from .chip import Envelope, SynapseArray
from .config import StationConfig
from .simulated_array import SimulatedArray

AMPLITUDE_UNITS = {"dw_nanowire": "T", "dw_mtj": "A", "stt_mtj": "V"}


def envelope_of(station: StationConfig) -> Envelope:
    e = station.envelope
    return Envelope(
        amplitude_min=e.amplitude_min,
        amplitude_max=e.amplitude_max,
        width_min=e.width_min,
        width_max=e.width_max,
        read_bias_max=e.read_bias_max,
        amplitude_unit=AMPLITUDE_UNITS[station.chip.family],
    )


def open_chip(station: StationConfig, seed: int | None = None) -> SynapseArray:
    """Build the station's SynapseArray. ``seed`` overrides the chip's physics seed.

    ``backend = "instruments"`` gives an InstrumentArray (starting the station's simulated bench
    first when ``[bench] start = true``; there ``seed`` seeds the simulated chip).
    """
    chip = station.chip
    physics_seed = chip.seed if seed is None else seed
    if station.station.backend == "simulated":
        devices = FAMILIES[chip.family](chip.n, seed=physics_seed, **chip.physics.model_dump())
        return SimulatedArray(devices, envelope_of(station))
    if station.station.backend == "instruments":
        from .instrument_station import open_instruments

        return open_instruments(station, envelope_of(station), seed)
    raise ValueError(f"station {station.station.name!r}: unknown backend {station.station.backend!r}")
