"""Batched maximum-likelihood fits of the switching laws to per-device trial counts.

Every fit takes the counts of many devices at once (``n`` devices, ``m`` pulse amplitudes per
device) and fits all of them in one call, without a Python loop over devices: devices are
independent, so the summed negative log-likelihood separates. Each law's per-device gradient
and ``(P, P)`` observed information are written out analytically: a few per-point arrays,
reduced over the points in one pass (one matrix product when the amplitude grid is shared by
all devices), with the per-device factors applied after. The fit starts from a closed-form
estimate (a weighted regression on the empirical probit / logit / log-log transform, refined
by one IRLS step), usually within a fraction of a standard error of the maximum, and goes on
with Newton steps (damped Levenberg-Marquardt only where a step fails) on the devices not yet
converged; most devices need two or three evaluations.

Parameterisation. The natural parameters have awkward SI scales (fields ~1e-3 T, slopes
~1e3 /T, mobilities ~1e12 sites/(A s)), so each fit works in float64 in internal, normalised
parameters: locations (``x0``, ``h0``, ``i_c``) as offsets from their initial value in units
of the curve's width (for ``i_c``: of one site of displacement), positive quantities (``dx``,
``sigma``, ``mobility``) as logarithms relative to their initial value, the contrast ``a`` as
``logit(a)``, and for the thermal law ``delta`` and ``delta / vc0`` (minus the intercept and
the slope of the linearised law) relative to their initial value (``delta / delta_ref - 1``):
the law's log-log rate is linear in those, so its likelihood is that of a binomial regression
with a complementary log-log link, concave in them, and Newton converges from far away.
Everything is reported in the natural parameters:

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

* the Newton iteration reached a stationary point with a positive-definite Hessian: Newton
  decrement ``g^T H^-1 g`` below 1e-10 (the next step would be ~1e-5 standard errors), or
  below 1e-6 and the final undamped Newton step taken (which, Newton converging
  quadratically, lands closer still) without raising the negative log-likelihood (for the
  landing law: below 1, with the step's gain matching the quadratic model's; see
  :func:`fit_dwmtj_landing`);
* the point is strictly inside the box that bounds the internal parameters (a maximum that
  runs off to infinity is not an estimate);
* every parameter is identified: finite standard errors, and on the internal scale below 100
  (100 curve widths for a location, a factor e^100 for a log-parameter, 100 times the start
  for the thermal law's relative parameters); ``logit(a)`` is
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

from .switching_laws import SQRT2

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
_REL_BOX = 1e4  # bound on relative parameters (x / x_ref - 1, thermal law)
_DEC_TOL = 1e-10  # Newton decrement g^T H^-1 g (nats); = squared step in standard errors
_FINAL_DEC = 1e-6  # below this decrement the last Newton step is taken and checked by the NLL alone
# The same for the landing law, whose evaluations cost most and whose start is within about
# half a standard error of the maximum: from up to one standard error away, most devices straight
# from the start (accuracy: see fit_dwmtj_landing).
_LANDING_FINAL_DEC = 1.0
# A final step from a decrement above _FINAL_CHECKED must gain dec / 2 nats, as the quadratic
# model predicts, within this fraction: the law's cubic term along the step is then small, so
# the step lands close to the maximum. Below _FINAL_CHECKED the step is too short to matter.
_FINAL_RATIO = 0.01
_FINAL_CHECKED = 1e-2
_MAX_ITER = 100
_STALL_TOL = 1e-13  # relative NLL gain below which an iteration counts as no progress
_STALL_ITERS = 5  # that many such iterations in a row: give up on the device
_PIN_TRIES = 4  # rejected steps across a kink (damping growing to ~0.5) before the device is held on it
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
    floating = t.is_floating_point()
    t = t.to(dtype=DTYPE, device=device)
    if floating and not bool(torch.isfinite(t).all()):  # (integers convert to finite values)
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
    integer = ((isinstance(x, Tensor) and not x.is_floating_point())
               or (isinstance(x, np.ndarray) and x.dtype.kind in "iub"))
    if not integer and not bool((t == t.round()).all()):
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
    return table.index_select(0, x.reshape(-1).long()).view(x.shape)  # (~2x faster than table[x.long()])


def _binomial_const(k: Tensor, N: Tensor) -> Tensor:
    top = N.max() if N.numel() else N.sum()
    return (_log_factorial(N, top) - _log_factorial(k, top) - _log_factorial(N - k, top)).sum(-1)


def _multinomial_const(N: Tensor, c: Tensor) -> Tensor:
    """``(n,)`` sum of the log multinomial coefficients: N ``(n, m)`` trials per pulse, c ``(n, L)``
    the non-zero counts (zeros, with log 0! = 0, may pad them)."""
    top = N.max() if N.numel() else N.sum()
    return _log_factorial(N, top).sum(-1) - _log_factorial(c, top).sum(-1)


# --------------------------------------------------------------------------------------------
# Batched damped Newton
# --------------------------------------------------------------------------------------------

Data = dict[str, Tensor]
NaturalFn = Callable[[Tensor, Data], Tensor]
# (theta (k, P), data, derivatives?) -> NLL (k,), gradient (k, P), observed information
# (k, P, P), all in the internal parameters; gradient and information are None if not asked.
EvalFn = Callable[[Tensor, Data, bool], tuple[Tensor, Tensor | None, Tensor | None]]
# (theta, trial, data) -> (trial, crossing): the trial point of a step shortened to end on the
# first discontinuity of the law that it would cross, and a (k, P) bool mask of the
# coordinates of a discontinuity that theta sits on and the (whole) step crosses.
KinkFn = Callable[[Tensor, Tensor, Data], tuple[Tensor, Tensor]]
# (theta, data) -> (J, k, P): points just across the nearest jumps of the law (NaN where none),
# compared with each local maximum found (a law with jumps can have one on either side).
AcrossFn = Callable[[Tensor, Data], Tensor]


def _subset(data: Data, idx: Tensor) -> Data:
    """The rows ``idx`` of every per-device entry; entries with a leading dimension of 1 (shared
    by all devices: a common grid, a table of its powers) as they are."""
    return {key: v if v.shape[0] == 1 else torch.index_select(v, 0, idx) for key, v in data.items()}


def _rows_of(data: Data, idx: Tensor, n: int) -> Data:
    """:func:`_subset` for sorted distinct rows ``idx`` of ``n``: ``data`` itself (no copy) when they are all."""
    return data if idx.numel() == n else _subset(data, idx)


def _shared_rows(x: Tensor) -> Tensor:
    """``x[:1]`` (shape ``(1, m)``) if every row of the ``(n, m)`` array ``x`` equals the first, else ``x``.

    A grid or trial count shared by all devices is then stored once: it broadcasts in the
    likelihoods and is not copied when the optimiser selects the devices still active.
    """
    if x.shape[0] > 1 and bool((x == x[:1]).all()):
        return x[:1]
    return x


def _design(x: Tensor) -> dict[str, Tensor]:
    """A standardised design ``u = (x - centre) / scale`` for the sums over points.

    x: ``(1, m)`` (shared by all devices) or ``(n, m)``. Returns ``u`` (same shape), ``centre``
    and ``scale`` (``(1,)`` when shared, else ``(n,)``; ``x = centre + scale u``) and, when x is
    shared, ``powers``: the ``(1, 3, m)`` table of ``u^0, u^1, u^2``, with which the sums over
    points of all devices come out of one matrix product (see :func:`_moments`).
    """
    centre = x.mean(1)
    scale = (x - centre[:, None]).abs().amax(1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    u = (x - centre[:, None]) / scale[:, None]
    out = {"u": u, "centre": centre, "scale": scale}
    if x.shape[0] == 1:
        out["powers"] = torch.stack([torch.ones_like(u[0]), u[0], u[0] * u[0]]).unsqueeze(0)
    return out


def _moments(Y: Tensor, u: Tensor, powers: Tensor | None) -> Tensor:
    """``(3, J, k)``: the sums over points ``sum_j Y[i, :, j] * u_j^e`` for e = 0, 1, 2.

    Y: ``(J, k, m)`` per-point quantities of k devices; u: the design, ``(1, m)`` shared or
    ``(k, m)``; powers: ``(1, 3, m)`` table of the shared design's powers, or None. A shared
    design takes one matrix product (one pass over Y); a per-device one three reductions.
    """
    J, k, m = Y.shape
    if powers is not None:
        return (powers[0] @ Y.reshape(J * k, m).T).reshape(3, J, k)
    out = torch.empty((3, J, k), dtype=Y.dtype, device=Y.device)
    torch.sum(Y, -1, out=out[0])
    t = Y * u
    torch.sum(t, -1, out=out[1])
    torch.sum(t.mul_(u), -1, out=out[2])
    return out


def _shift(M: Tensor, b0: Tensor, b1: Tensor) -> Tensor:
    """Moments ``sum Y eta^e`` (e = 0, 1, 2) from the moments ``M`` (:func:`_moments`) in u, for
    the per-device affine predictor ``eta = b0 + b1 u`` (b0, b1: ``(k,)``)."""
    M0, M1, M2 = M[0], M[1], M[2]
    return torch.stack([M0, b0 * M0 + b1 * M1, b0 * b0 * M0 + (2.0 * b0 * b1) * M1 + (b1 * b1) * M2])


def _binomial_core(pm: Tensor, d: Data, derivs: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """NLL ``(k,)`` of binomial counts at the mixed probabilities ``pm = eps + (1 - 2 eps) p``
    (up to the binomial coefficients), and (derivs) the per-point first and second derivatives
    of the NLL with respect to pm: ``-r`` with ``r = (k - N pm) / (pm (1 - pm))``, and
    ``w = k / pm^2 + (N - k) / (1 - pm)^2 = (N + r (1 - 2 pm)) / (pm (1 - pm))``. The laws
    multiply these by their dp/deta, d2p/deta2 and take sums over points (:func:`_moments`).
    Temporaries are updated in place: fresh ``(k, m)`` allocations cost more than the arithmetic.
    """
    k, N, nk = d["k"], d["N"], d["nk"]
    # log(1 - pm) as log of the rounded 1 - pm: off by at most one ulp of 1 (1.1e-16) in
    # absolute terms where pm is tiny, which no NLL comparison resolves, and ~3x cheaper than log1p.
    q = torch.neg(pm).add_(1.0)
    f = torch.log(pm).mul_(k).add_(torch.log(q).mul_(nk)).sum(-1).neg_()
    if not derivs:
        return f, None, None
    inv_v = torch.mul(pm, q).reciprocal_()
    r = torch.addcmul(k, N, pm, value=-1.0).mul_(inv_v)
    w = torch.mul(pm, -2.0).add_(1.0).mul_(r).add_(N).mul_(inv_v)
    return f, r, w


def _hessian(entries: dict[tuple[int, int], Tensor], P: int) -> Tensor:
    """``(k, P, P)`` symmetric matrix from its lower-triangle entries ``(i, j), i >= j``."""
    first = next(iter(entries.values()))
    H = torch.empty((first.shape[0], P, P), dtype=first.dtype, device=first.device)
    for (i, j), hij in entries.items():
        H[:, i, j] = hij
        H[:, j, i] = hij
    return H


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


_SMALL_BATCH = 256  # below this many systems the batched LAPACK call is the cheaper


def _pd_solve(A: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Solve ``A x = b`` for a batch of symmetric ``(P, P)`` systems by Cholesky.

    Returns (x, pd): pd is False where ``A`` is not (numerically) positive definite (or not
    finite), and there x is ``b`` (the solve with an identity factor). For P <= 3 and large
    batches the factor and the two triangular solves are written out over ``(k,)`` columns: a
    few dozen vector operations instead of one LAPACK call per system.
    """
    k, P = b.shape
    if P > 3 or k < _SMALL_BATCH:
        eye = torch.eye(P, dtype=A.dtype, device=A.device)
        finite = torch.isfinite(A).all((1, 2))
        A = torch.where(finite[:, None, None], A, eye)
        chol, info = torch.linalg.cholesky_ex(A)
        pd = (info == 0) & finite
        chol = torch.where(pd[:, None, None], chol, eye.expand_as(chol))
        return torch.cholesky_solve(b.unsqueeze(-1), chol).squeeze(-1), pd
    a = A
    l00 = a[:, 0, 0].sqrt()
    pd = a[:, 0, 0] > 0
    if P == 1:
        x0 = b[:, 0] / l00 / l00
        pd = pd & torch.isfinite(x0)
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
        x = torch.stack([x0, x1], dim=1)
    else:
        l20 = a[:, 2, 0] / l00
        l21 = (a[:, 2, 1] - l20 * l10) / l11
        d2 = a[:, 2, 2] - l20 * l20 - l21 * l21
        pd = pd & (d2 > 0)
        l22 = d2.sqrt()
        y2 = (b[:, 2] - l20 * y0 - l21 * y1) / l22
        x2 = y2 / l22
        x1 = (y1 - l21 * x2) / l11
        x0 = (y0 - l10 * x1 - l20 * x2) / l00
        x = torch.stack([x0, x1, x2], dim=1)
    pd = pd & torch.isfinite(x).all(1)
    return torch.where(pd[:, None], x, b), pd


