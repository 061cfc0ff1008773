"""Device-family descriptors: one per family, asked by every module instead of the family's name.

A descriptor agrees with its simulator (units, read-out), its physics model is the one place the
defaults live, its laws' fits report the parameters it declares, and no module outside a
family's own physics and descriptor names a built-in family (a source scan; its allow-list of
files that still did is empty now).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from labctl import config, families
from labctl.station import AMPLITUDE_UNITS
from protocols.meanvar import MeanVarSettings
from simulated_bench.physics import FAMILIES as SIMULATORS

ROOT = Path(__file__).parents[1]
BUILTIN = [f.name for f in families.BUILTIN]


@pytest.mark.parametrize("name", BUILTIN)
def test_descriptor_agrees_with_its_simulator(name):
    family = families.get(name)
    sim = family.simulator
    assert family.name == sim.family and SIMULATORS[name] is sim
    assert (family.amplitude_unit, family.signal_unit, family.readout) == (sim.amplitude_unit, sim.signal_unit, sim.readout)
    assert family.physics_model() is sim.params_model and family.problem() is None
    physics = family.physics_model()()
    assert len(family.nominal_levels(physics)) == family.levels(physics) == family.build_simulator(3, 0, physics).levels
    pulse_energy, read_energy = family.energy_model(physics)
    assert float(pulse_energy(torch.tensor(family.sweep[1]), torch.tensor(family.sweep[2]))) > 0 and read_energy >= 0
    assert AMPLITUDE_UNITS[name] == family.amplitude_unit
    assert set(family.bench_roles) <= set(config.INSTRUMENT_ROLES) and "pulse_source" in family.bench_roles


def test_physics_defaults_live_in_one_place():
    assert (config.DWNanowirePhysics, config.STTMTJPhysics, config.DWMTJPhysics) == tuple(
        families.get(n).physics_model() for n in BUILTIN)
    for name in BUILTIN:  # the simulator built with no parameters is the one the station's defaults build
        family = families.get(name)
        plain, configured = family.simulator(16, seed=4), family.build_simulator(16, 4, family.physics_model()())
        assert plain.read_energy_j == configured.read_energy_j
        for key, value in vars(plain).items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, getattr(configured, key)), key
    dw = families.get("dw_nanowire")
    assert dw.simulator(2).field_energy_coefficient == dw.physics_model()().field_energy_coefficient == 200.0
    nominal = dw.law("logistic").nominal(dw.physics_model()())
    assert {k: MeanVarSettings.model_fields[k].default for k in nominal} == nominal


def test_an_unknown_family_names_the_known_ones():
    with pytest.raises(families.PluginError) as info:
        families.get("memristor")
    assert str(info.value) == ("expected one of 'dw_nanowire', 'stt_mtj', 'dw_mtj' (got 'memristor'), "
                               "or a 'module:Class' reference")
    with pytest.raises(families.PluginError, match=r"cannot import 'labctl.families:Nope' \(AttributeError: "):
        families.get("labctl.families:Nope")
    with pytest.raises(families.PluginError, match="not a labctl.families.DeviceFamily subclass"):
        families.get("labctl.families:names")
    assert families.get("labctl.families.stt_mtj:STTMTJ") is families.get("stt_mtj")


@pytest.mark.parametrize("name", BUILTIN)
def test_each_law_fit_reports_its_declared_parameters_and_draws_its_curve(name):
    family = families.get(name)
    physics = family.physics_model()()
    devices = family.build_simulator(4, 1, physics)
    start, stop, width = family.sweep
    amps = torch.linspace(start, stop, 9, dtype=torch.float64)
    idx = torch.arange(4).repeat(9)
    amplitude = amps.float().repeat_interleave(4)
    for law in family.laws:
        if law.level_counts:
            counts = devices.trial(idx, amplitude, width, 50).reshape(9, 4, -1).movedim(1, 0)
        else:
            counts = devices.trial_switched(idx, amplitude, width, 50).reshape(9, 4).T
        fit = law.fit(amps, torch.full_like(amps, width), counts, 50, levels=devices.levels, level=0.95, tau0=1e-9)
        assert tuple(fit.names) == law.param_names
        assert all(p.physics_key is None or hasattr(physics, p.physics_key) for p in law.params)
        params = {k: torch.tensor(v, dtype=torch.float64) for k, v in law.nominal(physics).items()}
        params = {k: params.get(k, fit.param(k)[0].double()) for k in law.param_names}
        y = law.curve(amps, torch.tensor(width, dtype=torch.float64), params, levels=devices.levels, tau0=1e-9)
        assert y.shape == amps.shape and bool(((y >= 0) & (y <= 1)).all()) and float(y[-1]) > float(y[0])


# ---------------------------------------------------------------------------- no family named outside its own files
NAMED = re.compile(r"""(["'])(dw_nanowire|stt_mtj|dw_mtj)\1""")
SCANNED = ("labctl", "instruments", "protocols", "simulated_bench", "analysis")
OWN = {f"{folder}/{name}.py" for name in BUILTIN for folder in ("simulated_bench/physics", "labctl/families")}
NOT_YET: dict[str, str] = {}  # files that still name a family, each with what it should ask instead: none left


def test_no_module_names_a_built_in_family_outside_its_own_files():
    hits: dict[str, list[str]] = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found = [f"{rel}:{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
                     if NAMED.search(line)]
            if found and rel not in OWN:
                hits[rel] = found
    unexpected = {rel: lines for rel, lines in hits.items() if rel not in NOT_YET}
    assert not unexpected, "ask labctl.families.get(name) instead of naming a family:\n" + "\n".join(
        line for lines in unexpected.values() for line in lines)
    fixed = sorted(set(NOT_YET) - set(hits))
    assert not fixed, f"no longer names a family: remove from NOT_YET in {__file__}: {fixed}"


def test_laws_and_simulators_are_found_from_what_a_run_file_or_bench_spec_holds():
    from simulated_bench.physics import physics_class

    assert families.find_law("thermal") is families.get("stt_mtj").default_law()
    with pytest.raises(KeyError, match="no registered family has a law 'memristive'"):
        families.find_law("memristive")
    for name in BUILTIN:  # a bench spec may name the simulator by family or by reference
        sim = families.get(name).simulator
        assert physics_class(name) is sim is physics_class(families.reference(sim))
    with pytest.raises(ValueError, match=r"cannot import 'nopkg.physics:Sot' \(ModuleNotFoundError"):
        physics_class("nopkg.physics:Sot")
    with pytest.raises(ValueError, match="not a simulated_bench.physics.DeviceArray subclass"):
        physics_class("labctl.families:DeviceFamily")
