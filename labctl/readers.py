"""What a run file holds, as plain numpy arrays and dicts: summary, tables, events, checkpoints,
weights per layer, calibration sweeps and fits.

Every function takes an open :class:`~labctl.store.RunReader` (a finished file, or a live one
that its writer is still filling, refreshed by the caller) and reads only; none imports Qt. The
GUI's live views, the Python API (:mod:`labctl.api`) and scripts share them, so a run file is
interpreted the same way everywhere. A damaged file raises :class:`~labctl.store.RunFileError`.

Units are those the datasets declare (their ``units`` attribute): amplitudes in tesla (DW
nanowires), ampere (DW-MTJs) or volt (STT-MTJs); widths and times in seconds; energy in joules.

Weights, curves, calibration sweeps, state maps and energy tables are found by the datasets'
hints (``DatasetSpec.hint``, ``docs/architecture.md`` "What a dataset is: hints"), never by their
names: a protocol (a plugin's too) is shown as it declares itself. Files written before hints
existed are read by the fallbacks at the end of this module (``_legacy_*``), which know the
built-in protocols' dataset names.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import families
from .store import RunFileError, RunReader

__all__ = ["DATA_SHAPES", "calibration_data", "energy_tables", "hinted", "law_curve", "layer_shapes", "read_checkpoints",
           "read_curves", "read_events", "read_metrics", "read_summary", "read_tables", "settings_of", "state_map",
           "weight_layers"]

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
    fractions, ``energy_j`` in J, ``train_time_s`` in s. (A window asks :func:`read_curves`,
    which finds the table by its hint.)"""
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


# ---------------------------------------------------------------------------- hints
def hinted(reader: RunReader, view: str) -> dict[str, dict]:
    """Datasets whose hint names ``view`` (weights, curve, calibration, state_map, energy): name -> hint."""
    return {name: hint for name, hint in reader.hints().items() if hint.get("view") == view}


def _layer_shapes(hint: dict, n: int) -> list[tuple[int, int]]:
    """(rows, columns) of each layer a flat array of ``n`` values holds: the hint's ``layers`` (or
    ``shape``), one flat row if it gives none or they do not add up to ``n``."""
    shapes = hint.get("layers") or ([hint["shape"]] if hint.get("shape") else [])
    shapes = [(int(r), int(c)) for r, c in shapes]
    if shapes and sum(r * c for r, c in shapes) == n:
        return shapes
    return [(1, n)]


def _snapshot(reader: RunReader, name: str, hint: dict, finished: bool) -> np.ndarray | None:
    """The values a hinted dataset holds now, flat, or None if it holds none yet.

    ``when`` in the hint: ``"epoch"`` (extendable, one row per epoch: the last row), ``"end"``
    (written when the run ends: read only once it has), else written early (read once non-zero).
    """
    when = hint.get("when", "start")
    if when == "epoch":
        rows = reader.dataset(name, slice(-1, None))
        return np.asarray(rows[-1], dtype=float).reshape(-1) if rows.shape[0] else None
    if when == "end" and not finished:
        return None
    values = np.asarray(reader.dataset(name), dtype=float).reshape(-1)
    if when != "end" and not np.any(values):
        return None
    return values


