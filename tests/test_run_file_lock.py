"""One writer per run file (RunFileLock), atomic creation (hidden partial), reopen of a killed file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from labctl.store import RunFileBusy, RunFileLock, RunReader, RunWriter, lock_path, partial_path

HOLDER = """
import sys, time
from labctl.store import RunWriter
w = RunWriter({path!r}, attrs={{}}, schema={{}})
{after}
print("READY", flush=True)
time.sleep(60)
"""


def start_holder(path, after: str = "w.checkpoint(0, b'x')") -> subprocess.Popen:
    code = textwrap.dedent(HOLDER.format(path=str(path), after=after))
    proc = subprocess.Popen([sys.executable, "-c", code, "holder-marker"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line == "READY", proc.stderr.read()
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_second_writer_in_another_process_is_refused_and_told_who(tmp_path):
    path = tmp_path / "run.h5"
    proc = start_holder(path)
    try:
        size = path.stat().st_size
        with pytest.raises(RunFileBusy) as info:
            RunWriter.reopen(path)
        assert str(path) in str(info.value) and f"pid {proc.pid}" in str(info.value)
        assert "holder-marker" in str(info.value)  # its command line
        assert info.value.holder["pid"] == proc.pid
        with pytest.raises(RunFileBusy):
            RunWriter(path, attrs={}, schema={}, overwrite=True)
        with pytest.raises(RunFileBusy):
            RunFileLock(path).acquire()
        assert path.stat().st_size == size  # nothing was replaced
    finally:
        kill(proc)
    # The OS released the killed holder's lock: a resume can take the file now.
    w = RunWriter.reopen(path, reason="after the holder died")
    w.close()
    with RunReader(path) as r:
        assert [e["kind"] for e in r.events()][-2:] == ["reopen", "stop"]
    assert not lock_path(path).exists()


def test_lock_object_is_exclusive_in_one_process_and_passed_in(tmp_path):
    path = tmp_path / "run.h5"
    lock = RunFileLock(path).acquire()
    with pytest.raises(RunFileBusy):
        RunWriter(path, attrs={}, schema={})  # takes its own lock: refused
    assert not path.exists() and not partial_path(path).exists()
    w = RunWriter(path, attrs={}, schema={}, lock=lock)
    w.close()
    assert lock.held  # a lock passed in is the caller's to release
    with pytest.raises(RunFileBusy):
        RunFileLock(path).acquire()
    lock.release()
    with RunFileLock(path):
        pass
    with pytest.raises(FileExistsError):
        RunWriter(path, attrs={}, schema={})
    assert not lock_path(path).exists()


def test_writer_killed_before_first_checkpoint_leaves_no_run_file(tmp_path):
    path = tmp_path / "run.h5"
    proc = start_holder(path, after="w.flush()")
    assert partial_path(path).exists() and not path.exists()
    kill(proc)
    assert not path.exists()
    with RunWriter(path, attrs={}, schema={}) as w:  # the leftover partial does not block
        w.checkpoint(0, b"x")
        assert path.exists() and not partial_path(path).exists()
    with RunReader(path) as r:
        assert r.exit_status() == "success"


def test_reopen_recovers_a_killed_writers_file_in_place(tmp_path):
    path = tmp_path / "run.h5"
    proc = start_holder(path, after="w.checkpoint(3, b'three'); w.flush()")
    kill(proc)
    with RunReader(path) as r:
        assert r.exit_status() == "incomplete"
    w = RunWriter.reopen(path, reason="resume")
    w.checkpoint(4, b"four")
    w.close()
    with RunReader(path) as r:
        assert r.latest_checkpoint() == (4, b"four")
        assert r.exit_status() == "success"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]  # no temporaries left
    assert os.path.getsize(path) > 0
