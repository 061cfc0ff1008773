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


# --------------------------------------------------------------------------------------------
# The simulated physics on the station's device
# --------------------------------------------------------------------------------------------

_SIM_STATIONS = ("sim-dw", "sim-dwmtj", "sim-stt")


def _with_device(name: str, device: str):
    import dataclasses

    st = load_station(name)
    try:
        return dataclasses.replace(st, station=dataclasses.replace(st.station, device=device))
    except TypeError:  # a pydantic model, not a dataclass
        return st.model_copy(update={"station": st.station.model_copy(update={"device": device})})


def _exercise(chip) -> dict:
    """Reset, pulse, read and trials on a few synapses; every result on chip.device."""
    import numpy as np

    env = chip.envelope
    amp = 0.5 * (max(env.amplitude_min, 0.0) + env.amplitude_max)
    width = min(max(env.width_min, 1e-8), env.width_max)
    idx = torch.arange(0, min(chip.n, 16))
    chip.reset(idx)
    chip.pulse(idx, amp, width)
    r = chip.read(idx, repeats=3)
    t = chip.trial(idx, amp, width, repeats=20)
    tl = chip.trial_levels(idx, amp, width, repeats=20)
    t_all = chip.trial(None, amp, width, repeats=1)
    for x in (r.signal, r.level, t, tl, t_all):
        assert x.device == chip.device
    out = {"signal": r.signal, "level": r.level, "t": t, "tl": tl, "t_all": t_all}
    return {k: np.asarray(v.cpu().numpy()) for k, v in out.items()}


@pytest.mark.parametrize("name", _SIM_STATIONS)
def test_chip_opened_on_cpu_works_end_to_end_and_matches_the_default(name):
    import numpy as np

    from labctl.station import open_chip

    try:
        default = open_chip(load_station(name))
    except Exception as exc:  # noqa: BLE001 - a station this checkout lacks
        pytest.skip(f"station {name}: {exc}")
    assert default.device == torch.device("cpu")
    chip = open_chip(_with_device(name, "cpu"))
    assert chip.device == torch.device("cpu")
    auto = open_chip(_with_device(name, "auto"))
    if not torch.cuda.is_available():
        assert auto.device == torch.device("cpu")
    a, b = _exercise(default), _exercise(chip)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    state = chip.state_dict()
    assert state["state"].device.type == "cpu"
    chip.load_state_dict(state)


def test_device_array_to_cpu_is_a_no_op():
    from simulated_bench.physics import DWNanowireArray

    d = DWNanowireArray(8, seed=3)
    x0 = d.x0
    assert d.to("cpu") is d and d.x0 is x0 and d.device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", _SIM_STATIONS)
def test_chip_on_cuda_keeps_everything_there(name):
    from labctl.station import open_chip

    chip = open_chip(_with_device(name, "cuda"))
    assert chip.device.type == "cuda"
    for value in vars(chip.devices).values():
        if isinstance(value, torch.Tensor):
            assert value.device.type == "cuda"
    assert chip.devices.streams.write.device.type == "cuda"
    cpu = open_chip(_with_device(name, "cpu"))
    for key in ("x0", "i_c", "delta_p2ap"):  # construction on the CPU: the same devices
        if hasattr(cpu.devices, key):
            assert torch.equal(getattr(cpu.devices, key), getattr(chip.devices, key).cpu())
    res = _exercise(chip)
    assert all(v.shape[0] > 0 for v in res.values())
    chip.load_state_dict(chip.state_dict())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["calibrate-dw", "calibrate-dwmtj", "train-meanvar", "train-kstate-insitu",
                                  "train-kstate-exsitu", "train-cluster-iris", "train-hebbian"])
def test_every_protocol_runs_on_a_chip_on_cuda(name, tmp_path):
    """Protocols compute on the host; the chip's results come back on CUDA and are moved where they meet."""
    from labctl import runs
    from labctl.engine import RunContext
    from test_protocol_resume import CASES

    protocol, chip, station, pfile = runs.prepare(name, overrides=CASES[name])
    chip.devices.to("cuda")
    assert chip.device.type == "cuda"
    writer = runs.create_run_file(protocol, chip, station, pfile, tmp_path / "cuda.h5")
    for _ in protocol.run(RunContext(chip, writer)):
        pass
    summary = protocol.summary()
    writer.close()
    assert summary