# ---------------------------------------------------------------------------- weights
def layer_shapes(reader: RunReader, n: int) -> list[tuple[int, int]]:
    """(outputs, inputs) per layer for a flat weight array of ``n`` values, or one flat 'layer'
    (from the run's settings: files written before hints existed)."""
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
    pulse amplitudes in ``control_units``, shadow weights in [-1, 1], ...), ``control_label``,
    ``effective`` (switching probability in [0, 1], or device level), ``effective_label``,
    ``levels`` (True when ``effective`` holds levels) and ``range`` (the effective values' span,
    or None). ``finished``: the run has ended, so datasets written at the end hold data, not zeros.

    Found from the datasets hinted ``{"view": "weights", "role": ...}``: ``role`` ``"control"``
    (what training sets), ``"effective"`` (switching probability, ...), ``"levels"`` (device levels)
    or ``"law"`` (the parameters of the family law ``law`` per synapse, stacked on axis 0: the
    effective probability of the control values); a finished run's end-of-run datasets replace
    the per-epoch snapshots.
    """
    hints = hinted(reader, "weights")
    if not hints:
        return _legacy_weight_layers(reader, finished)
    order = {"epoch": 0, "start": 1, "end": 2}
    layers: dict[int, dict] = {}
    laws: list[tuple[dict, np.ndarray]] = []
    for name, hint in sorted(hints.items(), key=lambda kv: order.get(kv[1].get("when", "start"), 1)):
        values = _snapshot(reader, name, hint, finished)
        if values is None:
            continue
        role = hint.get("role", "control")
        if role == "law":
            laws.append((hint, values))
            continue
        shapes = _layer_shapes(hint, values.size)
        offset = 0
        for k, (rows, cols) in enumerate(shapes):
            part = values[offset:offset + rows * cols]
            offset += rows * cols
            layer = layers.setdefault(k, {"shape": (rows, cols), "control": None, "control_label": "control",
                                          "control_units": None, "effective": None, "effective_label": "effective",
                                          "levels": None, "range": None, "count": len(shapes)})
            label = hint.get("label", role)
            if role == "control":
                layer.update(control=part, control_label=label, control_units=hint.get("unit", _unit(reader, name)) or None)
            else:
                layer.update(effective=part, effective_label=label, levels=True if role == "levels" else None,
                             range=tuple(hint["range"]) if hint.get("range") else None, shape=(rows, cols))
    for hint, values in laws:  # effective probability of the control values, where no dataset gives it
        law = families.find_law(hint["law"])
        params = values.reshape(len(law.params), -1)
        offset = 0
        for k in sorted(layers):
            layer = layers[k]
            n = layer["shape"][0] * layer["shape"][1]
            if layer["effective"] is None and layer["control"] is not None and offset + n <= params.shape[1]:
                y = law_curve(law.name, list(law.param_names), params[:, offset:offset + n], layer["control"],
                              float(hint.get("width", 1e-6)), float(hint.get("tau0", 1e-9)), None)
                layer.update(effective=y, effective_label=hint.get("label", "switching probability"), range=(0.0, 1.0))
            offset += n
    out = []
    for k in sorted(layers):
        layer = layers[k]
        rows, cols = layer.pop("shape")
        n = rows * cols
        layer["name"] = f"layer {k + 1} ({cols} \u2192 {rows})" if layer.pop("count") > 1 or rows > 1 else f"{n} synapses"
        layer["shape"] = (rows, cols)
        out.append(layer)
    return out


def state_map(reader: RunReader, finished: bool) -> dict | None:
    """A dataset hinted ``{"view": "state_map"}`` (device states that are not a layer's weights):
    ``values`` (flat), ``shape`` (rows, columns), ``label`` and ``range``; None if there is none
    with data (windows then map the weights' effective values)."""
    for name, hint in hinted(reader, "state_map").items():
        values = _snapshot(reader, name, hint, finished)
        if values is None:
            continue
        rows, cols = _layer_shapes(hint, values.size)[0]
        lo, hi = hint.get("range") or (0.0, max(1.0, float(np.nanmax(values))))
        return {"values": values, "shape": (rows, cols), "label": hint.get("label", "level (0 = reference)"),
                "range": (float(lo), float(hi)), "source": name}
    return None


# ---------------------------------------------------------------------------- curves and energy
def read_curves(reader: RunReader) -> dict | None:
    """The table hinted ``{"view": "curve", "x": column, "y": [columns]}`` (a training run's
    per-epoch metrics): ``table`` (its name), ``x``, ``y`` and ``columns`` (every numeric column,
    as :func:`read_metrics` gives them); None if there is none or it has no row yet."""
    hints = hinted(reader, "curve")
    if not hints and METRICS in reader.names() and not reader.hints():  # a file from before hints
        hints = {METRICS: {"view": "curve", "x": "epoch", "y": ["train_loss", "val_loss", "train_accuracy",
                                                               "val_accuracy"]}}
    for name, hint in hints.items():
        columns = read_metrics(reader, name)
        if columns is None:
            continue
        x = hint.get("x") if hint.get("x") in columns else None
        y = [c for c in hint.get("y", []) if c in columns]
        return {"table": name, "x": x, "y": y, "columns": columns}
    return None


def energy_tables(reader: RunReader) -> dict[str, np.ndarray]:
    """Tables hinted ``{"view": "energy"}`` (energy in J and operation counts, per stage or in total),
    as numpy structured arrays keyed by dataset name; rows that are all zero (not written yet) left out."""
    out = {}
    for name in hinted(reader, "energy"):
        rows = reader.dataset(name)
        if rows.dtype.names is None:
            continue
        keep = [r for r in rows if any(r[k] for k in rows.dtype.names if rows.dtype[k].kind in "iuf")]
        if keep:
            out[name] = np.array(keep, dtype=rows.dtype)
    return out


# ---------------------------------------------------------------------------- calibration
def calibration_data(reader: RunReader) -> dict | None:
    """S-curve data of a calibration (or of a training run's embedded calibration), or None.

    Keys: ``amplitude`` (grid, in ``units``), ``widths`` (s), ``fraction`` (switched fraction
    [width, amplitude, synapse]), ``done`` (bool per synapse: swept already), ``levels`` (K of
    multi-level devices, else None), ``law`` (its name, None if the file does not say), ``fit``
    (None until fitted, else ``names`` of the law's parameters and ``estimate`` [width group,
    synapse, parameter] in SI units), ``tau0`` (s).

    Found from the counts dataset hinted ``{"view": "calibration", "law", "amplitudes", "widths",
    "repeats", "fit", "names", "per_level"}`` (the other keys name the sweep's datasets).
    """
    hints = hinted(reader, "calibration")
    if not hints:
        return _legacy_calibration_data(reader)
    counts_name, hint = next(iter(hints.items()))
    return _calibration(reader, counts_name, hint.get("amplitudes"), hint.get("widths"), hint.get("repeats"),
                        hint.get("fit"), hint.get("names"), bool(hint.get("per_level")), hint.get("law"))


def _calibration(reader: RunReader, counts_name: str, amplitude_name: str | None, width_name: str | None,
                 repeats_name: str | None, fit_name: str | None, names_name: str | None, per_level: bool,
                 law: str | None) -> dict | None:
    names = set(reader.names())
    if amplitude_name not in names or repeats_name not in names:
        return None
    amplitude = np.asarray(reader.dataset(amplitude_name), dtype=float)
    repeats = int(reader.dataset(repeats_name)[0])
    if repeats <= 0 or not np.any(amplitude):
        return None
    counts = np.asarray(reader.dataset(counts_name), dtype=float)
    levels = None
    if per_level:
        levels = counts.shape[-1]
        fraction = 1.0 - counts[..., 0] / repeats
        done = counts.sum(axis=(1, 3))[0] > 0
    else:
        fraction = counts / repeats
        # synapses of blocks not swept yet hold zeros at every amplitude
        done = counts[0].sum(axis=0) > 0 if not np.all(counts == 0) else np.zeros(counts.shape[2], bool)
    fit = None
    if fit_name in names and names_name in names:
        est = np.asarray(reader.dataset(fit_name), dtype=float)
        fit_names = [n.decode() if isinstance(n, bytes) else str(n) for n in reader.dataset(names_name)]
        if np.any(est != 0) and all(fit_names):
            fit = {"names": fit_names, "estimate": est}
    widths = np.asarray(reader.dataset(width_name), dtype=float) if width_name in names else np.array([1e-6])
    return {"amplitude": amplitude, "fraction": fraction, "done": done, "fit": fit, "levels": levels, "law": law,
            "units": _unit(reader, amplitude_name), "widths": widths,
            "tau0": float(settings_of(reader).get("tau0", 1e-9))}


def law_curve(law: str | None, fit_names: list[str], params: np.ndarray, h: np.ndarray, width: float, tau0: float,
              levels: int | None) -> np.ndarray | None:
    """Switching probability of the family law ``law`` (a registered family's law, ``labctl.families``)
    at amplitudes ``h`` (the calibration's units), pulse ``width`` and attempt time ``tau0`` in
    seconds, with parameters ``params`` in the order of ``fit_names`` (each a number, or an array
    broadcasting with ``h``). None when no registered family has that law, or it needs a level
    count that is not known. ``law`` None (a file from before laws were recorded): the first law
    whose parameter names are ``fit_names``."""
    import torch

    found = None
    if law is not None:
        try:
            found = families.find_law(law)
        except KeyError:
            return None
    else:  # files written before the law's name was recorded
        found = next((l for fam in families.REGISTRY.values() for l in fam.laws if l.param_names == tuple(fit_names)),
                     None)
    if found is None or (found.level_counts and not levels):
        return None
    p = {k: torch.as_tensor(np.asarray(v, dtype=float), dtype=torch.float64) for k, v in zip(fit_names, params)}
    x = torch.as_tensor(np.asarray(h, dtype=float), dtype=torch.float64)
    y = found.curve(x, torch.tensor(width, dtype=torch.float64), p, levels=levels, tau0=tau0)
    return np.asarray(y, dtype=float)


# ---------------------------------------------------------------------------- files written before hints
# Fallbacks for run files written before datasets carried hints: they know the dataset names of
# the built-in protocols of that time. Nothing else in labctl reads datasets by name for a window.
def _legacy_weight_layers(reader: RunReader, finished: bool) -> list[dict]:
    names = set(reader.names())
    layers: list[dict] = []
    if "train/amplitude" in names:  # meanvar: amplitudes (C, D) per epoch; probability from the law
        snaps = reader.dataset("train/amplitude", slice(-1, None))
        if snaps.shape[0]:
            h = np.asarray(snaps[-1], dtype=float)
            layer = {"name": f"layer 1 ({h.shape[1]} \u2192 {h.shape[0]})", "control": h.reshape(-1),
                     "control_label": "pulse amplitude", "control_units": _unit(reader, "train/amplitude") or None,
                     "shape": h.shape, "range": None}
            if "model/law" in names:
                law = reader.dataset("model/law")
                if np.any(law[0] != 0):
                    x0, dx, a = (np.asarray(v, dtype=float) for v in law)
                    p = (1 - a) + a / (1 + np.exp(-dx * (h - x0)))
                    layer.update(effective=p.reshape(-1), effective_label="switching probability", levels=None,
                                 range=(0.0, 1.0))
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
            "effective_label": f"level ({source})", "levels": True, "shape": (o, i), "range": None,
        })
    return layers


def _legacy_calibration_data(reader: RunReader) -> dict | None:
    names = set(reader.names())
    counts_name = "calibration/counts" if "calibration/counts" in names else (
        "calibration/level_counts" if "calibration/level_counts" in names else None)
    if counts_name is None:
        return None
    return _calibration(reader, counts_name, "calibration/amplitude", "calibration/width", "calibration/repeats",
                        "calibration/fit/estimate", "calibration/fit/names", counts_name.endswith("level_counts"),
                        read_summary(reader).get("law"))