def _newton(
    ev: EvalFn,
    theta0: Tensor,
    data: Data,
    lower: Tensor,
    upper: Tensor,
    max_iter: int,
    kinks: KinkFn | None = None,
    held: Tensor | None = None,
    final_dec: float = _FINAL_DEC,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Damped Newton (Levenberg-Marquardt) on every device at once, with observed information.

    Returns (theta, stationary, n_iter, nll, information), the last two at the returned theta
    (for a device finished by a final Newton step, see below, the information is the one at
    the point before it). Each iteration of a device still active:

    * from its NLL f, gradient g and observed information H at the current point, the Newton
      step ``s = -H^-1 g`` and the decrement ``dec = g^T H^-1 g`` (nats; the squared length of
      the step in standard errors);
    * ``dec < _DEC_TOL`` with H positive definite: stationary, done;
    * ``dec < final_dec`` (default _FINAL_DEC): the final Newton step -- undamped, checked by
      the NLL alone (one cheap evaluation); accepted if the NLL does not rise (and, for a law
      with jumps, it crosses none; and, from ``dec > _FINAL_CHECKED``, it gains ``dec / 2``
      within the fraction _FINAL_RATIO, as the quadratic model predicts), and then stationary,
      done: Newton converges quadratically, so from a point ``sqrt(final_dec)`` standard errors
      away the step lands within about ``final_dec`` standard errors of the maximum, times the
      law's curvature change across a standard error (for _FINAL_DEC closer than the
      ``sqrt(_DEC_TOL)`` of the plain test);
    * otherwise a damped step ``(H + lam diag|H|) s = -g`` (one ``lam`` per device, 0 at the
      start: a full Newton step) with NLL, gradient and information evaluated at the trial
      point together (one evaluation); the step is accepted if the NLL does not rise (and
      ``lam`` shrinks 5x), else ``lam`` grows 8x (to at least 1e-3) and the device tries again
      from the same point in the next iteration. (Damping from the start would slow the
      strongly correlated fits -- thermal: delta and delta / vc0 -- where the smallest
      eigenvalue of H is far below its diagonal.)

    Only the active devices are evaluated (except final steps of at least three quarters of
    the devices: all are evaluated in place, the others at their current point, which is
    cheaper than a copy of the selected devices' data). A device is given up (not
    stationary) when its damping exceeds 1e20, when _STALL_ITERS accepted steps in a row gain less than _STALL_TOL
    (relative), or after max_iter steps. n_iter: steps tried (evaluations after the start).

    kinks: for a law with jumps (see :data:`KinkFn`), damped steps end on the first jump they
    would cross, so that an iterate reaches a jump in one step rather than by a long run of
    rejected and shortened ones. Steps from a jump across it that are rejected _PIN_TRIES
    times (the damping growing each time) mean that the maximum is on the jump: its
    coordinates are held there from then on (zero step, left out of the stationarity test) and
    the others are maximised, with the damping reset. held: optional ``(n, P)`` bool, the
    coordinates held from the start.
    """
    n, P = theta0.shape
    dev = theta0.device
    theta = torch.minimum(torch.maximum(theta0.clone(), lower), upper)
    f, g, H = ev(theta, data, True)
    lam = torch.zeros(n, dtype=DTYPE, device=dev)
    stationary = torch.zeros(n, dtype=torch.bool, device=dev)
    active = torch.ones(n, dtype=torch.bool, device=dev)
    final_ok = torch.ones(n, dtype=torch.bool, device=dev)  # the final-step shortcut is still allowed
    n_iter = torch.zeros(n, dtype=torch.int64, device=dev)
    n_slow = torch.zeros(n, dtype=torch.int64, device=dev)
    n_cross = torch.zeros(n, dtype=torch.int64, device=dev)  # rejected steps across a kink
    may_hold = kinks is not None or held is not None  # (a law without kinks skips the check)
    held = torch.zeros((n, P), dtype=torch.bool, device=dev) if held is None else held.clone()  # held on a kink

    for _ in range(max_iter):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        fi, gi, Hi, th = f[idx], g[idx], H[idx], theta[idx]
        finite = torch.isfinite(fi) & torch.isfinite(gi).all(1) & torch.isfinite(Hi).all((1, 2))
        gi = torch.where(finite[:, None], gi, 0.0)
        if may_hold and bool(held.any()):
            fr = (~held[idx]).to(DTYPE)
            gi = gi * fr
            Hi = Hi * fr[:, :, None] * fr[:, None, :] + torch.diag_embed(1.0 - fr)

        # Converged? The decrement with the undamped information, which must be positive definite.
        newton_step, pd = _pd_solve(Hi, -gi)
        pd = pd & finite
        dec = -(gi * newton_step).sum(-1)
        done = pd & (dec.abs() < _DEC_TOL)
        final = pd & ~done & (dec < final_dec) & final_ok[idx]
        stationary[idx[done]] = True
        active[idx[done | ~finite]] = False

        # Final Newton steps, checked by the NLL alone.
        sel = final.nonzero().squeeze(1)
        if sel.numel():
            gl = idx[sel]
            trial = torch.minimum(torch.maximum(th[sel] + newton_step[sel], lower), upper)
            # Most of the devices: every device evaluated in place (the others at their
            # current point), which is cheaper than a copy of the selected devices' data.
            if 4 * gl.numel() >= 3 * n:
                rows, th_s, trial_s, data_s = gl, theta, theta.index_put((gl,), trial), data
            else:
                rows, th_s, trial_s, data_s = slice(None), th[sel], trial, _subset(data, gl)
            f_new = ev(trial_s, data_s, False)[0][rows]
            n_iter[gl] += 1
            ok = torch.isfinite(f_new) & (f_new <= fi[sel])
            d_sel = dec[sel]
            ok &= (d_sel <= _FINAL_CHECKED) | ((fi[sel] - f_new - 0.5 * d_sel).abs() <= _FINAL_RATIO * 0.5 * d_sel)
            if kinks is not None:  # (a final step that would cross a jump of the law is not one)
                clipped, crossing = (x[rows] for x in kinks(th_s, trial_s, data_s))
                ok &= (clipped == trial).all(1) & ~crossing.any(1)
            theta[gl[ok]], f[gl[ok]] = trial[ok], f_new[ok]
            stationary[gl[ok]] = True
            active[gl] = False
            # A rejected final step (rounding at the maximum, or a law that is not smooth
            # there): the device goes on with ordinary damped steps.
            active[gl[~ok]] = True
            final_ok[gl[~ok]] = False

        # Damped steps, evaluated in full at the trial point.
        sel = (~done & ~final & finite).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        gl = idx[sel]
        Hs, gs, fs = Hi[sel], gi[sel], fi[sel]
        scale = Hs.diagonal(dim1=1, dim2=2).abs() + 1e-9 * (1.0 + fs.abs()).unsqueeze(1)
        lam_s = lam[gl]
        step, ok = _pd_solve(Hs + lam_s[:, None, None] * torch.diag_embed(scale), -gs)
        trial = torch.minimum(torch.maximum(th[sel] + step, lower), upper)
        data_s = _rows_of(data, gl, n)
        if kinks is not None:
            trial, crossing = kinks(th[sel], trial, data_s)
        f_new, g_new, H_new = ev(trial, data_s, True)
        n_iter[gl] += 1
        good = ok & torch.isfinite(f_new) & (f_new <= fs)
        won = gl[good]
        theta[won], f[won], g[won], H[won] = trial[good], f_new[good], g_new[good], H_new[good]
        lam_s = torch.where(good, lam_s / 5.0, (lam_s * 8.0).clamp(min=1e-3))
        if kinks is not None:
            # Steps across the kink the device sits on rejected _PIN_TRIES times (with growing
            # damping; steps along the kink in between may succeed): the maximum is on the
            # kink. Hold it there.
            n_cross[gl] += crossing.any(1) & ~good
            pin = (n_cross[gl] >= _PIN_TRIES) & crossing.any(1) & ~good
            held[gl[pin]] |= crossing[pin]
            lam_s = torch.where(pin, 0.0, lam_s)
        lam[gl] = lam_s
        # A device that cannot make progress is given up: its damping has exploded, or its
        # accepted steps have gained less than _STALL_TOL (relative) _STALL_ITERS times in a row
        # without meeting the stationarity test (e.g. the maximum sits on a discontinuity of the law).
        slow = good & ((fs - f_new) < _STALL_TOL * (1.0 + fs.abs()))
        n_slow[gl] = torch.where(slow, n_slow[gl] + 1, torch.where(good, 0, n_slow[gl]))
        stuck = (lam_s > 1e20) | (n_slow[gl] >= _STALL_ITERS)
        active[gl[stuck]] = False

    return theta, stationary, n_iter, f, H


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
    kinks: KinkFn | None = None,
    across: AcrossFn | None = None,
    final_dec: float = _FINAL_DEC,
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
    theta, stationary, n_iter, f, H = _newton(ev, theta0, data, lower, upper, max_iter, kinks, final_dec=final_dec)
    bad = ~torch.isfinite(theta).all(1)
    if bool(bad.any()):
        theta = torch.where(bad[:, None], theta0, theta)
        f[bad], _g, H[bad] = ev(theta[bad], _subset(data, bad.nonzero().squeeze(1)), True)
    if across is not None:
        # A law with jumps: a local maximum may be beaten by one just across the nearest jump.
        # Each such point is scored by its NLL less the gain that a Newton step in the
        # coordinates it did not move promises there; Newton goes on from the best point that
        # beats the local maximum, holding the coordinates put on the jump (as Newton would
        # once steps back across it failed), and its result is kept where it ends higher.
        idx = stationary.nonzero().squeeze(1)
        sub = data if idx.numel() == n else _subset(data, idx)
        points = across(theta[idx], sub)
        best_f, best = f[idx].clone(), torch.full((idx.numel(),), -1, dtype=torch.int64, device=dev)
        for j, pt in enumerate(points):
            live = torch.isfinite(pt).all(1).nonzero().squeeze(1)
            if live.numel() == 0:
                continue
            fj, gj, Hj = ev(pt[live], _subset(sub, live), True)
            keep = (pt[live] == theta[idx[live]]).to(DTYPE)  # coordinates free to move there
            gj = torch.where(torch.isfinite(gj), gj, 0.0) * keep
            Hj = Hj * keep[:, :, None] * keep[:, None, :] + torch.diag_embed(1.0 - keep)
            step, pd = _pd_solve(Hj, -gj)
            score = fj + torch.where(pd, 0.5 * (gj * step).sum(1), 0.0)
            better = torch.isfinite(fj) & (score < best_f[live])
            best_f[live[better]], best[live[better]] = score[better], j
        moved = best >= 0
        if bool(moved.any()):
            go, pick = idx[moved], best[moved]
            th2 = points[pick, moved.nonzero().squeeze(1)]
            hold = th2 != theta[go]
            th2, st2, it2, f2, H2 = _newton(ev, th2, _subset(data, go), lower, upper, max_iter, kinks, hold,
                                                   final_dec)
            n_iter[go] += it2
            won = f2 < f[go]
            go = go[won]
            theta[go], stationary[go], f[go], H[go] = th2[won], st2[won], f2[won], H2[won]

    # Covariance: inverse observed Fisher information at the estimate, by the delta method.
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


def _sigmoid_init(h: Tensor, p_hat: Tensor) -> tuple[Tensor, Tensor]:
    """Midpoint and 10-90 % width of a rising curve p_hat(h) normalised to [0, 1]: a robust
    start for devices whose transformed-scale regression (:func:`_wls_line`) fails.

    h: ``(n, m)`` or ``(1, m)``; p_hat: ``(n, m)``. Returns (mid, width), each (n,)."""
    h = h.expand_as(p_hat)
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
    return mid, width


def _empirical(k: Tensor, N: Tensor) -> Tensor:
    """Empirical probabilities with a continuity correction, ``(k + 1/2) / (N + 1)``: inside (0, 1)."""
    return (k + 0.5) / (N + 1.0)


def _wls_line(y: Tensor, w: Tensor, design: Data) -> tuple[Tensor, Tensor]:
    """Per-device weighted least squares ``y ~ b0 + b1 u`` on the design u (:func:`_design`).

    y, w: ``(n, m)`` responses and weights (0 to leave a point out). Returns (b0, b1), each
    ``(n,)``; non-finite where a device has fewer than two distinct weighted points.
    """
    Y = torch.stack([w, w * y])
    M = _moments(Y, design["u"], design.get("powers"))
    sw, swu, swuu = M[0, 0], M[1, 0], M[2, 0]
    swy, swuy = M[0, 1], M[1, 1]
    det = sw * swuu - swu * swu
    b1 = (sw * swuy - swu * swy) / det
    b0 = (swy - b1 * swu) / sw
    ok = (det > 1e-12 * sw * sw) & (sw > 0)
    nan = torch.full_like(b1, math.nan)
    return torch.where(ok, b0, nan), torch.where(ok, b1, nan)


def _irls_update(eta: Tensor, mu: Tensor, dmu: Tensor, k: Tensor, N: Tensor, design: Data,
                 offset: Tensor | float = 0.0) -> tuple[Tensor, Tensor]:
    """One iteratively-reweighted least-squares (Fisher scoring) step for a binomial model whose
    probability ``mu(eta)`` depends on the linear predictor ``eta = offset + b0 + b1 u``.

    eta, mu, dmu: ``(n, m)`` predictor, probability and ``dmu/deta`` at the current estimate;
    k, N: counts and trials. Regresses the working response ``eta - offset + (k / N - mu) /
    dmu`` on u with weights ``N dmu^2 / (mu (1 - mu))``; points where dmu has underflowed carry
    no weight. Returns the new (b0, b1), non-finite where the regression fails.
    """
    live = dmu > 1e-12
    safe = torch.where(live, dmu, 1.0)
    y = eta - offset + (k / N.clamp(min=1.0) - mu) / safe
    w = torch.where(live, N * dmu * (dmu / (mu * (1.0 - mu)).clamp(min=1e-300)), 0.0)
    return _wls_line(torch.where(live, y, 0.0), w, design)


def _positive(x: Tensor, name: str, tiny: float = 0.0) -> None:
    if not bool((x > tiny).all()):
        raise ValueError(f"init: {name} must be positive, got minimum {x.min().item():g}")


def _informative_binomial(k: Tensor, N: Tensor) -> Tensor:
    has_trials = (N > 0).any(1)
    some_yes = (k > 0).any(1)
    some_no = (k < N).any(1)
    return has_trials & some_yes & some_no


def _binomial_data(h: Tensor, k: Tensor, N: Tensor) -> Data:
    """The likelihood's data: counts, trials (a shared ``(1, m)`` row where possible) and the
    standardised design of the amplitudes ``h`` (:func:`_design`)."""
    h = _shared_rows(h)
    N = _shared_rows(N)
    return {"k": k, "N": N, "nk": N - k, **_design(h)}


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
    """Binomial NLL of :func:`logistic_depinning`; gradient and observed information in the
    internal parameters (u, v, w) = (offset of x0 in units of x_scale, log dx / dx_ref, logit a).

    With ``eta = dx (h - x0) = b0 + b1 u_j`` (u_j: the standardised amplitudes), ``s =
    sigmoid(eta)``, ``p = 1 - a + a s`` and ``pm = eps + c p`` (c = 1 - 2 eps): ``dp/deta = a
    s (1 - s)``, ``dp/dw = -a (1 - a) (1 - s)``; ``deta/du = -alpha`` (alpha = dx x_scale),
    ``deta/dv = eta``. Six per-point arrays (r and w of :func:`_binomial_core` times powers of
    s and 1 - s) are reduced against 1, u, u^2 in one product, and the per-device factors
    (a, a (1 - a), alpha, and b0, b1 to turn moments in u into moments in eta) applied after.
    """
    x0 = d["x0_ref"] + theta[:, 0] * d["x_scale"]
    dx = d["dx_ref"] * torch.exp(theta[:, 1])
    a = torch.sigmoid(theta[:, 2])
    b1 = dx * d["scale"]
    b0 = dx * (d["centre"] - x0)
    eta = torch.mul(d["u"], b1[:, None]).add_(b0[:, None])
    s = torch.sigmoid(eta)
    c = 1.0 - 2.0 * _EPS
    pm = torch.mul(s, (c * a)[:, None]).add_((_EPS + c * (1.0 - a))[:, None])
    f, r, w = _binomial_core(pm, d, derivs)
    if not derivs:
        return f, None, None
    one_s = torch.neg(s).add_(1.0)
    s1 = s * one_s  # sigmoid'
    Y = torch.empty((6,) + tuple(s.shape), dtype=DTYPE, device=s.device)
    torch.mul(r, s1, out=Y[0])  # A = r s1
    torch.mul(r, s1.mul(torch.sub(one_s, s)), out=Y[1])  # B = r s2, s2 = sigmoid''
    torch.mul(r, one_s, out=Y[2])  # C = r (1 - s)
    torch.mul(w, one_s, out=Y[5]).mul_(one_s)  # F = w (1 - s)^2
    ws1 = w.mul_(s1)
    torch.mul(ws1, s1, out=Y[3])  # D = w s1^2
    torch.mul(ws1, one_s, out=Y[4])  # E = w s1 (1 - s)
    M = _moments(Y, d["u"], d.get("powers"))
    SA, SB, SD, SE = (_shift(M[:, j], b0, b1) for j in (0, 1, 3, 4))
    SC0, SF0 = M[0, 2], M[0, 5]
    alpha = dx * d["x_scale"]
    a1 = a * (1.0 - a)  # da/dw
    a2 = a1 * (1.0 - 2.0 * a)  # d2a/dw2
    L_e = -c * a * SA  # sum dNLL/deta * eta^e
    L_ee = (c * c) * a * a * SD - c * a * SB  # sum d2NLL/deta2 * eta^e
    L_ew = -(c * c) * a * a1 * SE - c * a1 * SA  # sum d2NLL/deta dw * eta^e
    L_w = c * a1 * SC0
    L_ww = (c * c) * a1 * a1 * SF0 + c * a2 * SC0
    g = torch.stack([-alpha * L_e[0], L_e[1], L_w], dim=1)
    H = _hessian({
        (0, 0): alpha * alpha * L_ee[0],
        (1, 0): -alpha * (L_ee[1] + L_e[0]),
        (1, 1): L_ee[2] + L_e[1],
        (2, 0): -alpha * L_ew[0],
        (2, 1): L_ew[1],
        (2, 2): L_ww,
    }, 3)
    return f, g, H


def _logistic_start(d: Data, k: Tensor, N: Tensor, h: Tensor) -> Tensor:
    """``(n, 3)`` start (x0, dx, a) from the empirical curve.

    1. A robust first guess: the floor ``1 - a`` at the lowest empirical probability (clamped
       to 1e-3 .. 0.5), x0 and dx from where the floor-corrected curve crosses 10, 50 and 90 %.
    2. The floor re-estimated as the pooled fraction switched over the amplitudes well below the
       rise (``dx (h - x0) < -4`` at the first guess), where there are any.
    3. x0 and dx from a weighted regression of ``logit((p_hat - floor) / a)`` on h (delta-method
       weights ``N a^2 q^2 (1 - q)^2 / (p_hat (1 - p_hat))``, q the floor-corrected probability,
       which leave out the floor; points with no or all trials switched left out), then one
       IRLS step (:func:`_irls_update`) with a held fixed.
    Devices where the regression fails keep the first guess.
    """
    p_hat = _empirical(k, N)
    Nb = N.expand_as(k)
    floor = p_hat.min(1).values.clamp(1e-3, 0.5)
    mid, width = _sigmoid_init(h, (p_hat - floor[:, None]) / (1.0 - floor[:, None]))
    dx0, x00 = _LN81 / width, mid
    below = (dx0[:, None] * (h - x00[:, None]) < -4.0).to(DTYPE)
    n_below = (Nb * below).sum(1)
    pooled = (k * below).sum(1) / n_below.clamp(min=1.0)
    floor = torch.where(n_below > 0, pooled, floor).clamp(1e-4, 0.5)
    a = 1.0 - floor
    eps_q = 0.5 / (Nb + 1.0)
    q = ((p_hat - floor[:, None]) / a[:, None]).clamp_(min=eps_q, max=1.0 - eps_q)
    wq = Nb / (p_hat * (1.0 - p_hat)) * (a[:, None] * q * (1.0 - q)) ** 2 * ((k > 0) & (k < Nb))
    b0, b1 = _wls_line(torch.logit(q), wq, d)
    eta = b0[:, None] + b1[:, None] * d["u"]
    s = torch.sigmoid(eta)
    c0, c1 = _irls_update(eta, floor[:, None] + a[:, None] * s, a[:, None] * s * (1.0 - s), k, Nb, d)
    step_ok = torch.isfinite(c0) & torch.isfinite(c1) & (c1 > 0)
    b0, b1 = torch.where(step_ok, c0, b0), torch.where(step_ok, c1, b1)
    dx = b1 / d["scale"]
    x0 = d["centre"] - b0 / dx
    good = torch.isfinite(dx) & torch.isfinite(x0) & (dx > 0)
    x0, dx = torch.where(good, x0, x00), torch.where(good, dx, dx0)
    return torch.stack([x0, dx, a], dim=1)


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
    init: None for automatic initialisation (weighted regressions on the empirical curve:
    ``logit`` of the floor-corrected probabilities against h for x0 and dx, the floor ``1 - a``
    from the points below the rise), or a mapping of some parameter names to scalars / ``(n,)``
    values, or a ``(3,)`` / ``(n, 3)`` array.
    level: confidence level of the Wald intervals. A device whose maximum lies on the boundary
    (e.g. ``a = 1`` because nothing switched at low field) is reported with converged=False.
    """
    level = _check_level(level)
    h, k, N = _binomial_inputs(amplitude, "amplitude", switched, trials)
    n = k.shape[0]
    data = _binomial_data(h, k, N)
    if init is None or isinstance(init, Mapping):
        auto = _logistic_start(data, k, data["N"], _shared_rows(h))
    else:  # a full matrix of starting values
        auto = torch.zeros((n, 3), dtype=DTYPE, device=k.device)
    start = _init_matrix(init, _LOGISTIC, auto)
    _positive(start[:, 1], "dx")
    if not bool(((start[:, 2] > 0) & (start[:, 2] <= 1)).all()):
        raise ValueError("init: a must lie in (0, 1]")
    a0 = start[:, 2].clamp(1e-9, 1 - 1e-9)
    data.update({"x0_ref": start[:, 0], "x_scale": 1.0 / start[:, 1], "dx_ref": start[:, 1]})
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
    """Binomial NLL of :func:`gaussian_depinning`; gradient and observed information in the
    internal parameters (u, v) = (offset of h0 in units of sigma_ref, log sigma / sigma_ref).

    With ``eta = (h - h0) / sigma = b0 + b1 u_j``, ``p = Phi(eta)``: ``dp/deta = phi(eta)``,
    ``d2p/deta2 = -eta phi(eta)``; ``deta/du = -beta`` (beta = sigma_ref / sigma), ``deta/dv
    = -eta``. Two per-point arrays are reduced against 1, u, u^2 in one product.
    """
    h0 = d["h0_ref"] + theta[:, 0] * d["sigma_ref"]
    sigma = d["sigma_ref"] * torch.exp(theta[:, 1])
    b1 = d["scale"] / sigma
    b0 = (d["centre"] - h0) / sigma
    eta = torch.mul(d["u"], b1[:, None]).add_(b0[:, None])
    c = 1.0 - 2.0 * _EPS
    # gaussian_depinning, p = (1 + erf(eta / sqrt(2))) / 2, mixed with eps: pm = eps + c p.
    pm = torch.mul(eta, 1.0 / SQRT2).erf_().mul_(0.5 * c).add_(_EPS + 0.5 * c)
    f, r, w = _binomial_core(pm, d, derivs)
    if not derivs:
        return f, None, None
    k1 = c * _INV_SQRT_2PI
    phi = torch.mul(eta, eta).mul_(-0.5).exp_()  # sqrt(2 pi) * density
    Y = torch.empty((2,) + tuple(eta.shape), dtype=DTYPE, device=eta.device)
    torch.mul(r, phi, out=Y[0])  # A: dNLL/deta = -k1 A
    torch.mul(w.mul_(phi).mul_(k1).addcmul_(r, eta), phi, out=Y[1])  # B: d2NLL/deta2 = k1 B
    M = _moments(Y, d["u"], d.get("powers"))
    SA, SB = _shift(M[:, 0], b0, b1), _shift(M[:, 1], b0, b1)
    beta = d["sigma_ref"] / sigma
    g = torch.stack([beta * SA[0], SA[1]], dim=1) * k1
    H = _hessian({
        (0, 0): beta * beta * SB[0],
        (1, 0): beta * (SB[1] - SA[0]),
        (1, 1): SB[2] - SA[1],
    }, 2) * k1
    return f, g, H


