"""Binary spin-transfer-torque MTJ switched by voltage pulses, read by its resistance (TMR).

Level 0 is the parallel state P (low resistance, the reference after reset), level 1 the
antiparallel state AP, with ``R_AP = R_P * (1 + TMR)``. A positive pulse switches P -> AP, a
negative one AP -> P, each with its own thermal-activation law (Koch et al.):
``P = 1 - exp(-(t/tau0) * exp(-Delta * (1 - |V|/Vc0)))``. A pulse of the other polarity, or on a
device already in the target state, leaves it unchanged.
"""

from __future__ import annotations

import torch
from pydantic import Field

from analysis.energy import electrical_pulse_energy
from analysis.switching_laws import thermal_switching

from .device_array import BinaryDeviceArray, Index, PhysicsParams, spread

Tensor = torch.Tensor


class STTMTJPhysics(PhysicsParams):
    """Physics of simulated STT-MTJs, SI units: a station's ``[chip.physics]`` table."""

    r_p: float = Field(3e3, gt=0, le=1e9, description="parallel resistance, ohms (at most 1 Gohm)")
    tmr: float = Field(1.5, gt=0, le=10, description="tunnelling magnetoresistance, fraction")
    delta_p2ap: float = Field(45.0, gt=0, le=200, description="thermal stability P -> AP, dimensionless")
    vc0_p2ap: float = Field(0.8, gt=0, le=5, description="critical voltage P -> AP, volts")
    delta_ap2p: float = Field(42.0, gt=0, le=200, description="thermal stability AP -> P, dimensionless")
    vc0_ap2p: float = Field(0.6, gt=0, le=5, description="critical voltage AP -> P, volts")
    tau0: float = Field(1e-9, gt=0, le=1e-6, description="attempt time, seconds")
    delta_spread: float = Field(0.05, ge=0, le=0.5, description="relative device-to-device std of Delta")
    vc0_spread: float = Field(0.03, ge=0, le=0.5, description="relative std of Vc0")
    r_spread: float = Field(0.03, ge=0, le=0.5, description="relative std of R_P and 1 + TMR (lognormal)")
    read_noise: float = Field(60.0, ge=0, le=1e9, description="resistance read noise std, ohms (at most 1 Gohm)")
    read_bias: float = Field(0.05, gt=0, le=10, description="read bias, volts (at most 10 V)")
    read_time: float = Field(1e-6, gt=0, le=1, description="read integration time, seconds (at most 1 s)")
    reset_energy_j: float = Field(2e-12, ge=0, le=1, description="joules (at most 1 J)")


