"""Regenerate the GUI screenshots in docs/: a real run on the simulated bench, then each main view grabbed.

    QT_QPA_PLATFORM=offscreen python bench/gui_screenshots.py [--protocol train-meanvar]

Runs the protocol (default: the embedded train-meanvar on sim-dw-640, ~10 s) from the GUI, waits
for the end, and saves docs/gui-<view>.png for the window, the station and protocol panels and
every live-view tab; then docs/gui-bench.png: the Bench tab on the simulated Kerr bench (kerr-bench) after a
single-device S-curve with its fitted law (``--bench-only``: that one alone); docs/gui-sweep.png:
the Sweep view of a small sweep run here (reduced train-meanvar, N = 1 .. 16 x 3 seeds, about a
minute; ``--sweep-only``: that one alone).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labctl.gui.app import MainWindow, application, run_until  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="train-meanvar")
    ap.add_argument("--out-dir", default=str(ROOT / "docs"))
    ap.add_argument("--bench-only", action="store_true", help="only the Bench tab screenshot")
    ap.add_argument("--sweep-only", action="store_true", help="only the Sweep view screenshot")
    args = ap.parse_args()
    app = application()
    win = MainWindow()
    win.resize(1600, 1000)
    win.show()
    if args.sweep_only:
        path = sweep_screenshot(win, app, Path(args.out_dir))
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        win.close()
        return 0
    if args.bench_only:
        path = bench_screenshot(win, app, Path(args.out_dir))
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        win.close()
        return 0
    panel = win.protocol_panel
    panel.load(args.protocol)
    run_file = Path(tempfile.mkdtemp()) / "gui-screenshot-run.h5"
    panel.out.setText(str(run_file))
    t0 = time.monotonic()
    if not win.start_run():
        print(panel.form_error.text() or panel.status.text(), file=sys.stderr)
        return 1
    if not run_until(lambda: win.worker is None and getattr(win, "last_result", None) is not None, 600):
        raise TimeoutError("the run did not finish in time")
    print(f"run {win.last_result['status']} in {time.monotonic() - t0:.1f} s -> {run_file}")
    for _ in range(5):
        app.processEvents()
        time.sleep(0.05)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    win.views.redraw(all_views=True)
    paths = []
    for index, view in enumerate(win.views.views):
        win.views.setCurrentIndex(index)
        app.processEvents()
        time.sleep(0.05)
        app.processEvents()
        name = "gui-" + view.title.lower().replace(" && ", "-").replace(" ", "-") + ".png"
        win.views.grab().save(str(out / name))
        paths.append(out / name)
    win.views.setCurrentIndex(2)
    app.processEvents()
    win.grab().save(str(out / "gui-window.png"))
    left = win.station_panel.parentWidget()
    left.grab().save(str(out / "gui-station-protocol.png"))
    paths += [out / "gui-window.png", out / "gui-station-protocol.png"]
    paths.append(bench_screenshot(win, app, out))
    paths.append(sweep_screenshot(win, app, out))
    for p in paths:
        print(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
    win.close()
    return 0


def bench_screenshot(win: MainWindow, app, out: Path) -> Path:
    """The Bench tab on kerr-bench: a reset, a read, then an S-curve of device 6 with its fitted law."""
    win.station_panel.select("kerr-bench")
    os.chdir(tempfile.mkdtemp())  # the bench file goes to runs/ there, not into the source tree
    win.tabs.setCurrentWidget(win.bench_tab)
    tab = win.bench_tab
    if tab.session is None:
        raise RuntimeError(tab.header.text())
    tab.device.setValue(6)
    for action in ("reset", "read", "scurve"):
        if not run_until(lambda: not tab.busy and not win.status_view.querying, 60):
            raise TimeoutError("the bench is still busy")
        tab._start(action)
    if not run_until(lambda: not tab.busy, 120):
        raise TimeoutError(f"the S-curve did not finish: {tab.status.text()}")
    win.status_view.refresh()
    run_until(lambda: not win.status_view.querying, 30)
    tab.fields["fs_stop"].setText("0.03")  # shows a refused value beside its field
    for _ in range(5):
        app.processEvents()
        time.sleep(0.05)
    path = out / "gui-bench.png"
    win.grab().save(str(path))
    win.tabs.setCurrentIndex(0)  # leave the bench: safe state, bench file closed
    return path


# A reduced train-meanvar (16 -> 4 inputs and classes, 64 wires, a few seconds a point): accuracy and
# energy per inference against the number of measurements N, over three training seeds.
SWEEP = """
[sweep]
name = "screenshot-meanvar"
description = "Reduced train-meanvar: accuracy and energy per inference against N (3 seeds)"
protocol = "train-meanvar-small"
checkpoint_every_s = 30

[fixed]
settings.test_passes = 4

[axes]
settings.measurements = [1, 2, 4, 8, 16]
seed = [0, 1, 2]
"""


def sweep_screenshot(win: MainWindow, app, out: Path) -> Path:
    """The Sweep tab on a small sweep run here (one point at a time, in this process)."""
    from labctl.sweep import load_sweep
    from labctl.sweep_dask import run_sweep

    folder = Path(tempfile.mkdtemp())
    (folder / "screenshot-meanvar.toml").write_text(SWEEP)
    t0 = time.monotonic()
    outcome = run_sweep(load_sweep(folder / "screenshot-meanvar.toml"), folder / "screenshot-meanvar", local=True,
                        echo=lambda _: None)
    print(f"sweep: {len(outcome.ran)} points in {time.monotonic() - t0:.1f} s -> {folder / 'screenshot-meanvar'}")
    if not win.open_sweep_folder(folder / "screenshot-meanvar"):
        raise RuntimeError(win.dialog.text() if win.dialog else "cannot open the sweep folder")
    win.sweep_view.grid.selectRow(4)
    for _ in range(5):
        app.processEvents()
        time.sleep(0.05)
    path = out / "gui-sweep.png"
    win.grab().save(str(path))
    return path


if __name__ == "__main__":
    sys.exit(main())
