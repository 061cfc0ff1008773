"""Seeded fuzzing of station and protocol files: every case loads or raises ConfigError, nothing else.

Each case starts from an embedded station or protocol file (``labctl/defaults/``) and mutates its
text: a value replaced by garbage (NaN, inf, huge and negative numbers, booleans, unicode, NUL,
nested arrays and tables, path-like names), a line dropped, an unknown line added, the file cut
short, or bytes flipped. It then goes through the loaders the CLI uses: ``load_station``, or
``load_protocol_file`` + the settings model + ``check_settings_against_envelope`` against the
file's station. Every case must end, fast, in a valid configuration or a one-line ConfigError;
and no file other than the input may be created or changed.
"""

from __future__ import annotations

import os
import random
import time
from importlib import resources
from pathlib import Path

import pytest

from labctl.config import ConfigError, load_protocol_file, load_station, validate
from labctl.station import check_settings_against_envelope
from protocols import REGISTRY

SEED = 20240611
CASES = 320
CASE_LIMIT_S = 2.0

GARBAGE = ["nan", "inf", "-inf", "1e30", "-1e30", "1" + "0" * 30, "-1", "-1e-6", "0", "true", "false", '""',
           '"\\u0000"', '"a\\u0000b"', '"' + "\u00e9\u4e2d\U0001f600" * 20 + '"', "[]", "{}", "[[[[[1]]]]]",
           "{a = {b = {c = 1}}}", '"x/../../../../elsewhere/pwned"', "3.5", "2", '"auto"', "[1e30, -1e30]",
           "[nan]", "9" * 5000, "1979-05-27T07:32:00Z", '"' + "x" * 5000 + '"', "[" * 200 + "]" * 200, "0x7fffffffffffffff"]


def embedded_files() -> list[tuple[str, str]]:
    root = resources.files("labctl.defaults")
    return [(kind, path.read_text()) for kind in ("stations", "protocols")
            for path in sorted(root.joinpath(kind).iterdir(), key=lambda p: p.name) if path.name.endswith(".toml")]


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    assignments = [i for i, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#")]
    what = rng.choice(["value", "value", "value", "drop", "add", "cut", "bytes", "header"])
    if what == "value" and assignments:
        i = rng.choice(assignments)
        lines[i] = lines[i].split("=", 1)[0] + "= " + rng.choice(GARBAGE)
    elif what == "drop" and lines:
        del lines[rng.randrange(len(lines))]
    elif what == "add":
        lines.insert(rng.randrange(len(lines) + 1), f"{rng.choice(['colour', 'amplitude_mx', 'n', 'seed'])} = "
                     f"{rng.choice(GARBAGE)}")
    elif what == "cut":
        return text[: rng.randrange(len(text) + 1)]
    elif what == "header":
        headers = [i for i, line in enumerate(lines) if line.startswith("[")]
        if headers:
            i = rng.choice(headers)
            lines[i] = rng.choice(["[protocl]", "[statio]", "[chip.physics.x]", "station = 3", "[[chip]]", "[]"])
    else:
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return data.decode("utf-8", errors="surrogateescape")
    return "\n".join(lines)


def load(kind: str, path: Path) -> None:
    """What ``labctl run`` does with the file before anything is opened."""
    if kind == "stations":
        load_station(path)
        return
    pfile, source = load_protocol_file(path)
    station = load_station(pfile.protocol.station)
    cls = REGISTRY.get(pfile.protocol.kind)
    if cls is None:
        raise ConfigError(f"{source}: key 'protocol.kind': unknown")
    settings = validate(cls.settings_model, pfile.settings, source, prefix="settings")
    check_settings_against_envelope(cls, settings, source, station)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_fuzzed_files_load_or_raise_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative station reference or default path resolves in here
    work = tmp_path / "work"
    work.mkdir()
    rng = random.Random(SEED)
    files = embedded_files()
    assert len(files) >= 20
    outcomes = {"loaded": 0, "refused": 0}
    slowest = 0.0
    for case in range(CASES):
        kind, text = files[case % len(files)]
        mutated = mutate(text, rng)
        path = work / "case.toml"
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as stream:
            stream.write(mutated)
        before = snapshot(tmp_path)
        start = time.perf_counter()
        try:
            load(kind, path)
            outcomes["loaded"] += 1
        except ConfigError as exc:
            message = str(exc)
            assert message and "\n" not in message and len(message) < 5000, (case, mutated[:300])
            assert message.startswith((str(path), "<embedded")), message
            outcomes["refused"] += 1
        except Exception as exc:  # pragma: no cover - what the test exists to catch
            pytest.fail(f"case {case} ({kind}) raised {type(exc).__name__}: {exc}\n--- input ---\n{mutated[:2000]}")
        elapsed = time.perf_counter() - start
        slowest = max(slowest, elapsed)
        assert elapsed < CASE_LIMIT_S, (case, elapsed)
        assert snapshot(tmp_path) == before, f"case {case} created or changed a file"
        assert os.listdir(tmp_path) == ["work"] and os.listdir(work) == ["case.toml"]
    assert outcomes["refused"] > CASES // 3 and outcomes["loaded"] > 0, outcomes  # the mutations bite, not all
    print(f"fuzz: {outcomes}, slowest case {slowest * 1e3:.0f} ms")
