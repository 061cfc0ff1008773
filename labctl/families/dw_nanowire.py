"""Descriptor of binary domain-wall nanowires: field pulses (tesla), Kerr read-out (lock-in volts)."""

from __future__ import annotations

from analysis import fitting
from analysis import switching_laws as laws
from analysis.energy import field_pulse_energy
from simulated_bench.physics.dw_nanowire import DWNanowireArray

from .base import DeviceFamily, Law, LawParam


def _fit_logistic(amplitude, width, counts, repeats, *, level, **_):
    return fitting.fit_logistic(amplitude, counts, repeats, level=level)


def _fit_gaussian(amplitude, width, counts, repeats, *, level, **_):
    return fitting.fit_gaussian(amplitude, counts, repeats, level=level)


def _logistic_curve(amplitude, width, p, **_):
    return laws.logistic_depinning(amplitude, p["x0"], p["dx"], p["a"])


def _gaussian_curve(amplitude, width, p, **_):
    return laws.gaussian_depinning(amplitude, p["h0"], p["sigma"])


LOGISTIC = Law("logistic", (LawParam("x0", "T", "mid-point depinning field", "x0"),
                            LawParam("dx", "1/T", "logistic slope", "dx"),
                            LawParam("a", "", "contrast (floor = 1 - a)", "a")),
               _fit_logistic, _logistic_curve, per_width=True, description="p = (1 - a) + a sigmoid(dx (h - x0)) (Ellis et al.)")
GAUSSIAN = Law("gaussian", (LawParam("h0", "T", "mean depinning field", "x0"),
                            LawParam("sigma", "T", "depinning-field spread", "sigma")),
               _fit_gaussian, _gaussian_curve, per_width=True, description="p = (1 + erf((h - h0) / (sqrt(2) sigma))) / 2")


class DWNanowire(DeviceFamily):
    """Binary DW nanowires with one notch (``simulated_bench.physics.dw_nanowire``)."""

    name = DWNanowireArray.family
    label = "DW nanowires (Kerr)"
    readout = DWNanowireArray.readout
    amplitude_unit = DWNanowireArray.amplitude_unit
    signal_unit = DWNanowireArray.signal_unit
    simulator = DWNanowireArray
    laws = (LOGISTIC, GAUSSIAN)
    calibration_protocol = "calibrate-dw"
    bench_roles = ("pulse_source", "field_supply", "kerr_readout", "positioner")
    sweep = (2e-3, 7.5e-3, 1e-6)

    @classmethod
    def nominal_levels(cls, physics):
        """Lock-in X of an unswitched and a switched wire, volts."""
        return [physics.kerr_offset, physics.kerr_offset + physics.kerr_contrast]

    @classmethod
    def energy_model(cls, physics):
        """Field-line energy ``k B^2 t`` per pulse; the Kerr read's on-chip energy per read."""
        k = physics.field_energy_coefficient
        return (lambda a, w: field_pulse_energy(a, w, k)), physics.read_energy_j
