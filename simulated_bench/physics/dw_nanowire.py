"""Binary domain-wall nanowire with one pinning site, driven by field pulses, read by Kerr effect.

Level 0: the wall sits before the notch (reference, after re-nucleation); level 1: it has
passed. A field pulse of amplitude h (tesla) moves it past with probability p(h), from the
logistic law of Ellis et al. or the Gaussian-depinning erf; the pulse width does not enter the
law (the published curves are for one fixed width). Once past, the wall stays until reset.
The Kerr signal is the lock-in voltage, ``offset + contrast * level`` plus Gaussian read noise.
"""

from __future__ import annotations

import torch

from analysis.energy import field_pulse_energy
from analysis.switching_laws import gaussian_depinning

from .device_array import BinaryDeviceArray, Index, spread

Tensor = torch.Tensor


class DWNanowireArray(BinaryDeviceArray):
    """``n`` DW nanowires; per-wire (x0, dx, a) or (x0, sigma) with device-to-device spread.

    x0: mid-point field (tesla); dx: logistic slope (1/tesla); a: contrast (floor is 1 - a);
    sigma: depinning-field spread for the Gaussian law (tesla); kerr_contrast, kerr_offset and
    read_noise in volts; field_energy_coefficient in J/(T^2 s); energies in joules.
    """

    family = "dw_nanowire"
    amplitude_unit = "T"
    signal_unit = "V"

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        law: str = "logistic",
        x0: float = 4.63168e-3,
        dx: float = 2.72741e3,
        a: float = 0.97813,
        sigma: float = 0.62e-3,
        x0_spread: float = 0.05,
        dx_spread: float = 0.10,
        a_spread: float = 0.005,
        kerr_contrast: float = 1e-3,
        kerr_offset: float = 2e-3,
        read_noise: float = 1.5e-4,
        field_energy_coefficient: float = 1e-3,
        read_energy_j: float = 0.0,
        reset_energy_j: float = 0.0,
    ):
        super().__init__(n, 2, seed, read_energy_j, reset_energy_j)
        if law not in ("logistic", "gaussian"):
            raise ValueError(f"law must be 'logistic' or 'gaussian', got {law!r}")
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
        amplitude = torch.as_tensor(amplitude, dtype=torch.float32).expand(m)
        width = torch.as_tensor(width, dtype=torch.float32).expand(m)
        return self.field_energy_coefficient * float(torch.dot(amplitude * amplitude, width)) if m else 0.0

    def pulse_energy(self, idx: Index, start: Tensor, amplitude: Tensor, width: Tensor) -> Tensor:
        amplitude = torch.as_tensor(amplitude, dtype=torch.float32)
        width = torch.as_tensor(width, dtype=torch.float32)
        return field_pulse_energy(amplitude, width, self.field_energy_coefficient).expand(len(start))
