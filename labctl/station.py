"""From a station configuration to a live chip: the one place a backend is chosen."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from . import families
from .chip import Envelope, SynapseArray
from .config import ConfigError, StationConfig, resolve_device
from .simulated_array import SimulatedArray


class _AmplitudeUnits(Mapping[str, str]):
    """family name -> amplitude unit, from the family descriptors (kept for older callers:
    prefer ``families.get(name).amplitude_unit``)."""

    def __getitem__(self, name: str) -> str:
        try:
            return families.get(name).amplitude_unit
        except families.PluginError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(families.names())

    def __len__(self) -> int:
        return len(families.names())


AMPLITUDE_UNITS = _AmplitudeUnits()


def envelope_of(station: StationConfig) -> Envelope:
    e = station.envelope
    return Envelope(
        amplitude_min=e.amplitude_min,
        amplitude_max=e.amplitude_max,
        width_min=e.width_min,
        width_max=e.width_max,
        read_bias_max=e.read_bias_max,
        amplitude_unit=families.get(station.chip.family).amplitude_unit,
    )


def check_settings_against_envelope(protocol_cls, settings, source: str, station: StationConfig) -> None:
    """Refuse a protocol's validated settings that would send a pulse outside the station's envelope.

    Called before the run file is created and before the chip is opened (nothing is driven).
    ``protocol_cls`` is the protocol class (``protocols.REGISTRY[kind]``): its declared pulse
    settings and derived pulses are checked by ``protocol_cls.envelope_problems``. Also refuses a
    protocol that cannot run on the station's chip family. Raises one ConfigError naming the file,
    every offending key, its value and the limit, e.g. ``p.toml: key 'settings.amplitude_stop':
    0.05 T is above the station's envelope.amplitude_max 0.012 T (station sim-dw)``.
    """
    family = families.get(station.chip.family).name
    if family not in protocol_cls.families:
        raise ConfigError(f"{source}: key 'protocol.kind': {protocol_cls.kind} runs on "
                          f"{', '.join(protocol_cls.families)} chips, but station {station.station.name} has a "
                          f"{family} chip")
    problems = protocol_cls.envelope_problems(settings, envelope_of(station))
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(str(p) for p in problems) + f" (station {station.station.name})")


def open_chip(station: StationConfig, seed: int | None = None) -> SynapseArray:
    """Build the station's SynapseArray. ``seed`` overrides the chip's physics seed.

    ``backend = "instruments"`` gives an InstrumentArray (starting the station's simulated bench
    first when ``[bench] start = true``; there ``seed`` seeds the simulated chip). A simulated
    chip is put on the station's ``[station] device`` (``resolve_device``: cpu, cuda, auto).
    """
    chip = station.chip
    physics_seed = chip.seed if seed is None else seed
    if station.station.backend == "simulated":
        devices = families.get(chip.family).build_simulator(chip.n, physics_seed, chip.physics)
        devices.to(resolve_device(station.station.device, f"station {station.station.name}"))
        return SimulatedArray(devices, envelope_of(station))
    if station.station.backend == "instruments":
        from .instrument_station import open_instruments

        return open_instruments(station, envelope_of(station), seed)
    raise ValueError(f"station {station.station.name!r}: unknown backend {station.station.backend!r}")
