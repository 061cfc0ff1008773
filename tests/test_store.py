"""Run files: round trip, SWMR readers, a writer killed with SIGKILL, checkpoints, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

try:
    from labctl import store
except ModuleNotFoundError:  # source tree not installed: `pip install -e .` makes this unneeded
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from labctl import store
from labctl.store import DatasetSpec, RunFileError, RunReader, RunWriter, recover

# Root of the source tree that holds the labctl package, for child processes.
SRC_ROOT = str(Path(store.__file__).resolve().parents[1])

METRICS = np.dtype([("step", "<i8"), ("loss", "<f8"), ("accuracy", "<f4")])


def schema() -> dict[str, DatasetSpec]:
    return {
        "train/metrics": DatasetSpec(METRICS, (None,), "", "loss and accuracy per step"),
        "train/weights": DatasetSpec("f4", (None, 2, 3), "", "layer-1 weight snapshots"),
        "pulses/voltage": DatasetSpec("f8", (None,), "V", "write pulse amplitude"),
        "pulses/label": DatasetSpec("S8", (None,), "", "pulse kind"),
        "calibration/counts": DatasetSpec("i4", (4, 3), "count", "switching counts"),
        "calibration/field": DatasetSpec("f8", (4,), "T", "applied field"),
    }


ATTRS = {
    "seed": 1234,
    "station": "sim-bench",
    "dt": 1e-9,
    "dry_run": False,
    "protocol": {"name": "train", "epochs": 3, "lr": [0.1, 0.01], "nested": {"a": None}},
    "layers": [784, 100, 10],
}


def run_child(code: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def read_line(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """Next stdout line of ``proc`` (fails the test instead of hanging)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        proc.kill()
        raise AssertionError(f"child printed nothing in {timeout} s; stderr: {proc.stderr.read()}")
    line = proc.stdout.readline()
    if not line:
        proc.wait(5)
        raise AssertionError(f"child exited ({proc.returncode}); stderr: {proc.stderr.read()}")
    return line.strip()


# -- round trip ---------------------------------------------------------------------------------


def test_round_trip(tmp_path):
    path = tmp_path / "deep" / "dir" / "run.h5"
    w = RunWriter(path, attrs=ATTRS, schema=schema())
    w.append("train/metrics", [(0, 2.3, 0.1), (1, 2.0, 0.2)])
    w.append("train/metrics", (2, 1.5, 0.4))  # one row
    w.append("train/metrics", np.array([(3, 1.2, 0.5)], dtype=METRICS))
    w.append("train/weights", np.zeros((2, 2, 3)))
    w.append("train/weights", np.ones((2, 3)))
    w.append("pulses/voltage", [0.5, 0.6])
    w.append("pulses/voltage", np.arange(3, dtype=np.int32))  # int into float: fine
    w.append("pulses/label", ["set", "reset"])
    w.append("pulses/label", b"read")
    w.write("calibration/counts", np.arange(12).reshape(4, 3))
    w.write("calibration/field", np.zeros(4))
    w.write("calibration/field", 0.25, index=2)
    w.event("pause", reason="operator", step=3)
    w.event("resume", step=3)
    w.checkpoint(2, b"first")
    w.checkpoint(3, b"second \x00 payload")
    w.close(reason="done")
    w.close()  # idempotent

    with RunReader(path) as r:
        attrs = r.attrs
        for key, value in ATTRS.items():
            assert attrs[key] == value, key
        assert attrs["format"] == "labctl-run/1"
        assert {"labctl_version", "git_hash", "created"} <= set(attrs)
        assert "labctl_json_attrs" not in attrs

        assert r.names() == sorted(
            [*schema(), "events", "checkpoints/blob", "checkpoints/index"]
        )
        m = r.dataset("train/metrics")
        assert m.dtype == METRICS
        assert m["step"].tolist() == [0, 1, 2, 3]
        np.testing.assert_allclose(m["loss"], [2.3, 2.0, 1.5, 1.2])
        w_ = r.dataset("train/weights")
        assert w_.shape == (3, 2, 3) and w_.dtype == np.float32
        assert w_[:2].sum() == 0 and w_[2].sum() == 6
        np.testing.assert_allclose(r.dataset("pulses/voltage"), [0.5, 0.6, 0, 1, 2])
        assert r.dataset("pulses/label").tolist() == [b"set", b"reset", b"read"]
        assert r.dataset("calibration/counts").tolist() == np.arange(12).reshape(4, 3).tolist()
        assert r.dataset("calibration/field").tolist() == [0, 0, 0.25, 0]
        assert r.dataset("pulses/voltage", slice(3, None)).tolist() == [1, 2]
        assert r.dataset_attrs("pulses/voltage") == {
            "units": "V",
            "description": "write pulse amplitude",
        }
        assert r.dataset_attrs("calibration/field")["units"] == "T"

        events = r.events()
        assert [e["kind"] for e in events] == [
            "start", "pause", "resume", "checkpoint", "checkpoint", "stop"
        ]
        assert events[1] == {**events[1], "reason": "operator", "step": 3}
        assert events[-1]["status"] == "success" and events[-1]["reason"] == "done"
        assert all(a["time"] <= b["time"] for a, b in zip(events, events[1:]))
        assert abs(events[0]["time"] - time.time()) < 60
        assert r.exit_status() == "success"
        assert r.latest_checkpoint() == (3, b"second \x00 payload")
        assert [c["step"] for c in r.checkpoints()] == [2, 3]

    # A cleanly closed run file opens with plain h5py too.
    with h5py.File(path, "r") as f:
        assert f["pulses/voltage"].attrs["units"] == "V"
        assert f["events"].dtype.names == ("time", "kind", "status", "reason", "step")


