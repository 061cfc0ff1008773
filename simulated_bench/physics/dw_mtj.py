"""Multi-state domain-wall MTJ: K pinning sites along a track, moved by current pulses, read by TMR.

The wall sits at one of ``levels`` sites (0 .. K-1; reset drives it to site 0). A current pulse
moves it by ``mobility * (|I| - I_c) * t`` sites in the direction of the current's sign; where it
stops is Gaussian around that target with a per-device spread ``sigma`` (sites), and it pins at
the nearest site (the end sites absorb over- and undershoot). The conductance is linear in the
wall position between G_AP (site 0) and G_P (site K-1).
"""

from __future__ import annotations

import torch
from pydantic import Field

from analysis.energy import current_pulse_energy
from analysis.switching_laws import dwmtj_landing, dwmtj_landing_cdf

from .device_array import DeviceArray, Index, PhysicsParams, spread

Tensor = torch.Tensor


class DWMTJPhysics(PhysicsParams):
    """Physics of simulated K-state DW-MTJs, SI units: a station's ``[chip.physics]`` table."""

    levels: int = Field(5, ge=2, le=16, description="pinning sites K")
    i_c: float = Field(100e-6, gt=0, le=1, description="depinning current, amperes (at most 1 A)")
    mobility: float = Field(2e12, gt=0, le=1e20, description="sites per ampere-second above i_c (at most 1e20)")
    sigma: float = Field(0.15, gt=0, le=5, description="landing spread, sites")
    i_c_spread: float = Field(0.05, ge=0, le=0.5, description="relative device-to-device std of i_c (lognormal)")
    mobility_spread: float = Field(0.05, ge=0, le=0.5, description="relative std of the mobility (lognormal)")
    sigma_spread: float = Field(0.2, ge=0, le=1, description="relative std of sigma (lognormal)")
    r_p: float = Field(3e3, gt=0, le=1e9, description="ohms, wall at the last site (at most 1 Gohm)")
    tmr: float = Field(1.0, gt=0, le=10, description="tunnelling magnetoresistance, fraction")
    read_noise: float = Field(20.0, ge=0, le=1e9, description="ohms (at most 1 Gohm)")
    read_bias: float = Field(0.05, gt=0, le=10, description="volts (at most 10 V)")
    read_time: float = Field(1e-6, gt=0, le=1, description="seconds (at most 1 s)")
    reset_energy_j: float = Field(5e-12, ge=0, le=1, description="joules (at most 1 J)")


class DWMTJArray(DeviceArray):
    """``n`` K-state DW-MTJs with per-device I_c, mobility and landing spread.

    Parameters (keyword arguments, defaults in :class:`DWMTJPhysics`): i_c in amperes; mobility in
    sites per ampere-second above I_c; sigma in sites; r_p in ohms (resistance with the wall at the
    last site); tmr as a fraction; read_noise in ohms.
    """

    family = "dw_mtj"
    amplitude_unit = "A"
    signal_unit = "Ohm"
    params_model = DWMTJPhysics

    def __init__(self, n: int, *, seed: int = 0, **params):
        p = self.params_model(**params)
        levels, i_c, mobility, sigma = p.levels, p.i_c, p.mobility, p.sigma
        i_c_spread, mobility_spread, sigma_spread = p.i_c_spread, p.mobility_spread, p.sigma_spread
        r_p, tmr, read_noise, read_bias, read_time, reset_energy_j = p.r_p, p.tmr, p.read_noise, p.read_bias, p.read_time, p.reset_energy_j
        super().__init__(n, levels, seed, 0.0, reset_energy_j)
        g = self.streams.construction
        self.i_c = spread(i_c, i_c_spread, n, g, lognormal=True)
        self.mobility = spread(mobility, mobility_spread, n, g, lognormal=True)
        self.sigma = spread(sigma, sigma_spread, n, g, lognormal=True)
        g_p = 1.0 / r_p
        g_ap = 1.0 / (r_p * (1.0 + tmr))
        conductance = g_ap + (g_p - g_ap) * torch.arange(levels, dtype=torch.float32) / (levels - 1)
        self.resistance_levels = (1.0 / conductance).expand(n, levels)
        self.noise = torch.full((n,), read_noise)
        self.read_energy_j = float(read_bias**2 * conductance.mean() * read_time)

    def transition(self, idx: Index, start: Tensor, amplitude: Tensor, width: Tensor) -> Tensor:
        amplitude = self._on_device(amplitude).expand(len(start))
        width = self._on_device(width).expand(len(start))
        return dwmtj_landing(
            start.float(), amplitude, width,
            self._sel(self.i_c, idx), self._sel(self.mobility, idx), self._sel(self.sigma, idx), self.levels,
        )

    def reference_cdf(self, idx: Index, amplitude: Tensor, width: Tensor) -> Tensor:
        m = self._count(idx)
        amplitude = self._on_device(amplitude).expand(m)
        width = self._on_device(width).expand(m)
        return dwmtj_landing_cdf(
            torch.zeros(m, device=self.device), amplitude, width,
            self._sel(self.i_c, idx), self._sel(self.mobility, idx), self._sel(self.sigma, idx), self.levels,
        )

    def signal_levels(self, idx: Index) -> Tensor:
        return self._sel(self.resistance_levels, idx)

    def read_noise(self, idx: Index) -> Tensor:
        return self._sel(self.noise, idx)

    def pulse_energy(self, idx: Index, start: Tensor, amplitude: Tensor, width: Tensor) -> Tensor:
        resistance = self.signal_levels(idx).gather(1, start.unsqueeze(1)).squeeze(1)
        amplitude = self._on_device(amplitude)
        return current_pulse_energy(amplitude, resistance, self._on_device(width))

    def programming_current(self, idx: Index, target: Tensor, width: float, start: Tensor | float = 0) -> Tensor:
        """Current (amperes) that aims the wall from ``start`` at site ``target`` with a pulse of ``width`` s.

        Uses this device's true I_c and mobility: what a perfect calibration would give.
        """
        distance = self._on_device(target) - self._on_device(start)
        magnitude = self._sel(self.i_c, idx) + distance.abs() / (self._sel(self.mobility, idx) * width)
        return torch.sign(distance) * magnitude
