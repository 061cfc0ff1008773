"""The example scripts, run as a user runs them (``python examples/x.py``) with short settings.

overnight_seeds.py is SIGKILLed in the middle of a seed, then run again: every seed finishes, the
finished ones are skipped and the killed one is resumed from its checkpoint (a ``reopen`` event,
each epoch recorded once), not restarted. analyse_runs.py then plots and tabulates the folder.
"""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labctl import api

ROOT = Path(__file__).resolve().parents[1]
OVERNIGHT = [sys.executable, "-u", str(ROOT / "examples" / "overnight_seeds.py")]
EPOCHS = 5
KILL_AT = "seed 1: epoch 1 "  # printed after that epoch's safe point, checkpointed with --checkpoint-every 0


def example(name: str):
    """The example script ``examples/<name>.py`` as a module (its ``main(argv)`` runs it in this process)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def overnight_args(out: Path) -> list[str]:
    return ["--seeds", "3", "--epochs", str(EPOCHS), "--out", str(out), "--checkpoint-every", "0"]


def run_until(args: list[str], marker: str, timeout_s: float = 120) -> list[str]:
    """Start ``args``, SIGKILL it as soon as a stdout line starts with ``marker``; its lines so far."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(marker):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=timeout_s)
        proc.stdout.close()
        proc.stderr.close()
    assert lines and lines[-1].startswith(marker), f"the run ended before {marker!r}: {lines}"
    assert proc.returncode == -signal.SIGKILL
    return lines


def test_overnight_killed_then_rerun_resumes_the_killed_seed(tmp_path, capsys):
    out = tmp_path / "overnight"
    run_until([*OVERNIGHT, *overnight_args(out)], KILL_AT)
    assert api.read_run(out / "seed-0.h5").status == "success"
    killed = api.read_run(out / "seed-1.h5")
    assert killed.status == "incomplete"
    assert len(killed.checkpoints) >= 3  # step 0 and at least one per safe point since
    assert not (out / "seed-2.h5").exists()
    calibration_events = len(api.read_run(out / "calibration.h5").events)

    assert example("overnight_seeds").main(overnight_args(out)) == 0  # run again, in this process
    done = capsys.readouterr().out
    assert "calibration: finished already" in done
    assert "seed 0: finished already" in done
    assert re.search(r"seed 1: resuming .*seed-1\.h5 \(incomplete: killed\) from the checkpoint at step [1-9]", done), done
    assert "seed 2: starting" in done

    assert len(api.read_run(out / "calibration.h5").events) == calibration_events  # not run again
    for seed in range(3):
        data = api.read_run(out / f"seed-{seed}.h5")
        assert data.status == "success", (seed, data.reason)
        assert data.seed == seed
        assert list(data.metrics["epoch"]) == list(range(EPOCHS))  # each epoch once: resumed, not appended twice
        assert 0 < data.summary["test_accuracy"] <= 1
        kinds = list(data.events["kind"])
        assert kinds.count("start") == 1
        assert kinds.count("reopen") == (1 if seed == 1 else 0)
    reopen = api.read_run(out / "seed-1.h5").events.query("kind == 'reopen'").iloc[0]
    assert int(re.search(r"step (\d+)", reopen["reason"]).group(1)) > 0  # from a checkpoint after step 0

    assert example("analyse_runs").main([str(out), "--png", str(tmp_path / "acc.png")]) == 0
    analysed = capsys.readouterr().out
    rows = [line.split() for line in analysed.splitlines() if line.startswith("seed-")]
    assert [r[0] for r in rows] == ["seed-0.h5", "seed-1.h5", "seed-2.h5"]  # calibration.h5 has no epochs
    for r, seed in zip(rows, range(3)):
        data = api.read_run(out / f"seed-{seed}.h5")
        assert r[1:5] == ["train-meanvar", str(seed), "success", str(EPOCHS)]
        assert float(r[5]) == pytest.approx(data.metrics["val_accuracy"].max(), abs=5e-4)
        assert float(r[6]) == pytest.approx(data.summary["test_accuracy"], abs=5e-4)
    png = (tmp_path / "acc.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_analyse_runs_skips_damaged_files_and_says_so(tmp_path, capsys):
    (tmp_path / "garbage.h5").write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    assert example("analyse_runs").main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "skipped: " in err and "garbage.h5: not an HDF5 file" in err
    assert "no run file with per-epoch accuracies" in err
    assert example("analyse_runs").main([str(tmp_path / "garbage.h5")]) == 2
    assert "not a folder" in capsys.readouterr().err
