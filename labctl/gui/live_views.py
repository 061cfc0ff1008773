"""Live plots of a run (pyqtgraph): weights, synapse state map, training curves, calibration, chip work.

The views are fed from two sources, the same for a run started here and a run file watched:

- the run file's datasets (:meth:`LiveViews.update_from_reader`, called by the watcher with a
  refreshed :class:`~labctl.store.RunReader`), found by their hints (``DatasetSpec.hint``, read
  by :mod:`labctl.readers`): the curve table, the weights per layer, a state map, the
  calibration sweep, the energy tables, and the run's ``summary``. No dataset is named here: a
  protocol (a plugin's too) is shown as its ``describe()`` declares it;
- for a run started here, the engine's progress documents (:meth:`LiveViews.add_progress`) and
  chip snapshots (counters, simulated device states; :meth:`LiveViews.set_chip_snapshot`).

Views keep the latest data and redraw only when asked (:meth:`LiveViews.redraw`, on the GUI's
throttled timer), and only the tab that is shown; the others redraw when they are selected.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QFont
from PyQt5.QtWidgets import QGridLayout, QLabel, QTabWidget, QVBoxLayout, QWidget

from labctl import families
from labctl.readers import (calibration_data, energy_tables, law_curve, read_curves, read_summary, state_map,
                            weight_layers)

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
LABEL_STYLE = {"font-size": "11pt"}
TICK_FONT = QFont()
TICK_FONT.setPointSize(9)


def configure_pyqtgraph() -> None:
    """White background, black axes, row-major images: readable screenshots."""
    pg.setConfigOptions(background="w", foreground="k", imageAxisOrder="row-major", antialias=False)


def make_plot(title: str, x: tuple[str, str | None], y: tuple[str, str | None], legend: bool | str = False) -> pg.PlotWidget:
    """A plot with title, labelled axes (SI units get prefixes) and a legend (top-right, or "bottom")."""
    w = pg.PlotWidget()
    p = w.getPlotItem()
    p.setTitle(title, size="12pt")
    for side, (label, units) in (("bottom", x), ("left", y)):
        axis = p.getAxis(side)
        axis.setTickFont(TICK_FONT)
        p.setLabel(side, label, units=units, **LABEL_STYLE)
    p.showGrid(x=True, y=True, alpha=0.25)
    if legend:
        p.addLegend(offset=(-10, -10) if legend == "bottom" else (-10, 10), labelTextSize="10pt")
    w.setMinimumSize(320, 220)
    return w


def _pen(i: int, width: float = 2.0, style=None) -> Any:
    kw = {"color": PALETTE[i % len(PALETTE)], "width": width}
    if style is not None:
        kw["style"] = style
    return pg.mkPen(**kw)


# ---------------------------------------------------------------------------- the views
class View(QWidget):
    title = ""

    def __init__(self):
        super().__init__()
        self.dirty = False

    def redraw(self) -> None:
        """Draw the latest data (only called while dirty)."""


class WeightsView(View):
    """Histograms per layer: trained control values, and the effective switching probability or level."""

    title = "Weights"

    def __init__(self):
        super().__init__()
        self.grid = QGridLayout(self)
        self.note = QLabel("No weight snapshot yet: a training run writes one per epoch.")
        self.grid.addWidget(self.note, 0, 0, 1, 2)
        self.layers: list[dict] = []
        self.plots: list[tuple[pg.PlotWidget, pg.PlotWidget, Any, Any]] = []

    def set_layers(self, layers: list[dict]) -> None:
        self.layers = layers
        self.dirty = True

    def _build(self) -> None:
        for control, eff, _, _ in self.plots:
            control.setParent(None)
            eff.setParent(None)
        self.plots = []
        for k, layer in enumerate(self.layers):
            c = make_plot(f"{layer['name']}: {layer['control_label']}", (layer["control_label"], layer["control_units"]),
                          ("synapses", None))
            e = make_plot(f"{layer['name']}: {layer.get('effective_label', 'effective')}",
                          (layer.get("effective_label", "effective"), None), ("synapses", None))
            hc = c.plot(stepMode="center", fillLevel=0, brush=(31, 119, 180, 120), pen=_pen(0))
            he = e.plot(stepMode="center", fillLevel=0, brush=(214, 39, 40, 120), pen=_pen(1))
            self.grid.addWidget(c, k + 1, 0)
            self.grid.addWidget(e, k + 1, 1)
            self.plots.append((c, e, hc, he))

    def redraw(self) -> None:
        self.note.setVisible(not self.layers)
        if len(self.plots) != len(self.layers) or any(
                p[0].getPlotItem().titleLabel.text.split(":")[0] != l["name"] for p, l in zip(self.plots, self.layers)):
            self._build()
        for (c, e, hc, he), layer in zip(self.plots, self.layers):
            for plot, item, values, discrete in ((c, hc, layer.get("control"), False),
                                                 (e, he, layer.get("effective"), bool(layer.get("levels")))):
                plot.setVisible(values is not None)
                if values is None or len(values) == 0:
                    continue
                v = values[np.isfinite(values)]
                if discrete:
                    lo, hi = int(v.min()), int(v.max())
                    edges = np.arange(lo - 0.5, hi + 1.5)
                elif layer.get("range") and item is he:
                    edges = np.linspace(*layer["range"], 41)
                else:
                    lo, hi = float(v.min()), float(v.max())
                    if hi <= lo:
                        hi = lo + (abs(lo) * 1e-3 or 1e-12)
                    edges = np.linspace(lo, hi, 41)
                counts, edges = np.histogram(v, bins=edges)
                item.setData(edges, counts)


class StateMapView(View):
    """Which synapses are switched: device levels as an image, laid out as the layer's weight matrix."""

    title = "State map"

    def __init__(self):
        super().__init__()
        lay = QVBoxLayout(self)
        self.plot = make_plot("Synapse state map", ("input j", None), ("output neuron i", None))
        self.plot.getPlotItem().invertY(True)
        self.plot.getPlotItem().setAspectLocked(False)
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get("viridis"), interactive=False)
        self.bar.setImageItem(self.image, insert_in=self.plot.getPlotItem())
        self.caption = QLabel("No state yet.")
        self.caption.setWordWrap(True)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.caption)
        self.state: np.ndarray | None = None
        self.source = ""
        self.label = "level (0 = reference)"
        self.range = (0.0, 1.0)
        self.axes = ("input j", "output neuron i")

    def set_state(self, values: np.ndarray, shape: tuple[int, int] | None, source: str, label: str,
                  value_range: tuple[float, float]) -> None:
        n = values.size
        layer_shape = shape is not None and shape[0] * shape[1] <= n
        if not layer_shape:
            cols = int(math.ceil(math.sqrt(n)))
            shape = (int(math.ceil(n / cols)), cols)
        flat = np.full(shape[0] * shape[1], np.nan)
        m = min(n, flat.size)
        flat[:m] = np.asarray(values, dtype=float).reshape(-1)[:m]
        self.state = flat.reshape(shape)
        self.source, self.label, self.range = source, label, value_range
        self.axes = (("input j", "output neuron i") if layer_shape else
                     (f"column (synapse = row \u00d7 {shape[1]} + column)", "row"))
        self.dirty = True

    def redraw(self) -> None:
        if self.state is None:
            return
        lo, hi = self.range
        self.image.setImage(self.state, autoLevels=False, levels=(lo, hi))
        self.bar.setLevels((lo, hi))
        p = self.plot.getPlotItem()
        # The colour scale is named in the title: a label on the narrow colour bar overlaps its ticks.
        p.setTitle(f"Synapse state map (colour: {self.label})")
        p.setLabel("bottom", self.axes[0], **LABEL_STYLE)
        p.setLabel("left", self.axes[1], **LABEL_STYLE)
        rows, cols = self.state.shape
        finite = self.state[np.isfinite(self.state)]
        switched = float(np.mean(finite > 0.5 * (lo + hi) if self.label.startswith("switching") else finite > 0)) \
            if finite.size else 0.0
        what = "p > 0.5" if self.label.startswith("switching") else "switched (level > 0)"
        self.caption.setText(f"{self.source}: {rows} \u00d7 {cols} synapses; {what}: {100 * switched:.1f} %")


