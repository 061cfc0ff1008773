"""Binary domain-wall nanowire with one pinning site, driven by field pulses, read by Kerr effect.

Level 0: the wall sits before the notch (reference, after re-nucleation); level 1: it has
passed. A field pulse of amplitude h (tesla) moves it past with probability p(h), from the
logistic law of Ellis et al. or the Gaussian-depinning erf; the pulse width does not enter the
law (the published curves are for one fixed width). Once past, the wall stays until reset.
The Kerr signal is the lock-in voltage, ``offset + contrast * level`` plus Gaussian read noise.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from analysis.energy import field_pulse_energy
from analysis.switching_laws import gaussian_depinning

from .device_array import BinaryDeviceArray, Index, PhysicsParams, spread

Tensor = torch.Tensor


class DWNanowirePhysics(PhysicsParams):
    """Physics of simulated DW nanowires, SI units: a station's ``[chip.physics]`` table."""

    law: Literal["logistic", "gaussian"] = "logistic"
    x0: float = Field(4.63168e-3, gt=0, le=10, description="mid-point depinning field, tesla (0 < x0 <= 10 T)")
    dx: float = Field(2.72741e3, gt=0, le=1e9, description="logistic slope, 1/tesla (at most 1e9)")
    a: float = Field(0.97813, ge=0, le=1, description="logistic contrast (floor = 1 - a)")
    sigma: float = Field(0.62e-3, gt=0, le=10, description="Gaussian depinning-field spread, tesla (at most 10 T)")
    x0_spread: float = Field(0.05, ge=0, le=0.5, description="relative device-to-device std of x0")
    dx_spread: float = Field(0.10, ge=0, le=1, description="relative std of dx (and sigma)")
    a_spread: float = Field(0.005, ge=0, le=0.2, description="absolute std of a")
    kerr_contrast: float = Field(1e-3, gt=0, le=10, description="lock-in signal step on switching, volts (at most 10 V)")
    kerr_offset: float = Field(2e-3, ge=-10, le=10, description="lock-in signal before switching, volts (|offset| <= 10 V)")
    read_noise: float = Field(1.5e-4, ge=0, le=10, description="Kerr read noise std, volts (at most 10 V)")
    field_energy_coefficient: float = Field(200.0, ge=0, le=1e9, description="field-line energy k in k*B^2*t, J/(T^2 s) (at most 1e9)")
    read_energy_j: float = Field(0.0, ge=0, le=1, description="energy per Kerr read dissipated on chip, joules (at most 1 J)")
    reset_energy_j: float = Field(0.0, ge=0, le=1, description="energy per re-nucleation, joules (at most 1 J)")


class DWNanowireArray(BinaryDeviceArray):
    """``n`` DW nanowires; per-wire (x0, dx, a) or (x0, sigma) with device-to-device spread.

    Parameters (keyword arguments, defaults and units in :class:`DWNanowirePhysics`): x0: mid-point
    field (tesla); dx: logistic slope (1/tesla); a: contrast (floor is 1 - a); sigma:
    depinning-field spread for the Gaussian law (tesla); kerr_contrast, kerr_offset and read_noise
    in volts; field_energy_coefficient in J/(T^2 s); energies in joules.
    """

    family = "dw_nanowire"
    amplitude_unit = "T"
    signal_unit = "V"
    readout = "kerr"
    params_model = DWNanowirePhysics

    def __init__(self, n: int, *, seed: int = 0, **params):
        p = self.params_model(**params)
        law, x0, dx, a, sigma = p.law, p.x0, p.dx, p.a, p.sigma
        x0_spread, dx_spread, a_spread, read_noise = p.x0_spread, p.dx_spread, p.a_spread, p.read_noise
        kerr_contrast, kerr_offset, field_energy_coefficient = p.kerr_contrast, p.kerr_offset, p.field_energy_coefficient
        read_energy_j, reset_energy_j = p.read_energy_j, p.reset_energy_j
        super().__init__(n, 2, seed, read_energy_j, reset_energy_j)
        g = self.streams.construction
        self.law = law
        self.x0 = spread(x0, x0_spread, n, g)
        self.dx = spread(dx, dx_spread, n, g, lognormal=True)
        self.a = (a + a_spread * torch.randn(n, generator=g, dtype=torch.float64)).clamp(0.0, 1.0).float()
        self.sigma = spread(sigma, dx_spread, n, g, lognormal=True)
        self.floor = 1.0 - self.a  # probability of passing at low field
        self.kerr_levels = torch.tensor([kerr_offset, kerr_offset + kerr_contrast]).expand(n, 2)
        self.noise = torch.full((n,), read_noise)
        self.field_energy_coefficient = field_energy_coefficient

    def switch_probability(self, idx: Index, amplitude: Tensor, width: Tensor) -> Tensor:
        """Depinning probability per wire. The logistic law is evaluated in place on one buffer
        (the simulator's hot path; a test checks it equals ``logistic_depinning``)."""
        if isinstance(amplitude, Tensor):
            amplitude = amplitude.to(self.device)  # dtype kept
        if self.law == "logistic":
            p = torch.sub(amplitude, self._sel(self.x0, idx))
            return p.mul_(self._sel(self.dx, idx)).sigmoid_().mul_(self._sel(self.a, idx)).add_(self._sel(self.floor, idx))
        return gaussian_depinning(amplitude, self._sel(self.x0, idx), self._sel(self.sigma, idx))

    def transition(self, idx: Index, start: Tensor, amplitude: Tensor, width: Tensor) -> Tensor:
        p = self.switch_probability(idx, amplitude, width) * (start == 0)
        p = torch.where(start == 1, torch.ones_like(p), p)
        return torch.stack([1.0 - p, p], dim=-1)

    def signal_levels(self, idx: Index) -> Tensor:
        return self._sel(self.kerr_levels, idx)

    def read_noise(self, idx: Index) -> Tensor:
        return self._sel(self.noise, idx)

    def reference_pulse_energy(self, idx: Index, amplitude: Tensor, width: Tensor, m: int) -> float:
        """k * sum(B^2 * t), as one dot product: the field energy does not depend on the state."""
        amplitude = self._on_device(amplitude).expand(m)
        width = self._on_device(width).expand(m)
        return self.field_energy_coefficient * float(torch.dot(amplitude * amplitude, width)) if m else 0.0

    def pulse_energy(self, idx: Index, start: Tensor, amplitude: Tensor, width: Tensor) -> Tensor:
        amplitude = self._on_device(amplitude)
        width = self._on_device(width)
        return field_pulse_energy(amplitude, width, self.field_energy_coefficient).expand(len(start))
