"""A plugin protocol's weights, calibration and station appear in the GUI with no GUI change.

The plugin (tests/plugin_pkg) is installed with pip into a temporary folder; a `labctl run` of its
own protocol writes a run file in a subprocess that sees it there; then this process puts that
folder on sys.path (labctl still finds the plugin through its entry points: importlib.metadata
reads the dist-info there) and reviews the file in the main window. The views show what the
plugin's describe() declared with hints: nothing in labctl/gui names the plugin or its datasets.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("labctl.gui.app")  # PyQt5 + pyqtgraph
pytest.importorskip("pytestqt")

from labctl import families  # noqa: E402
from labctl.store import RunReader  # noqa: E402
from protocols import REGISTRY  # noqa: E402

PLUGIN = Path(__file__).parent / "plugin_pkg"
FILES = PLUGIN / "sotpkg"


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory) -> tuple[Path, Path]:
    """(the plugin's install folder, a finished sot-sweep run file written by a subprocess)."""
    root = tmp_path_factory.mktemp("gui-plugin")
    source, site = root / "src", root / "site"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-warn-script-location", "--target", str(site), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "labctl", "run", str(FILES / "sot-sweep.toml"), "--station",
                          str(FILES / "sim-sot.toml"), "--no-progress", "--out", "sot.h5"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return site, root / "sot.h5"


@pytest.fixture
def installed(plugin_run):
    """The plugin importable in this process (registries refreshed), removed again afterwards."""
    site, path = plugin_run
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    families.REGISTRY.refresh()
    REGISTRY.refresh()
    try:
        yield path
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m == "sotpkg" or m.startswith("sotpkg.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        families.REGISTRY.refresh()
        REGISTRY.refresh()


def test_a_plugin_run_file_is_shown_from_its_hints(qtbot, installed):
    from labctl.gui.app import MainWindow

    assert "sot_mtj" in families.names() and "sot-sweep" in REGISTRY  # found through its entry points
    reader = RunReader(installed)
    i50 = reader.dataset("sot/i50")
    win = MainWindow()
    qtbot.addWidget(win)
    assert win.open_run_file(installed)
    views = win.views
    qtbot.waitUntil(lambda: views.weights.layers and views.calibration.data is not None, timeout=10_000)
    views.redraw(all_views=True)

    # weights: the plugin's fitted i50 (A) and switched fraction, laid out as its hint says (4 rows of 8)
    (layer,) = views.weights.layers
    assert layer["shape"] == (4, 8) and layer["control_label"] == "fitted i50" and layer["control_units"] == "A"
    assert np.allclose(layer["control"], i50) and 0.9e-3 < float(np.median(layer["control"])) < 1.1e-3
    assert layer["effective_label"] == "switching probability" and layer["range"] == (0, 1)
    control_plot, effective_plot, control_hist, _ = views.weights.plots[0]
    assert control_plot.isVisibleTo(views.weights) and effective_plot.isVisibleTo(views.weights)
    counts = control_hist.getData()[1]
    assert counts.sum() == 32
    assert "fitted i50" in control_plot.getPlotItem().titleLabel.text

    # the state map shows the switched fraction in the same layout
    assert views.state.state.shape == (4, 8)
    assert np.allclose(views.state.state.reshape(-1), layer["effective"])

    # calibration: S-curves with the plugin family's sigmoid law drawn through them, i50 in amperes
    cal = views.calibration.data
    assert cal["law"] == "sigmoid" and cal["units"] == "A" and cal["done"].all()
    plot = views.calibration.curves.getPlotItem()
    lines = [item for item in views.calibration.items if hasattr(item, "yData") and item.yData is not None
             and len(item.yData) == 200]
    assert len(lines) == views.calibration.SHOWN  # one fitted curve per synapse shown
    assert all(np.all(np.diff(line.yData) >= 0) for line in lines)
    legend = [label.text for _, label in plot.legend.items]
    assert any(text.startswith("fitted sigmoid law (x0, dx, a)") for text in legend), legend
    title = views.calibration.params.getPlotItem().titleLabel.text
    assert title.startswith("Fitted x0 of 32 synapses (median ") and title.endswith("A)"), title

    # the station panel describes the plugin's chip with its descriptor's label and unit
    summary = win.station_panel.summary.text()
    assert "SOT-MTJs (TMR)" in summary and "mA" in summary, summary
