"""Running a sweep's points: on Dask (a LocalCluster of one process per core, or a lab's scheduler),
or one at a time in this process for stations with instruments.

Each point is one Dask task, :func:`labctl.sweep.run_point`, which writes (or resumes) the point's
ordinary run file and returns its record (status, metrics, the file's size and time: read on the
worker, which just wrote the file). Every point is submitted at once (the scheduler hands them out
as workers free up, so a worker never waits for this process); every worker is warmed up once when
it joins (:func:`labctl.sweep.warm_up`: imports, one torch thread) instead of in its first point.
The coordinator here only files the records into the sweep index, rewritten atomically at most
every ``INDEX_EVERY_S`` seconds and at the end (a crash loses nothing: the run files are the truth,
and a re-run reads the run files the index does not vouch for). Dask re-runs the task of a worker
that died on another worker, where it resumes the run file from its last checkpoint.

Ctrl-C: the first stops handing out points (points not yet started return at once) and lets
running ones finish; the second asks running points to abort at their next safe point (they resume
from their last checkpoint on the next run); a third stops waiting. The LocalCluster's processes
ignore SIGINT (a terminal sends it to all of them): only this process acts on it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .sweep import (PointTask, SweepPlan, new_index, read_index, refresh_from_files, run_point, update_point,
                    warm_up, write_index, write_tables)

__all__ = ["SweepOutcome", "run_sweep"]

FINISHED = "success"
INDEX_EVERY_S = 1.0  # the index is rewritten at most this often while points finish (and at the end)
POLL_S = 0.05  # how often the coordinator looks for finished points and Ctrl-C

log = logging.getLogger(__name__)


@dataclass
class SweepOutcome:
    """How a sweep invocation ended: counts by status, the points run in it, the index."""

    index: dict[str, Any]
    ran: list[str] = field(default_factory=list)  # points that ran (or resumed) in this invocation
    interrupted: bool = False
    dashboard: str | None = None  # the Dask dashboard's address, when there was one
    index_written: float = 0.0  # time.monotonic() of the last index write
    finished: int = 0  # points whose status is success (kept as records arrive)
    entries: dict[str, dict] = field(default_factory=dict)  # the index's points by name

    def __post_init__(self) -> None:
        self.entries = {p["name"]: p for p in self.index["points"]}

    def count(self, status: str) -> int:
        return sum(p["status"] == status for p in self.index["points"])

    @property
    def complete(self) -> bool:
        return all(p["status"] == FINISHED for p in self.index["points"])


class _Interrupts:
    """SIGINT while the sweep runs: counts the presses; the loops read ``level`` (0, 1, 2, 3+)."""

    def __init__(self, echo: Callable[[str], None]):
        self.level, self.echo = 0, echo

    def __call__(self, signum, frame) -> None:
        self.level += 1
        if self.level == 1:
            self.echo("Ctrl-C: no new points; running points go on to their end (Ctrl-C again: stop them at "
                      "their next safe point, resumable)")
        elif self.level == 2:
            self.echo("Ctrl-C again: running points stop at their next safe point (run the same command to "
                      "resume them; Ctrl-C once more to stop waiting)")

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def run_sweep(plan: SweepPlan, out_dir: str | Path, *, scheduler: str | None = None, workers: int | None = None,
              local: bool | None = None, echo: Callable[[str], None] = print) -> SweepOutcome:
    """Run every unfinished point of ``plan`` into ``out_dir``; returns the outcome (index included).

    ``scheduler``: address of a running Dask scheduler (``tcp://host:8786``) or a scheduler file;
    None starts a LocalCluster of ``workers`` processes (default ``os.cpu_count()``), one thread
    each, dashboard on 127.0.0.1 only. ``local``: run the points one at a time in this process
    (forced for stations with instruments). Finished points are not run again; interrupted ones
    resume from their last checkpoint.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = new_index(plan, out_dir, read_index(out_dir))
    refresh_from_files(index, out_dir)  # opens only the run files the index does not vouch for
    write_index(out_dir, index)
    outcome = SweepOutcome(index, index_written=time.monotonic())
    todo = [p for p in plan.points if index["points"][p.index]["status"] != FINISHED]
    done = outcome.finished = len(plan.points) - len(todo)
    echo(f"sweep {plan.name}: {len(plan.points)} points ({plan.pfile.protocol.kind} on station "
         f"{plan.station.station.name}); {done} finished, {len(todo)} to run; folder {out_dir}")
    try:
        if todo:
            if plan.local_only or local:
                if plan.local_only:
                    echo(f"station {plan.station.station.name} has instruments (one chip): points run one at a "
                         "time in this process")
                _run_here(plan, todo, out_dir, outcome, echo)
            else:
                _run_dask(plan, todo, out_dir, outcome, scheduler, workers, echo)
    finally:
        write_index(out_dir, index)  # whatever happened, with every record received
    write_tables(out_dir, index)
    return outcome


def _record(out_dir: Path, outcome: SweepOutcome, record: dict, total: int, echo) -> None:
    """File one point's record into the index (written atomically, at most every INDEX_EVERY_S)."""
    entry = outcome.entries[record["name"]]
    was_finished = entry["status"] == FINISHED
    update_point(outcome.index, record, entry)
    outcome.finished += (entry["status"] == FINISHED) - was_finished
    if record.get("ran"):
        outcome.ran.append(record["name"])
    if time.monotonic() - outcome.index_written >= INDEX_EVERY_S:
        write_index(out_dir, outcome.index)
        outcome.index_written = time.monotonic()
    finished = outcome.finished
    what = entry["status"]
    if record.get("resumed_from") is not None:
        what += f" (resumed from step {record['resumed_from']})"
    if entry.get("error"):
        what += f": {entry['error']}"
    echo(f"[{finished}/{total}] {record['name']}: {what}")


def _run_here(plan: SweepPlan, todo, out_dir: Path, outcome: SweepOutcome, echo) -> None:
    """One point at a time in this process (instrument stations; tests)."""
    interrupts = _Interrupts(echo)
    with interrupts.installed():
        for point in todo:
            if interrupts.level:
                outcome.interrupted = True
                break
            record = run_point(plan.task(point, out_dir), should_stop=lambda: interrupts.level >= 2)
            _record(out_dir, outcome, record, len(plan.points), echo)


def _dashboard_available() -> bool:
    try:
        import bokeh  # noqa: F401  (the Dask dashboard needs it: a dependency of labctl)
    except ImportError:
        return False
    return True


def _dashboard(client, local: bool) -> str | None:
    """The dashboard's address: the scheduler's (``client.dashboard_link``) when it serves one; for a
    LocalCluster also only if bokeh is importable (without it the page only says to install it)."""
    if "dashboard" not in client.scheduler_info().get("services", {}):
        return None
    if local and not _dashboard_available():
        return None
    return client.dashboard_link


def _warm_up_plugin_class():
    """:class:`WarmUp`, made on first use (a WorkerPlugin, so it needs distributed, which a sweep
    run in this process does not import)."""
    global _WARM_UP
    if _WARM_UP is None:
        from distributed.diagnostics.plugin import WorkerPlugin

        class WarmUp(WorkerPlugin):
            """A Dask worker plugin: :func:`labctl.sweep.warm_up` once per worker, when it joins the
            sweep (the workers there at the start, and any that join later, such as a replacement),
            in a thread so that the worker keeps answering the scheduler meanwhile."""

            def __init__(self, task: PointTask):
                self.task = task

            async def setup(self, worker) -> None:
                import asyncio

                await asyncio.get_running_loop().run_in_executor(None, warm_up, self.task)

        WarmUp.__module__, WarmUp.__qualname__ = __name__, "WarmUp"  # pickled by reference: labctl is on the workers
        _WARM_UP = WarmUp
    return _WARM_UP


_WARM_UP = None


def __getattr__(name: str):
    if name == "WarmUp":
        return _warm_up_plugin_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _connect(scheduler: str | None, workers: int | None, echo):
    """A Dask client: to ``scheduler``, or to a new LocalCluster; returns (client, cluster or None)."""
    from distributed import Client, LocalCluster

    _quiet_dask()
    if scheduler:
        try:
            if scheduler.endswith(".json") and Path(scheduler).is_file():
                client = Client(scheduler_file=scheduler, timeout="10s")
            else:
                client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            from .runs import BadInput

            raise BadInput(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})") from None
        n = len(client.scheduler_info(n_workers=-1)["workers"]) if _takes_n_workers(client) else \
            len(client.scheduler_info()["workers"])
        echo(f"Dask scheduler {client.scheduler.address}: {n} workers")
        return client, None
    n = workers or os.cpu_count() or 1
    # The scheduler's HTTP server (the dashboard when bokeh is installed) listens on 127.0.0.1 only.
    # Worker processes (one thread each, so one point each) ignore SIGINT: a Ctrl-C at the terminal
    # reaches the whole process group, and is this process's to handle (no new points, then stop
    # the running ones at a safe point), not a KeyboardInterrupt killing the workers mid-point.
    with _sigint_ignored_by_children():
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    client = Client(cluster)
    echo(f"Dask LocalCluster: {n} worker processes, 1 thread each")
    return client, cluster


