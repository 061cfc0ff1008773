"""Sweep files, the plan of points, the index, re-runs, info and plot (no Dask cluster here:
points run one at a time in this process; tests/test_sweep_dask.py runs them on Dask)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labctl.cli import main
from labctl.store import RunFileLock, RunReader
from labctl.sweep import aggregate, load_sweep, pareto_front, read_index, sweep_table
from labctl.sweep_dask import run_sweep

# Calibration of the 64 STT-MTJs (about 0.1 s a point): two sweep sizes x two simulated chips.
SMALL = """
[sweep]
name = "small"
protocol = "calibrate-stt"
checkpoint_every_s = 0

[fixed]
settings.repeats = 40

[axes]
settings.points = [5, 9]
chip_seed = [1, 2]
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def quiet(_: str) -> None:
    """Sweep messages are not checked here."""


# ---------------------------------------------------------------------------- the plan
def test_grid_ranges_points_and_names(tmp_path):
    path = write(tmp_path, """
[sweep]
name = "plan"
protocol = "calibrate-stt"
[fixed]
settings.repeats = 10
[axes]
station.chip.physics.delta_spread = {start = 0.0, stop = 0.1, num = 3}
settings.points = {start = 4, stop = 64, num = 5, log = true}
seed = {values = [3]}
""")
    plan = load_sweep(path)
    assert plan.axes["station.chip.physics.delta_spread"] == [0.0, 0.05, 0.1]
    assert plan.axes["settings.points"] == [4, 8, 16, 32, 64]
    assert len(plan.points) == 3 * 5 * 1
    names = [p.name for p in plan.points]
    assert len(set(names)) == len(names)
    assert names[7] == "007_delta_spread-0.05_points-16_seed-3"
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") for n in names)
    point = plan.points[7]
    assert point.settings == {"repeats": 10, "points": 16} and point.seed == 3
    assert point.station_config["chip"]["physics"]["delta_spread"] == 0.05
    task = plan.task(point, tmp_path)
    assert task.pfile["settings"]["points"] == 16 and task.path.endswith(names[7] + ".h5")


def test_explicit_points_combine_with_the_grid(tmp_path):
    path = write(tmp_path, """
[sweep]
name = "points"
protocol = "calibrate-stt"
[axes]
chip_seed = [1, 2]
[[points]]
settings.points = 5
settings.repeats = 10
[[points]]
settings.points = 9
settings.repeats = 20
""")
    plan = load_sweep(path)
    assert [(p.settings["points"], p.settings["repeats"], p.station["chip.seed"]) for p in plan.points] == \
        [(5, 10, 1), (5, 10, 2), (9, 20, 1), (9, 20, 2)]
    assert plan.axes == {"settings.points": [5, 9], "settings.repeats": [10, 20], "chip_seed": [1, 2]}


