"""Binary SOT-MTJ physics: a current pulse through the heavy-metal line switches the free layer.

Level 0 is P (the reference after reset), level 1 AP. A positive pulse of current I (amperes)
switches P -> AP with probability ``sigmoid((I - i50) / i_width)``; a negative pulse switches
AP -> P with ``sigmoid((-I - i50) / i_width)``. The pulse width does not enter (a fixed-width
device model). Read by TMR: R_P or R_P (1 + TMR) plus Gaussian noise, ohms.
"""

from __future__ import annotations

import torch
from pydantic import Field

from analysis.energy import current_pulse_energy
from simulated_bench.physics.device_array import BinaryDeviceArray, PhysicsParams, spread


class SotMtjPhysics(PhysicsParams):
    """``[chip.physics]`` of a SOT-MTJ chip, SI units (the one place the defaults live)."""

    i50: float = Field(1.0e-3, gt=0, le=1, description="current of 50 % switching, amperes")
    i_width: float = Field(0.1e-3, gt=0, le=1, description="width of the sigmoid, amperes")
    i50_spread: float = Field(0.05, ge=0, le=0.5, description="relative device-to-device std of i50")
    r_p: float = Field(2e3, gt=0, le=1e9, description="parallel resistance, ohms")
    tmr: float = Field(1.0, gt=0, le=10, description="tunnelling magnetoresistance, fraction")
    r_line: float = Field(200.0, gt=0, le=1e6, description="heavy-metal line resistance (pulse energy), ohms")
    read_noise: float = Field(40.0, ge=0, le=1e9, description="resistance read noise std, ohms")
    read_bias: float = Field(0.05, gt=0, le=10, description="read bias, volts")
    read_time: float = Field(1e-6, gt=0, le=1, description="read integration time, seconds")


class SotMtjArray(BinaryDeviceArray):
    """``n`` SOT-MTJs with per-device i50 (amperes)."""

    family = "sot_mtj"
    amplitude_unit = "A"
    signal_unit = "Ohm"
    params_model = SotMtjPhysics

    def __init__(self, n: int, *, seed: int = 0, **params):
        p = self.params_model(**params)
        super().__init__(n, 2, seed, 0.0, 0.0)
        g = self.streams.construction
        self.i50 = spread(p.i50, p.i50_spread, n, g, lognormal=True)
        self.i_width = p.i_width
        self.r_line = p.r_line
        self.resistance_levels = torch.tensor([p.r_p, p.r_p * (1 + p.tmr)]).expand(n, 2)
        self.noise = torch.full((n,), p.read_noise)
        self.read_energy_j = float(p.read_bias ** 2 / p.r_p * p.read_time)

    def switch_probability(self, idx, amplitude, width):
        amplitude = torch.as_tensor(amplitude, dtype=torch.float32)
        return torch.sigmoid((amplitude - self._sel(self.i50, idx)) / self.i_width)

    def transition(self, idx, start, amplitude, width):
        amplitude = torch.as_tensor(amplitude, dtype=torch.float32)
        up = self.switch_probability(idx, amplitude, width)
        down = torch.sigmoid((-amplitude - self._sel(self.i50, idx)) / self.i_width)
        p_ap = torch.where(start == 0, up, 1.0 - down)
        return torch.stack([1.0 - p_ap, p_ap], dim=-1)

    def signal_levels(self, idx):
        return self._sel(self.resistance_levels, idx)

    def read_noise(self, idx):
        return self._sel(self.noise, idx)

    def pulse_energy(self, idx, start, amplitude, width):
        amplitude = torch.as_tensor(amplitude, dtype=torch.float32)
        return current_pulse_energy(amplitude, self.r_line, torch.as_tensor(width, dtype=torch.float32)).expand(len(start))