class TrainingView(View):
    """The run file's curve table (its hint names x and the y columns: losses on the left, the others
    on the right) and the live loss and accuracy per safe point from the engine."""

    title = "Training"

    def __init__(self):
        super().__init__()
        grid = QGridLayout(self)
        self.loss = make_plot("Loss per epoch (run file)", ("epoch", None), ("cross-entropy loss", "nats"), legend=True)
        self.acc = make_plot("Accuracy per epoch (run file)", ("epoch", None), ("accuracy", "%"), legend="bottom")
        self.live_loss = make_plot("Running loss (live, per safe point)", ("step", None), ("loss", "nats"), legend=True)
        self.live_acc = make_plot("Running accuracy (live, per safe point)", ("step", None), ("accuracy", "%"),
                                  legend="bottom")
        for plot in (self.live_loss, self.live_acc):  # long curves: draw only what is visible, downsampled
            plot.getPlotItem().setClipToView(True)
            plot.getPlotItem().setDownsampling(auto=True, mode="peak")
        grid.addWidget(self.loss, 0, 0)
        grid.addWidget(self.acc, 0, 1)
        grid.addWidget(self.live_loss, 1, 0)
        grid.addWidget(self.live_acc, 1, 1)
        self.curves: dict[str, Any] = {}
        self.table: dict | None = None
        self.live: dict[str, list] = {"step": [], "loss": [], "accuracy": []}

    @property
    def metrics(self) -> dict[str, np.ndarray] | None:
        """The curve table's numeric columns (None before its first row)."""
        return None if self.table is None else self.table["columns"]

    def set_curves(self, table: dict | None) -> None:
        """The curve table of the run file (:func:`labctl.readers.read_curves`), or None."""
        self.table = table
        self.dirty = True

    def add_progress(self, docs: list[dict]) -> None:
        for d in docs:
            m = d.get("metrics") or {}
            if "loss" in m or "accuracy" in m:
                self.live["step"].append(d["step"])
                self.live["loss"].append(float(m.get("loss", np.nan)))
                self.live["accuracy"].append(100 * float(m.get("accuracy", np.nan)))
                self.dirty = True

    def _curve(self, plot: pg.PlotWidget, key: str, name: str, i: int) -> Any:
        if key not in self.curves:
            live = plot is self.live_loss or plot is self.live_acc
            self.curves[key] = plot.plot(name=name, pen=_pen(i), symbol=None if live else "o", symbolSize=4,
                                         symbolBrush=PALETTE[i % len(PALETTE)], symbolPen=None, skipFiniteCheck=not live)
        return self.curves[key]

    def redraw(self) -> None:
        t = self.table
        if t:
            m = t["columns"]
            x = m[t["x"]] if t["x"] else np.arange(len(next(iter(m.values()))))
            x_label = t["x"] if t["x"] else f"row of {t['table']}"
            losses = [k for k in t["y"] if "loss" in k]
            others = [k for k in t["y"] if "loss" not in k]
            percent = bool(others) and all("accuracy" in k for k in others)
            for plot in (self.loss, self.acc):
                plot.getPlotItem().setLabel("bottom", x_label, **LABEL_STYLE)
            if others and not percent:
                self.acc.getPlotItem().setTitle(f"{', '.join(k.replace('_', ' ') for k in others)} (run file)", size="12pt")
                self.acc.getPlotItem().setLabel("left", "value", units=None, **LABEL_STYLE)
            for i, k in enumerate(losses):
                self._curve(self.loss, "f:" + k, k.replace("_", " "), i).setData(x, m[k])
            for i, k in enumerate(others):
                self._curve(self.acc, "f:" + k, k.replace("_", " "), i).setData(x, 100 * m[k] if percent else m[k])
        if self.live["step"]:
            s = np.asarray(self.live["step"])
            self._curve(self.live_loss, "l:loss", "train loss (running mean over the epoch)", 0).setData(
                s, np.asarray(self.live["loss"]), connect="finite")
            self._curve(self.live_acc, "l:accuracy", "train accuracy (running, over the epoch)", 0).setData(
                s, np.asarray(self.live["accuracy"]), connect="finite")