def _gaussian_start(d: Data, k: Tensor, N: Tensor, h: Tensor) -> Tensor:
    """``(n, 2)`` start (h0, sigma): weighted regression of the empirical probit
    ``Phi^-1(p_hat)`` on h (delta-method weights ``N phi^2 / (p_hat (1 - p_hat))``; points with
    no or all trials switched are left out: their transform only bounds the probit), then one
    IRLS step (:func:`_irls_update`). Devices where the regression fails start from the
    crossing points of the empirical curve instead."""
    p_hat = _empirical(k, N)
    y = torch.special.ndtri(p_hat)
    w = N * torch.exp(-y * y) / (p_hat * (1.0 - p_hat)) * ((k > 0) & (k < N))
    b0, b1 = _wls_line(y, w, d)
    eta = b0[:, None] + b1[:, None] * d["u"]
    c0, c1 = _irls_update(eta, 0.5 * (1.0 + torch.erf(eta / SQRT2)), torch.exp(-0.5 * eta * eta) * _INV_SQRT_2PI,
                          k, N, d)
    step_ok = torch.isfinite(c0) & torch.isfinite(c1) & (c1 > 0)
    b0, b1 = torch.where(step_ok, c0, b0), torch.where(step_ok, c1, b1)
    sigma = d["scale"] / b1
    h0 = d["centre"] - b0 * sigma
    good = torch.isfinite(sigma) & torch.isfinite(h0) & (sigma > 0)
    if not bool(good.all()):
        bad = (~good).nonzero().squeeze(1)
        mid, width = _sigmoid_init(h if h.shape[0] == 1 else h[bad], p_hat[bad])
        h0[bad], sigma[bad] = mid, width / _Z90
    return torch.stack([h0, sigma], dim=1)


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
    the automatic initialisation is a weighted regression of the empirical probit
    ``Phi^-1(p_hat)`` on h (slope 1 / sigma, zero at h0).
    """
    level = _check_level(level)
    h, k, N = _binomial_inputs(amplitude, "amplitude", switched, trials)
    n = k.shape[0]
    data = _binomial_data(h, k, N)
    auto = _gaussian_start(data, k, data["N"], _shared_rows(h))
    start = _init_matrix(init, _GAUSSIAN, auto)
    _positive(start[:, 1], "sigma")
    data.update({"h0_ref": start[:, 0], "sigma_ref": start[:, 1]})
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
    delta = d["delta_ref"] * (1.0 + theta[:, 0])
    slope = d["slope_ref"] * (1.0 + theta[:, 1])  # delta / vc0, 1/V
    return torch.stack([delta, delta / slope], dim=1)


def _thermal_eval(theta: Tensor, d: Data, derivs: bool):
    """Binomial NLL of :func:`thermal_switching`; gradient and observed information in the
    internal parameters (delta / delta_ref - 1, slope / slope_ref - 1), slope = delta / vc0.

    With ``eta = log(t / tau0) - delta + slope V`` (clamped at 30 as in the law), ``rho =
    e^eta`` and ``P = 1 - exp(-rho)``: ``dP/deta = rho (1 - P)`` (0 where clamped),
    ``d2P/deta2 = dP/deta (1 - rho)``; ``deta/du = -delta_ref``, ``deta/dv = slope_ref V``
    (eta is linear in the internal parameters: no second-derivative terms). Two
    per-point arrays are reduced against 1, V, V^2 (V unstandardised: the moments in V are
    the ones needed).
    """
    delta = d["delta_ref"] * (1.0 + theta[:, 0])
    slope = d["slope_ref"] * (1.0 + theta[:, 1])
    eta = torch.sub(d["log_t_tau"], delta[:, None]).addcmul_(d["v"], slope[:, None]).clamp_(max=30.0)
    rho = torch.exp(eta)
    c = 1.0 - 2.0 * _EPS
    em = torch.neg(rho).expm1_()  # -P
    pm = torch.mul(em, -c).add_(_EPS)
    f, r, w = _binomial_core(pm, d, derivs)
    if not derivs:
        return f, None, None
    dp = em.add_(1.0).mul_(rho)  # rho (1 - P)
    Y = torch.empty((2,) + tuple(eta.shape), dtype=DTYPE, device=eta.device)
    torch.mul(r, dp, out=Y[0])  # A: dNLL/deta = -c A
    # B: d2NLL/deta2 = c B, B = dp (c w dp - r (1 - rho))
    torch.mul(w.mul_(dp).mul_(c).sub_(rho.sub_(1.0).neg_().mul_(r)), dp, out=Y[1])
    SA, SB = _moments(Y, d["v"], d.get("powers")).unbind(1)
    dr, sr = d["delta_ref"], d["slope_ref"]
    g = torch.stack([dr * SA[0], -(sr * SA[1])], dim=1) * c
    H = _hessian({
        (0, 0): dr * dr * SB[0],
        (1, 0): -(dr * sr) * SB[1],
        (1, 1): sr * sr * SB[2],
    }, 2) * c
    return f, g, H


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
    ``log(-log(1 - P_hat)) - log(t / tau0)`` against V (delta-method weights; points with no or
    all trials switched left out), whose slope is delta / vc0 and intercept -delta, refined by
    one IRLS step (:func:`_irls_update`) -- or a mapping / array as in :func:`fit_logistic`.
    """
    level = _check_level(level)
    device = _device_of(switched, voltage, width, trials)
    k = _counts(switched, "switched", device, 2)
    n, m = k.shape
    w_t = _per_point_view(width, "width", n, m, device, allow_scalar=True)
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

    v = _shared_rows(v)
    N = _shared_rows(N)
    log_t_tau = _shared_rows(torch.log(w_t / tau[:, None]))
    data = {"k": k, "N": N, "nk": N - k, "v": v, "log_t_tau": log_t_tau}
    if v.shape[0] == 1:
        data["powers"] = torch.stack([torch.ones_like(v[0]), v[0], v[0] * v[0]]).unsqueeze(0)
    p_hat = _empirical(k, N)
    log1m = torch.log1p(-p_hat)
    y = torch.log(-log1m) - log_t_tau
    wts = N * (1.0 - p_hat) * log1m**2 / p_hat * ((k > 0) & (k < N))
    design = {"u": v, **({"powers": data["powers"]} if "powers" in data else {})}
    intercept, slope = _wls_line(y, wts, design)
    # One IRLS step from there: the empirical transform is biased where few trials switched or
    # few did not; the working response at the fitted curve is not.
    eta = (log_t_tau + intercept[:, None] + slope[:, None] * v).clamp(max=30.0)
    rho = torch.exp(eta)
    mu = -torch.expm1(-rho)
    c0, c1 = _irls_update(eta, mu, rho * (1.0 - mu), k, N, design, log_t_tau)
    step_ok = torch.isfinite(c0) & torch.isfinite(c1) & (c1 > 0) & (c0 < 0)
    intercept, slope = torch.where(step_ok, c0, intercept), torch.where(step_ok, c1, slope)
    delta0 = -intercept
    good = torch.isfinite(slope) & torch.isfinite(delta0) & (slope > 0) & (delta0 > 0)
    vmax = v.abs().max(1).values.clamp(min=1e-6).expand(n)
    delta0 = torch.where(good, delta0, torch.full_like(delta0, 50.0))
    vc00 = torch.where(good, delta0 / slope.clamp(min=1e-300), 1.05 * vmax)
    auto = torch.stack([delta0, vc00], dim=1)
    start = _init_matrix(init, _THERMAL, auto)
    _positive(start[:, 0], "delta")
    _positive(start[:, 1], "vc0")
    data.update({"delta_ref": start[:, 0], "slope_ref": start[:, 0] / start[:, 1]})
    theta0 = torch.zeros((n, 2), dtype=DTYPE, device=k.device)
    # delta and slope between 0 and _REL_BOX times their start (a point on the bound, e.g.
    # delta -> 0, is not an estimate).
    lower = torch.full((2,), -1.0, dtype=DTYPE, device=k.device)
    upper = torch.full((2,), _REL_BOX, dtype=DTYPE, device=k.device)
    domain = ((0.0, math.inf), (0.0, math.inf))
    return _fit(_THERMAL, _thermal_eval, _thermal_natural, theta0, data, lower, upper, domain,
                ("natural", "natural"),
                _binomial_const(k, N), _informative_binomial(k, N), level, max_iter)


