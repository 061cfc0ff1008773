"""Batched maximum-likelihood fits of the switching laws to per-device trial counts.

Every fit takes the counts of many devices at once (``n`` devices, ``m`` pulse amplitudes per
device) and fits all of them in one call, without a Python loop over devices: devices are
independent, so the summed negative log-likelihood separates, and the per-device gradients
and ``(P, P)`` Hessians come out of a few batched autograd passes. The optimiser is a damped
Newton method (Levenberg-Marquardt, one damping factor per device) that freezes each device
as soon as it has converged.

Parameterisation. The natural parameters have awkward SI scales (fields ~1e-3 T, slopes
~1e3 /T, mobilities ~1e12 sites/(A s)), so each fit works in float64 in internal, normalised
parameters: locations (``x0``, ``h0``, ``i_c``) as offsets from their initial value in units
of the curve's width (for ``i_c``: of one site of displacement), positive quantities (``dx``,
``sigma``, ``mobility``) as logarithms relative to their initial value, the contrast ``a`` as
``logit(a)``, and for the thermal law ``log(delta)`` and ``log(delta / vc0)`` (intercept and
slope of the linearised law). Everything is reported in the natural parameters:

* ``estimate`` -- the maximum-likelihood estimate;
* ``stderr`` -- square roots of the diagonal of the inverse observed Fisher information
  (Hessian of the negative log-likelihood at the maximum), carried to the natural parameters
  by the delta method, ``cov = J H^-1 J^T`` with ``J = d natural / d internal``;
* ``ci_low``, ``ci_high`` -- Wald intervals at ``level``. For the parameters one quotes as
  "value +/- error" (``x0``, ``h0``, ``delta``, ``vc0``, ``i_c``) it is the natural-scale
  interval ``estimate -/+ z * stderr``, clipped at 0 for ``delta``, ``vc0`` and ``i_c``. For
  the scale parameters (``dx``, ``sigma``, ``mobility``) it is the Wald interval of the log,
  ``estimate * exp(-/+ z * stderr_log)``, and for ``a`` that of the logit, mapped back: both
  stay inside the parameter's domain and are better calibrated for a skewed likelihood (for
  ``a`` near 1 the symmetric interval undercovers markedly). Here ``stderr_log`` =
  ``stderr / estimate`` and ``stderr_logit = stderr / (a (1 - a))`` (delta method).

Likelihood. Probabilities from the laws are pulled away from 0 and 1 by mixing with a tiny
constant (``p -> eps + (1 - 2 eps) p``, ``eps = 1e-12``), which keeps the log-likelihood and
its derivatives finite when the model says an observed outcome is impossible. ``loglik`` is
the full log-likelihood including the binomial / multinomial coefficients, so that it is
comparable between laws fitted to the same counts.

Failure handling. A device is ``converged`` only if all of these hold:

* the damped Newton iteration reached a stationary point (Newton decrement ``g^T H^-1 g``
  below 1e-10: the last step was ~1e-5 standard errors) with a positive-definite Hessian;
* the point is strictly inside the box that bounds the internal parameters (a maximum that
  runs off to infinity is not an estimate);
* every parameter is identified: finite standard errors, and on the internal scale below 100
  (100 curve widths for a location, a factor e^100 for a log-parameter); ``logit(a)`` is
  exempt, since ``a -> 1`` is a legitimate boundary estimate whose logit-scale interval stays
  inside ``(0, 1]``;
* the data can identify the law at all (binomial: some trials, not all with one outcome;
  multinomial: some counts).

Otherwise ``converged`` is False; estimates are still finite (the best point found), standard
errors that cannot be computed are ``inf`` and the interval is then the whole domain. No NaN
is returned for finite input.

Nothing here imports the rest of labctl.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from .switching_laws import SQRT2, cdf_to_probabilities, gaussian_depinning

Tensor = torch.Tensor

__all__ = [
    "FitResult",
    "fit_logistic",
    "fit_gaussian",
    "fit_thermal",
    "fit_dwmtj_landing",
]

DTYPE = torch.float64
_EPS = 1e-12  # probabilities are mixed as eps + (1 - 2 eps) p in the log-likelihood
_LOG_BOX = 25.0  # bound on log-parameters relative to their initial value (factor ~7e10)
_LOC_BOX = 1e4  # bound on location offsets, in units of the curve width
_LOGIT_BOX = 30.0  # bound on logit(a)
_DEC_TOL = 1e-10  # Newton decrement g^T H^-1 g (nats); = squared step in standard errors
_MAX_ITER = 100
_STALL_TOL = 1e-13  # relative NLL gain below which an iteration counts as no progress
_STALL_ITERS = 5  # that many such iterations in a row: give up on the device
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SE_MAX = 100.0  # internal-scale standard error beyond which a parameter counts as unidentified


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitResult:
    """Per-device maximum-likelihood estimates of one law's parameters.

    names: parameter names, in column order. estimate, stderr, ci_low, ci_high: ``(n, P)``
    float64 tensors in natural (SI) units; stderr from the inverse observed Fisher information
    (delta method through the internal parameterisation); ci_low / ci_high: Wald interval at
    ``level`` -- natural scale for x0, h0, delta, vc0, i_c; log / logit scale mapped back for
    dx, sigma, mobility and a (see the module docstring). loglik: ``(n,)`` full
    log-likelihood at the estimate. converged: ``(n,)`` bool (see the module docstring).
    cov: ``(n, P, P)`` covariance of the estimates (natural units; ``inf`` where unavailable).
    n_iter: ``(n,)`` number of damped Newton iterations used.
    """

    names: tuple[str, ...]
    estimate: Tensor
    stderr: Tensor
    ci_low: Tensor
    ci_high: Tensor
    loglik: Tensor
    converged: Tensor
    level: float
    cov: Tensor | None = None
    n_iter: Tensor | None = None

    def __len__(self) -> int:
        return int(self.estimate.shape[0])

    def _column(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown parameter {name!r}; this fit has {self.names}") from None

    def param(self, name: str) -> Tensor:
        """``(n,)`` estimates of parameter ``name``."""
        return self.estimate[:, self._column(name)]

    def stderr_of(self, name: str) -> Tensor:
        """``(n,)`` standard errors of parameter ``name``."""
        return self.stderr[:, self._column(name)]

    def interval(self, name: str) -> tuple[Tensor, Tensor]:
        """``(low, high)``, each ``(n,)``: the Wald interval of parameter ``name`` at ``level``."""
        j = self._column(name)
        return self.ci_low[:, j], self.ci_high[:, j]

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Flat dict of numpy arrays for storage (e.g. one HDF5 dataset per key).

        Keys: ``<name>``, ``<name>_stderr``, ``<name>_ci_low``, ``<name>_ci_high`` for each
        parameter (each ``(n,)`` float64), ``loglik`` ``(n,)`` and ``converged`` ``(n,)`` bool.
        ``level`` is an attribute of the result, not an array.
        """
        out: dict[str, np.ndarray] = {}
        for j, name in enumerate(self.names):
            out[name] = self.estimate[:, j].detach().cpu().numpy().copy()
            out[f"{name}_stderr"] = self.stderr[:, j].detach().cpu().numpy().copy()
            out[f"{name}_ci_low"] = self.ci_low[:, j].detach().cpu().numpy().copy()
            out[f"{name}_ci_high"] = self.ci_high[:, j].detach().cpu().numpy().copy()
        out["loglik"] = self.loglik.detach().cpu().numpy().copy()
        out["converged"] = self.converged.detach().cpu().numpy().astype(bool)
        return out


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _as_tensor(x: Any, name: str, device: torch.device | None = None) -> Tensor:
    try:
        t = torch.as_tensor(x, device=device)
    except Exception as exc:  # noqa: BLE001 - re-raised with the argument's name
        raise ValueError(f"{name}: expected a number or array of numbers, got {type(x).__name__}") from exc
    if t.is_complex():
        raise ValueError(f"{name}: expected real numbers, got complex {t.dtype}")
    if t.dtype == torch.bool:
        t = t.to(torch.int64)
    t = t.to(dtype=DTYPE, device=device)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return t


def _device_of(*xs: Any) -> torch.device:
    for x in xs:
        if isinstance(x, Tensor):
            return x.device
    return torch.device("cpu")


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a confidence level strictly between 0 and 1, got {level}")
    return level


def _counts(x: Any, name: str, device: torch.device, ndim: int) -> Tensor:
    t = _as_tensor(x, name, device)
    if t.dim() != ndim:
        shape = "(n, m)" if ndim == 2 else "(n, m, levels)"
        raise ValueError(f"{name}: expected a {ndim}-D array of counts with shape {shape}, got shape {tuple(t.shape)}")
    if bool((t < 0).any()):
        raise ValueError(f"{name}: counts must be non-negative, got minimum {t.min().item():g}")
    if not bool((t == t.round()).all()):
        raise ValueError(f"{name}: counts must be whole numbers")
    return t


