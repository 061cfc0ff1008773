"""Switching laws of the three device families, as vectorised torch functions.

Every function broadcasts over its tensor arguments, so one call evaluates a law for a whole
array of devices (parameters of shape ``(n,)``) at many pulse amplitudes (shape ``(n, m)`` after
``unsqueeze``). The simulator draws from these laws, the training rules differentiate through
them, and the calibration fits estimate their parameters: there is one copy of each law.

Units are SI throughout: field in tesla, current in amperes, voltage in volts, time in seconds.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor

SQRT2 = math.sqrt(2.0)


def logistic_depinning(h: Tensor, x0: Tensor, dx: Tensor, a: Tensor) -> Tensor:
    """Probability that a domain wall passes a pinning site in one field pulse (Ellis et al.).

    ``p = (1 - a) + a * sigmoid(dx * (h - x0))``

    h: field pulse amplitude (tesla); x0: field of the curve's mid-point (tesla); dx: slope
    (1/tesla); a: contrast, so that ``1 - a`` is the floor probability at low field.
    """
    return (1.0 - a) + a * torch.sigmoid(dx * (h - x0))


def gaussian_depinning(h: Tensor, h0: Tensor, sigma: Tensor) -> Tensor:
    """Depinning probability for a Gaussian-distributed depinning field.

    ``p = 0.5 * (1 + erf((h - h0) / (sqrt(2) * sigma)))``; h, h0 and sigma in tesla.
    Its logistic approximation has slope ``dx`` of about ``1.7 / sigma``.
    """
    return 0.5 * (1.0 + torch.erf((h - h0) / (SQRT2 * sigma)))


def thermal_switching(
    v: Tensor, t: Tensor, delta: Tensor, vc0: Tensor, tau0: Tensor | float = 1e-9
) -> Tensor:
    """Thermally activated STT-MTJ switching probability (Neel-Brown / Koch et al. 2004).

    ``P = 1 - exp(-(t / tau0) * exp(-delta * (1 - v / vc0)))``

    v: pulse voltage magnitude (volts); t: pulse width (seconds); delta: thermal stability
    (dimensionless, 40-60); vc0: critical voltage at zero temperature (volts); tau0: attempt
    time (seconds). Computed as ``-expm1(-rate * t)`` so that small probabilities keep their
    precision; the exponent is clamped so that voltages far above vc0 give P = 1, not overflow.
    """
    log_rate_t = torch.log(t / tau0) - delta * (1.0 - v / vc0)
    return -torch.expm1(-torch.exp(log_rate_t.clamp(max=30.0)))


def dwmtj_displacement(i: Tensor, t: Tensor, i_c: Tensor, mobility: Tensor) -> Tensor:
    """Mean domain-wall displacement, in pinning sites, caused by one current pulse.

    The wall moves only above the depinning current: ``d = sign(i) * mobility * relu(|i| - i_c) * t``.
    i: pulse current (amperes, the sign sets the direction); t: pulse width (seconds);
    i_c: depinning current (amperes); mobility: sites per ampere-second above threshold.
    """
    return torch.sign(i) * mobility * torch.relu(i.abs() - i_c) * t


def level_cdf(position: Tensor, sigma: Tensor, levels: int) -> Tensor:
    """Cumulative level probabilities ``P(level <= k)`` for k = 0 .. levels-2 (the last is 1).

    The wall's continuous landing position is Gaussian with mean ``position`` and standard
    deviation ``sigma`` (both in sites); it pins at the nearest site, and the two end sites
    absorb everything beyond them. Trailing dimension ``levels - 1``; ``sigma`` must be positive.
    """
    edges = torch.arange(levels - 1, dtype=position.dtype, device=position.device) + 0.5
    return 0.5 * torch.erfc((position.unsqueeze(-1) - edges) / (SQRT2 * sigma.unsqueeze(-1)))


def cdf_to_probabilities(cdf: Tensor) -> Tensor:
    """Level probabilities from the interior cumulative probabilities (trailing size K-1 -> K)."""
    return torch.diff(cdf, dim=-1, prepend=torch.zeros_like(cdf[..., :1]), append=torch.ones_like(cdf[..., :1])).clamp(min=0.0)


def level_probabilities(position: Tensor, sigma: Tensor, levels: int) -> Tensor:
    """Probability of each of ``levels`` pinning sites (see :func:`level_cdf`); sums to 1."""
    return cdf_to_probabilities(level_cdf(position, sigma, levels))


def dwmtj_landing_cdf(
    start: Tensor, i: Tensor, t: Tensor, i_c: Tensor, mobility: Tensor, sigma: Tensor, levels: int
) -> Tensor:
    """Cumulative level probabilities after one current pulse (the K-level DW-MTJ landing model).

    start: level before the pulse (0 .. levels-1); i, t: pulse current (amperes) and width
    (seconds); i_c, mobility: as in :func:`dwmtj_displacement`; sigma: landing spread in sites
    (cycle-to-cycle randomness of where the wall stops). A pulse below threshold leaves the wall
    where it is.
    """
    d = dwmtj_displacement(i, t, i_c, mobility)
    # A wall that does not move stays exactly at its (integer) site: a vanishing spread pins it.
    spread = torch.where(d != 0, sigma, torch.full_like(sigma, 1e-6))
    return level_cdf(start + d, spread, levels)


def dwmtj_landing(
    start: Tensor, i: Tensor, t: Tensor, i_c: Tensor, mobility: Tensor, sigma: Tensor, levels: int
) -> Tensor:
    """Probability of each level after one current pulse (see :func:`dwmtj_landing_cdf`)."""
    return cdf_to_probabilities(dwmtj_landing_cdf(start, i, t, i_c, mobility, sigma, levels))


def threshold_read_errors(contrast: Tensor, noise: Tensor) -> Tensor:
    """Probability of misreading a binary device decoded at the midpoint of its two signals.

    contrast: difference between the two signal levels; noise: standard deviation of the
    Gaussian read noise (same unit). Both kinds of error have this same probability.
    """
    return 0.5 * (1.0 - torch.erf(contrast.abs() / (2.0 * SQRT2 * noise)))


def read_confusion(signal_levels: Tensor, noise: Tensor) -> Tensor:
    """Confusion matrix of a nearest-level read with Gaussian read noise.

    signal_levels: ``(..., K)`` raw signal of each level, sorted ascending or descending;
    noise: ``(...)`` read-noise standard deviation. Returns ``(..., K, K)`` where entry
    ``[s, r]`` is the probability that true level ``s`` is read as level ``r``.
    """
    ascending = signal_levels[..., -1:] >= signal_levels[..., :1]
    ordered = torch.where(ascending, signal_levels, signal_levels.flip(-1))
    bounds = 0.5 * (ordered[..., 1:] + ordered[..., :-1])  # (..., K-1)
    z = (bounds.unsqueeze(-2) - ordered.unsqueeze(-1)) / (SQRT2 * noise[..., None, None])
    cdf = 0.5 * (1.0 + torch.erf(z))  # (..., K, K-1): P(signal of true level s < bound r)
    zeros = torch.zeros_like(cdf[..., :1])
    ones = torch.ones_like(cdf[..., :1])
    cdf = torch.cat([zeros, cdf, ones], dim=-1)
    confusion = (cdf[..., 1:] - cdf[..., :-1]).clamp(min=0.0)
    flipped = confusion.flip(-1).flip(-2)
    return torch.where(ascending.unsqueeze(-1), confusion, flipped)


def thermal_switching_voltage(
    p: Tensor, t: Tensor, delta: Tensor, vc0: Tensor, tau0: Tensor | float = 1e-9
) -> Tensor:
    """Pulse voltage that switches an STT-MTJ with probability ``p`` in a pulse of width ``t``.

    The inverse of :func:`thermal_switching` in ``v``:
    ``v = vc0 * (1 + ln(-ln(1 - p) * tau0 / t) / delta)``.
    p: switching probability in (0, 1); t: pulse width (seconds); delta, vc0 (volts), tau0
    (seconds) as in :func:`thermal_switching`. Returns the voltage magnitude in volts.
    """
    p = torch.as_tensor(p, dtype=torch.float64)
    t = torch.as_tensor(t, dtype=torch.float64)
    return vc0 * (1.0 + torch.log(-torch.log1p(-p) * tau0 / t) / delta)