class CalibrationView(View):
    """S-curves: measured switching fraction against pulse amplitude, with the fitted laws."""

    title = "Calibration"
    SHOWN = 6

    def __init__(self):
        super().__init__()
        grid = QGridLayout(self)
        self.curves = make_plot("S-curves: measured (points) and fitted law (lines)", ("pulse amplitude", "T"),
                                ("switching probability", None), legend="bottom")
        self.params = make_plot("Fitted law: first parameter over all synapses", ("parameter", None),
                                ("synapses", None))
        grid.addWidget(self.curves, 0, 0)
        grid.addWidget(self.params, 0, 1)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        self.data: dict | None = None
        self.items: list = []

    def set_data(self, data: dict | None) -> None:
        self.data = data
        self.dirty = True

    def redraw(self) -> None:
        d = self.data
        if d is None:
            return
        p = self.curves.getPlotItem()
        for item in self.items:
            p.removeItem(item)
        p.legend.clear()
        self.items = []
        unit = d["units"] or None
        p.setLabel("bottom", "pulse amplitude", units=unit, **LABEL_STYLE)
        h = d["amplitude"]
        frac = d["fraction"][0]  # first pulse width
        done = np.flatnonzero(d["done"])
        if done.size == 0:
            return
        shown = done[np.unique(np.linspace(0, done.size - 1, min(self.SHOWN, done.size)).round().astype(int))]
        hh = np.linspace(h.min(), h.max(), 200)
        fit = d["fit"]
        for k, s in enumerate(shown):
            colour = PALETTE[k % len(PALETTE)]
            pts = pg.ScatterPlotItem(h, frac[:, s], size=7, brush=colour, pen=None, name=f"synapse {s}")
            p.addItem(pts)
            self.items.append(pts)
            if fit is not None:
                y = law_curve(d["law"], fit["names"], fit["estimate"][0, s], hh, float(d["widths"][0]), d["tau0"],
                              d["levels"])
                if y is not None:
                    line = p.plot(hh, y, pen=_pen(k, 1.5))
                    self.items.append(line)
        median = np.median(frac[:, done], axis=1)
        med = p.plot(h, median, pen=pg.mkPen("k", width=3, style=Qt.DashLine),
                     name=f"median of {done.size} synapses")
        self.items.append(med)
        if fit is not None:
            fit_line = pg.PlotDataItem([], [], pen=_pen(0, 1.5))
            p.legend.addItem(fit_line, f"fitted {d['law'] or ''} law ({', '.join(fit['names'])})".replace("  ", " "))
            self.items.append(fit_line)
            q = self.params.getPlotItem()
            q.clear()
            name = fit["names"][0]
            v = fit["estimate"][0, :, 0]
            v = v[np.isfinite(v) & (v != 0)]
            if v.size:
                counts, edges = np.histogram(v, bins=30)
                q.plot(edges, counts, stepMode="center", fillLevel=0, brush=(44, 160, 44, 120), pen=_pen(2))
                units = _param_units(d["law"], d["units"]).get(name)
                median = pg.siFormat(float(np.median(v)), suffix=units) if units else f"{np.median(v):.4g}"
                q.setTitle(f"Fitted {name} of {v.size} synapses (median {median})", size="12pt")
                q.setLabel("bottom", f"fitted {name}", units=units, **LABEL_STYLE)


