"""Descriptor of K-state domain-wall MTJs: current pulses (amperes), TMR read-out (ohms)."""

from __future__ import annotations

import numpy as np
import torch

from analysis import fitting
from analysis import switching_laws as laws
from analysis.energy import current_pulse_energy
from simulated_bench.physics.dw_mtj import DWMTJArray

from .base import DeviceFamily, Law, LawParam


def _fit_landing(amplitude, width, counts, repeats, *, levels, level, **_):
    return fitting.fit_dwmtj_landing(amplitude, width, counts, levels, level=level)


def _landing_curve(amplitude, width, p, *, levels, **_):
    start = torch.zeros_like(amplitude)
    return 1.0 - laws.dwmtj_landing(start, amplitude, width, p["i_c"], p["mobility"], p["sigma"], levels)[..., 0]


LANDING = Law("landing", (LawParam("i_c", "A", "depinning current", "i_c"),
                          LawParam("mobility", "sites/(A s)", "wall mobility above i_c", "mobility"),
                          LawParam("sigma", "sites", "landing spread", "sigma")),
              _fit_landing, _landing_curve, level_counts=True, description="the wall moves mobility (|I| - i_c) t sites and lands Gaussian around it")


class DWMTJ(DeviceFamily):
    """K-state DW-MTJs (``simulated_bench.physics.dw_mtj``): level k = wall at pinning site k."""

    name = DWMTJArray.family
    label = "DW-MTJs (TMR)"
    readout = DWMTJArray.readout
    amplitude_unit = DWMTJArray.amplitude_unit
    signal_unit = DWMTJArray.signal_unit
    simulator = DWMTJArray
    laws = (LANDING,)
    calibration_protocol = "calibrate-dwmtj"
    bench_roles = ("pulse_source", "source_meter", "switch")
    sweep = (80e-6, 330e-6, 1e-8)

    @classmethod
    def levels(cls, physics):
        return physics.levels

    @classmethod
    def nominal_levels(cls, physics):
        """Resistance of each site, ohms: conductance linear from G_AP (site 0) to G_P (last site)."""
        g_ap, g_p = 1 / (physics.r_p * (1 + physics.tmr)), 1 / physics.r_p
        k = physics.levels
        return [1 / (g_ap + (g_p - g_ap) * i / (k - 1)) for i in range(k)]

    @classmethod
    def energy_model(cls, physics):
        """``I^2 R_AP t`` per pulse; ``V_read^2 <1/R> t_read`` per read (joules)."""
        levels = cls.nominal_levels(physics)
        read = physics.read_bias ** 2 * float(np.mean(1 / np.array(levels))) * physics.read_time
        r_ref = physics.r_p * (1 + physics.tmr)
        return (lambda a, w: current_pulse_energy(a, r_ref, w)), read
