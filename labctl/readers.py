"""What a run file holds, as plain numpy arrays and dicts: summary, tables, events, checkpoints,
weights per layer, calibration sweeps and fits.

Every function takes an open :class:`~labctl.store.RunReader` (a finished file, or a live one
that its writer is still filling, refreshed by the caller) and reads only; none imports Qt. The
GUI's live views, the Python API (:mod:`labctl.api`) and scripts share them, so a run file is
interpreted the same way everywhere. A damaged file raises :class:`~labctl.store.RunFileError`.

Units are those the datasets declare (their ``units`` attribute): amplitudes in tesla (DW
nanowires), ampere (DW-MTJs) or volt (STT-MTJs); widths and times in seconds; energy in joules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .store import RunFileError, RunReader

__all__ = ["DATA_SHAPES", "calibration_data", "law_curve", "layer_shapes", "read_checkpoints", "read_events",
           "read_metrics", "read_summary", "read_tables", "settings_of", "weight_layers"]

SUMMARY = "summary"  # the engine's JSON summary dataset (labctl.engine.SUMMARY)
METRICS = "train/metrics"

#: (features, classes) of the data sets the training protocols use, to split flat weight arrays into layers.
DATA_SHAPES = {"digits": (64, 10), "iris": (4, 3), "wine": (13, 3), "breast_cancer": (30, 2)}


# ---------------------------------------------------------------------------- whole-run records
def read_summary(reader: RunReader) -> dict[str, Any]:
    """The run's final metrics and the chip's counters (``counters``: pulses, reads, ``energy_j`` in J).

    Empty while the run is going on (the engine writes the summary at the end). RunFileError if
    the summary is not a JSON object.
    """
    if SUMMARY not in reader.names():
        return {}
    summary = reader.json_dataset(SUMMARY)
    if summary is None:
        return {}
    if not isinstance(summary, dict):
        raise RunFileError(f"{reader.path}: its summary is damaged (expected a JSON object)")
    return summary


def read_events(reader: RunReader) -> list[dict[str, Any]]:
    """Events in order: ``time`` (unix s), ``kind`` (start, checkpoint, pause, reopen, stop, ...),
    ``status``, ``reason`` and ``step`` (the safe point, -1 before the first)."""
    return reader.events()


def read_checkpoints(reader: RunReader) -> list[dict[str, Any]]:
    """One dict per checkpoint: ``step``, ``time`` (unix s), payload ``length`` (bytes), ``offset``, ``crc32``."""
    return reader.checkpoints()


def read_tables(reader: RunReader) -> dict[str, np.ndarray]:
    """Every table of the run file: the datasets of compound rows (``train/metrics``: one row per
    epoch or per batch, ``energy/ledger``: one row per stage, ...), as numpy structured arrays,
    keyed by dataset name. The run's events and checkpoint index are not included."""
    tables = {}
    for name in reader.names():
        if name == "events" or name.startswith("checkpoints"):
            continue
        data = reader.dataset(name)
        if data.dtype.names is not None:
            tables[name] = data
    return tables


def read_metrics(reader: RunReader, name: str = METRICS) -> dict[str, np.ndarray] | None:
    """Numeric columns of table ``name`` (default ``train/metrics``) as float arrays, or None if
    the file has no such table or it has no row yet. Units: losses in nats, accuracies as
    fractions, ``energy_j`` in J, ``train_time_s`` in s."""
    if name not in reader.names():
        return None
    rows = reader.dataset(name)
    if rows.dtype.names is None or rows.shape[0] == 0:
        return None
    return {k: np.asarray(rows[k], dtype=float) for k in rows.dtype.names if rows[k].dtype.kind in "iuf"}


def settings_of(reader: RunReader) -> dict[str, Any]:
    """The protocol settings the run used (the ``protocol`` attribute's ``settings`` table)."""
    proto = reader.attrs.get("protocol") or {}
    return proto.get("settings", {}) if isinstance(proto, dict) else {}


def _unit(reader: RunReader, name: str) -> str:
    try:
        return str(reader.dataset_attrs(name).get("units", "") or "")
    except KeyError:
        return ""


# ---------------------------------------------------------------------------- weights
def layer_shapes(reader: RunReader, n: int) -> list[tuple[int, int]]:
    """(outputs, inputs) per layer for a flat weight array of ``n`` values, or one flat 'layer'."""
    s = settings_of(reader)
    hidden = s.get("hidden")
    dims = DATA_SHAPES.get(s.get("data", "digits"))
    if isinstance(hidden, list) and dims is not None:
        sizes = [dims[0], *hidden, dims[1]]
        shapes = [(o, i) for i, o in zip(sizes[:-1], sizes[1:])]
        if sum(o * i for o, i in shapes) == n:
            return shapes
    return [(1, n)]


