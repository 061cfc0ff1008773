"""S-curve calibration: sweep the pulse amplitude, count switching trials, fit the family's law per synapse.

For every pulse width and every amplitude of the grid, each synapse gets ``repeats`` trials
(reset + pulse + read) through the batched ``SynapseArray.trial``; one call covers a block of
synapses at all amplitudes, so an instrument backend can upload it as one waveform. The raw
counts go to ``/calibration`` as the sweep runs; at the end the law is fitted per synapse by
maximum likelihood and the estimates with their confidence intervals are stored beside them.

The law and its fit come from the chip family's descriptor (``labctl.families``): its first law by
default, another of its laws if ``law`` names one. Built in: DW nanowires -> logistic (Ellis et
al.) or Gaussian-depinning erf, fitted per width (the law has no width dependence); STT-MTJs ->
thermal activation (Delta, Vc0 with tau0 fixed), fitted jointly over all widths; DW-MTJs -> the
K-level landing model (I_c, mobility, sigma), jointly over widths. A family brought by a plugin
is calibrated the same way, with its own law.
"""

from __future__ import annotations

from dataclasses import asdict
from enum import Enum
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from analysis import fitting
from labctl import families as device_families
from labctl.engine import Progress, RunContext
from labctl.store import DatasetSpec

from .base import ChipProtocol, EpochCursor, Kind, Settings


class _RegistryView(Mapping[str, Any]):
    """A read-only mapping computed from the registered families (kept for older callers)."""

    def __init__(self, keys, value):
        self._keys, self._value = keys, value

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return self._value(key)

    def __iter__(self):
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


DEFAULT_LAW = _RegistryView(device_families.names, lambda f: device_families.get(f).default_law().name)
"""family -> name of its default law (prefer ``families.get(name).default_law()``)."""
LAW_PARAMS = _RegistryView(device_families.law_names, lambda law: device_families.find_law(law).param_names)
"""law -> its parameter names (prefer ``families.get(name).law(law).param_names``)."""

LAW_CHOICES = ("auto", *device_families.law_names())
"""``law`` of the settings: 'auto' or a law of a registered family (built in or installed; a
family named only by a ``module:Class`` reference is calibrated with 'auto')."""


class CalibrationSettings(Settings):
    """Sweep and fit settings. Amplitudes in the chip family's unit (T, A or V), widths in seconds."""

    amplitudes: list[float] | None = Field(None, min_length=3, description="explicit amplitude grid")
    amplitude_start: float | None = None
    amplitude_stop: float | None = None
    points: int = Field(25, ge=3, le=1000, description="grid points between start and stop")
    widths: list[float] = Field([1e-6], min_length=1, description="pulse widths, seconds")
    repeats: int = Field(200, ge=1, le=1_000_000, description="trials per synapse per point")
    synapses: int | None = Field(None, ge=1, description="calibrate the first N synapses (default: all)")
    block: int = Field(4096, ge=1, description="synapses per batched call (one safe point each)")
    law: Literal[LAW_CHOICES] = Field("auto", description="'auto' (the family's first law) or the name of one of its laws")
    tau0: float = Field(1e-9, gt=0, description="attempt time fixed in the thermal fit, seconds")
    level: float = Field(0.95, gt=0, lt=1, description="confidence level of the fitted intervals")

    @model_validator(mode="after")
    def _grid(self):
        if self.amplitudes is None and (self.amplitude_start is None or self.amplitude_stop is None):
            raise ValueError("give either amplitudes or both amplitude_start and amplitude_stop")
        if self.amplitudes is not None and (self.amplitude_start is not None or self.amplitude_stop is not None):
            raise ValueError("give amplitudes or amplitude_start/amplitude_stop, not both")
        return self

    def grid(self) -> torch.Tensor:
        if self.amplitudes is not None:
            return torch.tensor(self.amplitudes, dtype=torch.float64)
        return torch.linspace(self.amplitude_start, self.amplitude_stop, self.points, dtype=torch.float64)


class Phase(str, Enum):
    SWEEP = "sweep"
    FIT = "fit"
    DONE = "done"


