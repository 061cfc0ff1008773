"""Descriptor of binary domain-wall nanowires: field pulses (tesla), Kerr read-out (lock-in volts)."""

from __future__ import annotations

from analysis import fitting
from analysis.energy import field_pulse_energy
from simulated_bench.physics.dw_nanowire import DWNanowireArray

from .base import DeviceFamily, Law, LawParam


def _fit_logistic(amplitude, width, counts, repeats, *, level, **_):
    return fitting.fit_logistic(amplitude, counts, repeats, level=level)


def _fit_gaussian(amplitude, width, counts, repeats, *, level, **_):
    return fitting.fit_gaussian(amplitude, counts, repeats, level=level)


LOGISTIC = Law("logistic", (LawParam("x0", "T", "mid-point depinning field", "x0"),
                            LawParam("dx", "1/T", "logistic slope", "dx"),
                            LawParam("a", "", "contrast (floor = 1 - a)", "a")),
               _fit_logistic, per_width=True, description="p = (1 - a) + a sigmoid(dx (h - x0)) (Ellis et al.)")
GAUSSIAN = Law("gaussian", (LawParam("h0", "T", "mean depinning field", "x0"),
                            LawParam("sigma", "T", "depinning-field spread", "sigma")),
               _fit_gaussian, per_width=True, description="p = (1 + erf((h - h0) / (sqrt(2) sigma))) / 2")


class DWNanowire(DeviceFamily):
    """Binary DW nanowires with one notch (``simulated_bench.physics.dw_nanowire``)."""

    name = DWNanowireArray.family
    label = "DW nanowires (Kerr)"
    readout = "kerr"
    amplitude_unit = "T"
    signal_unit = "V"
    simulator = DWNanowireArray
    laws = (LOGISTIC, GAUSSIAN)
    calibration_protocol = "calibrate-dw"
    bench_roles = ("pulse_source", "field_supply", "kerr_readout", "positioner")

    @classmethod
    def nominal_levels(cls, physics):
        """Lock-in X of an unswitched and a switched wire, volts."""
        return [physics.kerr_offset, physics.kerr_offset + physics.kerr_contrast]

    @classmethod
    def energy_model(cls, physics):
        """Field-line energy ``k B^2 t`` per pulse; the Kerr read's on-chip energy per read."""
        k = physics.field_energy_coefficient
        return (lambda a, w: field_pulse_energy(a, w, k)), physics.read_energy_j