def test_context_manager_records_failure(tmp_path):
    path = tmp_path / "run.h5"
    with pytest.raises(RuntimeError, match="instrument on fire"):
        with RunWriter(path, attrs={}, schema=schema()) as w:
            w.append("pulses/voltage", [1.0])
            raise RuntimeError("instrument on fire")
    assert w.closed
    with RunReader(path) as r:
        assert r.exit_status() == "failed"
        assert "instrument on fire" in r.events()[-1]["reason"]
        assert r.dataset("pulses/voltage").tolist() == [1.0]


def test_close_statuses_and_long_reason(tmp_path):
    path = tmp_path / "run.h5"
    w = RunWriter(path, attrs={}, schema={})
    with pytest.raises(ValueError, match="exit status"):
        w.close(status="exploded")
    w.close(status="aborted", reason="é" * 300)  # truncated to 256 bytes, not mid-character
    with RunReader(path) as r:
        assert r.exit_status() == "aborted"
        assert r.events()[-1]["reason"] == "é" * 128


def test_without_checkpoints(tmp_path):
    path = tmp_path / "run.h5"
    with RunWriter(path, attrs={}, schema=schema(), checkpoints=False) as w:
        with pytest.raises(ValueError, match="checkpoints=False"):
            w.checkpoint(0, b"x")
    with RunReader(path) as r:
        assert not any(n.startswith("checkpoints") for n in r.names())
        assert r.latest_checkpoint() is None


# -- live readers (SWMR) ------------------------------------------------------------------------


def test_reader_in_same_process_sees_flushed_rows(tmp_path):
    path = tmp_path / "run.h5"
    w = RunWriter(path, attrs={"seed": 1}, schema=schema())
    w.publish()  # readers see the file at its name from here on (else from the first checkpoint)
    w.append("pulses/voltage", [1.0, 2.0])
    w.flush()
    with RunReader(path) as r:
        assert r.dataset("pulses/voltage").tolist() == [1.0, 2.0]
        assert r.exit_status() == "incomplete"
        w.append("pulses/voltage", [3.0])
        w.checkpoint(7, b"seven")
        w.flush()
        r.refresh()
        assert r.dataset("pulses/voltage").tolist() == [1.0, 2.0, 3.0]
        assert r.latest_checkpoint() == (7, b"seven")
        w.close()
        r.refresh()
        assert r.exit_status() == "success"