BAD = {
    "unknown axis": ("[axes]\nvoltage = [1, 2]\n", "key 'axes.voltage': unknown axis"),
    "empty list": ("[axes]\nsettings.points = []\n", "key 'axes.settings.points': empty"),
    "empty range": ("[axes]\nsettings.points = {start = 5, stop = 9, num = 0}\n", "empty range"),
    "unknown setting": ("[axes]\nsettings.pionts = [5, 9]\n", "key 'settings.pionts': unknown key (did you mean 'points'?)"),
    "rejected value": ("[axes]\nsettings.points = [5, 2]\n", "(point 1): key 'settings.points': expected a number at least 3"),
    "outside the envelope": ("[axes]\nsettings.amplitude_stop = [0.9, 5.0]\n",
                             "(point 1): key 'settings.amplitude_stop': 5 V is outside the station envelope"),
    "rejected physics": ("[axes]\nstation.chip.physics.delta_spread = [0.0, -0.5]\n",
                         "(point 1): key 'station.chip.physics.delta_spread'"),
    "unknown station key": ("[axes]\nstation.chip.physics.nope = [1.0]\n", "key 'station.chip.physics.nope': unknown key"),
    "bad seed": ("[axes]\nseed = [1, -1]\n", "key 'seed': expected a whole number 0 <= seed"),
    "no axes": ("[fixed]\nsettings.points = 5\n", "no axes and no points"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_sweep_files_exit_2_naming_file_and_key_before_any_point_runs(case, tmp_path, capsys):
    body, expected = BAD[case]
    path = write(tmp_path, '[sweep]\nname = "bad"\nprotocol = "calibrate-stt"\n' + body)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"labctl: error: {path}") and expected in err, err
    assert not out.exists()  # nothing ran, no folder was made


def test_a_bad_setting_of_the_protocol_file_names_that_file(tmp_path, capsys):
    protocol = write(tmp_path, '[protocol]\nname = "p"\nkind = "calibrate"\nstation = "sim-stt"\n'
                               '[settings]\npoints = 1\n', "p.toml")
    path = write(tmp_path, '[sweep]\nname = "bad"\nprotocol = "p.toml"\n[axes]\nchip_seed = [1]\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{protocol}: key 'settings.points'" in err


# ---------------------------------------------------------------------------- running, re-running
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    path = write(folder, SMALL)
    outcome = run_sweep(load_sweep(path), folder / "out", local=True, echo=quiet)
    assert outcome.complete and len(outcome.ran) == 4
    return path, folder / "out"


def test_every_point_is_an_ordinary_run_file_and_the_index_has_its_metrics(finished):
    _, out = finished
    index = read_index(out)
    assert index["axes"] == {"settings.points": [5, 9], "chip_seed": [1, 2]}
    for entry in index["points"]:
        with RunReader(out / entry["file"]) as reader:
            assert reader.exit_status() == "success"
            assert json.loads(json.dumps(reader.attrs["station"]))["chip"]["seed"] == entry["values"]["chip_seed"]
            assert reader.attrs["protocol"]["settings"]["points"] == entry["values"]["settings.points"]
        assert entry["status"] == "success" and entry["metrics"]["points"] == entry["values"]["settings.points"]
        assert entry["counters"]["trials"] > 0 and entry["wall_s"] > 0
    # two chips give two calibrations; the same chip swept twice gives close but not equal fits
    table = sweep_table(index)
    assert table["median_delta"].nunique() == 4


def test_rerunning_a_finished_sweep_does_no_work(finished, capsys, monkeypatch):
    import labctl.sweep as sweep_module

    path, out = finished
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    events = {name: RunReader(out / name).events() for name in before}

    def read_point(path):
        raise AssertionError(f"{path} opened: the index vouches for it (size and time unchanged)")

    monkeypatch.setattr(sweep_module, "read_point", read_point)
    assert main(["sweep", str(path), "--out", str(out), "--workers", "1"]) == 0
    said = capsys.readouterr().out
    assert "4 finished, 0 to run" in said and "0 ran now" in said and "LocalCluster" not in said
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")} == before
    assert {name: RunReader(out / name).events() for name in before} == events


def test_the_index_is_trusted_only_while_a_run_file_is_unchanged(tmp_path):
    """A re-run opens only the run files the index does not vouch for: a finished point whose file has
    the size and time recorded is taken from the index; a touched or replaced file is read again."""
    from labctl.sweep import refresh_from_files

    plan = load_sweep(write(tmp_path, SMALL))
    out = tmp_path / "out"
    outcome = run_sweep(plan, out, local=True, echo=quiet)
    assert outcome.complete
    index = read_index(out)
    assert all(p["file_size"] == (out / p["file"]).stat().st_size for p in index["points"])
    assert refresh_from_files(index, out) == 0
    first, second = (out / p["file"] for p in index["points"][:2])
    stamp = first.stat().st_mtime_ns
    os.utime(first, ns=(stamp + 10**9, stamp + 10**9))  # touched: read again, still finished
    second.write_bytes(b"not an HDF5 file")  # replaced: read again, damaged
    assert refresh_from_files(index, out) == 2
    assert index["points"][0]["status"] == "success" and index["points"][0]["file_mtime_ns"] == stamp + 10**9
    assert index["points"][1]["status"] == "failed" and "damaged run file" in index["points"][1]["error"]
    assert refresh_from_files(index, out) == 1  # the damaged one, until it is dealt with
    second.unlink()
    again = run_sweep(plan, out, local=True, echo=quiet)
    assert again.complete and again.ran == [plan.points[1].name]


def test_the_dashboard_address_is_the_schedulers_when_it_serves_one():
    from labctl.sweep_dask import _dashboard

    class Client:
        def __init__(self, services):
            self.services = services
            self.dashboard_link = "http://127.0.0.1:4321/status"

        def scheduler_info(self):
            return {"services": self.services}

    assert _dashboard(Client({"dashboard": 4321}), local=False) == "http://127.0.0.1:4321/status"
    assert _dashboard(Client({"dashboard": 4321}), local=True) == "http://127.0.0.1:4321/status"  # bokeh installed
    assert _dashboard(Client({}), local=False) is None  # dask scheduler --no-dashboard


def test_another_sweep_in_the_same_folder_is_refused(finished, tmp_path, capsys):
    _, out = finished
    other = write(tmp_path, SMALL.replace("chip_seed = [1, 2]", "chip_seed = [1, 3]"))
    assert main(["sweep", str(other), "--out", str(out)]) == 2
    assert "this folder holds another sweep (axes, points differ" in capsys.readouterr().err


def test_failed_and_busy_points_are_recorded_and_the_sweep_goes_on(tmp_path):
    path = write(tmp_path, SMALL)
    plan = load_sweep(path)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{plan.points[1].name}.h5").write_bytes(b"not an HDF5 file")  # a damaged run file
    with RunFileLock(out / f"{plan.points[2].name}.h5"):  # another writer holds this point's file
        outcome = run_sweep(plan, out, local=True, echo=quiet)
    status = [p["status"] for p in outcome.index["points"]]
    assert status == ["success", "failed", "busy", "success"]
    assert "damaged run file" in outcome.index["points"][1]["error"]
    assert "being written by another process" in outcome.index["points"][2]["error"]
    assert not (out / f"{plan.points[2].name}.h5").exists()  # refused before anything was written
    (out / f"{plan.points[1].name}.h5").unlink()
    again = run_sweep(plan, out, local=True, echo=quiet)  # once the file is free, only the two run
    assert again.complete and sorted(again.ran) == sorted([plan.points[1].name, plan.points[2].name])


def test_an_interrupted_point_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """A second Ctrl-C (here: the stop flag) aborts the running point at its next safe point; the
    next run resumes it and reaches the same metrics as an uninterrupted one."""
    import labctl.sweep as sweep_module
    from labctl.sweep import run_point

    monkeypatch.setattr(sweep_module, "STOP_CHECK_EVERY_S", 0.0)  # look at the flag at every safe point
    plan = load_sweep(write(tmp_path, SMALL.replace("settings.points = [5, 9]", "settings.points = [9]")))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    task = plan.task(plan.points[0], tmp_path / "a")
    first = run_point(task, should_stop=lambda: True)
    assert first["status"] == "failed" and "sweep interrupted" in first["reason"]
    resumed = run_point(task)
    assert resumed["status"] == "success" and resumed["resumed_from"] is not None
    reference = run_point(plan.task(plan.points[0], tmp_path / "b"))
    assert reference["resumed_from"] is None
    assert resumed["metrics"] == reference["metrics"] and resumed["counters"] == reference["counters"]


# ---------------------------------------------------------------------------- info and plot
def test_info_prints_the_table_and_writes_csv_and_parquet(finished, capsys):
    _, out = finished
    assert main(["sweep", "info", str(out)]) == 0
    said = capsys.readouterr().out
    assert "small (calibrate-stt on sim-stt): 4 points" in said and "median_delta" in said
    parquet, csv = pd.read_parquet(out / "sweep.parquet"), pd.read_csv(out / "sweep.csv")
    index = read_index(out)
    assert list(parquet["median_delta"]) == [p["metrics"]["median_delta"] for p in index["points"]]
    assert np.allclose(csv["median_delta"], parquet["median_delta"])


def test_plot_writes_the_figures_and_aggregates_over_seeds(finished, capsys):
    _, out = finished
    assert main(["sweep", "plot", str(out), "--metric", "median_delta", "--axis", "settings.points"]) == 0
    files = [Path(line) for line in capsys.readouterr().out.split()]
    assert {f.name for f in files} == {"median_delta-vs-settings.points.png", "pareto-median_delta-vs-wall_s.png"}
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000 for f in files)
    table = sweep_table(read_index(out))
    stats = aggregate(table, "median_delta", "settings.points").set_index("settings.points")
    for n in (5, 9):
        values = table.loc[table["settings.points"] == n, "median_delta"]
        assert stats.loc[n, "mean"] == pytest.approx(values.mean())
        assert stats.loc[n, "std"] == pytest.approx(values.std())
        assert stats.loc[n, "count"] == 2


def test_plot_refuses_unknown_metric_and_axis(finished, capsys):
    _, out = finished
    assert main(["sweep", "plot", str(out), "--metric", "accuracyy"]) == 2
    assert "key 'metric': unknown metric 'accuracyy'" in capsys.readouterr().err
    assert main(["sweep", "plot", str(out), "--axis", "seed"]) == 2
    assert "key 'axis': unknown axis 'seed'" in capsys.readouterr().err
    assert main(["sweep", "info", str(out.parent)]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def test_pareto_front_matches_its_definition():
    rng = random.Random(4)
    for _ in range(100):
        n = rng.randint(1, 12)
        cost = [rng.choice([1, 2, 3, 4, 5]) for _ in range(n)]  # coarse values: ties happen
        value = [rng.choice([0.1, 0.2, 0.3, 0.4]) for _ in range(n)]
        front = pareto_front(cost, value)

        def dominated(i):
            return any(cost[j] <= cost[i] and value[j] >= value[i] and (cost[j], value[j]) != (cost[i], value[i])
                       for j in range(n))

        assert not any(dominated(i) for i in front)
        for i in range(n):  # every undominated point is on the front (once, if repeated)
            assert dominated(i) or any((cost[j], value[j]) == (cost[i], value[i]) for j in front)
        assert [cost[i] for i in front] == sorted(cost[i] for i in front)
