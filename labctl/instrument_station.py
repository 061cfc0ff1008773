"""From a station's ``[instruments]`` tables to a live :class:`~labctl.instrument_array.InstrumentArray`.

Connects every role (starting the simulated bench first when ``[bench] start = true``), builds
the rig of the chip family's read-out (Kerr bench or TMR bench, from the family descriptor), and
fills what the station leaves out from the chip's nominal physics (the descriptor's
``nominal_levels`` and ``energy_model``): the signal level of each state (for decoding), the read
bias, and the energy estimate.
"""

from __future__ import annotations

from instruments import InstrumentError
from instruments.errors import describe
from instruments.link import TransactionCounter
from instruments.registry import open_role

from . import families
from .bench import start_bench
from .chip import Envelope, EnvelopeError
from .config import StationConfig, adapter_settings
from .instrument_array import InstrumentArray
from .rigs import KerrRig, TMRRig


def nominal_levels(station: StationConfig) -> list[float]:
    """Raw signal of each level from the chip's nominal physics (the family's signal unit)."""
    return families.get(station.chip.family).nominal_levels(station.chip.physics)


def energy_model(station: StationConfig):
    """(pulse energy function of amplitude and width arrays, energy per read in joules)."""
    return families.get(station.chip.family).energy_model(station.chip.physics)


def open_instruments(station: StationConfig, envelope: Envelope, seed: int | None = None) -> InstrumentArray:
    """Connect the station's instruments and return the configured InstrumentArray.

    Every expected failure (an instrument that cannot be opened or reached, a resource string
    or VISA library that cannot be used, a setting an instrument refuses, calibration constants
    that put the envelope out of the pulse source's range) raises
    :class:`~instruments.errors.InstrumentError` with one line naming the station key or the
    role, model and resource. Nothing is left open or running when it does.
    """
    ins = station.instruments
    if ins is None:
        raise InstrumentError(f"station {station.station.name!r}: backend 'instruments' needs an [instruments] table")
    family = families.get(station.chip.family)
    running = None
    resources = {role: table.resource for role, table in ins.roles().items()}
    visa = {role: table.visa_library for role, table in ins.roles().items()}
    if station.bench is not None and station.bench.start:
        try:
            running = start_bench(station, seed)
        except (OSError, ValueError, KeyError) as exc:
            raise InstrumentError(f"[bench] start = true: cannot serve the simulated bench: {describe(exc)}") from exc
        for role, resource in running.resources.items():
            if resources.get(role) == "auto":
                resources[role] = resource
                visa[role] = visa[role] or "@py"
    counter = TransactionCounter()
    roles = {}
    try:
        for role, table in ins.roles().items():
            if resources[role] == "auto":
                raise InstrumentError(f"[instruments.{role}] resource = 'auto' needs [bench] start = true (the "
                                      "simulated bench); otherwise expected a VISA resource string")
            settings = role_settings(station, role)
            if "read_bias" in settings:  # the last check before any instrument sources it
                try:
                    envelope.check_read_bias(settings["read_bias"])
                except EnvelopeError as exc:
                    raise InstrumentError(f"[instruments.source_meter] read_bias: {exc} ([envelope] read_bias_max)") from None
            try:
                roles[role] = open_role(
                    role, table.model, resources[role], timeout_s=table.timeout_s, retries=table.retries,
                    visa_library=visa[role], read_termination=table.read_termination,
                    write_termination=table.write_termination, counter=counter, **settings,
                )
            except KeyError as exc:  # a model without an adapter
                raise InstrumentError(f"[instruments.{role}] model: {exc.args[0]}") from None
        retries = max(t.retries for t in ins.roles().values())
        try:
            if family.readout == "kerr":
                rig = KerrRig(roles, counter, retries)
                levels = ins.kerr_readout.levels or nominal_levels(station)
            else:
                rig = TMRRig(roles, counter, retries, units_per_volt=ins.pulse_source.units_per_volt)
                levels = ins.source_meter.levels or nominal_levels(station)
        except (ValueError, AttributeError) as exc:  # a role table missing for the chip's family
            raise InstrumentError(f"[instruments]: the {family.name} bench: {exc}") from None
    except BaseException:
        for role in roles.values():
            role.link.close()
        if running is not None:
            running.stop()
        raise
    pulse_energy, read_energy = energy_model(station)
    array = InstrumentArray(
        rig, envelope, family=family.name, n=station.chip.n, signal_levels=levels,
        signal_unit=family.signal_unit, reset_amplitude=ins.reset_amplitude,
        reset_width=ins.reset_width, read_samples=ins.read_samples, read_dt=ins.read_dt,
        pulse_energy=pulse_energy, read_energy_j=read_energy,
        on_close=running.stop if running is not None else None,
        suspend_timeout_s=station.station.suspend_timeout_s,
    )
    array.bench = running  # the simulated bench this array started (None for real instruments)
    return array


def role_settings(station: StationConfig, role: str) -> dict:
    """Keyword arguments of a role adapter: the settings its model declares, from its station table.

    A ``read_bias`` left out (None) is the chip's nominal ``physics.read_bias``; lists are passed
    as tuples (the switch's ``slots``).
    """
    settings = adapter_settings(role, getattr(station.instruments, role))
    if "read_bias" in settings and settings["read_bias"] is None:
        settings["read_bias"] = station.chip.physics.read_bias
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