def test_reader_in_other_process_sees_flushed_rows_and_refresh(tmp_path):
    path = tmp_path / "run.h5"
    w = RunWriter(path, attrs={"seed": 1}, schema=schema())
    w.publish()  # readers see the file at its name from here on (else from the first checkpoint)
    w.append("pulses/voltage", [1.0, 2.0])
    w.flush()
    child = run_child(
        f"""
        import sys
        from labctl.store import RunReader
        r = RunReader({str(path)!r})
        for line in sys.stdin:
            if line.strip() == "refresh":
                r.refresh()
            print(len(r.dataset("pulses/voltage")), r.exit_status(), flush=True)
        """,
        stdin=subprocess.PIPE,
    )
    try:
        def ask(command: str) -> str:
            child.stdin.write(command + "\n")
            child.stdin.flush()
            return read_line(child)

        assert ask("read") == "2 incomplete"
        w.append("pulses/voltage", [3.0, 4.0, 5.0])
        w.flush()
        assert ask("refresh") == "5 incomplete"
        w.append("pulses/voltage", [6.0])
        w.close()
        assert ask("refresh") == "6 success"
    finally:
        w.close()
        child.stdin.close()
        child.wait(10)
    assert child.returncode == 0, child.stderr.read()


# -- a writer killed with SIGKILL ---------------------------------------------------------------

N_FLUSHED = 25

KILLED_WRITER = """
import time
import numpy as np
from labctl.store import DatasetSpec, RunWriter
w = RunWriter({path!r}, attrs={{"seed": 7, "cfg": {{"k": [1, 2]}}}}, schema={{
    "train/loss": DatasetSpec("f8", (None,), "", "loss"),
    "train/weights": DatasetSpec("f4", (None, 8), "", "weights"),
    "calibration/field": DatasetSpec("f8", (3,), "T"),
}})
w.write("calibration/field", [0.1, 0.2, 0.3])
for i in range({n}):
    w.append("train/loss", float(i))
    w.append("train/weights", np.full(8, i, dtype=np.float32))
w.checkpoint({n} - 1, b"state at step " + str({n} - 1).encode())
w.flush()
print("FLUSHED", flush=True)
for i in range({n}, {n} + 500):
    w.append("train/loss", float(i))
    w.append("train/weights", np.full(8, i, dtype=np.float32))
print("UNFLUSHED", flush=True)
time.sleep(60)
"""


def test_sigkill_leaves_readable_file_and_recover(tmp_path):
    path = tmp_path / "crash.h5"
    child = run_child(KILLED_WRITER.format(path=str(path), n=N_FLUSHED))
    try:
        assert read_line(child) == "FLUSHED"
        assert read_line(child) == "UNFLUSHED"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL

    # Plain h5py, SWMR read: everything flushed is there.
    with h5py.File(path, "r", swmr=True) as f:
        loss = f["train/loss"][()]
        assert loss.shape[0] >= N_FLUSHED
        assert loss[:N_FLUSHED].tolist() == [float(i) for i in range(N_FLUSHED)]
        assert f["train/weights"][:N_FLUSHED, 0].tolist() == list(range(N_FLUSHED))
        assert f["calibration/field"][()].tolist() == [0.1, 0.2, 0.3]
        assert f.attrs["format"] == "labctl-run/1"
    # Without SWMR, HDF5 refuses a file its writer never closed.
    with pytest.raises(OSError):
        h5py.File(path, "r")

    with RunReader(path) as r:
        assert r.exit_status() == "incomplete"
        assert r.latest_checkpoint() == (N_FLUSHED - 1, b"state at step 24")
        assert r.attrs["cfg"] == {"k": [1, 2]}

    # (RunWriter.reopen of the killed file itself recovers it in place under the writer lock:
    # tests/test_run_file_lock.py.)
    out = recover(path)
    assert out == tmp_path / "crash.recovered.h5"
    with h5py.File(out, "r") as f:  # cleanly closed now
        assert f["train/loss"][:N_FLUSHED].tolist() == [float(i) for i in range(N_FLUSHED)]
        assert f["train/loss"].maxshape == (None,)
        assert f["calibration/field"].attrs["units"] == "T"
        assert f.attrs["recovered_from"] == str(path)
    with RunReader(out) as r:
        assert r.exit_status() == "incomplete"
        assert r.latest_checkpoint() == (N_FLUSHED - 1, b"state at step 24")
        assert r.attrs["seed"] == 7 and r.attrs["cfg"] == {"k": [1, 2]}
        n_rows = len(r.dataset("train/loss"))

    # `labctl resume`: continue the recovered run and close it properly.
    w = RunWriter.reopen(out, reason="resume after crash")
    w.append("train/loss", [100.0])
    w.checkpoint(100, b"later")
    w.close()
    with h5py.File(out, "r") as f:
        assert f["train/loss"].shape == (n_rows + 1,)
    with RunReader(out) as r:
        kinds = [e["kind"] for e in r.events()]
        assert kinds[0] == "start" and kinds[-3:] == ["reopen", "checkpoint", "stop"]
        assert r.exit_status() == "success"
        assert r.latest_checkpoint() == (100, b"later")


