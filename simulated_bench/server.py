"""Serve a station's simulated instruments on 127.0.0.1 TCP sockets, as LAN instruments.

Each instrument listens on its own port (ephemeral unless the station fixes one) and is reached
through pyvisa-py at ``TCPIP0::127.0.0.1::<port>::SOCKET``. A message is one line ending in
``\\n`` (binary blocks may contain newlines); a reply is one line. Servers bind to the loopback
interface only.

Fault injection (bench settings) acts here, between the socket and the instrument:

- ``latency_s``: every reply is delayed by this many seconds;
- ``faults``: a list of ``{kind, role, after, count}``. The fault arms once the role's
  instrument has received ``after`` messages; it then hits ``count`` messages (0: every one
  from then on, a persistent fault). ``drop`` closes the connection on receiving a message,
  which is lost; ``timeout`` executes a message but withholds its reply; ``garble`` replaces the
  reply with junk. ``timeout`` and ``garble`` count only messages that have a reply.
  ``outage`` makes the instrument's server stop answering when the fault hits (the message is
  lost, every connection is dropped, the port stops listening: new connections are refused) and
  come back on the same port ``duration_s`` seconds later, as a power-cycled LAN instrument does
  (its settings are kept, as the simulators keep their state). :meth:`InstrumentServer.stop_answering`
  and :meth:`InstrumentServer.resume_answering` do the same on demand.

Entry points: :func:`serve_bench` (programs and tests) and :func:`main` (command line:
``python -m simulated_bench.server --station FILE.toml``; ``labctl bench serve`` validates the
station first and then calls :func:`serve_bench` the same way).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from typing import Any, TextIO

from .bench import Bench
from .instruments.scpi import message_end

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
FAULT_KINDS = ("timeout", "drop", "garble", "outage")


# ---------------------------------------------------------------------------- faults
@dataclass
class Fault:
    kind: str
    role: str
    after: int = 0
    count: int = 1  # 0 = persistent
    hits: int = 0
    duration_s: float = 0.0  # outage only: seconds until the server answers again

    def due(self, received: int) -> bool:
        return received > self.after and (self.count == 0 or self.hits < self.count)


@dataclass
class FaultPlan:
    """Faults per role and the message counters they key on (see the module docstring)."""

    faults: list[Fault] = field(default_factory=list)
    latency_s: float = 0.0
    received: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "FaultPlan":
        faults = []
        for f in spec.get("faults", []):
            if f["kind"] not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {f['kind']!r} (one of {FAULT_KINDS})")
            faults.append(Fault(f["kind"], f["role"], int(f.get("after", 0)), int(f.get("count", 1)),
                                duration_s=float(f.get("duration_s", 0.0))))
        return cls(faults, float(spec.get("latency_s", 0.0)))

    def on_message(self, role: str) -> Fault | None:
        """Count a message; the ``drop`` or ``outage`` fault it hits (the message is lost), or None."""
        with self.lock:
            n = self.received[role] = self.received.get(role, 0) + 1
            for f in self.faults:
                if f.role == role and f.kind in ("drop", "outage") and f.due(n):
                    f.hits += 1
                    return f
        return None

    def on_reply(self, role: str) -> str | None:
        """'timeout' or 'garble' if this reply is hit, else None."""
        with self.lock:
            n = self.received.get(role, 0)
            for f in self.faults:
                if f.role == role and f.kind in ("timeout", "garble") and f.due(n):
                    f.hits += 1
                    return f.kind
        return None


def garble(reply: str) -> str:
    """Junk of about the reply's length that no parser accepts as a number or a list."""
    body = "".join(chr(33 + (ord(c) * 7 + i) % 60) for i, c in enumerate(reply[:24]))
    return "~?" + body.replace("\n", "?").replace(";", "?")