class Calibration(ChipProtocol):
    """Characterise every synapse's switching curve and fit its law (see module docstring).

    Resumable state: the phase, the sweep cursor (one item per (width, synapse block), in order)
    and the fits (plain tensors). The counts so far are in the run file, flushed before each
    checkpoint, and are read back from it on resume.
    """

    kind = "calibrate"
    settings_model = CalibrationSettings
    families = device_families.ANY
    # the grid is amplitudes, or a linspace from start to stop (its ends are its extremes)
    envelope_fields = {"amplitudes": "amplitude", "amplitude_start": "amplitude", "amplitude_stop": "amplitude",
                       "widths": "width"}
    resumable = {"phase": Kind.PHASE, "cursor": Kind.CURSOR, "fit_state": Kind.VALUE}
    fixed_safe_points = 1  # the fit

    def __init__(self, name: str, settings: CalibrationSettings, chip, seed: int = 0):
        super().__init__(name, settings, chip, seed)
        s = settings
        family = device_families.get(chip.family)
        if s.law == "auto":
            self.law_model = family.default_law()
        else:
            try:
                self.law_model = family.law(s.law)
            except KeyError:
                owners = [f.name for f in device_families.REGISTRY.values() if s.law in (law.name for law in f.laws)]
                raise ValueError(f"law {s.law!r} fits {', '.join(owners)} chips, not {family.name}") from None
        self.law = self.law_model.name
        self.amplitudes = s.grid()
        self.widths = torch.tensor(s.widths, dtype=torch.float64)
        self.n = min(s.synapses or chip.n, chip.n)
        self.multilevel = self.law_model.level_counts
        shape = (len(self.widths), len(self.amplitudes), self.n)
        self.counts = torch.zeros(shape + ((chip.levels,) if self.multilevel else ()), dtype=torch.int64)
        self.blocks = [(b, min(b + s.block, self.n)) for b in range(0, self.n, s.block)]
        self.phase = Phase.SWEEP
        self.cursor = EpochCursor(len(self.widths) * len(self.blocks), 1, 1, seed, order="sequential")
        self.fits: list[fitting.FitResult] = []
        self.fit: fitting.FitResult | None = None

    # ------------------------------------------------------------------ run file
    @property
    def fit_groups(self) -> int:
        """Width-independent laws are fitted per width; the others jointly over all widths."""
        return len(self.widths) if self.law_model.per_width else 1

    def describe(self) -> dict[str, DatasetSpec]:
        unit = self.chip.envelope.amplitude_unit
        g, n, p = self.fit_groups, self.n, len(self.law_model.params)
        counts_name = "calibration/level_counts" if self.multilevel else "calibration/counts"
        return {
            "calibration/amplitude": DatasetSpec(np.float64, (len(self.amplitudes),), unit, "pulse amplitude grid"),
            "calibration/width": DatasetSpec(np.float64, (len(self.widths),), "s", "pulse widths"),
            "calibration/repeats": DatasetSpec(np.int64, (1,), "trials", "trials per synapse per point"),
            counts_name: DatasetSpec(np.int64, tuple(self.counts.shape), "trials",
                                     "read-as-switched (or per-level) counts, [width, amplitude, synapse(, level)]",
                                     hint={"view": "calibration", "law": self.law, "amplitudes": "calibration/amplitude",
                                           "widths": "calibration/width", "repeats": "calibration/repeats",
                                           "fit": "calibration/fit/estimate", "names": "calibration/fit/names",
                                           "per_level": self.multilevel}),
            "calibration/fit/names": DatasetSpec("S16", (p,), "", f"parameters of the {self.law} law"),
            "calibration/fit/estimate": DatasetSpec(np.float64, (g, n, p), "SI", "maximum-likelihood estimates [group, synapse, param]"),
            "calibration/fit/stderr": DatasetSpec(np.float64, (g, n, p), "SI", "standard errors"),
            "calibration/fit/ci_low": DatasetSpec(np.float64, (g, n, p), "SI", "lower confidence bound"),
            "calibration/fit/ci_high": DatasetSpec(np.float64, (g, n, p), "SI", "upper confidence bound"),
            "calibration/fit/converged": DatasetSpec(np.bool_, (g, n), "", "fit converged"),
        }

    # ------------------------------------------------------------------ the sweep
    def run(self, ctx: RunContext) -> Iterator[Progress]:
        w = ctx.writer
        counts_name = "calibration/level_counts" if self.multilevel else "calibration/counts"
        cur = self.cursor
        if w is not None and cur.done > 0 and self.phase is not Phase.DONE:  # resumed: the counts are in the file
            self.counts = torch.from_numpy(w.read(counts_name))
        if w is not None and cur.done == 0:
            w.write("calibration/amplitude", self.amplitudes.cpu().numpy())
            w.write("calibration/width", self.widths.cpu().numpy())
            w.write("calibration/repeats", np.array([self.settings.repeats]))
            w.write("calibration/fit/names", np.array([p.encode() for p in self.law_model.param_names]))
        points = len(self.amplitudes)
        while self.phase is Phase.SWEEP:
            wi, bi = divmod(int(cur.next_batch()[0]), len(self.blocks))
            b0, b1 = self.blocks[bi]
            idx = torch.arange(b0, b1).repeat(points)
            amplitude = self.amplitudes.float().repeat_interleave(b1 - b0)
            width = float(self.widths[wi])
            if self.multilevel:
                counts = self.chip.trial_levels(idx, amplitude, width, self.settings.repeats).reshape(points, b1 - b0, -1)
            else:
                counts = self.chip.trial(idx, amplitude, width, self.settings.repeats).reshape(points, b1 - b0)
            self.counts[wi, :, b0:b1] = counts.to(self.counts.device)
            if w is not None:
                w.write(counts_name, counts.cpu().numpy(), index=(wi, slice(None), slice(b0, b1)))
            if cur.advance(1) and cur.next_epoch():
                self.phase = Phase.FIT
            yield self.safe_point("sweep")
        if self.phase is Phase.FIT:
            self.fit_all(w)
            self.phase = Phase.DONE
            yield self.safe_point("fit", self._medians(), last=True)

    def fit_all(self, writer=None) -> None:
        """Fit the law to the counts of every synapse (batched) and store the results."""
        repeats = self.settings.repeats
        amps, widths = self.amplitudes, self.widths
        options = {"levels": self.chip.levels, "level": self.settings.level, "tau0": self.settings.tau0}
        fit = self.law_model.fit
        if self.law_model.per_width:  # counts [synapse, amplitude(, level)] of one width at a time
            results = [fit(amps, widths[wi].expand(len(amps)), self.counts[wi].movedim(1, 0), repeats, **options)
                       for wi in range(len(widths))]
        else:  # every width at once: points [width-major, amplitude-minor]
            amplitude = amps.repeat(len(widths))
            width = widths.repeat_interleave(len(amps))
            counts = self.counts.movedim(2, 0).reshape(self.n, len(widths) * len(amps), *self.counts.shape[3:])
            results = [fit(amplitude, width, counts, repeats, **options)]
        self.fits = results
        self.fit = results[0]  # the summary reports the first group (first width, or the joint fit)
        if writer is not None:
            for key in ("estimate", "stderr", "ci_low", "ci_high"):
                writer.write(f"calibration/fit/{key}", np.stack([getattr(r, key).cpu().numpy() for r in results]))
            writer.write("calibration/fit/converged", np.stack([r.converged.cpu().numpy() for r in results]))

    # ------------------------------------------------------------------ results
    def _medians(self) -> dict[str, float]:
        if self.fit is None:
            return {}
        ok = self.fit.converged
        out = {f"median_{name}": float(self.fit.param(name)[ok].median()) if ok.any() else float("nan")
               for name in self.fit.names}
        out["converged_fraction"] = float(ok.float().mean())
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "protocol": self.kind,
            "law": self.law,
            "synapses": self.n,
            "points": len(self.amplitudes),
            "widths": len(self.widths),
            "repeats": self.settings.repeats,
            **self._medians(),
        }

    @property
    def fit_state(self) -> list[dict[str, Any]]:
        """The fits as plain data (tensors and names), for the checkpoint."""
        return [asdict(f) for f in self.fits]

    @fit_state.setter
    def fit_state(self, value: list[dict[str, Any]]) -> None:
        self.fits = [fitting.FitResult(**f) for f in value]
        self.fit = self.fits[0] if self.fits else None
