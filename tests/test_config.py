"""Bad configuration: a one-line error naming the file, the key and what was expected; exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.cli import main
from labctl.config import ConfigError, load_station

GOOD = (Path(__file__).parents[1] / "labctl/defaults/stations/sim-dw.toml").read_text()


def write(tmp_path: Path, text: str, name: str = "station.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "edit, key, expected",
    [
        (("n = 64", "n = 64\ncolour = 3"), "chip.colour", "unknown key"),
        (("n = 64", 'n = "many"'), "chip.n", "valid integer"),
        (("n = 64", "n = 0"), "chip.n", "at least 1"),
        (("width_max = 1e-3", "width_max = -1e-3"), "envelope.width_max", "greater than 0"),
        (('family = "dw_nanowire"', 'family = "memristor"'), "chip.family", "'dw_nanowire', 'stt_mtj', 'dw_mtj' (got 'memristor')"),
        (("a = 0.97813", "a = 1.5"), "chip.physics.a", "at most 1"),
    ],
    ids=["unknown-key", "wrong-type", "out-of-range", "negative-width", "bad-family", "physics-range"],
)
def test_bad_station_names_file_key_and_expectation(tmp_path, capsys, edit, key, expected):
    old, new = edit
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_station(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)) and f"'{key}" in message and expected in message
    # the same through the command line: exit code 2 and the message on stderr
    code = main(["run", "calibrate-dw", "--station", str(path), "--out", str(tmp_path / "r.h5"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err and expected in err
    assert not (tmp_path / "r.h5").exists()


def test_missing_file(tmp_path, capsys):
    code = main(["run", "calibrate-dw", "--station", str(tmp_path / "nope.toml"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "nope.toml: no such file" in err and "sim-dw" in err


def test_toml_syntax_error(tmp_path, capsys):
    path = write(tmp_path, "[station\nname=1")
    assert main(["run", "calibrate-dw", "--station", str(path), "--no-progress"]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_bad_protocol_settings(tmp_path, capsys):
    text = (Path(__file__).parents[1] / "labctl/defaults/protocols/calibrate-dw.toml").read_text()
    path = write(tmp_path, text.replace("repeats = 200", "repeats = -5"), "p.toml")
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'settings.repeats'" in err and "at least 1" in err
    path = write(tmp_path, text.replace('kind = "calibrate"', 'kind = "dance"'), "q.toml")
    assert main(["run", str(path), "--no-progress"]) == 2
    assert "'protocol.kind'" in capsys.readouterr().err


def test_envelope_must_contain_read_bias(tmp_path):
    text = (Path(__file__).parents[1] / "labctl/defaults/stations/sim-stt.toml").read_text()
    path = write(tmp_path, text.replace("read_bias_max = 0.2", "read_bias_max = 0.01"))
    with pytest.raises(ConfigError, match="read_bias .* exceeds envelope.read_bias_max"):
        load_station(path)
