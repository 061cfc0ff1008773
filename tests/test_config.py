"""Bad configuration: a one-line error naming the file, the key and what was expected; exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.config import ConfigError, load_protocol_file, load_station, safe_file_stem


def main(argv):
    from labctl.cli import main as cli_main  # imported here: the loader tests need no CLI

    return cli_main(argv)


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
        (("n = 64", "n = true"), "chip.n", "expected a valid integer (got True)"),
        (("n = 64", "n = 0"), "chip.n", "at least 1"),
        (("width_max = 1e-3", "width_max = -1e-3"), "envelope.width_max", "greater than 0"),
        (('family = "dw_nanowire"', 'family = "memristor"'), "chip.family", "'dw_nanowire', 'stt_mtj', 'dw_mtj' (got 'memristor')"),
        (("a = 0.97813", "a = 1.5"), "chip.physics.a", "at most 1"),
    ],
    ids=["unknown-key", "wrong-type", "bool-as-int", "out-of-range", "negative-width", "bad-family", "physics-range"],
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


PROTOCOL = (Path(__file__).parents[1] / "labctl/defaults/protocols/calibrate-dw.toml").read_text()


def refused(path: Path, loader=load_station) -> str:
    with pytest.raises(ConfigError) as info:
        loader(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 2000
    return message


def test_misspelled_key_is_named_with_a_suggestion(tmp_path):
    message = refused(write(tmp_path, GOOD.replace("amplitude_max", "amplitude_mx")))
    unknown = "key 'envelope.amplitude_mx': unknown key (did you mean 'amplitude_max'?)"
    missing = "key 'envelope.amplitude_max': missing"
    assert unknown in message and missing in message and message.index(unknown) < message.index(missing)
    message = refused(write(tmp_path, PROTOCOL.replace("[protocol]", "[protocl]"), "p.toml"), load_protocol_file)
    assert "key 'protocl': unknown key (did you mean 'protocol'?)" in message and "key 'protocol': missing" in message


def test_every_problem_is_listed(tmp_path):
    text = GOOD.replace("n = 64", "n = -1").replace("width_max = 1e-3", "width_max = -1e-3")
    message = refused(write(tmp_path, text))
    assert "'chip.n': expected a number at least 1 (got -1)" in message
    assert "'envelope.width_max': expected a number greater than 0" in message and "; " in message


@pytest.mark.parametrize("edit, key, expected", [
    (("seed = 1", "seed = 1000000000000000000000000000000"), "chip.seed", "0 <= seed < 2**63"),
    (("seed = 1", "seed = -1"), "chip.seed", "0 <= seed < 2**63"),
    (("width_max = 1e-3", "width_max = inf"), "envelope.width_max", "expected a finite number (got inf)"),
    (("width_max = 1e-3", "width_max = nan"), "envelope.width_max", "expected a finite number (got nan)"),
    (("amplitude_max = 0.012", "amplitude_max = 1e30"), "envelope.amplitude_max", "at most 100"),
    (('name = "sim-dw"', 'name = "x/../../../../elsewhere/pwned"'), "station.name", "letters, digits"),
    (('name = "sim-dw"', 'name = ".hidden"'), "station.name", "not starting with '.'"),
    (('name = "sim-dw"', 'name = "a\\u0000b"'), "station.name", "(got 'a\\x00b')"),
    (('name = "sim-dw"', 'name = "sim-dw"\nsuspend_timeout_s = -1'), "station.suspend_timeout_s", "at least 0"),
    (('name = "sim-dw"', 'name = "sim-dw"\nsuspend_timeout_s = inf'), "station.suspend_timeout_s", "finite"),
    (('[station]', 'station = 3\n[old_station]'), "station", "expected a table (got 3)"),
], ids=["huge-seed", "negative-seed", "inf", "nan", "huge-limit", "path-name", "dot-name", "nul-name",
        "negative-suspend", "inf-suspend", "wrong-top-type"])
def test_fuzz_findings_are_clean_errors(tmp_path, edit, key, expected):
    old, new = edit
    assert old in GOOD
    message = refused(write(tmp_path, GOOD.replace(old, new, 1)))
    assert message.startswith(str(tmp_path)) and f"'{key}'" in message and expected in message


def test_suspend_timeout_default_and_value(tmp_path):
    assert load_station("sim-dw").station.suspend_timeout_s == 600.0
    path = write(tmp_path, GOOD.replace('name = "sim-dw"', 'name = "sim-dw"\nsuspend_timeout_s = 30'))
    assert load_station(path).station.suspend_timeout_s == 30.0


@pytest.mark.parametrize("make, expected", [
    (lambda d: d, "is a directory, expected a TOML station file"),
    (lambda d: d / ("a" * 200_000 + ".toml"), "cannot read (File name too long"),
    (lambda d: str(d / "a\x00b.toml"), "holds a NUL character"),
    (lambda d: write(d, ""), "the file is empty"),
    (lambda d: write(d, "# only a comment\n"), "the file is empty"),
    (lambda d: (d / "bin.toml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe") and d / "bin.toml", "not UTF-8 text (byte 0x89 at offset 0"),
    (lambda d: write(d, "x = " + "[" * 3000 + "]" * 3000), "nested too deeply"),
    (lambda d: write(d, "x = " + "9" * 5000), "not valid TOML"),
], ids=["directory", "long-name", "nul-path", "empty", "comment-only", "binary", "deep", "long-int"])
def test_bad_files_are_clean_errors(tmp_path, make, expected):
    assert expected in refused(make(tmp_path))


def test_model_names_and_resources(tmp_path):
    text = (Path(__file__).parents[1] / "labctl/defaults/stations/kerr-bench.toml").read_text()
    assert 'model = "SR830"' in text
    message = refused(write(tmp_path, text.replace('model = "SR830"', 'model = "SR850"')))
    assert "key 'instruments.kerr_readout.model': expected one of 'SR830' (got 'SR850')" in message
    message = refused(write(tmp_path, text.replace('model = "Agilent33500"', 'model = "Agilent"')))
    assert "expected one of 'Agilent33500' or 'Keysight81160A' (got 'Agilent')" in message
    bad = text.replace('model = "SR830"\nresource = "auto"', 'model = "SR830"\nresource = "GPIB0::8::INSTR\\u0007"')
    assert bad != text
    assert "'instruments.kerr_readout.resource': expected printable text" in refused(write(tmp_path, bad))
    simulated = text.replace('backend = "instruments"', 'backend = "simulated"')
    assert "station.backend is 'simulated'" in refused(write(tmp_path, simulated))
    no_table = GOOD.replace('backend = "simulated"', 'backend = "instruments"')
    assert "no [instruments] table" in refused(write(tmp_path, no_table))
    gain = text.replace("gain = ", "gain = inf #")
    assert "'instruments.field_supply.gain': expected a finite number (got inf)" in refused(write(tmp_path, gain))


def test_protocol_header_rules(tmp_path):
    message = refused(write(tmp_path, PROTOCOL.replace('name = "calibrate-dw"', 'name = "x/../../pwned"'), "p.toml"),
                      load_protocol_file)
    assert "'protocol.name'" in message and "letters, digits" in message
    message = refused(write(tmp_path, PROTOCOL.replace("seed = 0", "seed = 99999999999999999999"), "p.toml"),
                      load_protocol_file)
    assert "'protocol.seed': expected a seed" in message


@pytest.mark.parametrize("name, stem", [
    ("calibrate-dw", "calibrate-dw"), ("x/../../../../elsewhere/pwned", "x_.._.._.._.._elsewhere_pwned"),
    ("..", "run"), ("", "run"), (".hidden", "hidden"), ("a\x00b", "a_b"), ("é" * 300, "_" * 100),
])
def test_safe_file_stem(name, stem):
    assert safe_file_stem(name) == stem
    assert "/" not in stem and not stem.startswith(".")
