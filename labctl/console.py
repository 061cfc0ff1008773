"""The terminal's side of run control: progress bar, run messages and the pause prompt.

A run started from the terminal is controlled like this (``RunEngine.ctrl_c_pauses``):

- one Ctrl-C pauses at the next safe point (chip in safe state, checkpoint written), and the
  terminal says how to go on: Enter (or ``r``) resumes, ``s`` stops (the run ends as a success
  with what it has), ``a`` aborts; a second Ctrl-C aborts too;
- when nobody answers (no terminal on stdin, or nobody there) the pause ends after
  ``pause_timeout_s`` seconds: the run is aborted and ``labctl resume FILE`` continues it later;
- SIGTERM aborts at the next safe point.

Messages (pause, resume, abort, instrument outages) go to stderr whether or not the progress
bar is shown, so a run whose output is redirected to a log file still says what happened.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from .engine import RunEngine

# Events said on the terminal as they happen (a pause is said by the prompt).
MESSAGE_EVENTS = ("resume", "abort", "stop_requested", "suspend", "unsuspend", "subscriber_err", "safe_state_fail",
                  "request_ignored")


class Console:
    """Subscribes to a run engine; shows progress and messages, and runs the pause prompt.

    ``progress``: show a progress bar (tqdm, on stderr; hidden when stderr is not a terminal);
    ``pause_timeout_s``: seconds a paused run waits for an answer before it is aborted (None or
    0: wait for ever); ``stdin``: where answers come from (a terminal; anything else is not read).
    """

    def __init__(self, engine: RunEngine, run_file: Path, *, progress: bool = True,
                 pause_timeout_s: float | None = 600.0, stdin=None):
        self.engine = engine
        self.run_file = Path(run_file)
        self.pause_timeout_s = pause_timeout_s or None
        self.stdin = sys.stdin if stdin is None else stdin
        self.interactive = _is_terminal(self.stdin)
        self.bar = _progress_bar() if progress else None
        self._paused = threading.Event()
        self._reader: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._step = 0
        engine.subscribe(self.on_doc)

    # ------------------------------------------------------------------ engine documents
    def on_doc(self, name: str, doc: dict) -> None:
        if name == "progress":
            self._step = doc["step"]
            if self.bar is not None:
                if doc["total"] is not None and self.bar.total != doc["total"]:
                    self.bar.total = doc["total"]
                self.bar.set_description(doc["stage"] or "run")
                self.bar.n = doc["step"]
                self.bar.refresh()
        elif name == "event" and doc["kind"] in MESSAGE_EVENTS:
            self.say(f"{doc['kind']}: {doc['reason']}" if doc["reason"] else doc["kind"])
        elif name == "state":
            if doc["new"] == "paused":
                self._on_pause()
            elif doc["old"] == "paused":
                self._on_unpause()
        elif name == "stop":
            self._on_unpause()

    def say(self, text: str) -> None:
        """One line on stderr, above the progress bar if there is one."""
        from tqdm import tqdm

        tqdm.write(f"labctl: {text}", file=sys.stderr)

    def close(self) -> None:
        self._on_unpause()
        if self.bar is not None:
            self.bar.close()

    # ------------------------------------------------------------------ the pause prompt
    def _on_pause(self) -> None:
        self._paused.set()
        wait = f"; after {self.pause_timeout_s:g} s without an answer the run ends and `labctl resume {self.run_file}` continues it" \
            if self.pause_timeout_s else ""
        if self.interactive:
            self.say(f"paused at step {self._step} (chip in its safe state, checkpoint written). "
                     f"Enter or r + Enter resumes, s + Enter stops, a + Enter or Ctrl-C aborts{wait}.")
            if self._reader is None or not self._reader.is_alive():
                self._reader = threading.Thread(target=self._read_answers, name="labctl-pause-prompt", daemon=True)
                self._reader.start()
        else:
            self.say(f"paused at step {self._step} (chip in its safe state, checkpoint written). "
                     f"Ctrl-C again or SIGTERM aborts{wait}.")
        if self.pause_timeout_s:
            self._timer = threading.Timer(self.pause_timeout_s, self._timed_out)
            self._timer.daemon = True
            self._timer.start()

    def _on_unpause(self) -> None:
        self._paused.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        if self._paused.is_set():
            self.engine.request_abort(f"paused for {self.pause_timeout_s:g} s without an answer")

    def _read_answers(self) -> None:
        """Read answers from the terminal while the run is paused (a daemon thread)."""
        while True:
            line = self.stdin.readline()
            if not line:  # end of input: nobody can answer any more
                return
            if not self._paused.is_set():
                continue
            answer = line.strip().lower()
            if answer in ("", "r", "resume"):
                self.engine.request_resume("terminal: resume")
            elif answer in ("s", "stop"):
                self.engine.request_stop("terminal: stop")
            elif answer in ("a", "abort"):
                self.engine.request_abort("terminal: abort")
            else:
                self.say(f"unknown answer {answer!r}: Enter or r resumes, s stops, a aborts")


def _is_terminal(stream) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams are not terminals
        return False


def _progress_bar():
    """A progress line on stderr: safe points done, of at most how many, and time elapsed.

    No percentage and no ETA: a protocol's total is an upper bound (early stopping ends training
    sooner) and its steps are not equally long (the calibration's fit at the end), so either
    would mislead."""
    from tqdm import tqdm

    return tqdm(total=None, unit="step", disable=None, file=sys.stderr, leave=False,
                bar_format="{desc}step {n_fmt} of at most {total_fmt} [{elapsed}]")