# --------------------------------------------------------------------------------------------
# DW-MTJ landing (multinomial over levels)
# --------------------------------------------------------------------------------------------

_DWMTJ = ("i_c", "mobility", "sigma")
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_Z_MAX = 26.0  # |z| clamp: erf(z) is +-1 from |z| = 6 and exp(-z^2) stays above exp's slow underflow path
_KINK_TINY = 1e-9  # sites of displacement (at the median width) by which a step stops short of a kink


def _dwmtj_natural(theta: Tensor, d: Data) -> Tensor:
    i_c = d["ic_ref"] + theta[:, 0] * d["ic_scale"]
    mobility = d["mob_ref"] * torch.exp(theta[:, 1])
    sigma = d["sig_ref"] * torch.exp(theta[:, 2])
    return torch.stack([i_c, mobility, sigma], dim=1)


def _dwmtj_eval(theta: Tensor, d: Data, derivs: bool):
    """Multinomial NLL of :func:`dwmtj_landing` with gradient and observed information (see
    :func:`_dwmtj_eval_rows`), over slices of about ``_LANDING_SLICE`` entries: the landing
    fit iterates on large chunks of devices (few rounds of per-iteration overhead) but
    evaluates them in cache-sized slices, each cut to the most entries of any of its devices
    (the devices are sorted by their number of entries, so a slice carries little padding)."""
    k, L = d["c"].shape
    rows = max(1, _LANDING_SLICE // L)
    parts = []
    for lo in range(0, k, rows):
        sl = _slice(d, lo, lo + rows)
        width = max(1, int(sl["nnz"].max()))
        if width < L:
            sl.update({key: sl[key][:, :width] for key in _ENTRY_KEYS})
        parts.append(_dwmtj_eval_rows(theta[lo:lo + rows], sl, derivs))
    if len(parts) == 1:
        return parts[0]
    f = torch.cat([p[0] for p in parts])
    if not derivs:
        return f, None, None
    return f, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


def _dwmtj_eval_rows(theta: Tensor, d: Data, derivs: bool):
    """Multinomial NLL of :func:`dwmtj_landing` (up to the multinomial coefficients); gradient
    and observed information in the internal parameters (u, v, w) = (offset of i_c in units of
    ic_scale, log mobility / mob_ref, log sigma / sig_ref).

    Only the (pulse, level) cells with a non-zero count enter (:func:`_dwmtj_entries`): a count
    of zero adds nothing to the NLL or its derivatives. Each entry is one level ``l`` of one
    pulse, with its count ``c``, the pulse's ``|i|`` (amperes) and ``sign(i) t`` (seconds), and
    its two edges as offsets from the level before the pulse (sites): ``off_lo = start - l +
    1/2`` and ``off_hi = off_lo - 1`` (+-1e30 at the end levels, so that the end edges sit at
    +-infinity).

    The wall moves ``disp = sign(i) t mobility over`` sites, ``over = relu(|i| - i_c)``
    (amperes); the edges of the level are at ``z = (disp + off) inv``, ``inv = 1 / (sqrt(2)
    sigma)`` for a moving wall and infinite for one that does not move (z clamped at +-_Z_MAX,
    where erf is exactly +-1: a still wall lands where it was), the level's probability is
    ``p = (erf(z_lo) - erf(z_hi)) / 2``, mixed as ``pt = cK (p + eps)``, cK = 1 / (1 + K eps);
    the entries work with ``q = 2 pt / cK``. With ``R = c / q``, ``W = c / q^2`` and the
    differences over the two edges (lower minus upper) ``a = [s exp(-z^2)]``, ``b = [s z
    exp(-z^2)]``, ``b2 = [s z^2 exp(-z^2)]``, ``b3 = [s z^3 exp(-z^2)]`` (s = 2 / sqrt(pi):
    dq/dz = -+s exp(-z^2)), the NLL's derivatives in the position (in units of ``1 / inv``)
    and in log inv are sums over entries: first ``-R a`` and ``-R b``, second (Gauss-Newton
    plus curvature of the edges) ``T1 = W a^2 + 2 R b``, ``T2 = R (a - 2 b2) - W a b``, ``T3 =
    W b^2 + R (2 b3 - b)``. The position moves with ``zeta = sign(i) t inv`` per unit of
    ``mobility over``, so the sums are taken with powers of ``sign(i) t`` and ``over`` and the
    per-device factors applied after. (A still wall has ``|z| = _Z_MAX`` at every edge, where
    ``exp(-z^2) < 1e-293``: its entries add nothing to the derivatives beyond rounding, and
    need no mask.)
    """
    c = d["c"]  # (k, L) counts of the entries; 0 in the padding
    i_c = d["ic_ref"] + theta[:, 0] * d["ic_scale"]
    mob = d["mob_ref"] * torch.exp(theta[:, 1])
    inv_d = 1.0 / (SQRT2 * d["sig_ref"] * torch.exp(theta[:, 2]))
    over = torch.sub(d["abs_i"], i_c[:, None]).clamp_(min=0.0)  # relu(|i| - i_c), amperes
    # inv_d where the wall moves (over > 0, so over * 1e300 >= 1), inf where it does not: the
    # edges are then at z = +-inf, clamped to +-_Z_MAX like a spread of 1e-6 sites would be.
    inv = torch.mul(over, 1e300).clamp_(max=1.0).reciprocal_().mul_(inv_d[:, None])
    disp = torch.mul(over, d["sign_t"]).mul_(mob[:, None])  # sites
    z_lo = torch.add(disp, d["off_lo"]).mul_(inv).clamp_(-_Z_MAX, _Z_MAX)
    z_hi = disp.add_(d["off_hi"]).mul_(inv).clamp_(-_Z_MAX, _Z_MAX)
    # q = 2 pt / cK: the level probability pt = cK (erf(z_lo) - erf(z_hi) + 2 eps) / 2.
    q = torch.erf(z_lo).sub_(torch.erf(z_hi)).add_(2.0 * _EPS)
    K = d["levels"].shape[1]
    f = torch.log(q).mul_(c).sum(1).neg_().sub_(d["trials"] * math.log(0.5 / (1.0 + K * _EPS)))
    if not derivs:
        return f, None, None
    R = torch.div(c, q)
    W = torch.div(R, q, out=q)
    # Differences over the two edges of s exp(-z^2) z^j, j = 0 .. 3, s = 2 / sqrt(pi): with R
    # and W taken against q rather than pt, s carries kappa and the factor 2 / cK.
    log_s = torch.tensor(math.log(2.0 * _INV_SQRT_PI), dtype=DTYPE, device=c.device)
    e_lo = torch.addcmul(log_s, z_lo, z_lo, value=-1.0).exp_()
    e_hi = torch.addcmul(log_s, z_hi, z_hi, value=-1.0).exp_()
    a = torch.sub(e_lo, e_hi)
    b = torch.sub(e_lo.mul_(z_lo), e_hi.mul_(z_hi))
    b2 = torch.sub(e_lo.mul_(z_lo), e_hi.mul_(z_hi))
    b3 = e_lo.mul_(z_lo).sub_(e_hi.mul_(z_hi))
    Wa = W * a
    T1 = torch.mul(Wa, a).addcmul_(R, b, value=2.0)
    T2 = torch.add(a, b2, alpha=-2.0).mul_(R).sub_(Wa.mul_(b))
    S_T3 = W.mul_(b).mul_(b).addcmul_(b3.mul_(2.0).sub_(b), R).sum(1)
    S_Rb = b.mul_(R).sum(1)
    st = d["sign_t"]  # zeta / inv for a moving wall; zero pulses and still walls add ~0 (see above)
    Y = torch.empty((3,) + tuple(c.shape), dtype=DTYPE, device=c.device)
    torch.mul(T1, st, out=Y[0]).mul_(st)
    torch.mul(R, a, out=Y[1]).mul_(st)
    torch.mul(T2, st, out=Y[2])
    M = _moments(Y, over, None)  # M[e, j] = sum Y_j over^e
    # Per-device factors: dz/du = -A zeta_1, dz/dv = B zeta_1 over, with zeta_1 = sign(i) t
    # the per-entry part of zeta (zeta = zeta_1 inv_d for a moving wall).
    A = mob * d["ic_scale"] * inv_d
    B = mob * inv_d
    g = torch.stack([A * M[0, 1], -B * M[1, 1], S_Rb], dim=1)
    H = _hessian({
        (0, 0): A * A * M[0, 0],
        (1, 0): -(A * B) * M[1, 0] + A * M[0, 1],
        (1, 1): B * B * M[2, 0] - B * M[1, 1],
        (2, 0): -A * M[0, 2],
        (2, 1): B * M[1, 2],
        (2, 2): S_T3,
    }, 3)
    return f, g, H


_ENTRY_KEYS = ("c", "abs_i", "sign_t", "off_lo", "off_hi")  # the (n, L) arrays of _dwmtj_entries


def _dwmtj_entries(counts: Tensor, tot: Tensor, abs_i: Tensor, sign_t: Tensor, s: Tensor) -> tuple[Data, Tensor, Tensor]:
    """The (pulse, level) cells with a non-zero count, per device, packed to the left of
    ``(n, L)`` arrays in (pulse, level) order (L: the most such cells of any device), with the
    devices sorted by their number of such cells (see :func:`_dwmtj_eval`).

    counts: ``(n, m, K)``; tot: ``(n, m)``, its sums over the levels; abs_i (amperes), sign_t
    (``sign(i) t``, seconds), s (level before the pulse): ``(1 or n, m)``. Returns (entries,
    order, cells): the devices' rows in ``order``, of
    ``c`` (counts), ``abs_i``, ``sign_t`` (the entry's pulse), ``off_lo = s - l + 1/2`` and
    ``off_hi = s - l - 1/2`` (sites from the level's lower and upper edge to the level before
    the pulse; +1e30 / -1e30 for the edges below level 0 and above level K - 1), ``nnz`` (the
    number of entries) and ``trials`` (total counts), and ``levels``, the ``(1, K)`` level
    numbers; cells: ``(n, L)`` the entries' cells ``pulse K + level`` (0 in the padding, which
    repeats the device's first cell with a count of 0: it adds nothing).
    """
    n, m, K = counts.shape
    dev = counts.device
    mk = m * K
    flat = (counts > 0).view(-1).nonzero().squeeze(1)  # the non-zero cells, device by device
    row = flat // mk
    nnz = torch.bincount(row, minlength=n)
    L = max(1, int(nnz.max())) if n else 1
    order = torch.argsort(nnz, stable=True)
    # An entry's place in the flat (n, L) layout: L times its device's rank in ``order``, plus
    # its index among the device's entries (its index in ``flat`` less the device's first).
    shift = torch.empty_like(order)
    shift[order] = torch.arange(0, n * L, L, device=dev)
    shift -= torch.cumsum(nnz, 0) - nnz
    dest = torch.arange(flat.numel(), device=dev).add_(shift.index_select(0, row))
    cells = torch.zeros(n * L, dtype=torch.int64, device=dev).index_copy_(0, dest, flat - row * mk).view(n, L)
    c = torch.zeros(n * L, dtype=DTYPE, device=dev).index_copy_(0, dest, counts.view(-1).index_select(0, flat))
    lev = torch.arange(K, dtype=DTYPE, device=dev)
    off = s[:, :, None] - lev + 0.5

    def pack(x: Tensor) -> Tensor:
        """x: ``(1 or n, m K)`` per cell -> ``(n, L)`` its values at the entries, devices in order."""
        if x.shape[0] == 1:
            return x.expand(n, -1).gather(1, cells)
        return torch.index_select(x, 0, order).gather(1, cells)

    entries = {"c": c.view(n, L), "abs_i": pack(abs_i.repeat_interleave(K, dim=1)),
               "sign_t": pack(sign_t.repeat_interleave(K, dim=1)),
               "off_lo": pack(torch.where(lev == 0, 1e30, off).reshape(-1, mk)),
               "off_hi": pack(torch.where(lev == K - 1, -1e30, off - 1.0).reshape(-1, mk)),
               "nnz": nnz[order], "trials": tot.sum(1)[order], "levels": lev[None]}
    return entries, order, cells


def _slice(d: Data, lo: int, hi: int) -> Data:
    """Rows lo:hi (views) of every per-device entry of ``d``; shared (leading 1) entries as they are."""
    return {key: v if v.shape[0] == 1 else v[lo:hi] for key, v in d.items()}


def _dwmtj_kinks(theta: Tensor, trial: Tensor, d: Data) -> tuple[Tensor, Tensor]:
    """The landing law's kinks in i_c for :func:`_newton` (see :data:`KinkFn`).

    The law jumps where i_c crosses a pulse-current magnitude ``b = |i_j|``: at ``i_c >= b``
    pulse j leaves the wall where it is; just below, the wall moves a vanishing distance but
    lands with spread sigma. A step that would carry i_c across such a break is shortened
    (all coordinates in proportion) to end on it: at ``b + tiny`` coming from above (the wall
    stays), at ``b - tiny`` coming from below (tiny = _KINK_TINY sites of displacement, i_c
    units ic_scale). A step from a break (within 2 tiny) across it is left whole and reported
    in ``crossing`` (column 0).
    """
    scale = d["ic_scale"]
    i_c = d["ic_ref"] + theta[:, 0] * scale
    i_t = d["ic_ref"] + trial[:, 0] * scale
    tiny = _KINK_TINY * scale
    b = d["breaks"]  # (1 or k, m): |i_j|, inf for i_j = 0
    if b.shape[0] == 1:
        # A grid shared by all devices: only the devices with a break within 3 tiny of their
        # step (found by bisection in the sorted grid) need the test below.
        bs = b[0].sort().values
        near = (torch.searchsorted(bs, torch.maximum(i_c, i_t) + 3.0 * tiny, right=True)
                > torch.searchsorted(bs, torch.minimum(i_c, i_t) - 3.0 * tiny))
        rows = near.nonzero().squeeze(1)
    else:
        rows = torch.arange(theta.shape[0], device=theta.device)
    ic, it, tiny = i_c[rows, None], i_t[rows, None], tiny[rows, None]
    down = it < ic
    crossed = (b > torch.minimum(ic, it)) & (b <= torch.maximum(ic, it))
    on = (b - ic).abs() <= 2.0 * tiny
    ahead = crossed & ~on
    # The first break ahead: the highest going down, the lowest going up (-max(-b)).
    sgn = torch.where(down, 1.0, -1.0)
    first = sgn * (torch.where(ahead, b * sgn, -math.inf).amax(1, keepdim=True) + tiny)
    clip = torch.isfinite(first)
    alpha = torch.where(clip, (first - ic) / torch.where(clip, it - ic, 1.0), 1.0)
    th, tr = theta[rows], trial[rows]
    trial = trial.index_put((rows,), torch.where(clip, th + alpha * (tr - th), tr))
    crossing = torch.zeros_like(theta, dtype=torch.bool)
    crossing[rows, 0] = (crossed & on).any(1)
    return trial, crossing


def _dwmtj_across(theta: Tensor, d: Data) -> Tensor:
    """``(2, k, 3)``: theta with i_c moved just across one of the two breaks bounding its piece
    (see :func:`_dwmtj_kinks`), where that can raise the likelihood beyond the local maximum
    theta; NaN elsewhere.

    Below the highest break at or under i_c (the wall moves a vanishing distance there) where
    that break's pulse moved the wall in some trials (i_c at or above it gives those trials
    probability 0); onto the lowest break above i_c (the wall stays) where that pulse left the
    wall at its start in every trial (the likelihood jumps up there).
    """
    scale = d["ic_scale"]
    i_c = d["ic_ref"] + theta[:, 0] * scale
    b = d["breaks"]
    tiny = _KINK_TINY * scale
    on_or_below = b <= (i_c + 2.0 * tiny)[:, None]
    low = torch.where(on_or_below, b, -math.inf).amax(1)
    high = torch.where(~on_or_below, b, math.inf).amin(1)
    low = torch.where(low >= d["moved_below"], low - tiny, math.nan)
    high = torch.where(high < d["moved_below"], high + tiny, math.nan)
    out = theta.expand(2, -1, -1).clone()
    for j, target in enumerate((low, high)):
        out[j, :, 0] = torch.where(torch.isfinite(target), (target - d["ic_ref"]) / scale, math.nan)
    return out


def _dwmtj_start(e: Data, cells: Tensor, order: Tensor, tot: Tensor, abs_i: Tensor, sign_t: Tensor,
                 s: Tensor) -> tuple[Tensor, Tensor]:
    """``(n, 3)`` start (i_c, mobility, sigma) from the fractions of landings beyond each edge,
    devices in ``order``.

    At a pulse that moves the wall, the fraction of trials landing beyond edge e (``level >
    e``) is ``Phi((pos - e - 1/2) / sigma)``, ``pos = s + sign(i) t (mobility |i| -
    mobility i_c)``, so its probit ``q`` obeys ``sign(i) t |i| a - sign(i) t b - sigma q = e +
    1/2 - s``: linear in (a, b, sigma) = (mobility, mobility i_c, sigma). A weighted least-squares
    fit of that over the (pulse, edge) pairs that split the trials (delta-method weights ``N
    phi(q)^2 / (F (1 - F))``) is within about half a standard error of the maximum. The
    fractions are taken as ``F = (A - 0.3) / (N - 0.6)`` for A of N trials beyond the edge: a
    little towards 0 and 1, which offsets the selection of the edges that split the trials (an
    edge where landing beyond it is rare is kept only when some trials did, so its fraction
    overstates the probability; the usual continuity correction, towards 1/2, overstated sigma
    by about 1.6 standard errors). The pairs are read off the entries (:func:`_dwmtj_entries`): two
    consecutive entries of one pulse split its trials at the edge just above the lower one
    (where a level between them is empty, the other edges of that gap, which split the trials
    the same way, are left out). e, cells, order: as :func:`_dwmtj_entries` returns them; tot:
    ``(n, m)`` trials per pulse; abs_i, sign_t (``sign(i) t``), s: ``(1 or n, m)``, devices in
    the given order. Returns (start, ok), ok False where fewer than three independent pairs
    (or a non-positive mobility or sigma) leave the fit undetermined.
    """
    c = e["c"]
    n, L = c.shape
    m = tot.shape[1]
    K = e["levels"].shape[1]
    dev = c.device
    pulse = torch.div(cells, K, rounding_mode="floor")
    lower = torch.zeros((n, L), dtype=torch.bool, device=dev)  # the entry and the next are one pulse's
    torch.eq(pulse[:, 1:], pulse[:, :-1], out=lower[:, :-1])
    lower[:, :-1] &= torch.arange(1, L, device=dev) < e["nnz"][:, None]
    pair = lower.view(-1).nonzero().squeeze(1)  # flat (n, L) index of the lower entry
    row = torch.div(pair, L, rounding_mode="floor")  # device, in order
    pulse_j = pulse.view(-1).index_select(0, pair)
    # Trials of the pulse beyond the edge: the counts of its entries after the lower one (at
    # most K - 1 of them, each one place further along the row).
    c_flat, lower_flat = c.view(-1), lower.view(-1)
    beyond = c_flat.index_select(0, pair + 1)
    more = torch.ones_like(pair, dtype=torch.bool)
    last = n * L - 1
    for d in range(1, K - 1):
        more &= lower_flat.index_select(0, (pair + d).clamp_(max=last))  # (False at a row's last slot)
        if not bool(more.any()):
            break
        beyond += torch.where(more, c_flat.index_select(0, (pair + d + 1).clamp_(max=last)), 0.0)
    cell = order.index_select(0, row) * m + pulse_j  # the pair's pulse in the (n, m) arrays

    def at_pairs(x: Tensor) -> Tensor:
        """``(1 or n, m)`` per pulse, devices in the given order -> ``(P,)`` its values at the pairs."""
        return x[0].index_select(0, pulse_j) if x.shape[0] == 1 else x.reshape(-1).index_select(0, cell)

    # The per-pair arithmetic in float32 (twice as fast; a start needs no more precision), the
    # normal equations solved in float64.
    f32 = torch.float32
    Nj = at_pairs(tot).to(f32)
    F = (beyond.to(f32) - 0.3) / (Nj - 0.6)
    q = torch.special.ndtri(F)
    w = Nj * torch.exp(-q * q) / (F * (1.0 - F))
    # Regressors in units of sites: t and |i| relative to the largest of the device's grid.
    t_ref = sign_t.abs().amax(1)
    i_ref = abs_i.amax(1).clamp(min=1e-300)
    if t_ref.shape[0] > 1:
        t_ref, i_ref = t_ref[order], i_ref[order]
    st = (at_pairs(sign_t) / t_ref.expand(n).index_select(0, row)).to(f32)
    rel_i = (at_pairs(abs_i) / i_ref.expand(n).index_select(0, row)).to(f32)
    edge = (cells.view(-1).index_select(0, pair) - pulse_j * K).to(f32)
    X = torch.stack([st * rel_i, -st, -q, edge + 0.5 - at_pairs(s).to(f32)])
    # Per-device sums of w X_a X_b, a <= 2, a <= b <= 3: the normal equations of (a, b, sigma).
    Xw = X * w
    S = torch.zeros((9, n), dtype=f32, device=dev)
    S.index_add_(1, row, torch.cat([X[a:a + 1] * Xw[a:] for a in range(3)]))
    (s00, s01, s02, y0, s11, s12, y1, s22, y2) = S.to(DTYPE)
    A = torch.stack([s00, s01, s02, s01, s11, s12, s02, s12, s22], 1).reshape(n, 3, 3)
    sol, pd = _pd_solve(A, torch.stack([y0, y1, y2], 1))
    a, b, sigma = sol.unbind(1)
    mob = a / (t_ref * i_ref)
    i_c = i_ref * b / a
    ok = pd & (a > 0) & (sigma > 0) & torch.isfinite(i_c)
    return torch.stack([i_c, mob, sigma.clamp(1e-3, 10.0)], dim=1), ok


def _dwmtj_rough_start(ct: Tensor, i: Tensor, t: Tensor, s: Tensor) -> Tensor:
    """``(n, 3)`` start (i_c, mobility, sigma) for devices :func:`_dwmtj_start` cannot place: a
    weighted linear fit of the mean displacement per unit width against ``|i|`` over pulses
    that moved the wall and did not saturate at an end level (slope = mobility, intercept =
    -mobility i_c), sigma from the spread of landing levels; half the largest current and a
    mobility reaching the middle level where even that fails. ct: ``(n, K, m)``; i, t, s:
    ``(n, m)``."""
    K = ct.shape[1]
    lv = torch.arange(K, dtype=DTYPE, device=ct.device)[:, None]
    tot = ct.sum(1)
    safe = tot.clamp(min=1)
    mean = (ct * lv).sum(1) / safe
    var = (ct * (lv - mean[:, None]) ** 2).sum(1) / safe
    disp = (mean - s) * torch.sign(i)
    use = (tot > 0) & (disp > 0.3) & (mean >= 0.6) & (mean <= K - 1.6) & (i != 0)
    wts = tot * use
    slope, intercept = _weighted_line(i.abs(), disp / t, wts)
    t_med = t.median(1).values
    imax = i.abs().max(1).values.clamp(min=1e-300)
    good = (use.sum(1) >= 2) & torch.isfinite(slope) & (slope > 0) & torch.isfinite(intercept)
    ic0 = torch.where(good, -intercept / slope.clamp(min=1e-300), 0.5 * imax)
    ic0 = torch.where(good & (ic0 < imax), ic0, 0.5 * imax)
    mob0 = torch.where(good, slope, (K - 1) / (2.0 * t_med * (imax - ic0).clamp(min=1e-300)))
    sig_var = (var * wts).sum(1) / wts.sum(1).clamp(min=1e-300)
    sig0 = torch.where(wts.sum(1) > 0, sig_var.sqrt(), torch.full_like(sig_var, 0.3)).clamp(0.1, 2.0)
    return torch.stack([ic0, mob0, sig0], dim=1)


def _weighted_line(x: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row weighted least squares y = c + s x. Returns (slope, intercept)."""
    sw = w.sum(1).clamp(min=1e-300)
    xm = (w * x).sum(1) / sw
    ym = (w * y).sum(1) / sw
    sxx = (w * (x - xm[:, None]) ** 2).sum(1)
    sxy = (w * (x - xm[:, None]) * (y - ym[:, None])).sum(1)
    slope = sxy / sxx.clamp(min=1e-300)
    return slope, ym - slope * xm


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
    ``(n, m)``. init: None for automatic initialisation -- a weighted linear fit of the probits
    of the fractions landing beyond each level edge (:func:`_dwmtj_start`), with i_c kept
    below the smallest current that moved the wall -- or a mapping / array as in
    :func:`fit_logistic`.

    The law is discontinuous in i_c where i_c crosses a pulse-current magnitude (below
    threshold the wall stays put; just above it, it lands with spread sigma), so i_c is
    identified by the pulses above threshold, and the Wald interval for i_c assumes that the
    sweep has several of them. Newton steps stop on such a break rather than cross it; when
    the maximum lies on one (a few devices in a thousand in a sweep of ~25 currents), i_c is
    held on the break, mobility and sigma are maximised, and the device counts as converged;
    its i_c interval comes from the local curvature, which in simulation still gives close to
    nominal coverage.

    The iteration stops with a final Newton step from a Newton decrement below 1 (one standard
    error from the maximum; most devices take it straight from the start; 1e-6 for the other
    laws), accepted when its NLL gain is the quadratic model's within 1 % (see _newton): in
    simulation (100, 20 and 10 trials per pulse) the estimates are then within 1e-3 standard
    errors of the maximum (median; at most 0.07), and the information behind the standard
    errors, the one at the point before that step, gives standard errors within 0.3 % of
    those at the maximum (median; at most a few %).
    """
    level = _check_level(level)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"levels: expected an int >= 2, got {levels!r}")
    levels = int(levels)
    device = _device_of(level_counts, current, width)
    counts = _counts(level_counts, "level_counts", device, 3).contiguous()
    n, m, L = counts.shape
    if L != levels:
        raise ValueError(f"level_counts: expected last dimension = levels = {levels}, got shape {tuple(counts.shape)}")
    if m == 0:
        raise ValueError("level_counts: expected at least one pulse per device (m >= 1), got m = 0")
    i = _per_point_view(current, "current", n, m, device, False)
    t = _per_point_view(width, "width", n, m, device, allow_scalar=True)
    if bool((t <= 0).any()):
        raise ValueError(f"width: pulse widths must be positive, got minimum {t.min().item():g}")
    s = _as_tensor(start, "start", device)
    try:
        s = torch.broadcast_to(s, (n, m))
    except RuntimeError:
        raise ValueError(f"start: expected an int or an array broadcastable to (n, m) = ({n}, {m}), "
                         f"got shape {tuple(s.shape)}") from None
    if bool(((s < 0) | (s > levels - 1) | (s != s.round())).any()):
        raise ValueError(f"start: expected whole levels in 0 .. {levels - 1}")
    i, t, s = (_shared_rows(x).contiguous() for x in (i, t, s))
    abs_i, sign_t = i.abs(), torch.sign(i) * t
    t_med = t.median(1).values  # seconds: a device's typical width, for displacements in sites
    tot = counts.sum(2)
    away = tot - counts.gather(2, s.long().expand(n, m).unsqueeze(2)).squeeze(2)  # trials that moved
    moved_below = torch.where((away > 0) & (abs_i > 0), abs_i, math.inf).amin(1)  # bound on i_c, amperes

    # The devices are fitted in the order of their number of entries (see _dwmtj_eval) and
    # reported in the given one.
    entries, order, cells = _dwmtj_entries(counts, tot, abs_i, sign_t, s)
    if isinstance(init, Mapping) or init is None:
        auto = torch.empty((n, 3), dtype=DTYPE, device=device)
        auto[order], ok_s = _dwmtj_start(entries, cells, order, tot, abs_i, sign_t, s)
        if not bool(ok_s.all()):
            bad = order[~ok_s]
            auto[bad] = _dwmtj_rough_start(counts[bad].transpose(1, 2), *(x.expand(n, m)[bad] for x in (i, t, s)))
        # Every pulse that moved the wall (trials away from the start level) bounds i_c from
        # above: at i_c >= |i| the law gives those trials probability 0. Start below the lowest.
        margin = 0.01 / (auto[:, 1] * t_med)  # 0.01 sites of displacement
        auto[:, 0] = torch.minimum(auto[:, 0], moved_below - margin)
    else:  # a full matrix of starting values
        auto = torch.zeros((n, 3), dtype=DTYPE, device=device)
    start_p = _init_matrix(init, _DWMTJ, auto)
    _positive(start_p[:, 1], "mobility")
    _positive(start_p[:, 2], "sigma")
    data = _subset({"breaks": torch.where(abs_i > 0, abs_i, math.inf), "moved_below": moved_below,
                    "ic_ref": start_p[:, 0], "ic_scale": 1.0 / (start_p[:, 1] * t_med),
                    "mob_ref": start_p[:, 1], "sig_ref": start_p[:, 2]}, order)
    data.update(entries)
    theta0 = torch.zeros((n, 3), dtype=DTYPE, device=device)
    box = torch.tensor([_LOC_BOX, _LOG_BOX, _LOG_BOX], dtype=DTYPE, device=device)
    domain = ((0.0, math.inf), (0.0, math.inf), (0.0, math.inf))
    const = _multinomial_const(tot[order], data["c"])
    r = _fit(_DWMTJ, _dwmtj_eval, _dwmtj_natural, theta0, data, -box, box, domain,
             ("natural", "log", "log"), const, data["trials"] > 0, level, max_iter, _dwmtj_kinks,
             _dwmtj_across, _LANDING_FINAL_DEC)
    back = torch.argsort(order)
    return FitResult(r.names, *(getattr(r, key)[back] for key in ("estimate", "stderr", "ci_low", "ci_high", "loglik",
                                                                  "converged")), r.level, r.cov[back], r.n_iter[back])


# --------------------------------------------------------------------------------------------
# Chunks of devices
# --------------------------------------------------------------------------------------------

_CHUNK_CELLS = 1 << 18  # counts (devices x pulses x levels) fitted together: ~2 MiB per float64 array
# The landing fit iterates on chunks this many times larger (evaluating them in slices of
# _LANDING_SLICE entries): its few devices that need many steps then cost few rounds of Python
# overhead.
_LANDING_CHUNKS = 16
_LANDING_SLICE = 1 << 17  # entries (cells with a non-zero count) of the landing fit evaluated together


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
             cells: int | None = None, **kwargs: Any) -> FitResult:
    """``fn`` over chunks of devices (each about ``cells`` counts, default ``_CHUNK_CELLS``),
    results concatenated.

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
    size = max(1, (cells or _CHUNK_CELLS) // max(1, math.prod(shape[1:])))
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
                    cells=_CHUNK_CELLS * _LANDING_CHUNKS, levels=levels, level=level, max_iter=max_iter)


for _public, _inner in ((fit_logistic, _fit_logistic), (fit_gaussian, _fit_gaussian), (fit_thermal, _fit_thermal),
                        (fit_dwmtj_landing, _fit_dwmtj_landing)):
    _public.__doc__ = _inner.__doc__
