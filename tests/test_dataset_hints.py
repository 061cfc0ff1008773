"""Datasets say what they are: a DatasetSpec's hint is stored in the run file and read back, the
readers find weights, curves, calibration, state maps and energy tables by hint alone, and the GUI
names none of the protocols' datasets (it builds its views from the hints).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from labctl import api, readers
from labctl.store import DatasetSpec, RunReader, RunWriter
from protocols import REGISTRY

ROOT = Path(__file__).parents[1]

#: One embedded protocol file per built-in kind, on a simulated station (describe() needs a chip).
EMBEDDED = ("calibrate-dw", "calibrate-stt", "calibrate-dwmtj", "train-meanvar", "train-kstate-insitu",
            "train-cluster-iris", "train-hebbian")


def test_a_hint_is_checked_when_declared():
    spec = DatasetSpec(np.float64, (3,), hint={"view": "weights", "role": "control", "shape": [1, 3]})
    assert spec.with_hint({"view": "energy"}).hint == {"view": "energy"}
    with pytest.raises(ValueError, match="'view' is one of weights, curve, calibration, state_map, energy"):
        DatasetSpec(np.float64, (3,), hint={"view": "histogram"})
    with pytest.raises(ValueError, match="not plain JSON data"):
        DatasetSpec(np.float64, (3,), hint={"view": "curve", "y": {1, 2}})


def test_hints_are_stored_in_the_run_file_and_found_by_the_readers(tmp_path):
    """A protocol nobody knows: its datasets have made-up names, and the readers find them by hint."""
    rows = np.dtype([("round", "<i8"), ("score_loss", "<f8"), ("hit_accuracy", "<f8")])
    ledger = np.dtype([("stage", "S8"), ("energy_j", "<f8"), ("pulses", "<i8")])
    schema = {
        "zz/knobs": DatasetSpec(np.float32, (None, 6), "V", "knob per epoch",
                                hint={"view": "weights", "role": "control", "label": "knob voltage",
                                      "layers": [[2, 2], [1, 2]], "when": "epoch"}),
        "zz/final_levels": DatasetSpec(np.int8, (6,), "", "levels at the end",
                                       hint={"view": "weights", "role": "levels", "label": "level", "layers": [[2, 2], [1, 2]],
                                             "when": "end"}),
        "zz/log": DatasetSpec(rows, (None,), "", "per round", hint={"view": "curve", "x": "round",
                                                                    "y": ["score_loss", "hit_accuracy"]}),
        "zz/joules": DatasetSpec(ledger, (2,), "", "energy per stage", hint={"view": "energy"}),
        "zz/plain": DatasetSpec(np.float64, (4,), "", "no hint"),
    }
    path = tmp_path / "run.h5"
    with RunWriter(path, attrs={"protocol_kind": "nobody"}, schema=schema, checkpoints=False) as w:
        w.publish()
        w.append("zz/knobs", np.arange(6, dtype=np.float32)[None])
        w.append("zz/knobs", 10 + np.arange(6, dtype=np.float32)[None])
        w.append("zz/log", np.array([(0, 2.0, 0.5), (1, 1.0, 0.75)], dtype=rows))
        w.write("zz/joules", np.array([(b"train", 1e-9, 10), (b"", 0.0, 0)], dtype=ledger))
        w.flush()
        r = RunReader(path)
        assert set(r.hints()) == {"zz/knobs", "zz/final_levels", "zz/log", "zz/joules"}
        assert r.hints()["zz/log"] == {"view": "curve", "x": "round", "y": ["score_loss", "hit_accuracy"]}
        live = readers.weight_layers(r, finished=False)  # the last snapshot; the end-of-run levels not yet
        assert [layer["shape"] for layer in live] == [(2, 2), (1, 2)]
        assert live[0]["control"].tolist() == [10, 11, 12, 13] and live[1]["control"].tolist() == [14, 15]
        assert live[0]["control_label"] == "knob voltage" and live[0]["control_units"] == "V"
        assert live[0]["effective"] is None
        w.write("zz/final_levels", np.array([0, 1, 2, 3, 4, 5], dtype=np.int8))
        r.close()
    r = RunReader(path)
    done = readers.weight_layers(r, finished=True)
    assert done[1]["effective"].tolist() == [4, 5] and done[1]["levels"] and done[1]["name"] == "layer 2 (2 \u2192 1)"
    curves = readers.read_curves(r)
    assert curves["table"] == "zz/log" and curves["x"] == "round" and curves["y"] == ["score_loss", "hit_accuracy"]
    assert curves["columns"]["hit_accuracy"].tolist() == [0.5, 0.75]
    energy = readers.energy_tables(r)
    assert list(energy) == ["zz/joules"] and len(energy["zz/joules"]) == 1  # the row of zeros is not written yet
    assert readers.calibration_data(r) is None and readers.state_map(r, True) is None


def test_a_calibration_run_is_read_by_its_hint_with_its_law(tmp_path):
    result = api.run("calibrate-dw", out=tmp_path / "cal.h5", overrides={"points": 5, "repeats": 40, "block": 64})
    assert result.status == "success"
    r = RunReader(tmp_path / "cal.h5")
    hint = r.hints()["calibration/counts"]
    assert hint["view"] == "calibration" and hint["law"] == "logistic"
    cal = readers.calibration_data(r)
    assert cal["law"] == "logistic" and cal["fit"]["names"] == ["x0", "dx", "a"] and cal["done"].all()
    y = readers.law_curve(cal["law"], cal["fit"]["names"], cal["fit"]["estimate"][0, 0], cal["amplitude"],
                          1e-6, 1e-9, None)
    assert y.shape == cal["amplitude"].shape and np.all(np.diff(y) >= 0)
    assert readers.law_curve("no-such-law", ["x0"], [1.0], cal["amplitude"], 1e-6, 1e-9, None) is None


def dataset_names() -> set[str]:
    """Every dataset name the built-in protocols declare (each built on an embedded file's station)."""
    names: set[str] = set()
    kinds = set()
    for ref in EMBEDDED:
        spec = api.load_protocol(ref)
        kinds.add(spec.kind)
        with api.open_station(spec.station_ref) as chip:
            protocol = REGISTRY.get(spec.kind)(spec.name, spec.settings, chip, seed=0)
            names |= set(protocol.describe())
    assert kinds == set(REGISTRY), f"add an embedded protocol of each kind to EMBEDDED: {set(REGISTRY) - kinds}"
    return names


def test_the_gui_names_no_dataset_of_any_protocol():
    names = dataset_names()
    assert {"train/metrics", "train/amplitude", "calibration/counts", "model/levels"} <= names
    pattern = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)))
    hits = []
    for path in sorted((ROOT / "labctl/gui").glob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            for m in re.finditer(r"""(["'])([^"'\n]*)\1""", line):  # string literals only
                if m.group(2) in names or (pattern.search(m.group(2)) and "/" in m.group(2)):
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "the GUI builds its views from dataset hints; it names no dataset:\n" + "\n".join(hits)