def test_recover_explicit_output_and_same_path(tmp_path):
    path = tmp_path / "run.h5"
    with RunWriter(path, attrs={"a": [1]}, schema=schema()) as w:
        w.append("train/weights", np.ones((4, 2, 3)))
    out = recover(path, tmp_path / "sub" / "copy.h5")
    with RunReader(out) as r, RunReader(path) as orig:
        assert r.names() == orig.names()
        assert r.attrs == {**orig.attrs, "recovered_from": str(path)}
        assert r.events() == orig.events()
        assert r.exit_status() == "success"
        np.testing.assert_array_equal(r.dataset("train/weights"), orig.dataset("train/weights"))
    with pytest.raises(ValueError, match="writer lock"):
        recover(path, path)


# -- checkpoints --------------------------------------------------------------------------------


def test_latest_checkpoint_ignores_torn_checkpoints(tmp_path):
    path = tmp_path / "run.h5"
    w = RunWriter(path, attrs={}, schema={})
    w.publish()
    with RunReader(path) as r:
        assert r.latest_checkpoint() is None
        w.checkpoint(1, b"one")
        w.checkpoint(2, b"")
        w.checkpoint(3, b"three" * 1000)
        r.refresh()
        assert r.latest_checkpoint() == (3, b"three" * 1000)

        # Writer killed between the payload and its index row: payload only.
        w._append_array("checkpoints/blob", w._datasets["checkpoints/blob"],
                        np.frombuffer(b"torn", dtype=np.uint8))
        w.flush()
        r.refresh()
        assert r.latest_checkpoint() == (3, b"three" * 1000)

        # An index row whose payload is not (yet) visible, or does not match its CRC.
        size = w._lengths["checkpoints/blob"]
        rows = np.array(
            [(4, size, 10, time.time(), 0), (5, 0, 3, time.time(), zlib.crc32(b"xxx"))],
            dtype=store.CHECKPOINT_INDEX_DTYPE,
        )
        w._append_array("checkpoints/index", w._datasets["checkpoints/index"], rows)
        w.flush()
        r.refresh()
        assert len(r.checkpoints()) == 5
        assert r.latest_checkpoint() == (3, b"three" * 1000)
    w.close()


CHECKPOINTING_WRITER = """
import hashlib
from labctl.store import RunWriter
w = RunWriter({path!r}, attrs={{}}, schema={{}})
w.publish()
print("READY", flush=True)
for step in range(300):
    n = (step * 7919) % 5000
    w.checkpoint(step, (hashlib.sha256(str(step).encode()).digest() * 160)[:n])
w.close()
"""


def test_concurrent_reader_never_sees_torn_checkpoint(tmp_path):
    import hashlib

    path = tmp_path / "run.h5"
    child = run_child(CHECKPOINTING_WRITER.format(path=str(path)))
    assert read_line(child) == "READY"
    seen: list[int] = []
    with RunReader(path) as r:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r.refresh()
            latest = r.latest_checkpoint()
            if latest is not None:
                step, payload = latest
                n = (step * 7919) % 5000
                assert payload == (hashlib.sha256(str(step).encode()).digest() * 160)[:n]
                assert not seen or step >= seen[-1]
                seen.append(step)
            if r.exit_status() == "success":
                break
        r.refresh()
        assert r.latest_checkpoint()[0] == 299
    child.wait(10)
    assert child.returncode == 0, child.stderr.read()
    assert seen


