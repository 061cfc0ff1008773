"""From a station's ``[instruments]`` tables to a live :class:`~labctl.instrument_array.InstrumentArray`.

Connects every role (starting the simulated bench first when ``[bench] start = true``), builds
the rig of the chip's family (Kerr bench for DW nanowires, TMR bench for MTJs), and fills what
the station leaves out from the chip's nominal physics: the signal level of each state (for
decoding), the read bias, and the energy estimate.
"""

from __future__ import annotations

import numpy as np

from analysis.energy import current_pulse_energy, electrical_pulse_energy, field_pulse_energy
from instruments import InstrumentError
from instruments.errors import describe
from instruments.link import TransactionCounter
from instruments.registry import open_role

from .bench import start_bench
from .chip import Envelope, EnvelopeError
from .config import StationConfig
from .instrument_array import InstrumentArray
from .rigs import KerrRig, TMRRig

SIGNAL_UNITS = {"dw_nanowire": "V", "stt_mtj": "Ohm", "dw_mtj": "Ohm"}


def nominal_levels(station: StationConfig) -> list[float]:
    """Raw signal of each level from the chip's nominal physics (volts or ohms)."""
    chip, p = station.chip, station.chip.physics
    if chip.family == "dw_nanowire":
        return [p.kerr_offset, p.kerr_offset + p.kerr_contrast]
    if chip.family == "stt_mtj":
        return [p.r_p, p.r_p * (1 + p.tmr)]
    g_ap, g_p = 1 / (p.r_p * (1 + p.tmr)), 1 / p.r_p
    return [1 / (g_ap + (g_p - g_ap) * k / (p.levels - 1)) for k in range(p.levels)]


def energy_model(station: StationConfig):
    """(pulse energy function of amplitude and width arrays, energy per read in joules)."""
    chip, p = station.chip, station.chip.physics
    if chip.family == "dw_nanowire":
        k = p.field_energy_coefficient
        return (lambda a, w: field_pulse_energy(a, w, k)), p.read_energy_j
    r_ref = p.r_p if chip.family == "stt_mtj" else p.r_p * (1 + p.tmr)
    levels = np.array(nominal_levels(station))
    read = p.read_bias ** 2 * float(np.mean(1 / levels)) * p.read_time
    if chip.family == "stt_mtj":
        return (lambda a, w: electrical_pulse_energy(a, r_ref, w)), read
    return (lambda a, w: current_pulse_energy(a, r_ref, w)), read


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
            if station.chip.family == "dw_nanowire":
                rig = KerrRig(roles, counter, retries)
                levels = ins.kerr_readout.levels or nominal_levels(station)
            else:
                rig = TMRRig(roles, counter, retries, units_per_volt=ins.pulse_source.units_per_volt)
                levels = ins.source_meter.levels or nominal_levels(station)
        except (ValueError, AttributeError) as exc:  # a role table missing for the chip's family
            raise InstrumentError(f"[instruments]: the {station.chip.family} bench: {exc}") from None
    except BaseException:
        for role in roles.values():
            role.link.close()
        if running is not None:
            running.stop()
        raise
    pulse_energy, read_energy = energy_model(station)
    array = InstrumentArray(
        rig, envelope, family=station.chip.family, n=station.chip.n, signal_levels=levels,
        signal_unit=SIGNAL_UNITS[station.chip.family], reset_amplitude=ins.reset_amplitude,
        reset_width=ins.reset_width, read_samples=ins.read_samples, read_dt=ins.read_dt,
        pulse_energy=pulse_energy, read_energy_j=read_energy,
        on_close=running.stop if running is not None else None,
        suspend_timeout_s=station.station.suspend_timeout_s,
    )
    array.bench = running  # the simulated bench this array started (None for real instruments)
    return array


def role_settings(station: StationConfig, role: str) -> dict:
    """Keyword arguments of a role adapter from its station table."""
    ins = station.instruments
    t = getattr(ins, role)
    if role == "pulse_source":
        return {"max_points": t.max_points}
    if role == "field_supply":
        return {"gain": t.gain, "coil": t.coil, "voltage_limit": t.voltage_limit,
                "ramp_steps": t.ramp_steps, "ramp_pause_s": t.ramp_pause_s}
    if role == "positioner":
        return {"pitch": t.pitch, "origin": t.origin, "axis": t.axis}
    if role == "source_meter":
        bias = t.read_bias if t.read_bias is not None else station.chip.physics.read_bias
        return {"read_bias": bias, "compliance": t.compliance, "nplc": t.nplc,
                "ramp_steps": t.ramp_steps, "ramp_pause_s": t.ramp_pause_s}
    if role == "switch":
        return {"slots": tuple(t.slots)}
    return {}
