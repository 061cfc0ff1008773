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
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np
import torch

from instruments import InstrumentError, samples_per_trial
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
        try:
            envelope.check_pulse(torch.tensor(self.reset_amplitude), torch.tensor(self.reset_width), None)
            self._check_volts()
            if configure:
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

    def _prepare(self) -> None:
        """Configure every instrument (outputs on, bias up): at start and after a safe state."""
        self.rig.configure()
        self.fault = None
        self.ready = True

    def _check_volts(self) -> None:
        scale = self.rig.volts_per_unit
        worst = max(abs(self.envelope.amplitude_min), abs(self.envelope.amplitude_max), abs(self.reset_amplitude))
        limit = self.rig.pulse_source.max_volts
        if worst * scale > limit:
            raise EnvelopeError(
                f"the envelope needs {worst * scale:.4g} V from the pulse source, beyond its +-{limit} V: "
                "check the station's gain constants or narrow the envelope"
            )

    # ------------------------------------------------------------------ SynapseArray
    @property
    def counters(self) -> Counters:
        c = Counters(**self._counts.as_dict())
        c.transactions = self.rig.counter.value
        return c

    def safe_state(self) -> None:
        """Outputs off, biases ramped to zero, matrix open; the next operation sets up again.

        Raises InstrumentError if a role could not confirm its safe state, unless an instrument
        failure is already being reported (then the failures are logged, so that the first
        error stays the one the user sees).
        """
        self.ready = False
        failures = self.rig.safe_state()
        if failures:
            message = "safe state not confirmed for " + "; ".join(failures)
            if self.fault is None:
                raise InstrumentError(message)
            log.error("%s (after: %s)", message, self.fault)

    def close(self) -> None:
        """Safe state, then release the instruments (and stop a simulated bench this array started)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.safe_state()
        finally:
            self.rig.close()
            if self.on_close is not None:
                self.on_close()

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
        if not self.ready:
            self._prepare()
        devices = np.arange(self.n) if idx is None else idx.numpy()
        m = len(devices)
        write = amplitude is not None
        amps = np.broadcast_to(amplitude.double().numpy(), (m,)) if write else np.zeros(m)
        widths = np.broadcast_to(width.double().numpy(), (m,)) if write else np.zeros(m)
        out = np.zeros((m, repeats)) if read else np.empty((m, 0))
        try:
            for device, wid, entries in self._groups(devices, widths):
                self._device_run(int(device), float(wid), entries, amps, repeats, out, reset=reset, write=write, read=read)
        except BaseException as exc:
            if isinstance(exc, InstrumentError):
                self.fault = exc
            self.ready = False
            failures = self.rig.safe_state()
            if failures:
                log.error("safe state after a failed operation not confirmed: %s", "; ".join(failures))
            raise
        return out

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
            readings = self.rig.batch(device, wave, count if read else 0)
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
