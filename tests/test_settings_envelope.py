"""Protocol settings are checked against the station's envelope before anything runs.

``labctl.station.check_settings_against_envelope`` refuses, with one ConfigError naming the file,
the key, the value and the limit, every setting (declared pulse field or derived pulse) that would
send a pulse outside the envelope: before the run file is created and before the chip is opened.
"""

from __future__ import annotations

import pytest

from labctl.config import ConfigError, load_protocol_file, load_station, validate
from labctl.station import check_settings_against_envelope, envelope_of
from protocols import REGISTRY


def check(protocol: str, station: str | None = None, **overrides) -> None:
    pfile, source = load_protocol_file(protocol)
    st = load_station(station or pfile.protocol.station)
    cls = REGISTRY[pfile.protocol.kind]
    settings = validate(cls.settings_model, {**pfile.settings, **overrides}, source, prefix="settings")
    check_settings_against_envelope(cls, settings, source, st)


@pytest.mark.parametrize("protocol", [
    "calibrate-dw", "calibrate-stt", "calibrate-dwmtj", "train-meanvar", "train-meanvar-exsitu", "train-kstate-insitu",
    "train-cluster-iris", "train-hebbian", "train-hebbian-compound",
])
def test_embedded_protocols_fit_their_stations(protocol):
    check(protocol)  # raises if a shipped protocol left its own station's envelope


@pytest.mark.parametrize("protocol, overrides, key, expected", [
    ("calibrate-dw", {"amplitude_stop": 0.05}, "settings.amplitude_stop",
     "0.05 T is outside the station envelope: above envelope.amplitude_max 0.012 T (station sim-dw)"),
    ("calibrate-dw", {"amplitude_start": -0.05}, "settings.amplitude_start", "below envelope.amplitude_min"),
    ("calibrate-dw", {"widths": [1e-6, -1e-6]}, "settings.widths", "-1e-06 s is outside the station envelope: below "
                                                                     "envelope.width_min"),
    ("calibrate-dw", {"amplitude_start": None, "amplitude_stop": None, "amplitudes": [1e-3, 2e-3, 0.5]},
     "settings.amplitudes", "0.5 T is outside"),
    ("train-meanvar", {"calibration_stop": 30e-3}, "settings.calibration_stop", "0.03 T is outside"),
    ("train-meanvar", {"width": 1.0}, "settings.width", "above envelope.width_max 0.001 s"),
    ("train-cluster-iris", {"pulse_current": 1e-3}, "settings.pulse_current", "above envelope.amplitude_max 0.0004 A"),
    ("train-kstate-insitu", {"width": 1e-3}, "settings.width", "above envelope.width_max 1e-06 s"),
    ("train-hebbian", {"pulse_width": 1e-10}, "settings.pulse_width", "below envelope.width_min"),
    ("train-hebbian", {"vc0_p2ap": 2.0}, "settings.p_start", "the depression pulse it gives of"),
])
def test_setting_outside_the_envelope_is_refused(protocol, overrides, key, expected):
    with pytest.raises(ConfigError) as info:
        check(protocol, **overrides)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"<embedded protocol {protocol}>: key '{key}': ")
    assert expected in message


def test_unused_sweep_is_not_checked():
    # train-meanvar's calibration sweep only runs when calibrate = true
    check("train-meanvar", calibration_stop=30e-3, calibrate=False, x0=4.6e-3)
    with pytest.raises(ConfigError, match="calibration_stop"):
        check("train-meanvar", calibration_stop=30e-3, calibrate=True)


def test_every_problem_is_listed():
    with pytest.raises(ConfigError) as info:
        check("calibrate-dw", amplitude_stop=0.05, widths=[2.0])
    message = str(info.value)
    assert "'settings.amplitude_stop': 0.05 T" in message and "'settings.widths': 2 s" in message
    assert message.count("; ") == 1


def test_limits_are_inclusive():
    station = load_station("sim-dw")
    env = station.envelope
    check("calibrate-dw", amplitude_start=env.amplitude_min, amplitude_stop=env.amplitude_max,
          widths=[env.width_min, env.width_max])


def test_wrong_family_is_refused_before_opening():
    with pytest.raises(ConfigError, match="train-hebbian runs on stt_mtj chips, but station sim-dw has a dw_nanowire"):
        check("train-hebbian", "sim-dw")


def test_problems_are_data_for_the_gui():
    cls = REGISTRY["calibrate"]
    settings = cls.settings_model(amplitude_start=0.0, amplitude_stop=0.05, widths=[1e-6])
    problems = cls.envelope_problems(settings, envelope_of(load_station("sim-dw")))
    assert [(p.key, p.value, p.unit) for p in problems] == [("settings.amplitude_stop", 0.05, "T")]
    assert problems[0].limit == "above envelope.amplitude_max 0.012 T"


def test_magnitude_checks_both_signs():
    from labctl.chip import Envelope
    from protocols.base import check_value

    env = Envelope(amplitude_min=-1e-4, amplitude_max=4e-4, width_min=1e-9, width_max=1e-6, read_bias_max=0.2,
                   amplitude_unit="A")
    assert check_value("settings.i", 2e-4, "amplitude", env) == []
    (problem,) = check_value("settings.i", 2e-4, "magnitude", env)
    assert problem.value == -2e-4 and problem.limit.startswith("below envelope.amplitude_min")
    assert check_value("settings.b", -0.3, "read_bias", env)[0].limit == "|bias| above envelope.read_bias_max 0.2 V"
    assert check_value("settings.w", float("nan"), "width", env)[0].limit == "not a finite number"


def test_gui_marks_the_offending_field(qtbot):
    pytest.importorskip("pytestqt")
    from labctl.gui.protocol_panel import ProtocolPanel

    panel = ProtocolPanel()
    qtbot.addWidget(panel)
    assert panel.load("calibrate-dw")
    panel.set_station(load_station("sim-dw"))
    assert panel.buttons["start"].isEnabled()
    panel.editors["amplitude_stop"].set_text("0.05")
    error = panel.editors["amplitude_stop"].error
    assert "0.05 T is outside the station envelope: above envelope.amplitude_max 0.012 T (station sim-dw)" in error.text()
    assert "c00000" in error.styleSheet()
    assert not panel.buttons["start"].isEnabled() and panel.request() is None
    panel.editors["amplitude_stop"].set_text("0.012")  # on the limit: fine
    assert panel.errors == {} and panel.buttons["start"].isEnabled()
    panel.editors["widths"].set_text("[-1e-6]")
    assert "below envelope.width_min" in panel.editors["widths"].error.text()
    assert not panel.buttons["start"].isEnabled()
    panel.editors["widths"].set_text("[1e-6]")
    panel.editors["amplitude_stop"].set_text("1.0")  # 1 T: outside sim-dw's envelope ...
    assert not panel.buttons["start"].isEnabled()
    panel.set_station(load_station("sim-stt"))  # ... but 1 V is inside sim-stt's: re-checked on a new station
    assert panel.errors == {} and panel.buttons["start"].isEnabled()
