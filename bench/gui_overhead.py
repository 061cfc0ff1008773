"""GUI overhead: the same training run headless and with the GUI attached, alternating, in one process.

    QT_QPA_PLATFORM=offscreen python bench/gui_overhead.py [--repeats 3] [--protocol train-meanvar]

Headless: ``labctl run``'s path (``prepare`` + ``create_run_file`` + ``execute``, no progress bar).
GUI: the main window (offscreen), the protocol started from it: the engine in the worker thread,
the run file followed by the watcher (SWMR reader refreshed every 0.4 s), engine progress and chip
snapshots drained and the shown view (the Training tab, plus the state map and counters fed in the
background) redrawn at 5 Hz. Time: the engine run of each (the same span: ``RunEngine.run`` plus
closing the chip). Prints each pair, and the ratio of the medians and of the minima (target <= 1.1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from labctl.runs import create_run_file, execute, prepare  # noqa: E402
from labctl.gui.app import MainWindow, application, run_until  # noqa: E402


def headless(protocol_ref: str, out: Path) -> float:
    protocol, chip, station, pfile = prepare(protocol_ref)
    writer = create_run_file(protocol, chip, station, pfile, out)
    outcome, duration, _ = execute(protocol, chip, writer)
    assert outcome.status == "success", outcome.reason
    return duration


def with_gui(app, protocol_ref: str, out: Path) -> tuple[float, int]:
    win = MainWindow()
    win.resize(1600, 1000)
    win.show()
    win.protocol_panel.load(protocol_ref)
    win.protocol_panel.out.setText(str(out))
    win.views.setCurrentIndex(2)  # Training
    app.processEvents()
    win.last_result = None
    assert win.start_run(), win.protocol_panel.form_error.text()
    assert run_until(lambda: win.last_result is not None, 600)
    redraws = win.watcher.updates if win.watcher is not None else 0
    result = win.last_result
    assert result["status"] == "success", result["reason"]
    win.close()
    win.deleteLater()
    app.processEvents()
    return result["duration_s"], redraws


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="train-meanvar")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    app = application()
    tmp = Path(tempfile.mkdtemp())
    headless(args.protocol, tmp / "warmup.h5")  # first-use costs (imports, data set) out of the timings
    h, g = [], []
    for k in range(args.repeats):
        h.append(headless(args.protocol, tmp / f"headless-{k}.h5"))
        t, updates = with_gui(app, args.protocol, tmp / f"gui-{k}.h5")
        g.append(t)
        print(f"pair {k + 1}: headless {h[-1]:.2f} s, GUI {g[-1]:.2f} s ({updates} file updates), "
              f"ratio {g[-1] / h[-1]:.3f}", flush=True)
    print(f"median: headless {statistics.median(h):.2f} s, GUI {statistics.median(g):.2f} s, "
          f"ratio {statistics.median(g) / statistics.median(h):.3f}")
    print(f"min:    headless {min(h):.2f} s, GUI {min(g):.2f} s, ratio {min(g) / min(h):.3f}")
    print(f"mean ratio of pairs: {statistics.mean(x / y for x, y in zip(g, h)):.3f} (target <= 1.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