# -- errors -------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.h5"
    with pytest.raises(RunFileError, match="no such run file") as info:
        RunReader(path)
    assert str(path) in str(info.value)


def test_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("this is not HDF5\n")
    with pytest.raises(RunFileError, match="not an HDF5 file") as info:
        RunReader(path)
    assert str(path) in str(info.value)
    with pytest.raises(RunFileError):
        recover(path)


def test_hdf5_without_format(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(RunFileError, match="not a labctl run file") as info:
        RunReader(path)
    assert str(path) in str(info.value) and "format" in str(info.value)

    with h5py.File(path, "a") as f:
        f.attrs["format"] = "someone-else/3"
    with pytest.raises(RunFileError, match="unsupported run file format"):
        RunReader(path)


def test_append_errors_name_the_dataset(tmp_path):
    path = tmp_path / "run.h5"
    with RunWriter(path, attrs={}, schema=schema()) as w:
        with pytest.raises(ValueError, match=r"'train/weights'.*\(n, 2, 3\)"):
            w.append("train/weights", np.zeros((4, 3, 2)))
        with pytest.raises(ValueError, match="'pulses/voltage'"):
            w.append("pulses/voltage", np.zeros((2, 2)))
        with pytest.raises(ValueError, match="'pulses/voltage'.*complex"):
            w.append("pulses/voltage", [1j])
        with pytest.raises(ValueError, match="'pulses/label'.*does not fit"):
            w.append("pulses/label", ["much too long a label"])
        with pytest.raises(ValueError, match="'train/metrics'.*fields"):
            w.append("train/metrics", np.zeros(2))
        with pytest.raises(ValueError, match="'calibration/counts'.*write"):
            w.append("calibration/counts", np.zeros((1, 3)))
        with pytest.raises(ValueError, match="'pulses/voltage'.*append"):
            w.write("pulses/voltage", np.zeros(3))
        with pytest.raises(ValueError, match=r"'calibration/field'.*\(4,\)"):
            w.write("calibration/field", np.zeros(5))
        with pytest.raises(KeyError, match="'train/nothing'"):
            w.append("train/nothing", [1.0])
        with pytest.raises(ValueError, match="event kind"):
            w.event("a-kind-that-is-far-too-long")
        w.append("pulses/voltage", [1.0])  # still usable after errors
    assert w.closed
    with pytest.raises(ValueError, match="closed"):
        w.append("pulses/voltage", [1.0])
    with RunReader(path) as r:
        assert r.dataset("pulses/voltage").tolist() == [1.0]
        assert r.exit_status() == "success"
        with pytest.raises(KeyError, match="'nothing'"):
            r.dataset("nothing")


def test_writer_argument_errors(tmp_path):
    path = tmp_path / "run.h5"
    with pytest.raises(ValueError, match="reserved"):
        RunWriter(path, attrs={}, schema={"events": DatasetSpec("f8", (None,))})
    with pytest.raises(ValueError, match="'format'"):
        RunWriter(path, attrs={"format": "x"}, schema={})
    with pytest.raises(ValueError, match="'when'"):
        RunWriter(path, attrs={"when": object()}, schema={})
    with pytest.raises(ValueError, match="only axis 0"):
        DatasetSpec("f8", (3, None))
    with pytest.raises(ValueError, match="cannot be stored"):
        DatasetSpec(object, (None,))
    assert not path.exists()

    RunWriter(path, attrs={}, schema={}).close()
    with pytest.raises(FileExistsError, match="already exists"):
        RunWriter(path, attrs={}, schema={})
    RunWriter(path, attrs={"v": 2}, schema={}, overwrite=True).close()
    with RunReader(path) as r:
        assert r.attrs["v"] == 2