# ---------------------------------------------------------------------------- one instrument
class InstrumentServer:
    """A TCP listener on 127.0.0.1 for one simulated instrument; one thread per connection."""

    def __init__(self, bench: Bench, role: str, faults: FaultPlan, port: int = 0):
        self.bench = bench
        self.role = role
        self.instrument = bench[role]
        self.faults = faults
        self.listener = self._listen(port)
        self.port = self.listener.getsockname()[1]
        self.clients: set[socket.socket] = set()
        self.closing = False
        self.down = False  # not answering (an outage): the port refuses connections
        self.state_lock = threading.Lock()
        self.comeback: threading.Timer | None = None
        self.thread = threading.Thread(target=self._accept, name=f"bench-{role}", daemon=True)
        self.thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.create_server((HOST, port))  # SO_REUSEADDR: the same port binds again after an outage
        listener.settimeout(0.25)  # so that the accept loop notices stop() and outages
        return listener

    @property
    def resource(self) -> str:
        return f"TCPIP0::{HOST}::{self.port}::SOCKET"

    def _accept(self) -> None:
        while not self.closing:
            listener = self.listener
            if self.down:
                time.sleep(0.02)
                continue
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.closing:
                    return
                continue  # the listener was closed for an outage
            if self.down or self.closing:
                conn.close()
                continue
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.clients.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name=f"bench-{self.role}-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = bytearray()
        try:
            while not self.closing:
                data = conn.recv(1 << 16)
                if not data:
                    return
                buffer += data
                while (end := message_end(buffer)) is not None:
                    message = bytes(buffer[:end])
                    del buffer[: end + 1]
                    fault = self.faults.on_message(self.role)
                    if fault is not None:
                        if fault.kind == "outage":
                            self.stop_answering(fault.duration_s)
                        return  # dropped: the connection closes, the message is lost
                    with self.bench.lock:
                        reply = self.instrument.process(message)
                    if reply is None:
                        continue
                    fault = self.faults.on_reply(self.role)
                    if fault == "timeout":
                        continue
                    if fault == "garble":
                        reply = garble(reply)
                    if self.faults.latency_s > 0:
                        time.sleep(self.faults.latency_s)
                    conn.sendall(reply.encode("latin-1", "replace") + b"\n")
        except OSError:
            return
        finally:
            self.clients.discard(conn)
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError as exc:  # the client went first
                log.debug("%s: shutdown of a closed connection (%s)", self.role, exc)
            conn.close()

    def stop_answering(self, duration_s: float | None = None) -> None:
        """An outage: drop every connection and stop listening (connections are refused) until
        :meth:`resume_answering`, or for ``duration_s`` seconds if given. The instrument keeps its
        state."""
        with self.state_lock:
            if self.closing or self.down:
                return
            self.down = True
            self._close_listener()
            self._drop_clients()
            if duration_s is not None:
                self.comeback = threading.Timer(duration_s, self.resume_answering)
                self.comeback.name = f"bench-{self.role}-outage"
                self.comeback.daemon = True
                self.comeback.start()

    def resume_answering(self) -> None:
        """End an outage: listen again on the same port."""
        with self.state_lock:
            if self.closing or not self.down:
                return
            self.listener = self._listen(self.port)
            self.down = False

    def _close_listener(self) -> None:
        try:
            self.listener.close()
        except OSError as exc:
            log.debug("%s: closing the listener: %s", self.role, exc)

    def _drop_clients(self) -> None:
        for conn in list(self.clients):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError as exc:  # the client went first
                log.debug("%s: dropping a closed connection (%s)", self.role, exc)

    def close(self) -> None:
        """Stop accepting and drop every connection (returns at once; see :meth:`stop`)."""
        with self.state_lock:
            self.closing = True
            if self.comeback is not None:
                self.comeback.cancel()
            self._close_listener()
            self._drop_clients()

    def stop(self) -> None:
        self.close()
        self.thread.join(timeout=2)


