"""The Sweep view (pytest-qt, offscreen) on a small real sweep: its table is `labctl sweep info`'s
table, its plotted points are the mean and std over seeds of that table, its Pareto front is the
front of accuracy against energy per inference, and a double-click reviews the point's run file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("labctl.gui.app")
pytest.importorskip("pytestqt")

from labctl.cli import main  # noqa: E402
from labctl.sweep import load_sweep  # noqa: E402
from labctl.sweep_dask import run_sweep  # noqa: E402

# Four points of a reduced mean/variance training (16 -> 4 inputs and classes, 64 wires, about 1 s
# each; as tests/test_sweep_dask.py): accuracy and energy per inference against N, over two seeds.
SWEEP = """
[sweep]
name = "gui-test"
protocol = "train-meanvar-small"
checkpoint_every_s = 10

[fixed]
settings.train_limit = 300
settings.max_epochs = 3
settings.patience = 3

[axes]
settings.measurements = [1, 4]
seed = [0, 1]
"""


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gui-sweep")
    path = folder / "gui-test.toml"
    path.write_text(SWEEP)
    outcome = run_sweep(load_sweep(path), folder / "out", local=True, echo=lambda _: None)
    assert outcome.complete
    return folder / "out"


@pytest.fixture
def window(qtbot):
    from labctl.gui.app import MainWindow

    win = MainWindow()
    win.status_view.timer.stop()
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def info_table(out: Path, capsys) -> pd.DataFrame:
    """What `labctl sweep info` prints, and the CSV it writes with the same rows."""
    assert main(["sweep", "info", str(out)]) == 0
    said = capsys.readouterr().out
    assert "gui-test (train-meanvar-small on sim-dw): 4 points" in said
    return pd.read_csv(out / "sweep.csv")


def cell(view, row: int, column: str) -> str:
    return view.grid.item(row, view.shown_columns().index(column)).text()


def test_sweep_view_shows_the_info_table_the_seed_statistics_and_the_pareto_front(qtbot, window, sweep_dir, capsys):
    table = info_table(sweep_dir, capsys)
    assert window.open_sweep_folder(sweep_dir)  # as `labctl gui DIR`
    view = window.sweep_view
    assert window.tabs.currentWidget() is view

    # the table: the rows and columns `labctl sweep info` prints (index, axes, status, metrics, counters)
    shown = [c for c in table.columns if c not in ("name", "error")]
    assert view.shown_columns() == shown
    assert [view.grid.horizontalHeaderItem(i).text() for i in range(view.grid.columnCount())] == shown
    assert view.grid.rowCount() == len(table) == 4
    for r, row in table.iterrows():
        for column in shown:
            text, value = cell(view, r, column), row[column]
            if isinstance(value, (float, np.floating)):  # shown with 4 significant digits
                assert (text == "" and np.isnan(value)) or float(text) == pytest.approx(value, rel=5e-4), (r, column)
            else:
                assert text == str(value), (r, column)
    assert set(table["status"]) == {"success"}

    # metric against axis: default test_accuracy against N, mean and std over the two seeds
    assert view.metric.currentText() == "test_accuracy" and view.axis.currentText() == "settings.measurements"
    (curve,) = view.curves
    items = view.metric_plot.getPlotItem().listDataItems()
    x, y = items[0].getData()
    for i, n in enumerate((1, 4)):
        acc = table.loc[table["settings.measurements"] == n, "test_accuracy"]
        assert curve["x"][i] == n and curve["count"][i] == 2
        assert y[i] == pytest.approx(acc.mean()) and curve["std"][i] == pytest.approx(acc.std())
    assert list(x) == [1, 4]  # 1 .. 4: a linear axis
    bars = [i for i in view.metric_plot.getPlotItem().items if type(i).__name__ == "ErrorBarItem"]
    assert np.allclose(bars[0].opts["top"], curve["std"])

    # another metric: replotted from the same table
    view.metric.setCurrentText("inference_energy_j")
    energy = table.groupby("settings.measurements")["inference_energy_j"].mean()
    assert np.allclose(view.metric_plot.getPlotItem().listDataItems()[0].getData()[1], energy.to_numpy())
    view.metric.setCurrentText("test_accuracy")

    # Pareto front of accuracy against energy per inference, over the configurations (seed-averaged)
    pareto = view.pareto
    assert pareto["cost"] == "inference_energy_j" and pareto["metric"] == "test_accuracy"
    means = table.groupby("settings.measurements")[["inference_energy_j", "test_accuracy"]].mean()
    assert np.allclose(pareto["x"], means["inference_energy_j"]) and np.allclose(pareto["y"], means["test_accuracy"])
    cost, acc = list(pareto["x"]), list(pareto["y"])
    dominated = {i for i in range(len(cost)) for j in range(len(cost))
                 if cost[j] <= cost[i] and acc[j] >= acc[i] and (cost[j] < cost[i] or acc[j] > acc[i])}
    assert set(pareto["front"]) == set(range(len(cost))) - dominated and pareto["front"]
    front_item = view.pareto_plot.getPlotItem().listDataItems()[-1]
    fx, fy = front_item.getData()
    assert np.allclose(fy, [acc[i] for i in pareto["front"]])
    assert energy.iloc[1] > energy.iloc[0] > 0  # N = 4 costs more energy per inference than N = 1

    # double-clicking a row reviews that point's run file in the Run tab
    view.grid.cellDoubleClicked.emit(2, 0)
    assert window.tabs.currentIndex() == 0 and window.mode == "review"
    name = table.loc[2, "name"]
    assert window.watcher is not None and Path(window.watcher.path).name == f"{name}.h5"
    assert f"{name}.h5" in window.mode_label.text()


def test_a_folder_without_sweep_json_is_refused_with_a_dialog(window, tmp_path):
    assert not window.open_sweep_folder(tmp_path)
    assert window.dialog is not None and "not a sweep folder" in window.dialog.text()
    assert getattr(window, "sweep_view", None) is None
    assert window.tabs.count() == 2  # Run and Bench: no Sweep tab