@contextmanager
def _sigint_ignored_by_children():
    """SIGINT ignored while the LocalCluster starts its processes: an ignored signal stays ignored
    across exec, and Python then installs no KeyboardInterrupt handler, so the nannies and their
    workers (restarted ones included) never see a Ctrl-C. A Ctrl-C in these seconds is lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _quiet_dask() -> None:
    """Dask logs every connection at INFO; the sweep says what matters itself (``--debug`` keeps them)."""
    if logging.getLogger().level > logging.INFO:
        for name in ("distributed", "distributed.scheduler", "distributed.worker", "distributed.nanny",
                     "distributed.core", "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _takes_n_workers(client) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def _run_dask(plan: SweepPlan, todo, out_dir: Path, outcome: SweepOutcome, scheduler, workers, echo) -> None:
    from distributed import Event

    client, cluster = _connect(scheduler, workers, echo)
    try:
        outcome.dashboard = _dashboard(client, local=cluster is not None)
        if outcome.dashboard:
            echo(f"dashboard: {outcome.dashboard}")
        elif cluster is None:
            echo("dashboard: none (the scheduler serves none)")
        else:
            echo("dashboard: none (install bokeh for one)")
        token = uuid.uuid4().hex[:12]
        no_new, stop = Event(f"labctl-sweep-{token}-no-new", client=client), Event(f"labctl-sweep-{token}-stop",
                                                                                  client=client)
        tasks = [(point, plan.task(point, out_dir.resolve(), no_new_event=no_new.name, stop_event=stop.name))
                 for point in todo]
        plugin = f"labctl-sweep-warm-up-{token}"
        warmed = _warm_workers(client, tasks[0][1], plugin, echo)
        futures = {}
        for point, task in tasks:  # all at once: the scheduler queues them and hands them out
            future = client.submit(run_point, task, key=f"labctl-point-{point.name}-{token}", pure=False)
            futures[future] = point
        _collect(client, futures, no_new, stop, out_dir, outcome, len(plan.points), echo)
        if warmed and cluster is None:  # a lab's scheduler outlives the sweep: leave no plugin behind
            try:
                client.unregister_worker_plugin(plugin)
            except Exception as exc:  # noqa: BLE001  (workers gone, scheduler closing: nothing to clean)
                log.debug("warm-up plugin %s not unregistered (%s)", plugin, exc)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _warm_workers(client, task: PointTask, name: str, echo) -> bool:
    """Warm every worker up (:class:`WarmUp`, registered as ``name``), all at once; waits for the
    workers there now (workers that join later warm up when they join). True if registered."""
    start = time.perf_counter()
    try:
        client.register_plugin(_warm_up_plugin_class()(task), name=name)
    except Exception as exc:  # noqa: BLE001  (an optimisation: the points still run, only slower to start)
        echo(f"workers not warmed up ({type(exc).__name__}: {exc}); their first points import what they need")
        return False
    echo(f"workers warmed up in {time.perf_counter() - start:.1f} s (imports done once, one torch thread)")
    return True


def _collect(client, futures: dict, no_new, stop, out_dir: Path, outcome: SweepOutcome, total: int, echo) -> None:
    """File each point's record as its task completes (in completion order); Ctrl-C as the module says."""
    from distributed import CancelledError, as_completed
    from distributed.scheduler import KilledWorker

    interrupts = _Interrupts(echo)
    pending = dict(futures)
    completed = as_completed(futures)  # incremental: no scan of every pending point per completion
    level = 0
    with interrupts.installed():
        while pending:
            if interrupts.level != level:
                level = interrupts.level
                outcome.interrupted = True
                if level == 1:  # no new points: cancel those no worker holds; a held one returns at once
                    no_new.set()
                    held = {key for keys in client.processing().values() for key in keys}
                    for future in pending:
                        if future.key not in held:
                            future.cancel()
                elif level == 2:
                    stop.set()
                else:
                    echo("stopped waiting: points still running in workers are left to them; run the same command "
                         "later to finish the sweep")
                    break
            finished = completed.next_batch(block=False)
            if not finished:
                time.sleep(POLL_S)  # a worker never waits for this: every point is already submitted
                continue
            for future in finished:
                point = pending.pop(future)
                try:
                    record = future.result()
                except CancelledError:
                    record = {"name": point.name, "status": "not started",
                              "reason": "sweep interrupted before this point started", "error": ""}
                except KilledWorker as exc:
                    record = {"name": point.name, "status": "failed", "reason": "error",
                              "error": f"its worker died repeatedly ({exc})"}
                except Exception as exc:  # the task itself raised: recorded, the sweep goes on
                    record = {"name": point.name, "status": "failed", "reason": "error",
                              "error": f"{type(exc).__name__}: {exc}"}
                if record["status"] == "not started":
                    record = {**record, "status": "pending"}
                _record(out_dir, outcome, record, total, echo)  # a failed point is said; the sweep goes on
    for future in pending:
        future.cancel()
