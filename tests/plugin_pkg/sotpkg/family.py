"""The SOT-MTJ family's descriptor: what labctl needs to know to configure, calibrate and drive it."""

from __future__ import annotations

from pathlib import Path

from analysis import fitting
from analysis import switching_laws as laws
from analysis.energy import current_pulse_energy
from labctl.families import DeviceFamily, Law, LawParam

from .physics import SotMtjArray


def _fit_sigmoid(amplitude, width, counts, repeats, *, level, **_):
    """The sigmoid in current is the logistic law with x0 = i50, dx = 1 / i_width (a free floor)."""
    return fitting.fit_logistic(amplitude, counts, repeats, level=level)


def _sigmoid_curve(amplitude, width, p, **_):
    return laws.logistic_depinning(amplitude, p["x0"], p["dx"], p["a"])


SIGMOID = Law("sigmoid", (LawParam("x0", "A", "current of 50 % switching", "i50"),
                          LawParam("dx", "1/A", "slope, 1 / i_width"),
                          LawParam("a", "", "contrast")),
              _fit_sigmoid, _sigmoid_curve, per_width=True, description="p = sigmoid((I - i50) / i_width)")


class SotMtj(DeviceFamily):
    name = SotMtjArray.family
    label = "SOT-MTJs (TMR)"
    readout = "tmr"
    amplitude_unit = "A"
    signal_unit = "Ohm"
    simulator = SotMtjArray
    laws = (SIGMOID,)
    calibration_protocol = str(Path(__file__).with_name("calibrate-sot.toml"))
    bench_roles = ("pulse_source", "source_meter", "switch")
    sweep = (0.4e-3, 1.6e-3, 1e-8)

    @classmethod
    def nominal_levels(cls, physics):
        return [physics.r_p, physics.r_p * (1 + physics.tmr)]

    @classmethod
    def energy_model(cls, physics):
        read = physics.read_bias ** 2 / physics.r_p * physics.read_time
        return (lambda a, w: current_pulse_energy(a, physics.r_line, w)), read