class STTMTJArray(BinaryDeviceArray):
    """``n`` STT-MTJs with per-device Delta, Vc0 for each direction, R_P and TMR.

    Parameters (keyword arguments, defaults in :class:`STTMTJPhysics`): r_p in ohms; tmr as a
    fraction (1.5 = 150 %); delta dimensionless; vc0 in volts; tau0 in seconds; read_noise in
    ohms; read_bias (volts) and read_time (seconds) set the read energy.
    """

    family = "stt_mtj"
    amplitude_unit = "V"
    signal_unit = "Ohm"
    params_model = STTMTJPhysics

    def __init__(self, n: int, *, seed: int = 0, **params):
        p = self.params_model(**params)
        r_p, tmr, tau0, read_noise, read_bias, read_time = p.r_p, p.tmr, p.tau0, p.read_noise, p.read_bias, p.read_time
        delta_p2ap, vc0_p2ap, delta_ap2p, vc0_ap2p = p.delta_p2ap, p.vc0_p2ap, p.delta_ap2p, p.vc0_ap2p
        delta_spread, vc0_spread, r_spread, reset_energy_j = p.delta_spread, p.vc0_spread, p.r_spread, p.reset_energy_j
        super().__init__(n, 2, seed, 0.0, reset_energy_j)
        g = self.streams.construction
        self.r_p = spread(r_p, r_spread, n, g, lognormal=True)
        self.r_ap = self.r_p * spread(1.0 + tmr, r_spread, n, g, lognormal=True)
        self.delta_p2ap = spread(delta_p2ap, delta_spread, n, g)
        self.vc0_p2ap = spread(vc0_p2ap, vc0_spread, n, g)
        self.delta_ap2p = spread(delta_ap2p, delta_spread, n, g)
        self.vc0_ap2p = spread(vc0_ap2p, vc0_spread, n, g)
        self.tau0 = tau0
        self.noise = torch.full((n,), read_noise)
        self.resistance_levels = torch.stack([self.r_p, self.r_ap], dim=-1)
        self.g_p = 1.0 / self.r_p
        self.slope_p2ap = self.delta_p2ap / self.vc0_p2ap  # 1/volts
        # Read energy: V^2/R * t, at the mean of the two resistances (per read, joules).
        self.read_energy_j = float(read_bias**2 / (0.5 * (r_p + r_p * (1 + tmr))) * read_time)

    def switch_probability(self, idx: Index, amplitude: Tensor, width: Tensor) -> Tensor:
        """P -> AP probability of a pulse.

        The thermal law of ``analysis.switching_laws.thermal_switching``, evaluated in place on
        one buffer with the per-device slope ``Delta / Vc0`` cached: this is the simulator's
        hot path (a test checks it equals the law). A negative pulse's torque favours P and
        raises the barrier: the law then gives ``(t/tau0) exp(-Delta (1 + |V|/Vc0))``, below
        1e-30 for the default parameters, with no special case needed.
        """
        amplitude = self._on_device(amplitude)
        width = self._on_device(width)
        # log(t / tau0) - Delta + (Delta / Vc0) * V, the log of the number of attempts that succeed
        log_rate_t = torch.addcmul(torch.log(width / self.tau0) - self._sel(self.delta_p2ap, idx),
                                   self._sel(self.slope_p2ap, idx), amplitude)
        return log_rate_t.clamp_(max=30.0).exp_().neg_().expm1_().neg_()

    def reverse_probability(self, idx: Index, amplitude: Tensor, width: Tensor) -> Tensor:
        """AP -> P probability of a pulse (zero for non-negative voltages)."""
        amplitude = self._on_device(amplitude)
        width = self._on_device(width)
        p = thermal_switching((-amplitude).clamp(min=0.0), width, self._sel(self.delta_ap2p, idx), self._sel(self.vc0_ap2p, idx), self.tau0)
        return torch.where(amplitude < 0, p, torch.zeros_like(p))

    def transition(self, idx: Index, start: Tensor, amplitude: Tensor, width: Tensor) -> Tensor:
        up = self.switch_probability(idx, amplitude, width)
        down = self.reverse_probability(idx, amplitude, width)
        p_ap = torch.where(start == 0, up, 1.0 - down)
        return torch.stack([1.0 - p_ap, p_ap], dim=-1)

    def signal_levels(self, idx: Index) -> Tensor:
        return self._sel(self.resistance_levels, idx)

    def read_noise(self, idx: Index) -> Tensor:
        return self._sel(self.noise, idx)

    def reference_pulse_energy(self, idx: Index, amplitude: Tensor, width: Tensor, m: int) -> float:
        """sum(V^2 / R_P * t) over devices in P, as one dot product with the cached conductances."""
        amplitude = self._on_device(amplitude).expand(m)
        width = self._on_device(width).expand(m)
        return float(torch.dot(amplitude * amplitude * width, self._sel(self.g_p, idx))) if m else 0.0

    def pulse_energy(self, idx: Index, start: Tensor, amplitude: Tensor, width: Tensor) -> Tensor:
        resistance = self.signal_levels(idx).gather(1, start.unsqueeze(1)).squeeze(1)
        amplitude = self._on_device(amplitude)
        return electrical_pulse_energy(amplitude, resistance, self._on_device(width))