# ---------------------------------------------------------------------------- a whole bench
class RunningBench:
    """The servers of one bench; ``resources`` maps role -> VISA resource string."""

    def __init__(self, bench: Bench, servers: dict[str, InstrumentServer], faults: FaultPlan):
        self.bench = bench
        self.servers = servers
        self.faults = faults

    @property
    def resources(self) -> dict[str, str]:
        return {role: s.resource for role, s in self.servers.items()}

    def lines(self) -> list[str]:
        """One line per instrument: role, model, VISA resource."""
        return [f"{role:<13} {s.instrument.model:<15} {s.resource}" for role, s in self.servers.items()]

    def stop(self) -> None:
        for s in self.servers.values():
            s.close()
        for s in self.servers.values():
            s.thread.join(timeout=2)

    def chip_state(self) -> dict:
        """The simulated chip's state (device levels, stuck flags, counters, random streams), for
        checkpoints; plain tensors, ints and floats (see ``DeviceArray.state_dict``)."""
        with self.bench.lock:
            return self.bench.devices.state_dict()

    def load_chip_state(self, state: dict) -> None:
        """Continue the simulated chip from :meth:`chip_state` (ValueError if the chip differs)."""
        with self.bench.lock:
            self.bench.devices.load_state_dict(state)

    def __enter__(self) -> "RunningBench":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_bench(spec: dict[str, Any]) -> RunningBench:
    """Build the bench of ``spec`` and serve each instrument on 127.0.0.1.

    ``spec`` is what :func:`spec_from_station` returns. An instrument table may fix its ``port``
    (0 or absent: an ephemeral port). Returns at once; the servers run in daemon threads until
    :meth:`RunningBench.stop`.
    """
    bench = Bench(spec)
    faults = FaultPlan.from_spec(spec)
    servers: dict[str, InstrumentServer] = {}
    try:
        for role, table in spec["instruments"].items():
            servers[role] = InstrumentServer(bench, role, faults, int(table.get("port", 0) or 0))
    except OSError:
        for s in servers.values():
            s.stop()
        raise
    return RunningBench(bench, servers, faults)


WIRING_KEYS = {
    "field_supply": ("gain", "coil"),
    "positioner": ("pitch", "origin", "axis"),
    "pulse_source": ("units_per_volt",),
    "switch": ("slots",),
}


def spec_from_station(station: dict[str, Any]) -> dict[str, Any]:
    """The bench spec of a station given as plain data (a TOML dict or a validated model's dump).

    Takes ``[chip]``, the ``model`` (and optional ``port``) of each ``[instruments.<role>]``, the
    wiring constants there (field supply ``gain``/``coil``, stage ``pitch``/``origin``/``axis``,
    pulse source ``units_per_volt``, switch ``slots``) and the ``[bench]`` settings.
    """
    chip = dict(station["chip"])
    chip.setdefault("physics", {})
    chip["physics"] = {k: v for k, v in (chip["physics"] or {}).items() if v is not None}
    instruments, wiring = {}, {}
    for role, table in (station.get("instruments") or {}).items():
        if not isinstance(table, dict) or "model" not in table:
            continue
        instruments[role] = {"model": table["model"], "port": table.get("port", 0) or 0}
        for key in WIRING_KEYS.get(role, ()):
            if table.get(key) is not None:
                wiring[key] = table[key]
    bench = station.get("bench") or {}
    if bench.get("nucleation_field") is not None:
        wiring["nucleation_field"] = bench["nucleation_field"]
    return {
        "chip": chip,
        "instruments": instruments,
        "wiring": wiring,
        "latency_s": bench.get("latency_s", 0.0),
        "faults": list(bench.get("faults", [])),
        "stuck": list(bench.get("stuck", [])),
        "stuck_level": bench.get("stuck_level", 1),
    }


def run_until_signal(running: RunningBench, out: TextIO = sys.stdout) -> int:
    """Print one line per instrument, serve until SIGINT or SIGTERM, stop cleanly; exit code 0."""
    stop = threading.Event()
    previous = {}

    def handler(signum, frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):  # before printing: a reader may signal at once
        previous[sig] = signal.signal(sig, handler)
    for line in running.lines():
        print(line, file=out, flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        running.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
        print("bench stopped", file=out, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m simulated_bench.server --station FILE.toml``: serve until Ctrl-C / SIGTERM.

    The station file is read as plain TOML (not validated; physics keys it omits take the
    simulator's defaults). ``labctl bench serve --station`` is the validated way in.
    """
    parser = argparse.ArgumentParser(prog="simulated_bench.server", description=main.__doc__)
    parser.add_argument("--station", required=True, help="station TOML file with [chip] and [instruments.<role>]")
    args = parser.parse_args(argv)
    with open(args.station, "rb") as f:
        station = tomllib.load(f)
    return run_until_signal(serve_bench(spec_from_station(station)))


if __name__ == "__main__":
    sys.exit(main())
