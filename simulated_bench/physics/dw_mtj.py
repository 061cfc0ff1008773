"""Multi-state domain-wall MTJ: K pinning sites along a track, moved by current pulses, read by TMR.

The wall sits at one of ``levels`` sites (0 .. K-1; reset drives it to site 0). A current pulse
moves it by ``mobility * (|I| - I_c) * t`` sites in the direction of the current's sign; where it
stops is Gaussian around that target with a per-device spread ``sigma`` (sites), and it pins at
the nearest site (the end sites absorb over- and undershoot). The conductance is linear in the
wall position between G_AP (site 0) and G_P (site K-1).
"""

from __future__ import annotations

import torch

from analysis.energy import current_pulse_energy
from analysis.switching_laws import dwmtj_landing, dwmtj_landing_cdf

from .device_array import DeviceArray, Index, spread

Tensor = torch.Tensor


class DWMTJArray(DeviceArray):
    """``n`` K-state DW-MTJs with per-device I_c, mobility and landing spread.

    i_c in amperes; mobility in sites per ampere-second above I_c; sigma in sites; r_p in ohms
    (resistance with the wall at the last site); tmr as a fraction; read_noise in ohms.
    """

    family = "dw_mtj"
    amplitude_unit = "A"
    signal_unit = "Ohm"

    def __init__(
        self,
        n: int,
        *,
        levels: int = 5,
        seed: int = 0,
        i_c: float = 100e-6,
        mobility: float = 2e12,
        sigma: float = 0.15,
        i_c_spread: float = 0.05,
        mobility_spread: float = 0.05,
        sigma_spread: float = 0.2,
        r_p: float = 3e3,
        tmr: float = 1.0,
        read_noise: float = 20.0,
        read_bias: float = 0.05,
        read_time: float = 1e-6,
        reset_energy_j: float = 5e-12,
    ):
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
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
        amplitude = torch.as_tensor(amplitude, dtype=torch.float32).expand(len(start))
        width = torch.as_tensor(width, dtype=torch.float32).expand(len(start))
        return dwmtj_landing(
            start.float(), amplitude, width,
            self._sel(self.i_c, idx), self._sel(self.mobility, idx), self._sel(self.sigma, idx), self.levels,
        )

    def reference_cdf(self, idx: Index, amplitude: Tensor, width: Tensor) -> Tensor:
        m = self._count(idx)
        amplitude = torch.as_tensor(amplitude, dtype=torch.float32).expand(m)
        width = torch.as_tensor(width, dtype=torch.float32).expand(m)
        return dwmtj_landing_cdf(
            torch.zeros(m), amplitude, width,
            self._sel(self.i_c, idx), self._sel(self.mobility, idx), self._sel(self.sigma, idx), self.levels,
        )

    def signal_levels(self, idx: Index) -> Tensor:
        return self._sel(self.resistance_levels, idx)

    def read_noise(self, idx: Index) -> Tensor:
        return self._sel(self.noise, idx)

    def pulse_energy(self, idx: Index, start: Tensor, amplitude: Tensor, width: Tensor) -> Tensor:
        resistance = self.signal_levels(idx).gather(1, start.unsqueeze(1)).squeeze(1)
        amplitude = torch.as_tensor(amplitude, dtype=torch.float32)
        return current_pulse_energy(amplitude, resistance, torch.as_tensor(width, dtype=torch.float32))

    def programming_current(self, idx: Index, target: Tensor, width: float, start: Tensor | float = 0) -> Tensor:
        """Current (amperes) that aims the wall from ``start`` at site ``target`` with a pulse of ``width`` s.

        Uses this device's true I_c and mobility: what a perfect calibration would give.
        """
        distance = torch.as_tensor(target, dtype=torch.float32) - torch.as_tensor(start, dtype=torch.float32)
        magnitude = self._sel(self.i_c, idx) + distance.abs() / (self._sel(self.mobility, idx) * width)
        return torch.sign(distance) * magnitude