def _param_units(law: str | None, amplitude_unit: str) -> dict[str, str | None]:
    """Units of a law's parameters (the family descriptor's), by parameter name; {} for an unknown law."""
    try:
        found = families.find_law(law) if law else None
    except KeyError:
        found = None
    return {} if found is None else {p.name: p.unit or None for p in found.params}


class ChipWorkView(View):
    """Pulses and energy delivered to the chip, against step (live) or epoch (run file); the run summary."""

    title = "Pulses && energy"

    def __init__(self):
        super().__init__()
        grid = QGridLayout(self)
        self.pulses = make_plot("Pulses and reads on the chip", ("step", None), ("count", None), legend="bottom")
        self.energy = make_plot("Energy delivered to the chip", ("step", None), ("energy delivered", "J"), legend="bottom")
        self.summary = QLabel("")
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.summary.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        font = QFont("monospace")
        font.setStyleHint(QFont.Monospace)
        font.setPointSize(9)
        self.summary.setFont(font)
        grid.addWidget(self.pulses, 0, 0)
        grid.addWidget(self.energy, 0, 1)
        grid.addWidget(self.summary, 1, 0, 1, 2)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 1)
        self.live: dict[str, list] = {"step": [], "pulses": [], "reads": [], "energy_j": []}
        self.metrics: dict[str, np.ndarray] | None = None
        self.summary_data: dict = {}
        self.energy_tables: dict[str, np.ndarray] = {}
        self.curves: dict[str, Any] = {}

    def add_snapshot(self, snap: dict) -> None:
        c = snap["counters"]
        if self.live["step"] and snap["step"] < self.live["step"][-1]:
            snap = dict(snap, step=self.live["step"][-1])
        self.live["step"].append(snap["step"])
        for k in ("pulses", "reads", "energy_j"):
            self.live[k].append(float(c.get(k, np.nan)))
        self.dirty = True

    def set_metrics(self, metrics, summary: dict, energy: dict[str, np.ndarray] | None = None) -> None:
        """Columns of the curve table (cumulative ``pulses``, ``reads``, ``energy_j`` if it has them),
        the run summary and the energy tables (name -> rows)."""
        self.metrics, self.summary_data, self.energy_tables = metrics, summary, energy or {}
        self.dirty = True

    def _curve(self, plot, key, name, i):
        if key not in self.curves:
            self.curves[key] = plot.plot(name=name, pen=_pen(i), symbol="o", symbolSize=4,
                                         symbolBrush=PALETTE[i % len(PALETTE)], symbolPen=None)
        return self.curves[key]

    def redraw(self) -> None:
        if self.live["step"]:
            s = np.asarray(self.live["step"])
            self._curve(self.pulses, "pulses", "pulses (chip counters)", 0).setData(s, self.live["pulses"])
            self._curve(self.pulses, "reads", "reads (chip counters)", 1).setData(s, self.live["reads"])
            self.curves["reads"].setPen(_pen(1, 2, Qt.DashLine))
            self._curve(self.energy, "energy_j", "energy (chip counters)", 3).setData(s, self.live["energy_j"])
        elif self.metrics and "pulses" in self.metrics:
            m = self.metrics
            x = m.get("epoch", np.arange(len(m["pulses"])))
            for plot in (self.pulses, self.energy):
                plot.getPlotItem().setLabel("bottom", "epoch", **LABEL_STYLE)
            self._curve(self.pulses, "pulses", "pulses since training started", 0).setData(x, m["pulses"])
            if "reads" in m:
                self._curve(self.pulses, "reads", "reads since training started", 1).setData(x, m["reads"])
            if "energy_j" in m:
                self._curve(self.energy, "energy_j", "energy since training started", 3).setData(x, m["energy_j"])
        lines = []
        counters = self.summary_data.get("counters", {})
        metrics = {k: v for k, v in self.summary_data.items() if k not in ("counters",)}
        if metrics or counters:
            lines.append("Run summary")
            items = list(metrics.items()) + [(k, v) for k, v in counters.items()]
            for k, v in items:
                unit = " J" if k.endswith("energy_j") else (" s" if k.endswith("_s") else "")
                lines.append(f"  {k:<28} {v:.6g}{unit}" if isinstance(v, float) else f"  {k:<28} {v}")
        text = lines[:1] + _columns(lines[1:], 3)
        for name, rows in self.energy_tables.items():
            text.append(f"{name} (energy in J)")
            cells = []
            for row in rows:
                label = ""
                for k in rows.dtype.names:
                    v = row[k]
                    if rows.dtype[k].kind == "S":
                        label = v.decode(errors="replace") + ": "
                    else:
                        cells.append(f"  {label}{k:<{max(1, 26 - len(label))}} {float(v):.6g}")
            text.extend(_columns(cells, 3))
        self.summary.setText("\n".join(text))