def weight_layers(reader: RunReader, finished: bool) -> list[dict]:
    """Per layer: the trained control values and the effective switching probability or level.

    Each layer is a dict: ``name``, ``shape`` (outputs, inputs), ``control`` (flat array or None:
    pulse amplitudes in ``control_units`` for meanvar, shadow weights in [-1, 1] for kstate),
    ``control_label``, ``effective`` (switching probability in [0, 1], or device level),
    ``effective_label`` and ``levels`` (True when ``effective`` holds levels). ``finished``: the
    run has ended, so its fixed-size final datasets (``model/*``) hold data, not zeros.
    """
    names = set(reader.names())
    layers: list[dict] = []
    if "train/amplitude" in names:  # meanvar: amplitudes (C, D) per epoch; probability from the law
        snaps = reader.dataset("train/amplitude", slice(-1, None))
        if snaps.shape[0]:
            h = np.asarray(snaps[-1], dtype=float)
            layer = {"name": f"layer 1 ({h.shape[1]} \u2192 {h.shape[0]})", "control": h.reshape(-1),
                     "control_label": "pulse amplitude", "control_units": _unit(reader, "train/amplitude") or None,
                     "shape": h.shape}
            if "model/law" in names:
                law = reader.dataset("model/law")
                if np.any(law[0] != 0):
                    x0, dx, a = (np.asarray(v, dtype=float) for v in law)
                    p = (1 - a) + a / (1 + np.exp(-dx * (h - x0)))
                    layer.update(effective=p.reshape(-1), effective_label="switching probability", levels=None)
            layers.append(layer)
        return layers
    levels = None
    for name in ("train/target_levels", "model/levels", "train/levels", "train/state"):
        if name not in names:
            continue
        data = reader.dataset(name)
        if name == "train/target_levels":
            if data.shape[0] == 0:
                continue
            data = data[-1]
        elif not finished:
            continue  # fixed datasets are written at the end: zeros until then
        levels = np.asarray(data, dtype=float).reshape(-1)
        source = name
        break
    control = None
    if finished and "model/shadow_weights" in names:
        control = np.asarray(reader.dataset("model/shadow_weights"), dtype=float)
    elif finished and "train/weights" in names:
        control = np.asarray(reader.dataset("train/weights"), dtype=float).reshape(-1)
    n = len(levels) if levels is not None else (len(control) if control is not None else 0)
    if n == 0:
        return layers
    shapes = layer_shapes(reader, n)
    offset = 0
    for k, (o, i) in enumerate(shapes):
        sl = slice(offset, offset + o * i)
        offset += o * i
        layers.append({
            "name": f"layer {k + 1} ({i} \u2192 {o})" if len(shapes) > 1 or o > 1 else f"{n} synapses",
            "control": None if control is None or len(control) != n else control[sl],
            "control_label": "shadow weight", "control_units": None,
            "effective": None if levels is None else levels[sl],
            "effective_label": f"level ({source})", "levels": True, "shape": (o, i),
        })
    return layers


# ---------------------------------------------------------------------------- calibration
def calibration_data(reader: RunReader) -> dict | None:
    """S-curve data of a calibration (or of a training run's embedded calibration), or None.

    Keys: ``amplitude`` (grid, in ``units``), ``widths`` (s), ``fraction`` (switched fraction
    [width, amplitude, synapse]), ``done`` (bool per synapse: swept already), ``levels`` (K of
    multi-level devices, else None), ``fit`` (None until fitted, else ``names`` of the law's
    parameters and ``estimate`` [width group, synapse, parameter] in SI units), ``tau0`` (s).
    """
    names = set(reader.names())
    counts_name = "calibration/counts" if "calibration/counts" in names else (
        "calibration/level_counts" if "calibration/level_counts" in names else None)
    if counts_name is None or "calibration/amplitude" not in names:
        return None
    amplitude = np.asarray(reader.dataset("calibration/amplitude"), dtype=float)
    repeats = int(reader.dataset("calibration/repeats")[0])
    if repeats <= 0 or not np.any(amplitude):
        return None
    counts = np.asarray(reader.dataset(counts_name), dtype=float)
    levels = None
    if counts_name.endswith("level_counts"):
        levels = counts.shape[-1]
        fraction = 1.0 - counts[..., 0] / repeats
        done = counts.sum(axis=(1, 3))[0] > 0
    else:
        fraction = counts / repeats
        # synapses of blocks not swept yet hold zeros at every amplitude
        done = counts[0].sum(axis=0) > 0 if not np.all(counts == 0) else np.zeros(counts.shape[2], bool)
    fit = None
    if "calibration/fit/estimate" in names:
        est = np.asarray(reader.dataset("calibration/fit/estimate"), dtype=float)
        fit_names = [n.decode() if isinstance(n, bytes) else str(n) for n in reader.dataset("calibration/fit/names")]
        if np.any(est != 0) and all(fit_names):
            fit = {"names": fit_names, "estimate": est}
    widths = np.asarray(reader.dataset("calibration/width"), dtype=float) if "calibration/width" in names else np.array([1e-6])
    return {"amplitude": amplitude, "fraction": fraction, "done": done, "fit": fit, "levels": levels,
            "units": _unit(reader, "calibration/amplitude"), "widths": widths,
            "tau0": float(settings_of(reader).get("tau0", 1e-9))}


def law_curve(fit_names: list[str], params: np.ndarray, h: np.ndarray, width: float, tau0: float,
              levels: int | None) -> np.ndarray | None:
    """Switching probability of the fitted law at amplitudes ``h`` (the calibration's units),
    pulse ``width`` and attempt time ``tau0`` in seconds (analysis.switching_laws); None for a
    law this function does not know."""
    import torch

    from analysis import switching_laws as laws

    p = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in zip(fit_names, params)}
    x = torch.tensor(h, dtype=torch.float64)
    key = tuple(fit_names)
    if key == ("x0", "dx", "a"):
        y = laws.logistic_depinning(x, p["x0"], p["dx"], p["a"])
    elif key == ("h0", "sigma"):
        y = laws.gaussian_depinning(x, p["h0"], p["sigma"])
    elif key == ("delta", "vc0"):
        y = laws.thermal_switching(x.abs(), torch.tensor(width, dtype=torch.float64), p["delta"], p["vc0"], tau0)
    elif key == ("i_c", "mobility", "sigma") and levels:
        probs = laws.dwmtj_landing(torch.zeros_like(x), x, torch.tensor(width, dtype=torch.float64), p["i_c"],
                                   p["mobility"], p["sigma"], levels)
        y = 1.0 - probs[..., 0]
    else:
        return None
    return y.numpy()
