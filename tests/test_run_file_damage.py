"""Damaged run files: every reader gives up within seconds with RunFileError, never touches the
file; salvage() copies what can still be read into a new file."""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from labctl.store import DatasetSpec, RunFileError, RunReader, RunWriter, salvage

LIMIT_S = 10.0


def write_run(path, closed: bool = True):
    schema = {
        "calibration/counts": DatasetSpec("<i8", (4, 8), "", "switch counts"),
        "train/metrics": DatasetSpec([("epoch", "<i8"), ("loss", "<f8")], (None,), "", "per epoch"),
        "summary": DatasetSpec("u1", (None,), "", "JSON"),
    }
    w = RunWriter(path, attrs={"protocol": {"kind": "x"}, "seed": 3}, schema=schema)
    w.checkpoint(0, b"start" * 50)
    for i in range(40):
        w.append("train/metrics", (i, 1.0 / (i + 1)))
    w.write("calibration/counts", np.arange(32).reshape(4, 8))
    w.checkpoint(40, b"state" * 2000)
    w.append("summary", np.frombuffer(b'{"loss": 0.1}', dtype=np.uint8))
    if closed:
        w.close()
    return w


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    closed = folder / "closed.h5"
    write_run(closed)
    killed = folder / "killed.h5"
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
        from test_run_file_damage import write_run
        w = write_run({str(killed)!r}, closed=False)
        w.flush()
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    return {"closed": closed.read_bytes(), "killed": killed.read_bytes()}


def read_everything(path) -> None:
    """What labctl info, resume and the GUI read."""
    with RunReader(path) as r:
        r.attrs
        r.events()
        r.exit_status()
        r.checkpoints()
        r.latest_checkpoint()
        for name in r.names():
            r.dataset(name)
            r.dataset_attrs(name)
        if "summary" in r.names():
            r.json_dataset("summary")
        r.refresh()


def check_case(path) -> str:
    """Read ``path``: only RunFileError or success, within LIMIT_S, file bytes unchanged."""
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    start = time.monotonic()
    try:
        read_everything(path)
        result = "ok"
    except RunFileError as exc:
        assert str(path) in str(exc)
        result = "error"
    elapsed = time.monotonic() - start
    assert elapsed < LIMIT_S, f"{path.name}: {elapsed:.1f} s"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    return result


@pytest.mark.parametrize("kind", ["closed", "killed"])
def test_truncated_files_fail_fast(tmp_path, sources, kind):
    data = sources[kind]
    results = []
    for cut in (0, 8, 100, 1000, 2048, len(data) // 4, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.h5"
        path.write_bytes(data[:cut])
        start = time.monotonic()
        results.append(check_case(path))
        if kind == "closed":
            assert time.monotonic() - start < 1.0
    assert results.count("error") == len(results)


def test_foreign_hdf5_with_only_a_format_attribute_is_refused(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "labctl-run/1"
        f["data"] = np.arange(3)
    with pytest.raises(RunFileError, match="no /events"):
        RunReader(path)
    with h5py.File(path, "a") as f:
        f["events"] = np.arange(3)
    with pytest.raises(RunFileError, match="/events is"):
        RunReader(path)


def test_garbled_checkpoint_index_and_non_json_attribute(tmp_path):
    path = tmp_path / "run.h5"
    write_run(path)
    with h5py.File(path, "a") as f:
        f["checkpoints/index"][-1:] = np.array([(99, 10**15, 10**15, 1.0, 7)], dtype=f["checkpoints/index"].dtype)
    with RunReader(path) as r:  # the garbled row is skipped; the one before is used
        assert r.latest_checkpoint() == (0, b"start" * 50)
    with h5py.File(path, "a") as f:
        f.attrs["protocol"] = "{not json"
    with pytest.raises(RunFileError, match="'protocol' is not valid JSON"):
        RunReader(path)


def test_salvage_of_a_truncated_killed_file(tmp_path, sources):
    path = tmp_path / "cut.h5"
    path.write_bytes(sources["killed"][: len(sources["killed"]) * 3 // 4])
    before = path.read_bytes()
    report = salvage(path, tmp_path / "saved.h5")
    assert path.read_bytes() == before
    assert report.out.exists() and report.attrs > 0
    assert "events" in report.copied
    assert str(report.out) in str(report)
    with RunReader(report.out) as r:
        assert r.attrs["seed"] == 3
        assert r.latest_checkpoint() is None or r.latest_checkpoint()[0] in (0, 40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.h5", "saved.h5"]
    with pytest.raises(RunFileError, match="already exists"):
        salvage(path, tmp_path / "saved.h5")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(RunFileError):
        salvage(garbage, tmp_path / "nothing.h5")
    assert not (tmp_path / "nothing.h5").exists()


def test_fuzz_damaged_run_files(tmp_path, sources):
    """Seeded: truncations, bit flips, byte garbage, foreign files, garbled blobs and attributes."""
    rng = random.Random(20240611)
    counts = {"ok": 0, "error": 0}
    start = time.monotonic()
    for case in range(220):
        kind = rng.choice(["closed", "killed"])
        data = bytearray(sources[kind])
        mutation = rng.choice(["truncate", "flip", "flips", "garbage"])
        if mutation == "truncate":
            data = data[: rng.randrange(len(data))]
        elif mutation == "flip":
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif mutation == "flips":
            for _ in range(rng.randrange(2, 20)):
                data[rng.randrange(4096)] ^= 1 << rng.randrange(8)  # metadata lives at the start
        else:
            i = rng.randrange(len(data))
            data[i:i + 64] = rng.randbytes(64)
        path = tmp_path / f"case{case}.h5"
        path.write_bytes(bytes(data))
        counts[check_case(path)] += 1
        path.unlink()
    for case in range(10):  # valid HDF5 files that are not (quite) run files
        path = tmp_path / f"h5-{case}.h5"
        write_run(path)
        with h5py.File(path, "a") as f:
            which = case % 4
            if which == 0:
                blob = f["checkpoints/blob"]
                blob[:] = np.frombuffer(rng.randbytes(blob.shape[0]), dtype=np.uint8)
            elif which == 1:
                f.attrs["labctl_json_attrs"] = rng.choice(["[", "{}", "[1]", "\x00"])
            elif which == 2:
                del f["events"]
                f["events"] = np.zeros(3, dtype=[("time", "<f8")])
            else:
                f["summary"].resize((5,))
                f["summary"][:] = np.frombuffer(b"\xff{bad", dtype=np.uint8)
        counts[check_case(path)] += 1
    assert counts["error"] > 100
    assert time.monotonic() - start < 120