def _per_point(x: Any, name: str, n: int, m: int, device: torch.device, allow_scalar: bool = False) -> Tensor:
    """A per-pulse quantity given as (m,) shared by all devices, or (n, m) per device.

    Always returned contiguous: some torch reductions (median) misbehave on expanded views.
    """
    return _per_point_view(x, name, n, m, device, allow_scalar).contiguous()


def _per_point_view(x: Any, name: str, n: int, m: int, device: torch.device, allow_scalar: bool) -> Tensor:
    t = _as_tensor(x, name, device)
    expected = ("a scalar, " if allow_scalar else "") + f"shape (m,) = ({m},) or (n, m) = ({n}, {m})"
    if t.dim() == 0 and allow_scalar:
        return t.expand(n, m)
    if t.dim() == 1 and t.shape[0] == m:
        return t.unsqueeze(0).expand(n, m)
    if t.dim() == 2 and tuple(t.shape) == (n, m):
        return t
    raise ValueError(f"{name}: expected {expected}, got shape {tuple(t.shape)}")


def _binomial_inputs(x: Any, x_name: str, switched: Any, trials: Any) -> tuple[Tensor, Tensor, Tensor]:
    """Validated (x, switched, trials), each ``(n, m)`` float64."""
    device = _device_of(switched, x, trials)
    k = _counts(switched, "switched", device, 2)
    n, m = k.shape
    if m == 0:
        raise ValueError("switched: expected at least one pulse amplitude per device (m >= 1), got m = 0")
    h = _per_point(x, x_name, n, m, device)
    N = _as_tensor(trials, "trials", device)
    try:
        if N.dim() > 2:
            raise RuntimeError
        N = torch.broadcast_to(N, (n, m)).contiguous()
    except RuntimeError:
        raise ValueError(
            f"trials: expected an int or an array broadcastable to (n, m) = ({n}, {m}) -- e.g. (m,), "
            f"(n, 1) or (n, m) -- got shape {tuple(N.shape)}"
        ) from None
    if bool((N < 0).any()):
        raise ValueError(f"trials: must be non-negative, got minimum {N.min().item():g}")
    if not bool((N == N.round()).all()):
        raise ValueError("trials: must be whole numbers")
    bad = k > N
    if bool(bad.any()):
        i, j = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"switched: must not exceed trials, but device {i} pulse {j} has switched={k[i, j].item():g} "
            f"> trials={N[i, j].item():g}"
        )
    return h, k, N


def _init_matrix(init: Any, names: tuple[str, ...], auto: Tensor) -> Tensor:
    """Merge a user's ``init`` (mapping name -> scalar/(n,), or (P,)/(n, P) array) into ``auto``."""
    if init is None:
        return auto
    n, P = auto.shape
    out = auto.clone()
    if isinstance(init, Mapping):
        unknown = set(init) - set(names)
        if unknown:
            raise ValueError(f"init: unknown parameter(s) {sorted(unknown)}; expected names from {names}")
        for name, value in init.items():
            v = _as_tensor(value, f"init[{name!r}]", auto.device)
            if v.dim() == 0:
                v = v.expand(n)
            if tuple(v.shape) != (n,):
                raise ValueError(f"init[{name!r}]: expected a scalar or shape (n,) = ({n},), got shape {tuple(v.shape)}")
            out[:, names.index(name)] = v
        return out
    v = _as_tensor(init, "init", auto.device)
    if v.dim() == 1 and v.shape[0] == P:
        return v.unsqueeze(0).expand(n, P).clone()
    if tuple(v.shape) == (n, P):
        return v.clone()
    raise ValueError(
        f"init: expected a mapping of {names} to values, or an array of shape (P,) = ({P},) or "
        f"(n, P) = ({n}, {P}), got shape {tuple(v.shape)}"
    )


# --------------------------------------------------------------------------------------------
# Likelihoods
# --------------------------------------------------------------------------------------------


def _log_factorial(x: Tensor, top: Tensor) -> Tensor:
    """``log(x!)`` of whole numbers ``x <= top``: a table lookup when ``top`` is moderate."""
    t = int(top.item()) if top.numel() else 0
    if t > 1_000_000:
        return torch.lgamma(x + 1)
    table = torch.lgamma(torch.arange(t + 1, dtype=DTYPE, device=x.device) + 1)
    return table[x.long()]


def _binomial_const(k: Tensor, N: Tensor) -> Tensor:
    top = N.max() if N.numel() else N.sum()
    return (_log_factorial(N, top) - _log_factorial(k, top) - _log_factorial(N - k, top)).sum(-1)


def _multinomial_const(counts: Tensor) -> Tensor:
    N = counts.sum(-1)
    top = N.max() if N.numel() else N.sum()
    return (_log_factorial(N, top) - _log_factorial(counts, top).sum(-1)).sum(-1)


# --------------------------------------------------------------------------------------------
# Batched Fisher scoring
# --------------------------------------------------------------------------------------------

Data = dict[str, Tensor]
NaturalFn = Callable[[Tensor, Data], Tensor]
# (theta (k, P), data, derivatives?) -> NLL (k,), gradient (k, P), expected Fisher information
# (k, P, P), all in the internal parameters; gradient and information are None if not asked.
EvalFn = Callable[[Tensor, Data, bool], tuple[Tensor, Tensor | None, Tensor | None]]
# (theta, data) of devices the optimiser gave up on -> (k, P) bool: coordinates sitting on a
# discontinuity of the law (all False for a device that is not).
PinnedFn = Callable[[Tensor, Data], Tensor]


def _subset(data: Data, idx: Tensor) -> Data:
    """The rows ``idx`` of every per-device entry; ``(1, m)`` entries (shared by all devices) as they are."""
    return {key: v if v.dim() == 2 and v.shape[0] == 1 else v[idx] for key, v in data.items()}


def _shared_rows(x: Tensor) -> Tensor:
    """``x[:1]`` (shape ``(1, m)``) if every row of the ``(n, m)`` array ``x`` equals the first, else ``x``.

    A grid or trial count shared by all devices is then stored once: it broadcasts in the
    likelihoods and is not copied when the optimiser selects the devices still active.
    """
    if x.shape[0] > 1 and bool((x == x[:1]).all()):
        return x[:1]
    return x


