"""Fuzzing through the command line itself: bad files give exit code 0, 1 or 2 and one line.

Protocol and station files (mutated embedded files, see ``tests/test_config_fuzz.py``) go through
``labctl check`` (which runs every check ``labctl run`` makes before it opens anything); run
files (truncated at random offsets, bit-flipped, foreign HDF5, a checkpoint replaced by garbage)
go through ``labctl info`` and ``labctl resume``. Every case must end within 10 s with exit code
0, 1 or 2, print no traceback and no "internal error" (the catch-all for an unexpected
exception), and change no file: a damaged run file is left byte for byte as it was (``resume``
may only add ``NAME.salvaged.h5`` beside it).
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from labctl.cli import main
from test_config_fuzz import embedded_files, mutate

SEED = 20261130
CASE_LIMIT_S = 10.0


def run_cli(capsys, *args: str) -> tuple[int, str]:
    start = time.monotonic()
    code = main(list(args))
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert elapsed < CASE_LIMIT_S, (args, elapsed)
    assert code in (0, 1, 2), (args, code, err)
    assert "Traceback" not in err and "internal error" not in err, (args, err)
    if code:
        assert err.startswith("labctl: ") and err.strip().count("\n") == 0, (args, err)
    return code, err


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def test_fuzzed_protocol_and_station_files_through_labctl_check(tmp_path, capsys):
    rng = random.Random(SEED)
    files = embedded_files()
    codes = {0: 0, 2: 0}
    for case in range(200):
        kind, text = rng.choice(files)
        path = tmp_path / f"case{case}.toml"
        path.write_text(mutate(text, rng), encoding="utf-8", errors="surrogateescape")
        before = digest(tmp_path)
        args = ["check", str(path)] if kind == "protocols" else ["check", "calibrate-dw", "--station", str(path)]
        code, err = run_cli(capsys, *args)
        codes[code] = codes.get(code, 0) + 1
        assert digest(tmp_path) == before, f"case {case} changed a file"
        if code == 2:
            assert str(path) in err or "station" in err, err
    assert codes[2] > 100 and codes[0] > 0, codes  # the mutations exercise both outcomes


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """A finished run file and a failed (aborted mid-run, resumable) one of a small calibration."""
    folder = tmp_path_factory.mktemp("runs")
    done, failed = folder / "done.h5", folder / "failed.h5"
    assert main(["run", "calibrate-stt", "--no-progress", "--out", str(done), "--checkpoint-every", "0"]) == 0
    shutil.copy(done, failed)
    with h5py.File(failed, "r+") as f:  # make it look aborted: last stop event failed
        events = f["events"]
        last = events[-1]
        last["status"] = b"failed"
        events[-1] = last
    return done, failed


def damaged_copies(source: Path, folder: Path, rng: random.Random, count: int):
    data = source.read_bytes()
    for i in range(count):
        what = rng.choice(["truncate", "flip", "flip", "foreign", "garbage_checkpoint"])
        path = folder / f"{source.stem}-{i}-{what}.h5"
        if what == "truncate":
            path.write_bytes(data[: rng.randrange(len(data))])
        elif what == "flip":
            raw = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(raw))
        elif what == "foreign":
            with h5py.File(path, "w") as f:
                f.attrs["format"] = "labctl-run/1"
                f["events"] = np.arange(3)
        else:
            shutil.copy(source, path)
            with h5py.File(path, "r+") as f:
                blob = f["checkpoints/blob"]
                blob[...] = np.frombuffer(rng.randbytes(blob.shape[0]), dtype=np.uint8)
                index = f["checkpoints/index"][()]
                for row in range(len(index)):  # valid CRCs over garbage: the payload itself is garbage
                    o, n = int(index[row]["offset"]), int(index[row]["length"])
                    index[row]["crc32"] = zlib.crc32(blob[o:o + n].tobytes())
                f["checkpoints/index"][...] = index
        yield path


def test_damaged_run_files_through_labctl_info_and_resume(tmp_path, capsys, run_files):
    rng = random.Random(SEED + 1)
    cases = 0
    for source in run_files:
        for path in damaged_copies(source, tmp_path, rng, 60):
            others = digest(tmp_path)
            run_cli(capsys, "info", str(path))
            run_cli(capsys, "info", str(path), "--json")
            resumed, _ = run_cli(capsys, "resume", str(path), "--no-progress", "--pause-timeout", "1")
            after = digest(tmp_path)
            new = set(after) - set(others)
            assert new <= {f"{path.stem}.salvaged.h5"}, new  # at most the salvaged copy appears
            changed = [n for n in others if n != path.name and after.get(n) != others[n]]
            assert not changed, changed
            if resumed == 2:  # refused: the file named is left exactly as it was
                assert after[path.name] == others[path.name], f"{path.name} was changed"
            cases += 1
    assert cases >= 100
