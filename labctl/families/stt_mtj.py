"""Descriptor of binary STT-MTJs: voltage pulses (volts), TMR read-out (ohms)."""

from __future__ import annotations

import numpy as np

from analysis import fitting
from analysis import switching_laws as laws
from analysis.energy import electrical_pulse_energy
from simulated_bench.physics.stt_mtj import STTMTJArray

from .base import DeviceFamily, Law, LawParam


def _fit_thermal(amplitude, width, counts, repeats, *, level, tau0, **_):
    return fitting.fit_thermal(amplitude, width, counts, repeats, tau0=tau0, level=level)


def _thermal_curve(amplitude, width, p, *, tau0, **_):
    return laws.thermal_switching(amplitude.abs(), width, p["delta"], p["vc0"], tau0)


THERMAL = Law("thermal", (LawParam("delta", "", "thermal stability P -> AP", "delta_p2ap"),
                          LawParam("vc0", "V", "critical voltage P -> AP", "vc0_p2ap")),
              _fit_thermal, _thermal_curve, description="P = 1 - exp(-(t/tau0) exp(-delta (1 - V/vc0))) (Koch et al.), tau0 fixed")


class STTMTJ(DeviceFamily):
    """Binary STT-MTJs (``simulated_bench.physics.stt_mtj``): level 0 = P, level 1 = AP."""

    name = STTMTJArray.family
    label = "STT-MTJs (TMR)"
    readout = STTMTJArray.readout
    amplitude_unit = STTMTJArray.amplitude_unit
    signal_unit = STTMTJArray.signal_unit
    simulator = STTMTJArray
    laws = (THERMAL,)
    calibration_protocol = "calibrate-stt"
    bench_roles = ("pulse_source", "source_meter", "switch")
    sweep = (0.5, 0.95, 1e-7)

    @classmethod
    def nominal_levels(cls, physics):
        """R_P and R_AP = R_P (1 + TMR), ohms."""
        return [physics.r_p, physics.r_p * (1 + physics.tmr)]

    @classmethod
    def energy_model(cls, physics):
        """``V^2 / R_P * t`` per pulse; ``V_read^2 <1/R> t_read`` per read (joules)."""
        levels = cls.nominal_levels(physics)
        read = physics.read_bias ** 2 * float(np.mean(1 / np.array(levels))) * physics.read_time
        return (lambda a, w: electrical_pulse_energy(a, physics.r_p, w)), read
