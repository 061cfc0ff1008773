"""GUI input checking (pytest-qt, offscreen): settings errors beside their field, bad run files in a dialog."""

from __future__ import annotations

import h5py
import pytest

pytest.importorskip("labctl.gui.app")  # PyQt5 + pyqtgraph
pytest.importorskip("pytestqt")


@pytest.fixture
def window(qtbot):
    from labctl.gui.app import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def test_every_setting_has_a_field(window):
    from protocols import REGISTRY

    panel = window.protocol_panel
    for name in ("train-meanvar", "calibrate-dw", "train-kstate-insitu"):
        assert panel.load(name)
        kind = panel.pfile.protocol.kind
        assert set(panel.editors) == set(REGISTRY[kind].settings_model.model_fields)
        assert panel.validate(), panel.errors


@pytest.mark.parametrize("field, text, expected", [
    ("lr", "-1", "expected a number greater than 0"),
    ("lr", "fast", "expected a valid number"),
    ("max_epochs", "0", "expected a number at least 1 (got 0)"),
    ("max_epochs", "2.5", "expected a valid integer"),
    ("test_fraction", "1.5", "expected a number less than 1.0 (got 1.5)"),
    ("measurements", "", "expected a valid integer"),
    ("train_limit", "5", "expected a number at least 10 (got 5)"),
])
def test_bad_value_shown_beside_field(window, field, text, expected):
    panel = window.protocol_panel
    assert panel.load("train-meanvar")
    editor = panel.editors[field]
    before = editor.widget.text()
    editor.set_text(text)
    assert expected in editor.error.text()
    assert "c00000" in editor.error.styleSheet()
    assert not panel.buttons["start"].isEnabled()
    assert window.start_run() is False and window.worker is None
    editor.set_text(before)  # fixed: the message goes, Start comes back
    assert panel.errors == {}
    assert panel.buttons["start"].isEnabled()


def test_literal_and_table_level_errors(window):
    panel = window.protocol_panel
    assert panel.load("calibrate-dw")
    assert panel.editors["law"].choices == ["auto", "logistic", "gaussian", "thermal", "landing"]
    panel.editors["amplitude_start"].set_text("")
    assert "give either amplitudes or both amplitude_start and amplitude_stop" in panel.form_error.text()
    assert not panel.buttons["start"].isEnabled()
    panel.editors["amplitude_start"].set_text("1.5e-3")
    assert panel.form_error.text() == "" and panel.buttons["start"].isEnabled()
    panel.seed.setText("-3")
    assert "expected an integer at least 0" in panel.seed_error.text()
    assert not panel.buttons["start"].isEnabled()


def test_protocol_refused_by_station_is_a_message(window, tmp_path):
    panel = window.protocol_panel
    assert panel.load("train-meanvar")
    panel.editors["width"].set_text("1")  # valid for the settings model, outside the station envelope
    panel.out.setText(str(tmp_path / "x.h5"))
    assert "outside the station envelope" in panel.editors["width"].error.text()  # marked beside the field
    assert not panel.buttons["start"].isEnabled()
    assert window.start_run() is False
    assert window.worker is None
    assert not (tmp_path / "x.h5").exists()


def test_not_a_run_file_gives_a_dialog(window, tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5 at all")
    assert window.open_run_file(text) is False
    assert window.dialog is not None and window.dialog.isVisible()
    assert "not an HDF5 file" in window.dialog.text()
    window.dialog.close()
    plain = tmp_path / "other.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = [1, 2, 3]
    assert window.open_run_file(plain) is False
    assert "not a labctl run file" in window.dialog.text()
    assert window.open_run_file(tmp_path / "missing.h5") is False
    assert "no such run file" in window.dialog.text()
    assert window.mode == "idle"


def test_cli_has_gui_command():
    from labctl.cli import build_parser

    args = build_parser().parse_args(["gui", "run.h5", "--station", "sim-dw"])
    assert args.func.__name__ == "cmd_gui" and args.file == "run.h5" and args.station == "sim-dw"
