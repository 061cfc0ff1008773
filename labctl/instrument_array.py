"""``InstrumentArray``: the SynapseArray driven through instruments (real ones, or the simulated bench).

It composes instrument roles through a rig (:mod:`labctl.rigs`): the Kerr bench for DW
nanowires, the TMR bench for STT-MTJs and DW-MTJs. Every operation becomes, per device, one
waveform on the pulse source and one buffered read, whatever the number of trials:

- entries of the index array are grouped by device (duplicates allowed, order kept within a
  device) and pulse width; each group is laid out as one waveform (:mod:`instruments.waveform`),
  ``reset | write | read`` per trial, split into chunks only where it exceeds the pulse
  source's memory or the readout's buffer;
- amplitudes are converted to pulse-source volts with the station's calibration constants
  (field supply gain x coil constant on the Kerr bench, ``units_per_volt`` on the TMR bench);
- readings (lock-in volts, source-meter ohms) are decoded to the nearest of the station's
  signal levels.

Safety: the envelope is checked by :class:`~labctl.chip.SynapseArray` before any of this runs,
so a refused pulse writes nothing to any instrument; the station's reset pulse and the pulse
source's voltage range are checked when the array is built. :meth:`safe_state` (outputs off,
biases ramped to zero, matrix open) is reached on close, on leaving a ``with`` block whatever
the reason (exception, Ctrl-C), and after any failed operation.

Counters: pulses, resets, reads and trials as sent; ``transactions`` = VISA writes and queries
through every link; ``energy_j`` an estimate from the station's nominal device values.
:meth:`state_dict` checkpoints them (and, when this array serves the simulated bench itself, that
simulated chip's state), so that a resumed run continues the totals.

Suspenders: when an instrument stops answering (:class:`~instruments.errors.UnreachableError`:
retries exhausted on refused or reset connections, timeouts, garbled replies), the array puts
the station in its safe state as far as it is reachable, records a ``suspend`` event
(:attr:`~labctl.chip.SynapseArray.on_event`), and tries to reconnect with exponential back-off
for up to ``suspend_timeout_s`` seconds. When every instrument answers again with the ``*IDN?``
it gave at open, it configures them again, records ``unsuspend`` with the outage's duration and
plays the interrupted batch again from its start (batches already done in the same operation are
kept). Past the timeout the UnreachableError is raised as before.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

import numpy as np
import torch

from instruments import InstrumentError, UnreachableError, samples_per_trial
from instruments.waveform import compose

from .chip import Counters, Envelope, EnvelopeError, ReadResult, SynapseArray
from .rigs import Rig

log = logging.getLogger(__name__)
Tensor = torch.Tensor
EnergyModel = Callable[[np.ndarray, np.ndarray], np.ndarray]


class InstrumentArray(SynapseArray):
    """A chip of ``n`` synapses reached through the instruments of ``rig``.

    ``bench``: the simulated bench (``simulated_bench.server.RunningBench``) this array started
    for its station, or None (real instruments, or a bench served elsewhere).

    ``signal_levels``: raw signal of each level (volts or ohms), for decoding; ``reset_amplitude``
    (family unit) and ``reset_width`` (s): the pulse that puts a synapse in level 0;
    ``read_samples``: samples of each read window; ``read_dt``: sample period (s) of read-only
    waveforms; ``pulse_energy`` / ``read_energy_j``: the energy estimate; ``on_close``: called
    after the safe state when the array closes (e.g. stop the simulated bench it started).

    ``suspend_timeout_s``: how long (seconds) to wait for an instrument that stopped answering
    before giving up (0: give up at once); ``backoff_s``: first and longest pause between
    reconnection attempts (seconds, doubling); ``safe_state_retry_s``: pauses (seconds) before
    trying again the roles that did not confirm their safe state.
    """

    bench = None

    def __init__(
        self,
        rig: Rig,
        envelope: Envelope,
        *,
        family: str,
        n: int,
        signal_levels: list[float],
        signal_unit: str,
        reset_amplitude: float,
        reset_width: float,
        read_samples: int = 2,
        read_dt: float = 1e-6,
        pulse_energy: EnergyModel | None = None,
        read_energy_j: float = 0.0,
        on_close: Callable[[], None] | None = None,
        configure: bool = True,
        suspend_timeout_s: float = 600.0,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        safe_state_retry_s: tuple[float, ...] = (0.5,),
    ):
        self.rig = rig
        self.envelope = envelope
        self.family = family
        self.n = n
        self.levels = len(signal_levels)
        self.signal_levels = np.asarray(signal_levels, dtype=np.float64)
        self.signal_unit = signal_unit
        self.reset_amplitude = float(reset_amplitude)
        self.reset_width = float(reset_width)
        self.read_samples = int(read_samples)
        self.read_dt = float(read_dt)
        self.pulse_energy = pulse_energy
        self.read_energy_j = read_energy_j
        self.on_close = on_close
        self.closed = False
        self.ready = False  # configured and energised; False after safe_state
        self.fault: Exception | None = None  # the instrument failure that ended the last operation
        self._counts = Counters()
        self._transactions_before = 0  # transactions of the run's earlier sessions (from a checkpoint)
        self.suspend_timeout_s = float(suspend_timeout_s)
        self.backoff_s = backoff_s
        self.safe_state_retry_s = safe_state_retry_s
        self.identities: dict[str, str] = {}  # role -> *IDN? at open, checked after an outage
        self._give_up = threading.Event()  # set by cancel_suspension()
        try:
            try:
                envelope.check_pulse(torch.tensor(self.reset_amplitude), torch.tensor(self.reset_width), None)
            except EnvelopeError as exc:
                raise InstrumentError(f"[instruments] reset_amplitude / reset_width: the reset {exc}") from None
            self._check_volts()
            if configure:
                self.identities = self._identify_at_open()
                self._prepare()
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """Safe state (never raising), release everything: when the array cannot be built."""
        self.closed = True
        self.rig.safe_state()
        self.rig.close()
        if self.on_close is not None:
            self.on_close()

    def _identify_at_open(self) -> dict[str, str]:
        """Every role's ``*IDN?``: the first exchange, so a silent instrument fails the open here."""
        try:
            return self.rig.identities()
        except UnreachableError as exc:
            raise UnreachableError(
                f"role {exc.role!r} ({exc.model}) at {exc.resource!r}: cannot open: no answer to *IDN?; "
                f"last: {exc.cause}; expected the instrument on and reachable at that resource",
                role=exc.role, model=exc.model, resource=exc.resource, cause=exc.cause,
            ) from exc

    def _prepare(self) -> None:
        """Configure every instrument (outputs on, bias up): at start and after a safe state."""
        self.rig.configure()
        self.fault = None
        self.ready = True

    def _check_volts(self) -> None:
        """The envelope within the pulse source's range, the reset pulse above its resolution.

        Raises InstrumentError naming the station keys (a calibration constant that is zero,
        infinite or absurd would otherwise send nothing, or far too much)."""
        scale = self.rig.volts_per_unit  # InstrumentError if not finite and positive
        source = self.rig.pulse_source
        worst = max(abs(self.envelope.amplitude_min), abs(self.envelope.amplitude_max), abs(self.reset_amplitude))
        limit = source.max_volts
        if not worst * scale <= limit:
            raise InstrumentError(
                f"the envelope needs {worst * scale:.4g} V from the pulse source, beyond its +-{limit} V: "
                f"check {self.rig.scale_keys} or narrow [envelope] amplitude_min/amplitude_max and "
                "[instruments] reset_amplitude"
            )
        reset = abs(self.reset_amplitude) * scale
        if reset < source.min_step_volts:
            raise InstrumentError(
                f"[instruments] reset_amplitude {self.reset_amplitude:.6g} {self.envelope.amplitude_unit} is "
                f"{reset:.3g} V at the pulse source, below its smallest step ({source.min_step_volts:.3g} V): "
                f"check {self.rig.scale_keys}"
            )

    # ------------------------------------------------------------------ SynapseArray
    @property
    def counters(self) -> Counters:
        c = Counters(**self._counts.as_dict())
        c.transactions = self._transactions_before + self.rig.counter.value
        return c

    def state_dict(self) -> dict:
        """For checkpoints: the counters (incl. transactions and energy, joules) and, if this array
        serves the simulated bench itself, that simulated chip's state (levels, random streams).

        A real chip keeps its physical state, so only the bookkeeping is saved for it (and for a
        bench served elsewhere). Plain tensors, ints, floats and dicts: it loads with
        ``torch.load(weights_only=True)``.
        """
        state: dict = {"counters": self.counters.as_dict()}
        if self.bench is not None:
            state["bench"] = self.bench.chip_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue the counters (and a simulated bench's chip) of a checkpoint.

        Transactions continue from the saved total (this session's own, from opening the
        instruments on, are added to it). ValueError if the checkpoint does not fit this chip.
        """
        try:
            saved = Counters(**state["counters"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"the checkpoint's instrument counters cannot be read ({exc})") from None
        transactions = int(saved.transactions)
        saved.transactions = 0
        self._counts = saved
        self._transactions_before = transactions - self.rig.counter.value
        if "bench" in state:
            if self.bench is not None:
                self.bench.load_chip_state(state["bench"])
            else:
                log.info("checkpoint holds a simulated chip's state; this station's chip is not simulated here: ignored")

    def safe_state(self) -> None:
        """Outputs off, biases ramped to zero, matrix open; the next operation sets up again.

        A role that does not confirm its safe state is tried again after each pause of
        ``safe_state_retry_s``; then InstrumentError lists every role that did not confirm, with
        its error (and the instrument failure that ended the last operation, if any).
        """
        self.ready = False
        failures = self.rig.safe_state()
        for pause in self.safe_state_retry_s:
            if not failures:
                break
            time.sleep(pause)
            failures = self.rig.safe_state(list(failures))
        if failures:
            message = "safe state not confirmed for " + "; ".join(f"{role}: {err}" for role, err in failures.items())
            if self.fault is not None:
                message += f" (after: {self.fault})"
            raise InstrumentError(message)

    def close(self) -> None:
        """Safe state, then release the instruments (and stop a simulated bench this array started).

        Every link is closed and the bench stopped even if the safe state was not confirmed; that
        InstrumentError is raised afterwards.
        """
        if self.closed:
            return
        self.closed = True
        try:
            self.safe_state()
        finally:
            try:
                self.rig.close()
            finally:
                if self.on_close is not None:
                    self.on_close()

    def cancel_suspension(self) -> None:
        """Give up waiting for an instrument that stopped answering (from another thread): the
        operation ends with its UnreachableError at once."""
        self._give_up.set()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except Exception:
            if exc_type is None:
                raise
            log.exception("closing after %s", exc_type.__name__)

    def _reset(self, idx: Tensor | None) -> None:
        self._run(idx, None, None, 1, reset=True, read=False)

    def _pulse(self, idx: Tensor | None, amplitude: Tensor, width: Tensor) -> None:
        self._run(idx, amplitude, width, 1, reset=False, read=False)

    def _read(self, idx: Tensor | None, repeats: int) -> ReadResult:
        signal = torch.from_numpy(self._run(idx, None, None, repeats, reset=False, read=True))
        return ReadResult(signal, self._decode(signal))

    def _trial_levels(self, idx: Tensor | None, amplitude: Tensor, width: Tensor, repeats: int) -> Tensor:
        signal = torch.from_numpy(self._run(idx, amplitude, width, repeats, reset=True, read=True))
        levels = self._decode(signal)
        self._counts.trials += levels.numel()
        return torch.nn.functional.one_hot(levels, self.levels).sum(1)

    # ------------------------------------------------------------------ the work
    def _decode(self, signal: Tensor) -> Tensor:
        levels = torch.from_numpy(self.signal_levels).to(signal.dtype)
        return (signal.unsqueeze(-1) - levels).abs().argmin(-1)

    def _run(self, idx, amplitude, width, repeats: int, *, reset: bool, read: bool) -> np.ndarray:
        """Run ``repeats`` x (reset? write? read?) on every entry; readings ``(m, repeats)``."""
        if self.closed:
            raise InstrumentError("the instrument array is closed")
        devices = np.arange(self.n) if idx is None else idx.cpu().numpy()
        m = len(devices)
        write = amplitude is not None
        amps = np.broadcast_to(amplitude.double().cpu().numpy(), (m,)) if write else np.zeros(m)
        widths = np.broadcast_to(width.double().cpu().numpy(), (m,)) if write else np.zeros(m)
        out = np.zeros((m, repeats)) if read else np.empty((m, 0))
        try:
            for device, wid, entries in self._groups(devices, widths):
                self._device_run(int(device), float(wid), entries, amps, repeats, out, reset=reset, write=write, read=read)
        except BaseException as exc:
            if isinstance(exc, InstrumentError):
                self.fault = exc
            self.ready = False
            failures = self.rig.safe_state()
            if failures:  # the operation's error is the one raised; safe_state() reports these again
                log.error("safe state after a failed operation not confirmed: %s", failures)
            raise
        return out

    # ------------------------------------------------------------------ suspenders
    def _batch(self, device: int, wave, reads: int) -> np.ndarray | None:
        """One batch on the rig, configured first if needed; an outage is ridden out, then the
        batch is played again from its start."""
        while True:
            try:
                if not self.ready:
                    self._prepare()
                return self.rig.batch(device, wave, reads)
            except UnreachableError as exc:
                self._ride_out(exc)

    def _ride_out(self, exc: UnreachableError) -> None:
        """Suspend: safe state as far as reachable, ``suspend`` event, reconnect with back-off.

        Returns once the station answers again (identities checked, configured) after recording
        ``unsuspend``; raises ``exc`` (extended) when ``suspend_timeout_s`` has passed, and
        InstrumentError if another instrument answers at a role's resource.
        """
        if self.suspend_timeout_s <= 0:
            raise exc
        self.ready = False
        self.fault = exc
        start = time.monotonic()
        deadline = start + self.suspend_timeout_s
        self._give_up.clear()  # before the event: a run engine may cancel from then on
        unsafe = self.rig.safe_state()
        what = f"{exc.role} ({exc.model} at {exc.resource})" if exc.role else "an instrument"
        self._event("suspend", (
            f"{what} stopped answering: {exc.cause or exc}; safe state confirmed for "
            + (", ".join(r for r in reversed(self.rig.order) if r not in unsafe) or "no role")
            + (f", not for {', '.join(unsafe)}" if unsafe else "")
            + f"; reconnecting for up to {self.suspend_timeout_s:g} s"
        ))
        delay, longest = self.backoff_s
        last: InstrumentError = exc
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._give_up.wait(min(delay, left)):
                waited = time.monotonic() - start
                raise UnreachableError(
                    f"{last} (still not answering after {waited:.1f} s suspended; [station] suspend_timeout_s = "
                    f"{self.suspend_timeout_s:g})", role=exc.role, model=exc.model, resource=exc.resource,
                    cause=getattr(last, "cause", str(last)),
                ) from exc
            delay = min(2 * delay, longest)
            try:
                self._recheck()
            except UnreachableError as again:
                last = again
                log.info("still suspended: %s", again)
                continue
            break
        self.fault = None
        self._event("unsuspend", f"{what} answers again; outage lasted {time.monotonic() - start:.1f} s; "
                                 "identities checked, instruments configured; the interrupted batch is played again")

    def _recheck(self) -> None:
        """After an outage: reconnect every link, check each ``*IDN?`` against the one at open, configure."""
        self.rig.reconnect_all()
        now = self.rig.identities()
        for role, idn in now.items():
            before = self.identities.get(role)
            if before is not None and idn != before:
                raise InstrumentError(
                    f"{self.rig.roles[role].link.where} identifies as {idn!r} after the outage, "
                    f"not {before!r} as when the station was opened: check what is connected there"
                )
        self._prepare()

    def _event(self, kind: str, reason: str) -> None:
        """Record in the run file when the run engine has set ``on_event``; log it otherwise."""
        if self.on_event is not None:
            log.info("%s: %s", kind, reason)
            self.on_event(kind, reason)
        else:
            log.warning("%s: %s", kind, reason)

    @staticmethod
    def _groups(devices: np.ndarray, widths: np.ndarray):
        """(device, width, entry indices) in device order; entries keep their order."""
        order = np.lexsort((np.arange(len(devices)), widths, devices))
        d, w = devices[order], widths[order]
        cut = np.flatnonzero((np.diff(d) != 0) | (np.diff(w) != 0)) + 1
        for chunk in np.split(order, cut):
            if len(chunk):
                yield devices[chunk[0]], widths[chunk[0]], chunk

    def _device_run(self, device, width, entries, amps, repeats, out, *, reset, write, read) -> None:
        scale = self.rig.volts_per_unit
        if write:
            dt = width
        elif reset:
            dt = self.reset_width
        else:
            dt = self.read_dt
        reset_samples = max(1, math.ceil(self.reset_width / dt - 1e-9)) if reset else 1
        per_trial = samples_per_trial(reset=reset, write=write, read=read, reset_samples=reset_samples,
                                      read_samples=self.read_samples)
        capacity = (self.rig.pulse_source.max_points - 2) // per_trial
        if read:
            capacity = min(capacity, self.rig.max_reads)
        if capacity < 1:
            raise InstrumentError(f"one trial needs {per_trial} samples, more than the pulse source holds")
        trial_entry = np.repeat(entries, repeats)  # entry of every trial, entry-major
        trial_rep = np.tile(np.arange(repeats), len(entries))
        for start in range(0, len(trial_entry), capacity):
            e = trial_entry[start:start + capacity]
            count = len(e)
            wave = compose(
                count, dt,
                write=amps[e] * scale if write else None,
                reset=self.reset_amplitude * scale if reset else None,
                reset_samples=reset_samples, read=read, read_samples=self.read_samples,
            )
            readings = self._batch(device, wave, count if read else 0)
            if read:
                out[e, trial_rep[start:start + count]] = readings
            self._account(count, amps[e] if write else None, dt, reset, read)

    def _account(self, count: int, written: np.ndarray | None, width: float, reset: bool, read: bool) -> None:
        c = self._counts
        if reset:
            c.resets += count
        if written is not None:
            c.pulses += count
        if read:
            c.reads += count
        if self.pulse_energy is not None:
            if written is not None:
                c.energy_j += float(self.pulse_energy(written, np.full(count, width)).sum())
            if reset:
                c.energy_j += count * float(self.pulse_energy(np.array([self.reset_amplitude]), np.array([self.reset_width]))[0])
        if read:
            c.energy_j += count * self.read_energy_j
