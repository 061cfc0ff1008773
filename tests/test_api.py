"""labctl.api: the snippets of docs/api.md run as written, and the API's safety and error behaviour."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from labctl import api, runs
from labctl.store import RunFileLock

ROOT = Path(__file__).resolve().parents[1]
SHORT = {"max_epochs": 2, "calibration_points": 7, "test_passes": 1}


def doc_snippets() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_docs_api_snippets_run_in_order(tmp_path, monkeypatch, capsys):
    snippets = doc_snippets()
    assert len(snippets) >= 8
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for k, code in enumerate(snippets):
        exec(compile(code, f"docs/api.md python block {k + 1}", "exec"), ns)
    out = capsys.readouterr().out

    assert "EnvelopeError" in out and "switched out of 100:" in out
    assert "key 'settings.amplitude_stop': 0.05 T is outside the station envelope" in out
    fine = ns["spec_fine"].settings
    assert (fine.points, fine.widths, fine.repeats) == (11, [1e-7], 200)
    assert ns["result"].ok and ns["result"].path == Path("runs/dw.h5")
    assert [d["step"] for d in ns["steps"]] == list(range(1, len(ns["steps"]) + 1))
    assert ns["trained"].ok
    assert ns["stopped"].status == "failed" and ns["stopped"].reason == "aborted: Ctrl-C pressed twice"
    assert ns["resumed"].ok and 0 < ns["resumed"].summary["test_accuracy"] <= 1
    assert list(ns["data"].events["kind"]).count("reopen") == 1
    assert list(ns["data"].metrics["epoch"]) == [0, 1]
    assert ns["layer"]["control"].shape == (640,) and np.all((ns["layer"]["effective"] >= 0)
                                                             & (ns["layer"]["effective"] <= 1))
    assert ns["cal"]["fraction"].shape == (1, 7, 64) and ns["cal"]["fit"]["names"] == ["x0", "dx", "a"]


def test_open_station_reaches_safe_state_whatever_ends_the_block(monkeypatch):
    closed = []
    real_open = runs.open_chip

    def spy_open(station, seed=None):
        chip = real_open(station, seed=seed)
        close = chip.close
        chip.close = lambda: (closed.append(True), close())[1]
        return chip

    monkeypatch.setattr(runs, "open_chip", spy_open)
    with pytest.raises(KeyboardInterrupt):
        with api.open_station("sim-dw"):
            raise KeyboardInterrupt
    assert closed == [True]
    with api.open_station("sim-dw", seed=5) as chip:
        chip.reset(torch.arange(3))
    assert closed == [True, True]


def test_open_station_says_when_the_safe_state_is_not_confirmed(monkeypatch, capsys):
    class Stuck(RuntimeError):
        pass

    real_open = runs.open_chip

    def failing_close(station, seed=None):
        chip = real_open(station, seed=seed)
        chip.close = lambda: (_ for _ in ()).throw(Stuck("outputs still on"))
        return chip

    monkeypatch.setattr(runs, "open_chip", failing_close)
    with pytest.raises(ValueError) as caught:  # the block's own error is not replaced
        with api.open_station("sim-dw"):
            raise ValueError("in the block")
    assert any("safe state is NOT confirmed: Stuck: outputs still on" in n for n in caught.value.__notes__)
    assert "safe state is NOT confirmed" in capsys.readouterr().err
    with pytest.raises(Stuck):  # a normal exit raises the closing error
        with api.open_station("sim-dw"):
            pass


def test_run_records_overrides_so_resume_rebuilds_the_same_protocol(tmp_path):
    out = tmp_path / "r.h5"
    result = api.run("train-meanvar", out=out, seed=3, overrides={**SHORT, "calibrate": False})
    assert result.ok
    data = api.read_run(out)
    settings = data.attrs["protocol"]["settings"]
    assert settings["max_epochs"] == 2 and settings["calibrate"] is False
    assert data.seed == 3 and len(data.metrics) == 2
    assert "calibration/counts" not in data.datasets  # not calibrated: the override was used
    with pytest.raises(api.BadInput, match="finished successfully; there is nothing to resume"):
        api.resume(out)
    with pytest.raises(api.BadInput, match="already exists"):
        api.run("train-meanvar", out=out, overrides=SHORT)


def test_a_busy_run_file_is_refused_before_the_chip_opens(tmp_path, monkeypatch):
    out = tmp_path / "busy.h5"
    monkeypatch.setattr(runs, "open_chip", lambda *a, **k: pytest.fail("the chip was opened"))
    with RunFileLock(out):
        with pytest.raises(api.RunFileBusy):
            api.run("calibrate-dw", out=out, overrides={"points": 7})
    assert not out.exists()


def test_a_progress_callback_that_raises_is_detached_and_recorded(tmp_path):
    def broken(doc):
        raise ZeroDivisionError("bad callback")

    result = api.run("calibrate-dw", out=tmp_path / "c.h5", progress=broken, overrides={"points": 7})
    assert result.ok
    events = api.read_run(result.path).events
    assert "ZeroDivisionError: bad callback" in events.query("kind == 'subscriber_err'")["reason"].iloc[0]


def test_errors_are_labctl_exceptions_with_one_line(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x00" * 64)
    for path, words in ((tmp_path / "none.h5", "no such run file"), (garbage, "not an HDF5 file")):
        with pytest.raises(api.RunFileError, match=words) as caught:
            api.read_run(path)
        assert "\n" not in str(caught.value)
    spec = api.load_protocol("calibrate-dw")
    with pytest.raises(api.ConfigError, match="settings must be a MeanVarSettings for protocol kind .train-meanvar. .got CalibrationSettings"):
        api.load_protocol("train-meanvar", settings=spec.settings)
    with pytest.raises(api.ConfigError, match="key 'settings.max_epochs'"):
        api.load_protocol("train-meanvar", max_epochs=0)
    with pytest.raises(api.ConfigError, match="no-such-protocol"):
        api.load_protocol("no-such-protocol")
    with pytest.raises(TypeError, match="give station and overrides to load_protocol"):
        api.run(spec, overrides={"points": 5})


def test_read_run_of_a_calibration(tmp_path):
    result = api.run("calibrate-dw", out=tmp_path / "c.h5", overrides={"points": 7, "widths": [1e-7]})
    data = api.read_run(result.path)
    assert data.status == "success" and data.reason == "completed"
    assert data.metrics.empty and data.weights() == []
    cal = data.calibration()
    assert cal["fraction"].shape == (1, 7, 64) and cal["units"] == "T"
    assert cal["fit"]["names"] == ["x0", "dx", "a"] and np.allclose(cal["widths"], [1e-7])
    counts = data.dataset("calibration/counts")
    assert np.allclose(cal["fraction"], counts / 200)
    assert data.summary["counters"]["trials"] == 7 * 64 * 200
    with pytest.raises(api.RunFileError, match="no dataset 'model/amplitude'"):
        data.dataset("model/amplitude")