def _columns(lines: list[str], n: int) -> list[str]:
    if not lines:
        return []
    rows = math.ceil(len(lines) / n)
    width = max(len(s) for s in lines) + 2
    return ["".join(lines[r + c * rows].ljust(width) for c in range(n) if r + c * rows < len(lines)) for r in range(rows)]


class LiveViews(QTabWidget):
    """The tabbed live views (see module docstring)."""

    def __init__(self):
        super().__init__()
        self.weights = WeightsView()
        self.state = StateMapView()
        self.training = TrainingView()
        self.calibration = CalibrationView()
        self.work = ChipWorkView()
        self.views: list[View] = [self.weights, self.state, self.training, self.calibration, self.work]
        for v in self.views:
            self.addTab(v, v.title)
        self.currentChanged.connect(lambda _: self.redraw())
        self.chip_state_live = False
        self.rows_seen: dict[str, int] = {}
        self._weights_rows = -1

    # ------------------------------------------------------------------ feeding
    def update_from_reader(self, reader, finished: bool) -> None:
        """Take the latest data from a (refreshed) run reader."""
        table = read_curves(reader)
        metrics = None if table is None else table["columns"]
        rows = 0 if metrics is None else len(next(iter(metrics.values())))
        self.rows_seen = {} if table is None else {table["table"]: rows}
        self.training.set_curves(table)
        summary = read_summary(reader) if finished else {}
        self.work.set_metrics(metrics, summary, energy_tables(reader))
        if finished or rows != self._weights_rows or not self.weights.layers:  # snapshots come with curve rows
            self._weights_rows = rows
            self.weights.set_layers(weight_layers(reader, finished))
        layers = self.weights.layers
        cal = self.calibration.data
        if finished or cal is None or cal["fit"] is None:  # fixed datasets: unchanged once the fit is written
            cal = calibration_data(reader)
            self.calibration.set_data(cal)
        if not self.chip_state_live:
            self._state_from_file(layers, state_map(reader, finished))

    def _state_from_file(self, layers: list[dict], state: dict | None) -> None:
        if state is not None:
            self.state.set_state(state["values"], state["shape"], f"run file ({state['label']})", state["label"],
                                 state["range"])
            return
        for layer in layers:
            if layer.get("levels") and layer.get("effective") is not None:
                eff = layer["effective"]
                hi = max(1.0, float(np.nanmax(eff)))
                self.state.set_state(eff, layer["shape"], f"run file ({layer['effective_label']}), {layer['name']}",
                                     "level (0 = reference)", (0.0, hi))
                return
        for layer in layers:
            if layer.get("effective") is not None:
                self.state.set_state(layer["effective"], layer["shape"],
                                     f"run file: {layer['effective_label']} of the trained {layer['control_label']}, "
                                     f"{layer['name']}", layer["effective_label"], layer.get("range") or (0.0, 1.0))
                return

    def add_progress(self, docs: list[dict]) -> None:
        self.training.add_progress(docs)

    def set_chip_snapshot(self, snap: dict, shape: tuple[int, int] | None = None) -> None:
        self.work.add_snapshot(snap)
        state = snap.get("state")
        if state is not None:
            self.chip_state_live = True
            hi = max(1.0, float(state.max()) if state.size else 1.0)
            self.state.set_state(state, shape, f"chip (simulated device states) at step {snap['step']}",
                                 "level (0 = reference)", (0.0, hi))

    # ------------------------------------------------------------------ drawing
    def redraw(self, all_views: bool = False) -> None:
        """Redraw the shown view (or all of them) if it has new data."""
        for v in self.views if all_views else [self.currentWidget()]:
            if v is not None and v.dirty:
                v.dirty = False
                v.redraw()
