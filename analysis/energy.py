"""Energy of write pulses and reads, in joules."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def electrical_pulse_energy(voltage: Tensor, resistance: Tensor, width: Tensor) -> Tensor:
    """Joule energy of a voltage pulse across a resistor: ``V**2 / R * t``.

    voltage in volts, resistance in ohms, width in seconds. A 0.5 V, 10 ns pulse on 5 kOhm
    dissipates 0.5 pJ.
    """
    return voltage * voltage / resistance * width


def current_pulse_energy(current: Tensor, resistance: Tensor, width: Tensor) -> Tensor:
    """Joule energy of a current pulse through a resistor: ``I**2 * R * t`` (amperes, ohms, s)."""
    return current * current * resistance * width


def field_pulse_energy(field: Tensor, width: Tensor, coefficient: float) -> Tensor:
    """Energy of a magnetic field pulse from a coil or strip line: ``k * B**2 * t``.

    The energy stored and dissipated in a field line grows as the square of its current, hence
    of its field. field in tesla, width in seconds, coefficient ``k`` in J / (T**2 s), a per-station
    constant (see the station file's physics section).
    """
    return coefficient * field * field * width