def _binomial_core(pm: Tensor, d: Data, derivs: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """NLL ``(k,)`` of binomial counts at the mixed probabilities ``pm = eps + (1 - 2 eps) p``,
    and (derivs) the per-point residual ``r = (k - N pm) / (pm (1 - pm))`` and weight ``w = k /
    pm^2 + (N - k) / (1 - pm)^2``, from which the laws assemble their gradients and observed
    information with the per-device factors pulled out of the sums (see :func:`_binomial_terms`).
    Temporaries are updated in place: fresh ``(k, m)`` allocations cost more than the arithmetic.
    """
    k, N, nk = d["k"], d["N"], d["nk"]
    # log(1 - pm) as log of the rounded 1 - pm: off by at most one ulp of 1 (1.1e-16) in
    # absolute terms where pm is tiny, which no NLL comparison resolves, and ~3x cheaper than log1p.
    q = torch.neg(pm).add_(1.0)
    f = torch.log(pm).mul_(k).add_(torch.log(q).mul_(nk)).sum(-1).neg_()
    if not derivs:
        return f, None, None
    v = pm * q
    r = torch.addcmul(k, N, pm, value=-1.0).div_(v)
    w = torch.div(k, torch.mul(pm, pm, out=v)).add_(torch.mul(q, q, out=q).reciprocal_().mul_(nk))
    return f, r, w


def _sums(pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
    """``(k, len(pairs))``: ``sum_points x * y`` for each pair, in one reduction."""
    x0 = torch.broadcast_tensors(*pairs[0])[0]
    out = torch.empty((len(pairs),) + tuple(x0.shape), dtype=x0.dtype, device=x0.device)
    for j, (x, y) in enumerate(pairs):
        torch.mul(x, y, out=out[j])
    return out.sum(-1).T


def _hessian(entries: dict[tuple[int, int], Tensor], P: int) -> Tensor:
    """``(k, P, P)`` symmetric matrix from its lower-triangle entries ``(i, j), i >= j``."""
    first = next(iter(entries.values()))
    H = torch.empty((first.shape[0], P, P), dtype=first.dtype, device=first.device)
    for (i, j), hij in entries.items():
        H[:, i, j] = hij
        H[:, j, i] = hij
    return H


def _gram(w: Tensor, dps: list[Tensor], dims: tuple[int, ...]) -> Tensor:
    """``(k, P, P)`` matrix ``sum w * dp_i * dp_j`` over ``dims``: the expected information."""
    P = len(dps)
    out = torch.empty((w.shape[0], P, P), dtype=w.dtype, device=w.device)
    for i in range(P):
        wd = w * dps[i]
        for j in range(i + 1):
            out[:, i, j] = out[:, j, i] = (wd * dps[j]).sum(dims)
    return out


def _binomial_terms(
    p: Tensor, dps: list[Tensor] | None, k: Tensor, N: Tensor, d2ps: dict[tuple[int, int], Tensor] | None = None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """NLL, gradient and curvature of independent binomial counts.

    p: ``(n, m)`` model probabilities; dps: their derivatives ``dp/dtheta_i`` (each ``(n, m)``),
    or None for the NLL alone. With ``pm = eps + (1 - 2 eps) p`` and ``r = (k - N pm) /
    (pm (1 - pm))``: gradient ``-sum r dpm``; curvature: the expected information
    ``sum N / (pm (1 - pm)) dpm dpm^T`` if ``d2ps`` is None, else the observed information
    (Hessian of the NLL) ``sum (k / pm^2 + (N - k) / (1 - pm)^2) dpm dpm^T - sum r d2pm``, with
    ``d2ps[(i, j)]`` (i >= j) the second derivatives of p.
    """
    c = 1.0 - 2.0 * _EPS
    pm = _EPS + c * p
    f = -(k * torch.log(pm) + (N - k) * torch.log1p(-pm)).sum(-1)
    if dps is None:
        return f, None, None
    q = 1.0 - pm
    v = pm * q
    r = (k - N * pm) / v
    g = torch.stack([-(r * dp).sum(-1) for dp in dps], dim=1) * c
    if d2ps is None:
        return f, g, _gram(N / v, dps, (-1,)) * (c * c)
    w = k / (pm * pm) + (N - k) / (q * q)
    H = _gram(w, dps, (-1,)) * (c * c)
    for (i, j), d2 in d2ps.items():
        hij = (r * d2).sum(-1) * c
        H[:, i, j] -= hij
        if i != j:
            H[:, j, i] -= hij
    return f, g, H


def _jacobian(natural: NaturalFn, theta: Tensor, data: Data) -> Tensor:
    """``(n, P, P)`` Jacobian of the natural parameters with respect to the internal ones."""
    P = theta.shape[1]
    with torch.enable_grad():
        th = theta.detach().requires_grad_(True)
        nat = natural(th, data)
        rows = [
            torch.autograd.grad(nat[:, j].sum(), th, retain_graph=True, allow_unused=True, materialize_grads=True)[0]
            for j in range(P)
        ]
    return torch.stack(rows, dim=1).detach()


def _sanitise(f: Tensor, g: Tensor, F: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(finite, g, F): non-finite derivatives replaced by a zero gradient and unit information."""
    P = g.shape[1]
    finite = torch.isfinite(f) & torch.isfinite(g).all(1) & torch.isfinite(F).all((1, 2))
    eye = torch.eye(P, dtype=DTYPE, device=g.device)
    g = torch.where(finite[:, None], g, torch.zeros_like(g))
    F = torch.where(finite[:, None, None], F, eye.expand_as(F))
    return finite, g, F


_SMALL_BATCH = 256  # below this many systems the batched LAPACK call is the cheaper


def _pd_solve(A: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Solve ``A x = b`` for a batch of symmetric ``(P, P)`` systems by Cholesky.

    Returns (x, pd): pd is False where ``A`` is not (numerically) positive definite, and there x
    is ``b`` (the solve with an identity factor). For P <= 3 and large batches the factor and
    the two triangular solves are written out over ``(k,)`` columns: a few dozen vector
    operations instead of one LAPACK call per system.
    """
    k, P = b.shape
    if P > 3 or k < _SMALL_BATCH:
        eye = torch.eye(P, dtype=A.dtype, device=A.device)
        chol, info = torch.linalg.cholesky_ex(A)
        pd = info == 0
        chol = torch.where(pd[:, None, None], chol, eye.expand_as(chol))
        return torch.cholesky_solve(b.unsqueeze(-1), chol).squeeze(-1), pd
    a = A
    l00 = a[:, 0, 0].sqrt()
    pd = a[:, 0, 0] > 0
    if P == 1:
        x0 = b[:, 0] / l00 / l00
        return torch.where(pd[:, None], x0[:, None], b), pd
    l10 = a[:, 1, 0] / l00
    d1 = a[:, 1, 1] - l10 * l10
    pd = pd & (d1 > 0)
    l11 = d1.sqrt()
    y0 = b[:, 0] / l00
    y1 = (b[:, 1] - l10 * y0) / l11
    if P == 2:
        x1 = y1 / l11
        x0 = (y0 - l10 * x1) / l00
        return torch.where(pd[:, None], torch.stack([x0, x1], dim=1), b), pd
    l20 = a[:, 2, 0] / l00
    l21 = (a[:, 2, 1] - l20 * l10) / l11
    d2 = a[:, 2, 2] - l20 * l20 - l21 * l21
    pd = pd & (d2 > 0)
    l22 = d2.sqrt()
    y2 = (b[:, 2] - l20 * y0 - l21 * y1) / l22
    x2 = y2 / l22
    x1 = (y1 - l21 * x2) / l11
    x0 = (y0 - l10 * x1 - l20 * x2) / l00
    return torch.where(pd[:, None], torch.stack([x0, x1, x2], dim=1), b), pd


def _newton(
    ev: EvalFn,
    theta0: Tensor,
    data: Data,
    lower: Tensor,
    upper: Tensor,
    max_iter: int,
    frozen: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Damped Fisher scoring on every device at once.

    Returns (theta, stationary, n_iter, nll, information), the last two at the returned theta
    (the information without any frozen coordinates removed). Each iteration solves
    ``(F + lam diag F) step = -g`` per device (Levenberg-Marquardt damping, one ``lam`` per
    device) and accepts the step if the NLL does not rise, else retries with 8x the damping;
    the derivatives at an accepted point are computed with its NLL, so an accepted step costs
    one evaluation. A device stops when its decrement ``g^T F^-1 g`` is below ``_DEC_TOL``.
    frozen: optional ``(n, P)`` bool; those coordinates are held fixed (zero step) and left
    out of the stationarity test.
    """
    n, P = theta0.shape
    dev = theta0.device
    theta = torch.minimum(torch.maximum(theta0.clone(), lower), upper)
    f, g, F = ev(theta, data, True)
    lam = torch.full((n,), 1e-3, dtype=DTYPE, device=dev)
    stationary = torch.zeros(n, dtype=torch.bool, device=dev)
    active = torch.ones(n, dtype=torch.bool, device=dev)
    n_iter = torch.zeros(n, dtype=torch.int64, device=dev)
    n_slow = torch.zeros(n, dtype=torch.int64, device=dev)

    for _ in range(max_iter):
        idx = active.nonzero().squeeze(1)
        k = idx.numel()
        if k == 0:
            break
        d = data if k == n else _subset(data, idx)
        th, fi = theta[idx], f[idx]
        finite, gi, Fi = _sanitise(fi, g[idx], F[idx])
        if frozen is not None:
            fz = frozen[idx]
            free = (~fz).to(DTYPE)
            gi = gi * free
            Fi = Fi * free[:, :, None] * free[:, None, :] + torch.diag_embed(fz.to(DTYPE))

        # Converged? Decrement with the undamped information, which must be positive definite.
        full_step, pd = _pd_solve(Fi, -gi)
        pd = pd & finite
        full_step = torch.where(pd[:, None], full_step, -gi)
        dec = -(gi * full_step).sum(-1)
        done = pd & (dec < _DEC_TOL) & (dec > -_DEC_TOL)
        stationary[idx[done]] = True
        active[idx[done]] = False
        n_iter[idx] += 1
        active[idx[~finite]] = False

        todo = (~done & finite).nonzero().squeeze(1)
        if todo.numel() == 0:
            continue
        if todo.numel() < k:
            fi, gi, Fi, th, gl, d = fi[todo], gi[todo], Fi[todo], th[todo], idx[todo], _subset(d, todo)
        else:
            gl = idx
        scale = Fi.diagonal(dim1=1, dim2=2).abs() + 1e-9 * (1.0 + fi.abs()).unsqueeze(1)
        lam_i = lam[gl]
        accepted = torch.zeros(gl.numel(), dtype=torch.bool, device=dev)
        f_best = fi.clone()
        pending = torch.arange(gl.numel(), device=dev)
        for _try in range(12):
            every = pending.numel() == gl.numel()
            Fp, gp, thp = (Fi, gi, th) if every else (Fi[pending], gi[pending], th[pending])
            A = Fp + lam_i[pending, None, None] * torch.diag_embed(scale[pending])
            step, ok = _pd_solve(A, -gp)
            trial = torch.minimum(torch.maximum(thp + step, lower), upper)
            f_new, _, _ = ev(trial, d if every else _subset(d, pending), False)
            good = ok & torch.isfinite(f_new) & (f_new <= fi[pending]) & torch.isfinite(step).all(1)
            won = pending[good]
            theta[gl[won]] = trial[good]
            f_best[won] = f_new[good]
            accepted[won] = True
            pending = pending[~good]
            lam_i[pending] = lam_i[pending] * 8.0
            if pending.numel() == 0:
                break
        # Derivatives at the accepted points (one evaluation per accepted step).
        acc = accepted.nonzero().squeeze(1)
        if acc.numel():
            dst = gl[acc]
            f[dst], g[dst], F[dst] = ev(theta[dst], d if acc.numel() == gl.numel() else _subset(d, acc), True)
        lam_i = torch.where(accepted, (lam_i / 5.0).clamp(min=1e-12), lam_i)
        lam[gl] = lam_i
        # A device that cannot make progress is given up: its damping has exploded, or it has
        # gained less than _STALL_TOL (relative) in each of _STALL_ITERS iterations without
        # meeting the stationarity test (e.g. the maximum sits on a discontinuity of the law).
        slow = (fi - f_best) < _STALL_TOL * (1.0 + fi.abs())
        n_slow[gl] = torch.where(slow, n_slow[gl] + 1, torch.zeros_like(n_slow[gl]))
        stuck = (lam_i > 1e20) | (n_slow[gl] >= _STALL_ITERS)
        active[gl[stuck]] = False

    return theta, stationary, n_iter, f, F


def _fit(
    names: tuple[str, ...],
    ev: EvalFn,
    natural: NaturalFn,
    theta0: Tensor,
    data: Data,
    lower: Tensor,
    upper: Tensor,
    domain: tuple[tuple[float, float], ...],
    scales: tuple[str, ...],
    const: Tensor,
    informative: Tensor,
    level: float,
    max_iter: int,
    pinned: PinnedFn | None = None,
) -> FitResult:
    n, P = theta0.shape
    dev = theta0.device
    if n == 0:
        empty = torch.zeros((0, P), dtype=DTYPE, device=dev)
        return FitResult(
            names, empty, empty.clone(), empty.clone(), empty.clone(),
            torch.zeros(0, dtype=DTYPE, device=dev), torch.zeros(0, dtype=torch.bool, device=dev), level,
            torch.zeros((0, P, P), dtype=DTYPE, device=dev), torch.zeros(0, dtype=torch.int64, device=dev),
        )
    bad0 = ~torch.isfinite(theta0).all(1)
    theta0 = torch.where(bad0[:, None], torch.zeros_like(theta0), theta0)
    theta, stationary, n_iter, f, H = _newton(ev, theta0, data, lower, upper, max_iter)
    bad = ~torch.isfinite(theta).all(1)
    if bool(bad.any()):
        theta = torch.where(bad[:, None], theta0, theta)
        f[bad], _g, H[bad] = ev(theta[bad], _subset(data, bad.nonzero().squeeze(1)), True)

    if pinned is not None:
        # Devices stuck against a discontinuity of the law: hold the pinned coordinates where
        # they are and maximise over the others.
        idx = (~stationary).nonzero().squeeze(1)
        if idx.numel():
            mask = pinned(theta[idx], _subset(data, idx))
            sel = mask.any(1)
            idx, mask = idx[sel], mask[sel]
            if idx.numel():
                th2, st2, it2, f2, H2 = _newton(ev, theta[idx], _subset(data, idx), lower, upper, max_iter, mask)
                theta[idx], stationary[idx], f[idx], H[idx] = th2, st2, f2, H2
                n_iter[idx] += it2
    # Covariance: inverse expected Fisher information at the estimate, by the delta method.
    eye = torch.eye(P, dtype=DTYPE, device=dev)
    finite_h = torch.isfinite(H).all((1, 2))
    H = torch.where(finite_h[:, None, None], H, eye.expand_as(H))
    chol, info = torch.linalg.cholesky_ex(H)
    pd = (info == 0) & finite_h
    chol = torch.where(pd[:, None, None], chol, eye.expand_as(chol))
    cov_int = torch.cholesky_inverse(chol)
    J = _jacobian(natural, theta, data)
    cov = J @ cov_int @ J.transpose(1, 2)
    cov = 0.5 * (cov + cov.transpose(1, 2))
    est = natural(theta, data).detach()
    var = cov.diagonal(dim1=1, dim2=2)
    ok_cov = pd & torch.isfinite(cov).all((1, 2)) & (var > 0).all(1)
    se = torch.where(ok_cov[:, None], var.clamp(min=0).sqrt(), torch.full_like(var, math.inf))
    cov = torch.where(ok_cov[:, None, None], cov, torch.full_like(cov, math.inf))

    margin = 1e-6 * (upper - lower)
    inside = ((theta > lower + margin) & (theta < upper - margin)).all(1)
    finite_est = torch.isfinite(est).all(1) & torch.isfinite(f)
    # Identified: internal standard errors below _SE_MAX (locations in curve widths, logs of
    # positive parameters). logit(a) is exempt: a maximum at a -> 1 is a legitimate boundary
    # estimate whose logit-scale interval stays inside (0, 1].
    var_int = cov_int.diagonal(dim1=1, dim2=2)
    checked = torch.tensor([sc != "logit" for sc in scales], dtype=torch.bool, device=dev)
    identified = ((var_int < _SE_MAX**2) | ~checked).all(1)
    converged = stationary & ok_cov & inside & finite_est & informative & identified & ~bad0

    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    lo_dom = torch.tensor([b[0] for b in domain], dtype=DTYPE, device=dev)
    hi_dom = torch.tensor([b[1] for b in domain], dtype=DTYPE, device=dev)
    ci_low = torch.maximum(est - z * se, lo_dom)
    ci_high = torch.minimum(est + z * se, hi_dom)
    # Log / logit scale intervals: natural parameter j = ref * exp(theta_j) or sigmoid(theta_j).
    se_int = torch.where(ok_cov[:, None] & (var_int > 0), var_int.clamp(min=0).sqrt(),
                         torch.full_like(var_int, math.inf))
    for j, scale in enumerate(scales):
        if scale == "log":
            ci_low[:, j] = est[:, j] * torch.exp(-z * se_int[:, j])
            ci_high[:, j] = est[:, j] * torch.exp(z * se_int[:, j])
        elif scale == "logit":
            ci_low[:, j] = torch.sigmoid(theta[:, j] - z * se_int[:, j])
            ci_high[:, j] = torch.sigmoid(theta[:, j] + z * se_int[:, j])
    loglik = torch.where(torch.isfinite(f), -f + const, torch.full_like(f, -math.inf))
    return FitResult(names, est, se, ci_low, ci_high, loglik, converged, level, cov, n_iter)


# --------------------------------------------------------------------------------------------
# Automatic initialisation helpers
# --------------------------------------------------------------------------------------------


def _crossing_lengths(h: Tensor, q: Tensor, levels: tuple[float, ...]) -> tuple[Tensor, Tensor, list[Tensor]]:
    """For curves q(h) sampled at (n, m) points, the length of h over which the piecewise-linear
    curve lies below each level. For a monotone rising curve that is the crossing point minus
    h_min; for a noisy one it is a robust average crossing. Returns (h_sorted, q_sorted, lengths).
    """
    h_sorted, order = torch.sort(h, dim=1)
    q_sorted = torch.gather(q, 1, order)
    dh = h_sorted[:, 1:] - h_sorted[:, :-1]
    q0, q1 = q_sorted[:, :-1], q_sorted[:, 1:]
    lo = torch.minimum(q0, q1)
    dq = (q1 - q0).abs()
    out = []
    for lev in levels:
        frac = torch.where(dq > 0, ((lev - lo) / dq.clamp(min=1e-300)).clamp(0.0, 1.0), (lo < lev).to(DTYPE))
        out.append((frac * dh).sum(1))
    return h_sorted, q_sorted, out


def _sigmoid_init(h: Tensor, p_hat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Midpoint and 10-90 % width of a rising curve p_hat(h) normalised to [0, 1].

    Returns (mid, width, min_spacing) each (n,)."""
    h_sorted, _q, (l10, l50, l90) = _crossing_lengths(h, p_hat, (0.1, 0.5, 0.9))
    hmin = h_sorted[:, 0]
    span = h_sorted[:, -1] - hmin
    gaps = h_sorted[:, 1:] - h_sorted[:, :-1]
    gaps = torch.where(gaps > 0, gaps, torch.full_like(gaps, math.inf))
    spacing = gaps.min(1).values if gaps.shape[1] else torch.full_like(hmin, math.inf)
    spacing = torch.where(torch.isfinite(spacing), spacing, torch.ones_like(spacing))
    span = torch.where(span > 0, span, spacing)
    mid = hmin + l50
    width = torch.maximum(l90 - l10, 0.5 * spacing)
    width = torch.minimum(width, 2.0 * span)
    return mid, width, spacing


def _empirical(k: Tensor, N: Tensor) -> Tensor:
    return (k + 0.5) / (N + 1.0)


def _positive(x: Tensor, name: str, tiny: float = 0.0) -> None:
    if not bool((x > tiny).all()):
        raise ValueError(f"init: {name} must be positive, got minimum {x.min().item():g}")


# --------------------------------------------------------------------------------------------
# Logistic depinning
# --------------------------------------------------------------------------------------------

_LOGISTIC = ("x0", "dx", "a")
_LN81 = 2.0 * math.log(9.0)  # 10-90 % width of a logistic is 2 ln 9 / dx


def _logistic_natural(theta: Tensor, d: Data) -> Tensor:
    x0 = d["x0_ref"] + theta[:, 0] * d["x_scale"]
    dx = d["dx_ref"] * torch.exp(theta[:, 1])
    a = torch.sigmoid(theta[:, 2])
    return torch.stack([x0, dx, a], dim=1)


def _logistic_eval(theta: Tensor, d: Data, derivs: bool):
    """Binomial NLL of :func:`logistic_depinning`; derivatives in (offset, log dx, logit a).

    With ``z = dx (h - x0)`` and ``s = sigmoid(z)``: ``dp/du = -a s (1 - s) dx x_scale``,
    ``dp/dv = a s (1 - s) z``, ``dp/dw = -(1 - s) a (1 - a)``.
    """
    x0 = d["x0_ref"] + theta[:, 0] * d["x_scale"]
    dx = d["dx_ref"] * torch.exp(theta[:, 1])
    a = torch.sigmoid(theta[:, 2])
    z = (d["h"] - x0[:, None]).mul_(dx[:, None])
    s = torch.sigmoid(z)
    # logistic_depinning with s kept, p = (1 - a) + a s, mixed with eps: pm = eps + c p.
    pm = torch.mul(s, a[:, None]).add_((1.0 - a)[:, None]).mul_(1.0 - 2.0 * _EPS).add_(_EPS)
    f, r, w = _binomial_core(pm, d, derivs)
    if not derivs:
        return f, None, None
    # dp_i = F_i b_i with per-device factors F = (-alpha a, a, -a1) and per-point b = (s1, s1 z,
    # 1 - s); the sums over points are taken once and the factors applied per device.
    one_s = 1.0 - s
    s1 = s * one_s  # sigmoid'
    s2 = s1 * (1.0 - 2.0 * s)  # sigmoid''
    s1z = s1 * z
    s2z = s2 * z
    wb0, wb1, wb2 = w * s1, w * s1z, w * one_s
    S = _sums([(r, s1), (r, s1z), (r, one_s), (r, s2), (r, s2z), (r * s2z, z),
               (wb0, s1), (wb0, s1z), (wb0, one_s), (wb1, s1z), (wb1, one_s), (wb2, one_s)])
    R1, R2, R3, R4, R5, R6, W00, W01, W02, W11, W12, W22 = S.unbind(1)
    c = 1.0 - 2.0 * _EPS
    alpha = dx * d["x_scale"]  # -dz/du
    a1 = a * (1.0 - a)  # da/dw
    a2 = a1 * (1.0 - 2.0 * a)  # d2a/dw2
    F0, F1, F2 = -alpha * a, a, -a1
    g = torch.stack([-(F0 * R1), -(F1 * R2), -(F2 * R3)], dim=1) * c
    cc = c * c
    H = _hessian({
        (0, 0): cc * F0 * F0 * W00 - c * (a * alpha * alpha) * R4,
        (1, 0): cc * F0 * F1 * W01 + c * (alpha * a) * (R5 + R1),
        (2, 0): cc * F0 * F2 * W02 + c * (alpha * a1) * R1,
        (1, 1): cc * F1 * F1 * W11 - c * a * (R6 + R2),
        (2, 1): cc * F1 * F2 * W12 - c * a1 * R2,
        (2, 2): cc * F2 * F2 * W22 + c * a2 * R3,
    }, 3)
    return f, g, H


def _informative_binomial(k: Tensor, N: Tensor) -> Tensor:
    has_trials = (N > 0).any(1)
    some_yes = (k > 0).any(1)
    some_no = (k < N).any(1)
    return has_trials & some_yes & some_no


def _fit_logistic(
    amplitude: Any,
    switched: Any,
    trials: Any,
    *,
    init: Any = None,
    level: float = 0.95,
    max_iter: int = _MAX_ITER,
) -> FitResult:
    """Fit :func:`~analysis.switching_laws.logistic_depinning` to many devices at once.

    ``p(h) = (1 - a) + a * sigmoid(dx * (h - x0))``; parameters ``("x0", "dx", "a")`` with x0 in
    tesla, dx in 1/tesla (> 0: the curve rises with ``h``), a in (0, 1].

    amplitude: ``(m,)`` field amplitudes shared by all devices, or ``(n, m)`` per device.
    switched: ``(n, m)`` number of trials that switched. trials: int, ``(m,)`` or ``(n, m)``.
    init: None for automatic initialisation (x0 where the floor-corrected empirical curve
    crosses one half, dx from its 10-90 % width, a from its lowest point), or a mapping of some
    parameter names to scalars / ``(n,)`` values, or a ``(3,)`` / ``(n, 3)`` array.
    level: confidence level of the Wald intervals. A device whose maximum lies on the boundary
    (e.g. ``a = 1`` because nothing switched at low field) is reported with converged=False.
    """
    level = _check_level(level)
    h, k, N = _binomial_inputs(amplitude, "amplitude", switched, trials)
    n = k.shape[0]
    p_hat = _empirical(k, N)
    floor = p_hat.min(1).values.clamp(1e-3, 0.5)
    q = (p_hat - floor[:, None]) / (1.0 - floor[:, None])
    mid, width, _ = _sigmoid_init(h, q)
    auto = torch.stack([mid, _LN81 / width, 1.0 - floor], dim=1)
    start = _init_matrix(init, _LOGISTIC, auto)
    _positive(start[:, 1], "dx")
    if not bool(((start[:, 2] > 0) & (start[:, 2] <= 1)).all()):
        raise ValueError("init: a must lie in (0, 1]")
    a0 = start[:, 2].clamp(1e-9, 1 - 1e-9)
    data = {
        "h": _shared_rows(h), "k": k, "N": _shared_rows(N), "nk": N - k,
        "x0_ref": start[:, 0], "x_scale": 1.0 / start[:, 1], "dx_ref": start[:, 1],
    }
    theta0 = torch.stack([torch.zeros(n, dtype=DTYPE, device=k.device),
                          torch.zeros(n, dtype=DTYPE, device=k.device),
                          torch.log(a0) - torch.log1p(-a0)], dim=1)
    box = torch.tensor([_LOC_BOX, _LOG_BOX, _LOGIT_BOX], dtype=DTYPE, device=k.device)
    domain = ((-math.inf, math.inf), (0.0, math.inf), (0.0, 1.0))
    return _fit(_LOGISTIC, _logistic_eval, _logistic_natural, theta0, data, -box, box, domain,
                ("natural", "log", "logit"),
                _binomial_const(k, N), _informative_binomial(k, N), level, max_iter)


# --------------------------------------------------------------------------------------------
# Gaussian depinning
# --------------------------------------------------------------------------------------------

_GAUSSIAN = ("h0", "sigma")
_Z90 = 2.0 * NormalDist().inv_cdf(0.9)  # 10-90 % width of a Gaussian CDF, in sigmas


def _gaussian_natural(theta: Tensor, d: Data) -> Tensor:
    h0 = d["h0_ref"] + theta[:, 0] * d["sigma_ref"]
    sigma = d["sigma_ref"] * torch.exp(theta[:, 1])
    return torch.stack([h0, sigma], dim=1)


def _gaussian_eval(theta: Tensor, d: Data, derivs: bool):
    """Binomial NLL of :func:`gaussian_depinning`; derivatives in (offset, log sigma).

    With ``z = (h - h0) / sigma`` and the normal density ``phi``: ``dp/du = -phi(z) sigma_ref /
    sigma``, ``dp/dv = -phi(z) z``.
    """
    h0 = d["h0_ref"] + theta[:, 0] * d["sigma_ref"]
    sigma = d["sigma_ref"] * torch.exp(theta[:, 1])
    # gaussian_depinning, p = (1 + erf((h - h0) / (sqrt(2) sigma))) / 2, mixed with eps: pm = eps + c p.
    pm = torch.erf((d["h"] - h0[:, None]).div_(SQRT2 * sigma[:, None])).add_(1.0).mul_(0.5)
    pm.mul_(1.0 - 2.0 * _EPS).add_(_EPS)
    z = (d["h"] - h0[:, None]).div_(sigma[:, None])
    f, r, w = _binomial_core(pm, d, derivs)
    if not derivs:
        return f, None, None
    # dp = (-beta, -1) * (phi, phi z): per-device factors out of the sums over points.
    phi = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    beta = d["sigma_ref"] / sigma  # -dz/du
    phiz = phi * z
    rphiz = r * phiz
    wphi = w * phi
    S = _sums([(r, phi), (r, phiz), (rphiz, z), (rphiz * z, z), (wphi, phi), (wphi, phiz), (wphi * z, phiz)])
    R0, R1, R2, R3, W00, W01, W11 = S.unbind(1)
    c = 1.0 - 2.0 * _EPS
    cc = c * c
    g = torch.stack([beta * R0, R1], dim=1) * c
    H = _hessian({
        (0, 0): cc * beta * beta * W00 + c * (beta * beta) * R1,
        (1, 0): cc * beta * W01 - c * beta * (R0 - R2),
        (1, 1): cc * W11 - c * (R1 - R3),
    }, 2)
    return f, g, H


def _fit_gaussian(
    amplitude: Any,
    switched: Any,
    trials: Any,
    *,
    init: Any = None,
    level: float = 0.95,
    max_iter: int = _MAX_ITER,
) -> FitResult:
    """Fit :func:`~analysis.switching_laws.gaussian_depinning` to many devices at once.

    Parameters ``("h0", "sigma")`` in tesla. Shapes and ``init`` as in :func:`fit_logistic`;
    the automatic initialisation takes h0 where the empirical curve crosses one half and sigma
    from its 10-90 % width (``2 * 1.2816 * sigma``).
    """
    level = _check_level(level)
    h, k, N = _binomial_inputs(amplitude, "amplitude", switched, trials)
    n = k.shape[0]
    mid, width, _ = _sigmoid_init(h, _empirical(k, N))
    auto = torch.stack([mid, width / _Z90], dim=1)
    start = _init_matrix(init, _GAUSSIAN, auto)
    _positive(start[:, 1], "sigma")
    data = {"h": _shared_rows(h), "k": k, "N": _shared_rows(N), "nk": N - k, "h0_ref": start[:, 0], "sigma_ref": start[:, 1]}
    theta0 = torch.zeros((n, 2), dtype=DTYPE, device=k.device)
    box = torch.tensor([_LOC_BOX, _LOG_BOX], dtype=DTYPE, device=k.device)
    domain = ((-math.inf, math.inf), (0.0, math.inf))
    return _fit(_GAUSSIAN, _gaussian_eval, _gaussian_natural, theta0, data, -box, box, domain,
                ("natural", "log"),
                _binomial_const(k, N), _informative_binomial(k, N), level, max_iter)


# --------------------------------------------------------------------------------------------
# Thermal (STT-MTJ) switching
# --------------------------------------------------------------------------------------------

_THERMAL = ("delta", "vc0")


def _thermal_natural(theta: Tensor, d: Data) -> Tensor:
    delta = d["delta_ref"] * torch.exp(theta[:, 0])
    slope = d["slope_ref"] * torch.exp(theta[:, 1])  # delta / vc0, 1/V
    return torch.stack([delta, delta / slope], dim=1)


def _thermal_eval(theta: Tensor, d: Data, derivs: bool):
    """Binomial NLL of :func:`thermal_switching`; derivatives in (log delta, log(delta / vc0)).

    With ``eta = log(t / tau0) - delta (1 - V / vc0)`` (clamped at 30 as in the law) and
    ``P = 1 - exp(-e^eta)``: ``dP/deta = e^eta exp(-e^eta)`` (0 where clamped),
    ``deta/du = -delta``, ``deta/dv = (delta / vc0) V``.
    """
    delta = d["delta_ref"] * torch.exp(theta[:, 0])
    slope = d["slope_ref"] * torch.exp(theta[:, 1])
    vc0 = delta / slope
    eta = torch.addcmul((d["log_t_tau"] - delta[:, None]), slope[:, None], d["v"])  # - delta (1 - V / vc0)
    rate = torch.exp(eta.clamp(max=30.0))
    c = 1.0 - 2.0 * _EPS
    em = torch.neg(rate).expm1_()  # -P
    pm = torch.mul(em, -c).add_(_EPS)
    f, r, w = _binomial_core(pm, d, derivs)
    if not derivs:
        return f, None, None
    # dp = (-delta, slope) * (P', P' V) with P' = dP/deta: per-device factors out of the sums.
    dp_eta = torch.where(eta < 30.0, em.add_(1.0).mul_(rate), 0.0)  # rate (1 - P)
    d2p_eta = dp_eta * (1.0 - rate)
    V = d["v"]
    rd2 = r * d2p_eta
    rd2v = rd2 * V
    wd = w * dp_eta
    wdv = wd * V
    S = _sums([(r, dp_eta), (r * dp_eta, V), (rd2, V.new_ones(())), (rd2, V), (rd2v, V),
               (wd, dp_eta), (wdv, dp_eta), (wdv, dp_eta * V)])
    A0, A1, B0, B1, B2, W00, W01, W11 = S.unbind(1)
    c = 1.0 - 2.0 * _EPS
    cc = c * c
    g = torch.stack([delta * A0, -(slope * A1)], dim=1) * c
    H = _hessian({
        (0, 0): cc * delta * delta * W00 - c * (delta * delta * B0 - delta * A0),
        (1, 0): -(cc * delta * slope * W01) + c * (delta * slope) * B1,
        (1, 1): cc * slope * slope * W11 - c * (slope * slope * B2 + slope * A1),
    }, 2)
    return f, g, H


def _weighted_line(x: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row weighted least squares y = c + s x. Returns (slope, intercept)."""
    sw = w.sum(1).clamp(min=1e-300)
    xm = (w * x).sum(1) / sw
    ym = (w * y).sum(1) / sw
    sxx = (w * (x - xm[:, None]) ** 2).sum(1)
    sxy = (w * (x - xm[:, None]) * (y - ym[:, None])).sum(1)
    slope = sxy / sxx.clamp(min=1e-300)
    return slope, ym - slope * xm


def _fit_thermal(
    voltage: Any,
    width: Any,
    switched: Any,
    trials: Any,
    *,
    tau0: Any = 1e-9,
    init: Any = None,
    level: float = 0.95,
    max_iter: int = _MAX_ITER,
) -> FitResult:
    """Fit :func:`~analysis.switching_laws.thermal_switching` (Neel-Brown) to many devices at once.

    ``P(V, t) = 1 - exp(-(t / tau0) * exp(-delta * (1 - V / vc0)))``; parameters
    ``("delta", "vc0")`` (thermal stability, dimensionless; critical voltage, volts).

    Identifiability: ``log(-log(1 - P)) = [log(t / tau0) - delta] + (delta / vc0) * V``, so the
    data determine only the intercept ``log(t / tau0) - delta`` and the slope ``delta / vc0``.
    ``tau0`` (attempt time, seconds; float or ``(n,)``) therefore cannot be fitted together with
    delta and is held fixed at a known value; an error in tau0 shifts delta by
    ``log(tau0_true / tau0)`` and vc0 proportionally. Sweeps at two or more pulse widths (e.g.
    10 ns and 100 ns, passed as one sweep with per-point widths) add data and constrain the
    fit over a wider range of rates.

    voltage: ``(m,)`` or ``(n, m)`` pulse voltage magnitudes (volts). width: scalar, ``(m,)`` or
    ``(n, m)`` pulse widths (seconds). switched, trials: as in :func:`fit_logistic`.
    init: None for automatic initialisation -- a weighted linear fit of
    ``log(-log(1 - P_hat)) - log(t / tau0)`` against V, whose slope is delta / vc0 and
    intercept -delta -- or a mapping / array as in :func:`fit_logistic`.
    """
    level = _check_level(level)
    device = _device_of(switched, voltage, width, trials)
    k = _counts(switched, "switched", device, 2)
    n, m = k.shape
    w_t = _per_point(width, "width", n, m, device, allow_scalar=True)
    if bool((w_t <= 0).any()):
        raise ValueError(f"width: pulse widths must be positive, got minimum {w_t.min().item():g}")
    v, k, N = _binomial_inputs(voltage, "voltage", k, trials)
    tau = _as_tensor(tau0, "tau0", device)
    if tau.dim() == 0:
        tau = tau.expand(n)
    if tuple(tau.shape) != (n,):
        raise ValueError(f"tau0: expected a float or shape (n,) = ({n},), got shape {tuple(tau.shape)}")
    if bool((tau <= 0).any()):
        raise ValueError(f"tau0: attempt time must be positive, got minimum {tau.min().item():g}")

    p_hat = _empirical(k, N)
    log1m = torch.log1p(-p_hat)
    y = torch.log(-log1m) - torch.log(w_t / tau[:, None])
    wts = N * (1.0 - p_hat) * log1m**2 / p_hat
    slope, intercept = _weighted_line(v, y, wts)
    delta0 = -intercept
    good = torch.isfinite(slope) & torch.isfinite(delta0) & (slope > 0) & (delta0 > 0)
    vmax = v.abs().max(1).values.clamp(min=1e-6)
    delta0 = torch.where(good, delta0, torch.full_like(delta0, 50.0))
    vc00 = torch.where(good, delta0 / slope.clamp(min=1e-300), 1.05 * vmax)
    auto = torch.stack([delta0, vc00], dim=1)
    start = _init_matrix(init, _THERMAL, auto)
    _positive(start[:, 0], "delta")
    _positive(start[:, 1], "vc0")
    data = {"v": _shared_rows(v), "log_t_tau": _shared_rows(torch.log(w_t / tau[:, None])), "k": k,
            "N": _shared_rows(N), "nk": N - k,
            "delta_ref": start[:, 0], "slope_ref": start[:, 0] / start[:, 1]}
    theta0 = torch.zeros((n, 2), dtype=DTYPE, device=k.device)
    box = torch.tensor([_LOG_BOX, _LOG_BOX], dtype=DTYPE, device=k.device)
    domain = ((0.0, math.inf), (0.0, math.inf))
    return _fit(_THERMAL, _thermal_eval, _thermal_natural, theta0, data, -box, box, domain,
                ("natural", "natural"),
                _binomial_const(k, N), _informative_binomial(k, N), level, max_iter)


# --------------------------------------------------------------------------------------------
# DW-MTJ landing (multinomial over levels)
# --------------------------------------------------------------------------------------------

_DWMTJ = ("i_c", "mobility", "sigma")


def _dwmtj_natural(theta: Tensor, d: Data) -> Tensor:
    i_c = d["ic_ref"] + theta[:, 0] * d["ic_scale"]
    mobility = d["mob_ref"] * torch.exp(theta[:, 1])
    sigma = d["sig_ref"] * torch.exp(theta[:, 2])
    return torch.stack([i_c, mobility, sigma], dim=1)


def _make_dwmtj_eval(levels: int) -> EvalFn:
    """Multinomial NLL of :func:`dwmtj_landing`; derivatives in (offset, log mobility, log sigma).

    The landing position is ``pos = start + d`` with ``d = sign(i) mobility relu(|i| - i_c) t``;
    the cumulative level probabilities are ``C_k = erfc(z_k) / 2``, ``z_k = (pos - k - 1/2) /
    (sqrt(2) s)`` (s = sigma for a moving wall, 1e-6 sites otherwise). ``dC_k/dpos = -exp(-z_k^2)
    / (sqrt(2 pi) s)``, ``dC_k/dlog s = exp(-z_k^2) z_k / sqrt(pi)``; level probabilities and
    their derivatives are differences of consecutive ``C_k``. Information
    ``sum N / p_l dp_l dp_l^T`` over pulses and levels (N: trials of the pulse).
    """
    edges_np = np.arange(levels - 1, dtype=np.float64) + 0.5

    def ev(theta: Tensor, d: Data, derivs: bool):
        i_c = d["ic_ref"] + theta[:, 0] * d["ic_scale"]
        mob = d["mob_ref"] * torch.exp(theta[:, 1])
        sig = d["sig_ref"] * torch.exp(theta[:, 2])
        i, t = d["i"], d["t"]
        disp = torch.sign(i) * mob[:, None] * torch.relu(i.abs() - i_c[:, None]) * t
        moving = disp != 0
        spread = torch.where(moving, sig[:, None], torch.full_like(disp, 1e-6))
        edges = torch.as_tensor(edges_np, device=theta.device)
        z = (d["start"] + disp).unsqueeze(-1) - edges
        z = z / (SQRT2 * spread).unsqueeze(-1)
        cdf = 0.5 * torch.erfc(z)
        p = cdf_to_probabilities(cdf)
        L = levels
        pt = (p + _EPS) / (1.0 + L * _EPS)
        counts = d["counts"]
        f = -(counts * torch.log(pt)).sum((-1, -2))
        if not derivs:
            return f, None, None
        # dC/dz and d2C/dz2; z depends on u, v through pos and on w through s (moving walls).
        c1 = torch.exp(-z * z) * (-1.0 / math.sqrt(math.pi))
        c2 = c1 * z * -2.0
        mv = moving.to(DTYPE).unsqueeze(-1)
        inv = 1.0 / (SQRT2 * spread)
        zu = (torch.where(moving, torch.sign(i) * (-(mob * d["ic_scale"]))[:, None] * t, torch.zeros_like(disp))
              * inv).unsqueeze(-1)
        zv = (disp * inv).unsqueeze(-1)
        zw = -(z * mv)
        c1u, c1v = c1 * zu, c1 * zv
        dcs = [c1u, c1v, c1 * zw]
        d2cs = {
            (0, 0): c2 * zu * zu,
            (1, 0): c2 * zu * zv + c1u,
            (1, 1): c2 * zv * zv + c1v,
            (2, 0): c2 * zu * zw - c1u,
            (2, 1): c2 * zv * zw - c1v,
            (2, 2): (c2 * zw - c1) * zw,
        }
        zero = torch.zeros_like(c1[..., :1])
        c = 1.0 / (1.0 + L * _EPS)
        dps = [torch.diff(dc, dim=-1, prepend=zero, append=zero) * c for dc in dcs]
        r = counts / pt
        g = torch.stack([-(r * dp).sum((-1, -2)) for dp in dps], dim=1)
        H = _gram(r / pt, dps, (-1, -2))
        for (a, b), d2 in d2cs.items():
            hab = (r * torch.diff(d2, dim=-1, prepend=zero, append=zero)).sum((-1, -2)) * c
            H[:, a, b] -= hab
            if a != b:
                H[:, b, a] -= hab
        return f, g, H

    return ev


def _dwmtj_pinned(theta: Tensor, d: Data) -> Tensor:
    """Coordinates of devices whose i_c sits on a pulse-current magnitude.

    At ``i_c = |i_j|`` pulse j leaves the wall where it is (one-hot), while for i_c just below
    it the wall moves by a vanishing distance but lands with spread sigma: the likelihood jumps
    there. If the data favour an i_c on the far side of such a jump, the damped Newton steps
    are all rejected and the iterate comes to rest on the break (within 1e-6 of a site of
    displacement). The maximum of the likelihood is then at (or arbitrarily close to) the
    break; i_c is held there and mobility and sigma are maximised.
    """
    i_c = d["ic_ref"] + theta[:, 0] * d["ic_scale"]
    gap = (d["i"].abs() - i_c[:, None]).abs() / d["ic_scale"][:, None]
    at_break = ((gap < 1e-6) & (d["i"] != 0)).any(1)
    mask = torch.zeros_like(theta, dtype=torch.bool)
    mask[:, 0] = at_break
    return mask


def _fit_dwmtj_landing(
    current: Any,
    width: Any,
    level_counts: Any,
    levels: int,
    *,
    start: Any = 0,
    init: Any = None,
    level: float = 0.95,
    max_iter: int = _MAX_ITER,
) -> FitResult:
    """Fit :func:`~analysis.switching_laws.dwmtj_landing` to many devices at once.

    Parameters ``("i_c", "mobility", "sigma")``: depinning current (amperes), mobility
    (sites per ampere-second above threshold) and landing spread (sites). The likelihood is
    multinomial over the ``levels`` landing levels at each pulse.

    current: ``(m,)`` or ``(n, m)`` pulse currents (amperes, signed). width: scalar, ``(m,)`` or
    ``(n, m)`` pulse widths (seconds). level_counts: ``(n, m, levels)`` number of trials that
    landed on each level. start: level before each pulse -- int, or array broadcastable to
    ``(n, m)``. init: None for automatic initialisation -- a weighted linear fit of the mean
    displacement per unit width against ``|i|`` over pulses that moved the wall and did not
    saturate at an end level (slope = mobility, intercept = -mobility * i_c), sigma from the
    spread of landing levels -- or a mapping / array as in :func:`fit_logistic`.

    The law is discontinuous in i_c where i_c crosses a pulse-current magnitude (below
    threshold the wall stays put; just above it, it lands with spread sigma), so i_c is
    identified by the pulses above threshold, and the Wald interval for i_c assumes that the
    sweep has several of them. When the maximum lies on such a break (a few percent of devices
    in a sweep of ~20 currents), i_c is held on the break, mobility and sigma are maximised,
    and the device counts as converged; its i_c interval comes from the local curvature, which
    in simulation still gives close to nominal coverage.
    """
    level = _check_level(level)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"levels: expected an int >= 2, got {levels!r}")
    levels = int(levels)
    device = _device_of(level_counts, current, width)
    counts = _counts(level_counts, "level_counts", device, 3)
    n, m, L = counts.shape
    if L != levels:
        raise ValueError(f"level_counts: expected last dimension = levels = {levels}, got shape {tuple(counts.shape)}")
    if m == 0:
        raise ValueError("level_counts: expected at least one pulse per device (m >= 1), got m = 0")
    i = _per_point(current, "current", n, m, device)
    t = _per_point(width, "width", n, m, device, allow_scalar=True)
    if bool((t <= 0).any()):
        raise ValueError(f"width: pulse widths must be positive, got minimum {t.min().item():g}")
    s = _as_tensor(start, "start", device)
    try:
        s = torch.broadcast_to(s, (n, m)).contiguous()
    except RuntimeError:
        raise ValueError(f"start: expected an int or an array broadcastable to (n, m) = ({n}, {m}), "
                         f"got shape {tuple(s.shape)}") from None
    if bool(((s < 0) | (s > levels - 1) | (s != s.round())).any()):
        raise ValueError(f"start: expected whole levels in 0 .. {levels - 1}")

    # Automatic initialisation from the mean landing level.
    lv = torch.arange(L, dtype=DTYPE, device=device)
    tot = counts.sum(-1)
    safe = tot.clamp(min=1)
    mean = (counts * lv).sum(-1) / safe
    var = (counts * (lv - mean.unsqueeze(-1)) ** 2).sum(-1) / safe
    disp = (mean - s) * torch.sign(i)
    sat = (mean < 0.6) | (mean > L - 1.6)
    use = (tot > 0) & (disp > 0.3) & ~sat & (i != 0)
    u = disp / t
    wts = tot * use
    slope, intercept = _weighted_line(i.abs(), u, wts)
    n_use = use.sum(1)
    t_med = t.median(1).values
    imax = i.abs().max(1).values.clamp(min=1e-300)
    good = (n_use >= 2) & torch.isfinite(slope) & (slope > 0) & torch.isfinite(intercept)
    ic0 = torch.where(good, -intercept / slope.clamp(min=1e-300), 0.5 * imax)
    ic0 = torch.where(good & (ic0 < imax), ic0, 0.5 * imax)
    mob0 = torch.where(good, slope, (L - 1) / (2.0 * t_med * (imax - ic0).clamp(min=1e-300)))
    sig_var = (var * wts).sum(1) / wts.sum(1).clamp(min=1e-300)
    sig0 = torch.where(wts.sum(1) > 0, sig_var.sqrt(), torch.full_like(sig_var, 0.3)).clamp(0.1, 2.0)
    auto = torch.stack([ic0, mob0, sig0], dim=1)
    start_p = _init_matrix(init, _DWMTJ, auto)
    _positive(start_p[:, 1], "mobility")
    _positive(start_p[:, 2], "sigma")
    data = {"i": i, "t": t, "start": s, "counts": counts,
            "ic_ref": start_p[:, 0], "ic_scale": 1.0 / (start_p[:, 1] * t_med),
            "mob_ref": start_p[:, 1], "sig_ref": start_p[:, 2]}
    theta0 = torch.zeros((n, 3), dtype=DTYPE, device=device)
    box = torch.tensor([_LOC_BOX, _LOG_BOX, _LOG_BOX], dtype=DTYPE, device=device)
    domain = ((0.0, math.inf), (0.0, math.inf), (0.0, math.inf))
    informative = tot.sum(1) > 0
    return _fit(_DWMTJ, _make_dwmtj_eval(levels), _dwmtj_natural, theta0, data, -box, box, domain,
                ("natural", "log", "log"),
                _multinomial_const(counts), informative, level, max_iter, _dwmtj_pinned)


# --------------------------------------------------------------------------------------------
# Chunks of devices
# --------------------------------------------------------------------------------------------

_CHUNK_CELLS = 1 << 18  # counts (devices x pulses x levels) fitted together: ~2 MiB per float64 array


def _rows(x: Any, ndim: int, n: int, lo: int, hi: int) -> Any:
    """Rows lo:hi of a per-device argument (``ndim`` dimensions, first of length n); others as given."""
    if x is None or isinstance(x, (int, float, np.integer, np.floating)):
        return x
    if isinstance(x, Mapping):
        return {key: _rows(v, 1, n, lo, hi) for key, v in x.items()}
    if not isinstance(x, (Tensor, np.ndarray)):
        try:
            x = np.asarray(x)
        except Exception:  # noqa: BLE001 - left to the fit's own validation
            return x
    if x.ndim == ndim and x.shape[0] == n:
        return x[lo:hi]
    return x


def _chunked(fn: Callable[..., FitResult], counts: Any, ndim: int, args: dict[str, tuple[Any, int]],
             **kwargs: Any) -> FitResult:
    """``fn`` over chunks of devices (each about ``_CHUNK_CELLS`` counts), results concatenated.

    Devices are fitted independently, so chunking changes no result; it bounds the memory of a
    fit (the largest temporaries are a few arrays of one chunk's counts, in float64) and keeps
    the working set in cache. counts: the per-device count array (its first dimension is n).
    """
    try:
        shape = tuple(counts.shape) if isinstance(counts, (Tensor, np.ndarray)) else np.shape(counts)
    except Exception:  # noqa: BLE001 - left to the fit's own validation
        shape = ()
    plain = {key: v for key, (v, _) in args.items()}
    if len(shape) != ndim or shape[0] == 0:
        return fn(**plain, **kwargs)
    n = int(shape[0])
    size = max(1, _CHUNK_CELLS // max(1, math.prod(shape[1:])))
    if n <= size:
        return fn(**plain, **kwargs)
    parts = []
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        sub = {key: _rows(v, nd, n, lo, hi) for key, (v, nd) in args.items()}
        try:
            parts.append(fn(**sub, **kwargs))
        except ValueError as exc:
            raise ValueError(f"{exc} (in devices {lo}..{hi - 1} of {n})") from None
    first = parts[0]
    return FitResult(
        first.names,
        *(torch.cat([getattr(r, key) for r in parts]) for key in ("estimate", "stderr", "ci_low", "ci_high", "loglik", "converged")),
        first.level,
        torch.cat([r.cov for r in parts]),
        torch.cat([r.n_iter for r in parts]),
    )


def fit_logistic(amplitude: Any, switched: Any, trials: Any, *, init: Any = None, level: float = 0.95,
                 max_iter: int = _MAX_ITER) -> FitResult:
    return _chunked(_fit_logistic, switched, 2,
                    {"amplitude": (amplitude, 2), "switched": (switched, 2), "trials": (trials, 2), "init": (init, 2)},
                    level=level, max_iter=max_iter)


def fit_gaussian(amplitude: Any, switched: Any, trials: Any, *, init: Any = None, level: float = 0.95,
                 max_iter: int = _MAX_ITER) -> FitResult:
    return _chunked(_fit_gaussian, switched, 2,
                    {"amplitude": (amplitude, 2), "switched": (switched, 2), "trials": (trials, 2), "init": (init, 2)},
                    level=level, max_iter=max_iter)


def fit_thermal(voltage: Any, width: Any, switched: Any, trials: Any, *, tau0: Any = 1e-9, init: Any = None,
                level: float = 0.95, max_iter: int = _MAX_ITER) -> FitResult:
    return _chunked(_fit_thermal, switched, 2,
                    {"voltage": (voltage, 2), "width": (width, 2), "switched": (switched, 2), "trials": (trials, 2),
                     "tau0": (tau0, 1), "init": (init, 2)},
                    level=level, max_iter=max_iter)


def fit_dwmtj_landing(current: Any, width: Any, level_counts: Any, levels: int, *, start: Any = 0,
                      init: Any = None, level: float = 0.95, max_iter: int = _MAX_ITER) -> FitResult:
    return _chunked(_fit_dwmtj_landing, level_counts, 3,
                    {"current": (current, 2), "width": (width, 2), "level_counts": (level_counts, 3),
                     "start": (start, 2), "init": (init, 2)},
                    levels=levels, level=level, max_iter=max_iter)


for _public, _inner in ((fit_logistic, _fit_logistic), (fit_gaussian, _fit_gaussian), (fit_thermal, _fit_thermal),
                        (fit_dwmtj_landing, _fit_dwmtj_landing)):
    _public.__doc__ = _inner.__doc__
