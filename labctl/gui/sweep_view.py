"""The Sweep view: a sweep folder's table and plots, as ``labctl sweep info`` and ``labctl sweep plot`` show them.

``labctl gui DIR`` (a folder holding ``sweep.json``) or File > Open sweep folder opens it in a
"Sweep" tab of the main window:

- the table: one row per point (index, axis values, status, wall time, final metrics and
  counters), the same rows and columns as ``labctl sweep info`` prints; a point's error is its
  row's tooltip. Double-clicking a row opens the point's run file in the normal review (Run tab);
- a metric against an axis (both chosen), mean +- std over the seeds (error bars), one line per
  value of the other axes: :func:`labctl.sweep.aggregate`;
- the Pareto front of the metric against energy per inference (or wall time, chosen), over the
  configurations (points that differ only by their seeds, averaged): :func:`labctl.sweep.aggregate`
  and :func:`labctl.sweep.pareto_front`.

The run files are the truth, as for ``labctl sweep info``: statuses and metrics are refreshed from
them (:func:`labctl.sweep.refresh_from_files`) when the folder is opened and on "Reload". Nothing is
written into the folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QPushButton, QSplitter,
                             QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from labctl.config import ConfigError
from labctl.sweep import (COSTS, SEED_AXES, aggregate, default_metric, pareto_front, read_index,
                          refresh_from_files, sweep_table)

from .live_views import PALETTE, make_plot

HIDDEN = ("name", "error")  # as labctl sweep info: the name is the run file's, the error the row's tooltip


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def _label(key: str) -> str:
    return key.rsplit(".", 1)[-1]


class SweepView(QWidget):
    """One sweep folder: table, metric against axis, Pareto front. ``open_run(path)`` on a double-click."""

    open_run = pyqtSignal(str)

    def __init__(self, folder: str | Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.folder = Path(folder)
        self.index: dict[str, Any] = {}
        self.table = None  # the pandas table (labctl.sweep.sweep_table)
        self.curves: list[dict] = []  # what the metric plot shows: label, x (axis values), mean, std, count
        self.pareto: dict | None = None  # what the Pareto plot shows: cost, configurations, front

        self.header = QLabel()
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.metric = QComboBox()
        self.axis = QComboBox()
        self.cost = QComboBox()
        self.reload_button = QPushButton("Reload")
        controls = QHBoxLayout()
        for label, widget in (("metric", self.metric), ("against", self.axis), ("Pareto cost", self.cost)):
            controls.addWidget(QLabel(label))
            controls.addWidget(widget)
        controls.addStretch(1)
        controls.addWidget(self.reload_button)

        self.grid = QTableWidget()
        self.grid.setObjectName("sweep_table")
        self.grid.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.grid.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.grid.setAlternatingRowColors(True)
        self.grid.verticalHeader().setVisible(False)
        self.grid.cellDoubleClicked.connect(lambda row, _col: self.open_point(row))

        self.metric_plot = make_plot("metric against axis", ("", None), ("", None), legend=True)
        self.pareto_plot = make_plot("Pareto front", ("", None), ("", None), legend="bottom")
        for plot, sides in ((self.metric_plot, ("left", "bottom")), (self.pareto_plot, ("left",))):
            for side in sides:  # metrics and axis values as they are (an accuracy of 0.72, not 720 x 0.001)
                plot.getPlotItem().getAxis(side).enableAutoSIPrefix(False)
        plots = QSplitter(Qt.Horizontal)
        plots.addWidget(self.metric_plot)
        plots.addWidget(self.pareto_plot)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.grid)
        split.addWidget(plots)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        self.hint = QLabel("Double-click a row to review its run file.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.header)
        layout.addLayout(controls)
        layout.addWidget(split, 1)
        layout.addWidget(self.hint)

        self.reload()  # ConfigError: not a sweep folder
        for combo in (self.metric, self.axis, self.cost):
            combo.currentIndexChanged.connect(self.redraw)
        self.reload_button.clicked.connect(self.reload)

    # ------------------------------------------------------------------ data
    def reload(self) -> None:
        """Read the index, refresh every point from its run file, fill the table and redraw."""
        index = read_index(self.folder) if self.folder.is_dir() else None
        if index is None:
            raise ConfigError(f"{self.folder}: not a sweep folder (no sweep.json)")
        refresh_from_files(index, self.folder)
        self.index = index
        self.table = sweep_table(index)
        counts = self.table["status"].value_counts()
        self.header.setText(f"<b>sweep {index['name']}</b> ({index['protocol']} on {index['station']}): "
                            f"{len(self.table)} points, " + ", ".join(f"{n} {s}" for s, n in counts.items())
                            + f" \u2014 {self.folder}" + (f"<br>{index['description']}" if index.get("description") else ""))
        self._fill_table()
        self._fill_choices()
        self.redraw()

    def shown_columns(self) -> list[str]:
        return [c for c in self.table.columns if c not in HIDDEN]

    def _fill_table(self) -> None:
        table, columns = self.table, self.shown_columns()
        self.grid.clear()
        self.grid.setColumnCount(len(columns))
        self.grid.setRowCount(len(table))
        self.grid.setHorizontalHeaderLabels(columns)
        for r, (_, row) in enumerate(table.iterrows()):
            tip = f"{row['name']}.h5" + (f"\n{row['error']}" if row.get("error") else "")
            for c, key in enumerate(columns):
                item = QTableWidgetItem(_text(row[key]))
                item.setToolTip(tip)
                if key == "status" and row[key] != "success":
                    item.setForeground(pg.mkColor("#c00000"))
                self.grid.setItem(r, c, item)
        self.grid.resizeColumnsToContents()

    def _fill_choices(self) -> None:
        table = self.table
        numeric = [c for c in table.select_dtypes("number").columns if c not in ("index", *self.index["axes"])]
        metrics = [c for c in numeric if table[c].notna().any()]
        try:
            default = default_metric(table)
        except ConfigError:
            default = None
        varied = [k for k in self.index["axes"] if k not in SEED_AXES]
        costs = [c for c, _ in COSTS if c in table and table[c].notna().any()]
        for combo, items, preferred in ((self.metric, metrics, default),
                                        (self.axis, list(self.index["axes"]), varied[0] if varied else None),
                                        (self.cost, costs, costs[0] if costs else None)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(items)
            choice = current if current in items else preferred
            if choice in items:
                combo.setCurrentIndex(items.index(choice))
            combo.blockSignals(False)

    def point_path(self, row: int) -> Path:
        return self.folder / self.index["points"][row]["file"]

    def open_point(self, row: int) -> None:
        """Review point ``row``'s run file (``open_run`` signal; the main window opens it in the Run tab)."""
        path = self.point_path(row)
        if path.exists():
            self.open_run.emit(str(path))
        else:
            self.hint.setText(f"{path.name}: no run file yet (status {self.index['points'][row]['status']})")

    # ------------------------------------------------------------------ plots
    def redraw(self) -> None:
        self._draw_metric()
        self._draw_pareto()

    def _positions(self, values: list) -> tuple[np.ndarray, list | None, bool]:
        """x positions of an axis' values: the values, their log10 (a wide positive numeric range, as
        labctl sweep plot's log scale), or 0..k-1 for text values; with tick labels where not plain."""
        axis_values = list(self.index["axes"][self.axis.currentText()])
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in axis_values)
        if not numeric:
            order = [json_text(v) for v in axis_values]
            ticks = [(i, t) for i, t in enumerate(order)]
            return np.array([order.index(json_text(v)) for v in values], dtype=float), ticks, False
        arr = np.asarray(values, dtype=float)
        full = np.asarray(axis_values, dtype=float)
        if (full > 0).all() and full.max() / full.min() >= 16:
            return np.log10(arr), [(math.log10(v), _text(v)) for v in sorted(set(axis_values))], True
        return arr, None, False

    def _draw_metric(self) -> None:
        plot = self.metric_plot.getPlotItem()
        plot.clear()
        self.curves = []
        metric, axis = self.metric.currentText(), self.axis.currentText()
        if not metric or not axis or not (self.table["status"] == "success").any():
            plot.setTitle("no point has finished yet")
            return
        varied = [k for k in self.index["axes"] if k not in SEED_AXES]
        others = [k for k in varied if k != axis]
        stats = aggregate(self.table, metric, axis, others)
        groups = stats.groupby(others, dropna=False) if others else [((), stats)]
        ticks = None
        for i, (key, part) in enumerate(groups):
            part = part.sort_values(axis)
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{_label(k)}={v}" for k, v in zip(others, key)) or metric
            x, ticks, _ = self._positions(list(part[axis]))
            mean, std = part["mean"].to_numpy(float), part["std"].to_numpy(float)
            color = PALETTE[i % len(PALETTE)]
            plot.addItem(pg.ErrorBarItem(x=x, y=mean, top=std, bottom=std, beam=0.0, pen=pg.mkPen(color, width=1.5)))
            plot.plot(x, mean, pen=pg.mkPen(color, width=2), symbol="o", symbolSize=7, symbolBrush=color,
                      symbolPen=color, name=label)
            self.curves.append({"label": label, "x": list(part[axis]), "mean": mean, "std": std,
                                "count": part["count"].to_numpy(int)})
        plot.getAxis("bottom").setTicks([ticks] if ticks else None)
        seeds = [k for k in self.index["axes"] if k in SEED_AXES]
        plot.setTitle(f"{metric}: mean \u00b1 std over {', '.join(seeds) or 'points'}", size="11pt")
        plot.setLabel("bottom", axis)
        plot.setLabel("left", metric)

    def _draw_pareto(self) -> None:
        plot = self.pareto_plot.getPlotItem()
        plot.clear()
        self.pareto = None
        metric, cost = self.metric.currentText(), self.cost.currentText()
        if not metric or not cost or not (self.table["status"] == "success").any():
            plot.setTitle("no cost to trade against (energy per inference, wall time)" if not cost
                          else "no point has finished yet")
            return
        varied = [k for k in self.index["axes"] if k not in SEED_AXES]
        if varied:  # configurations: the points that differ only by their seeds, averaged (as sweep plot)
            value = aggregate(self.table, metric, varied[0], varied[1:])
            spent = aggregate(self.table, cost, varied[0], varied[1:])
            names = [", ".join(f"{_label(k)}={value[k].iloc[i]}" for k in varied) for i in range(len(value))]
        else:  # only seeds: every point is its own configuration
            done = self.table[self.table["status"] == "success"]
            value = done[[metric]].rename(columns={metric: "mean"}).assign(std=0.0).reset_index(drop=True)
            spent = done[[cost]].rename(columns={cost: "mean"}).assign(std=0.0).reset_index(drop=True)
            names = list(done["name"])
        x, y = spent["mean"].to_numpy(float), value["mean"].to_numpy(float)
        front = pareto_front(list(x), list(y))
        log_x = bool((x > 0).all() and x.max() / x.min() >= 16)
        px = np.log10(x) if log_x else x
        plot.addItem(pg.ErrorBarItem(x=px, y=y, top=value["std"].to_numpy(float), bottom=value["std"].to_numpy(float),
                                     pen=pg.mkPen("#808080", width=1)))
        if not log_x:
            plot.addItem(pg.ErrorBarItem(x=px, y=y, left=spent["std"].to_numpy(float),
                                         right=spent["std"].to_numpy(float), pen=pg.mkPen("#808080", width=1)))
        plot.plot(px, y, pen=None, symbol="o", symbolSize=7, symbolBrush="#808080", symbolPen="#808080",
                  name="configurations")
        plot.plot(px[front], y[front], pen=pg.mkPen("#d62728", width=2), symbol="o", symbolSize=9,
                  symbolBrush="#d62728", symbolPen="#d62728", name="Pareto front")
        middle = (px.min() + px.max()) / 2
        for i, name in enumerate(names):  # labels inwards: the right half's to the left of their point
            text = pg.TextItem(name, color="#404040", anchor=(1 if px[i] > middle else 0, 0))
            text.setPos(px[i], y[i])
            plot.addItem(text)
        cost_label = dict(COSTS)[cost]
        plot.getAxis("bottom").setTicks([_decade_ticks(px)] if log_x else None)
        name, _, unit = cost_label.rpartition(" (")
        plot.setTitle(f"{metric} against {name}: Pareto front of the configurations (mean over seeds)", size="11pt")
        if log_x:
            plot.setLabel("bottom", f"{cost_label}, log scale", units="")
        else:
            plot.setLabel("bottom", name, units=unit.rstrip(")"))
        plot.setLabel("left", metric)
        self.pareto = {"cost": cost, "metric": metric, "names": names, "x": x, "y": y, "front": front,
                       "x_std": spent["std"].to_numpy(float), "y_std": value["std"].to_numpy(float)}


def json_text(value: Any) -> str:
    """An axis value as the table holds it (lists and tables as JSON, as labctl.sweep.sweep_table)."""
    return json.dumps(value) if isinstance(value, (list, dict)) else _text(value)


def _decade_ticks(logs: np.ndarray) -> list[tuple[float, str]]:
    lo, hi = math.floor(float(logs.min())), math.ceil(float(logs.max()))
    return [(float(e), f"1e{e}") for e in range(lo, hi + 1)]
