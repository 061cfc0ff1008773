"""labctl evaluate: a finished train-meanvar run tested at other N without retraining, recorded in its file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from labctl import runs
from labctl.cli import main
from labctl.config import ProtocolFile, StationConfig
from labctl.evaluate import DATASET, parse_measurements
from labctl.readers import read_curves, read_tables
from labctl.runs import BadInput
from labctl.store import RunFileLock, RunReader

# train-meanvar-small (16 -> 4 on 64 wires of sim-dw), shortened further
SMALL = {"max_epochs": 2, "patience": 2, "train_limit": 200}


def make_run(name: str, out: Path, overrides: dict, *, finish: bool = True) -> Path:
    protocol, chip, station, pfile = runs.prepare(name, overrides=overrides)
    writer = runs.create_run_file(protocol, chip, station, pfile, out, station_source=pfile.protocol.station)
    if not finish:  # stopped before it trained anything
        runs.close_chip(chip)
        writer.close(status="aborted", reason="stopped by the test")
        return out
    outcome, _, _ = runs.execute(protocol, chip, writer, checkpoint_every_s=None)
    assert outcome.status == "success", outcome.reason
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    return make_run("train-meanvar-small", tmp_path_factory.mktemp("runs") / "small.h5", SMALL)


@pytest.fixture
def run_file(finished, tmp_path) -> Path:
    """A copy of the finished run for one test to change."""
    path = tmp_path / "run.h5"
    shutil.copy(finished, path)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def expected_table(path: Path, ns: list[int], passes: int) -> list[list[float]]:
    """What the protocol's own sweep_measurements gives on the run's model, rebuilt by hand."""
    with RunReader(path) as reader:
        attrs = reader.attrs
        arrays = {name: reader.dataset(name) for name in reader.names() if name.startswith("model/")}
    pfile = ProtocolFile.model_validate(attrs["protocol"])
    station = StationConfig.model_validate(attrs["station"])
    protocol, chip = runs.build(pfile, str(path), station, attrs["seed"])
    try:
        protocol.load_trained(arrays)
        return protocol.sweep_measurements(ns, passes)
    finally:
        chip.close()


def test_table_equals_sweep_measurements_and_is_recorded(run_file, tmp_path, capsys):
    csv_file = tmp_path / "n.csv"
    assert main(["evaluate", str(run_file), "--measurements", "1,4", "--passes", "3", "--csv", str(csv_file)]) == 0
    out = capsys.readouterr().out
    assert "continuous" in out and "+-" in out and f"/{DATASET}" in out

    with RunReader(run_file) as reader:
        table = reader.dataset(DATASET)
        attrs = reader.dataset_attrs(DATASET)
        continuous = json.loads(reader.dataset("summary").tobytes())["continuous_test_accuracy"]
        assert reader.exit_status() == "success"
        assert "recovered_from" not in reader.attrs
    expected = expected_table(run_file, [1, 4], 3)
    assert [list(row) for row in table.tolist()] == expected
    assert list(table["measurements"]) == [1, 4, 0]
    assert table["accuracy"][-1] == continuous  # the continuous row is the run's continuous test accuracy
    assert table["trials_per_inference"][1] == pytest.approx(4 * table["trials_per_inference"][0])
    assert attrs["passes"] == 3 and attrs["when"] and list(attrs["measurements"]) == [1, 4]

    lines = csv_file.read_text().splitlines()
    assert lines[0] == ",".join(table.dtype.names) and len(lines) == 4 and lines[-1].startswith("0,")
    assert float(lines[1].split(",")[1]) == table["accuracy"][0]


def test_file_stays_readable_and_a_rerun_replaces_the_table(run_file, capsys):
    with RunReader(run_file) as reader:
        before = {name: reader.dataset(name) for name in reader.names()}
        attrs_before = reader.attrs
    assert main(["evaluate", str(run_file), "--measurements", "2", "--passes", "1"]) == 0
    assert main(["evaluate", str(run_file), "--measurements", "1,2,8", "--passes", "2"]) == 0
    capsys.readouterr()

    assert main(["info", str(run_file), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["exit_status"] == "success" and info["kind"] == "train-meanvar"
    assert info["datasets"].count(DATASET) == 1
    with RunReader(run_file) as reader:
        assert list(reader.dataset(DATASET)["measurements"]) == [1, 2, 8, 0]
        assert reader.dataset_attrs(DATASET)["passes"] == 2
        # everything the run wrote is still there, unchanged
        for name, data in before.items():
            assert np.array_equal(reader.dataset(name), data), name
        assert reader.attrs == attrs_before
        # what the GUI reads: the training curves stay the run's, the new table is one more table
        assert read_curves(reader)["table"] == "train/metrics"
        assert DATASET in read_tables(reader)
    assert sorted(p.name for p in run_file.parent.iterdir()) == ["run.h5"]  # no lock, no temporary left


def test_an_interrupted_evaluation_leaves_the_file_as_it_was(run_file, monkeypatch, capsys):
    """Killed after the table was written into the copy, before the copy replaced the file."""
    import labctl.store

    def interrupt(path):
        raise KeyboardInterrupt

    before = run_file.read_bytes()
    monkeypatch.setattr(labctl.store, "_fsync", interrupt)  # the flush before the rename
    assert main(["evaluate", str(run_file), "--measurements", "1", "--passes", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "interrupted" in err[-1] and "left as it was" in err[-1] and "Traceback" not in "".join(err)
    assert run_file.read_bytes() == before
    assert sorted(p.name for p in run_file.parent.iterdir()) == ["run.h5"]  # no temporary copy, no lock


def test_other_kinds_and_unfinished_runs_are_refused(tmp_path, capsys):
    cal = make_run("calibrate-dw", tmp_path / "cal.h5", {"points": 5, "repeats": 20, "synapses": 8, "block": 3})
    assert main(["evaluate", str(cal)]) == 2
    err = one_line_error(capsys)
    assert "cal.h5" in err and "not a train-meanvar run" in err and "calibrate-dw" in err

    aborted = make_run("train-meanvar-small", tmp_path / "aborted.h5", SMALL, finish=False)
    assert main(["evaluate", str(aborted)]) == 2
    err = one_line_error(capsys)
    assert "aborted.h5" in err and "has not finished" in err

    assert main(["evaluate", str(tmp_path / "missing.h5")]) == 2
    err = one_line_error(capsys)
    assert "missing.h5" in err and "no such run file" in err

    bogus = tmp_path / "notes.h5"
    bogus.write_text("hello")
    assert main(["evaluate", str(bogus)]) == 2
    err = one_line_error(capsys)
    assert "notes.h5" in err and "not an HDF5 file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aborted.h5", "cal.h5", "notes.h5"]


def test_damaged_file_gives_one_line(run_file, capsys):
    data = bytearray(run_file.read_bytes())
    run_file.write_bytes(bytes(data[: len(data) // 3]))  # truncated
    assert main(["evaluate", str(run_file)]) == 2
    err = one_line_error(capsys)
    assert "run.h5" in err


def test_a_run_being_written_is_refused_naming_the_process(run_file, capsys):
    size = run_file.stat().st_size
    with RunFileLock(run_file):
        assert main(["evaluate", str(run_file), "--measurements", "1"]) == 2
    err = one_line_error(capsys)
    assert "run.h5" in err and f"pid {os.getpid()}" in err
    assert run_file.stat().st_size == size


def test_bad_arguments(run_file, capsys):
    for bad in ("0", "1,x", "", "2,-4", "1.5"):
        assert main(["evaluate", str(run_file), "--measurements", bad]) == 2
        err = one_line_error(capsys)
        assert "run.h5" in err and "--measurements" in err and "1 <= N" in err
    assert main(["evaluate", str(run_file), "--passes", "0"]) == 2
    assert "--passes" in one_line_error(capsys)
    assert main(["evaluate", str(run_file), "--csv", str(run_file.parent / "no" / "t.csv")]) == 2
    assert "--csv" in one_line_error(capsys)
    with RunReader(run_file) as reader:
        assert DATASET not in reader.names()  # nothing was run, nothing recorded
    assert parse_measurements("8, 1,8") == [8, 1]
    with pytest.raises(BadInput):
        parse_measurements("1,,2")


def test_gui_reviews_an_evaluated_file(run_file, request, capsys):
    pytest.importorskip("labctl.gui.app")  # PyQt5 + pyqtgraph
    pytest.importorskip("pytestqt")
    from labctl.gui.app import MainWindow

    qtbot = request.getfixturevalue("qtbot")
    assert main(["evaluate", str(run_file), "--measurements", "2", "--passes", "1"]) == 0
    window = MainWindow()
    qtbot.addWidget(window)
    try:
        assert window.open_run_file(run_file)
        assert window.mode == "review"
        qtbot.waitUntil(lambda: window.watcher.status == "success", timeout=5_000)
    finally:
        window.close()
