"""Manual work at the probe station, recorded: a bench session over the station's SynapseArray.

A :class:`BenchSession` opens the station's chip (``labctl.station.open_chip``: the same
SynapseArray, with its envelope, as any protocol) and a bench file of its own,
``runs/<time>-bench-<station>.h5`` (:class:`~labctl.store.RunWriter`, every dataset declared up
front, read back with :class:`~labctl.store.RunReader`):

- ``bench/actions``: one row per action (time, kind, device, amplitude, width, count, result):
  ``reset``, ``pulse``, ``read``, ``scurve_point``, ``scurve_fit``, ``field_point``, ``safe_state``,
  refused and failed ones included (their result says why);
- ``bench/readings``: every raw reading (action row, device, repeat, signal in V or ohm, level);
- ``bench/scurve``: S-curve points (curve, device, amplitude, width, trials, switched);
- ``bench/fits``: the fitted switching law of each S-curve (names, estimates, interval);
- ``bench/field``: field-sweep points (sweep, device, field in T, width, signal, level).

Values outside the station's envelope are refused by :meth:`problems` (for the GUI, before
anything is sent) and again by the SynapseArray itself. Amplitudes are in the chip family's unit
(T, A or V), widths in seconds. Every chip operation holds :attr:`lock`, so a status query
through the same instruments never interleaves with an action. Qt-free.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analysis import fitting
from instruments import InstrumentError

from . import families
from .chip import EnvelopeError, SynapseArray
from .config import StationConfig, safe_file_stem
from .station import open_chip
from .store import DatasetSpec, RunWriter

MAX_PARAMS = 3  # the largest number of parameters of a switching law (logistic, landing)

ACTION_DTYPE = np.dtype([("time", "<f8"), ("kind", "S16"), ("device", "<i8"), ("amplitude", "<f8"),
                         ("width", "<f8"), ("count", "<i8"), ("result", "S200")])
READING_DTYPE = np.dtype([("time", "<f8"), ("action", "<i8"), ("device", "<i8"), ("repeat", "<i8"),
                          ("signal", "<f8"), ("level", "<i8")])
SCURVE_DTYPE = np.dtype([("time", "<f8"), ("curve", "<i8"), ("device", "<i8"), ("amplitude", "<f8"),
                         ("width", "<f8"), ("trials", "<i8"), ("switched", "<i8")])
FIT_DTYPE = np.dtype([("time", "<f8"), ("curve", "<i8"), ("device", "<i8"), ("width", "<f8"), ("law", "S16"),
                      ("names", "S64"), ("estimate", "<f8", (MAX_PARAMS,)), ("ci_low", "<f8", (MAX_PARAMS,)),
                      ("ci_high", "<f8", (MAX_PARAMS,)), ("converged", "?")])
FIELD_DTYPE = np.dtype([("time", "<f8"), ("sweep", "<i8"), ("device", "<i8"), ("field", "<f8"), ("width", "<f8"),
                        ("signal", "<f8"), ("level", "<i8")])


def schema(amplitude_unit: str, signal_unit: str) -> dict[str, DatasetSpec]:
    """The bench file's datasets (all extendable)."""
    return {
        "bench/actions": DatasetSpec(ACTION_DTYPE, (None,), "",
                                     f"manual actions: unix time (s), kind, device, amplitude ({amplitude_unit}), "
                                     "width (s), count, result"),
        "bench/readings": DatasetSpec(READING_DTYPE, (None,), signal_unit,
                                      f"raw readings: action row, device, repeat, signal ({signal_unit}), level"),
        "bench/scurve": DatasetSpec(SCURVE_DTYPE, (None,), "",
                                    f"S-curve points: curve, device, amplitude ({amplitude_unit}), width (s), trials, "
                                    "switched"),
        "bench/fits": DatasetSpec(FIT_DTYPE, (None,), "SI", "fitted switching law per S-curve (estimates, interval)"),
        "bench/field": DatasetSpec(FIELD_DTYPE, (None,), "",
                                   f"field sweep points: sweep, device, field (T), width (s), signal ({signal_unit}), "
                                   "level"),
    }


def default_path(station_name: str, folder: str | Path = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>-bench-<station>.h5``."""
    return Path(folder) / f"{time.strftime('%Y%m%d-%H%M%S')}-bench-{safe_file_stem(station_name)}.h5"


@dataclass
class DeviceInfo:
    """Where a device is reached (stage position in m, or switch channel) and its last read level."""

    device: int
    where: str
    last_level: int | None
    last_signal: float | None


class BenchSession:
    """The station's chip open for manual work, and the bench file recording it (module docstring).

    ``path``: the bench file (default :func:`default_path`); ``seed``: the chip's physics seed
    (default the station's). Close it (:meth:`close`: chip to its safe state, file closed) when
    leaving the bench or before a run opens the chip.
    """

    def __init__(self, station: StationConfig, path: str | Path | None = None, *, seed: int | None = None,
                 folder: str | Path = "runs"):
        self.station = station
        self.path = Path(path) if path is not None else default_path(station.station.name, folder)
        self.lock = threading.Lock()
        self.chip: SynapseArray = open_chip(station, seed)
        chip = self.chip
        try:
            self.writer = RunWriter(self.path, attrs={
                "protocol_name": "bench", "protocol_kind": "bench", "station_name": station.station.name,
                "station": station.model_dump(mode="json"), "family": chip.family,
                "amplitude_unit": chip.envelope.amplitude_unit, "signal_unit": chip.signal_unit,
            }, schema=schema(chip.envelope.amplitude_unit, chip.signal_unit), checkpoints=False)
            self.writer.publish()
        except BaseException:
            chip.close()
            raise
        self.law = families.get(chip.family).default_law()  # the law the calibration fits first
        self.last_level = np.full(chip.n, -1, dtype=np.int64)
        self.last_signal = np.full(chip.n, np.nan)
        self.actions = 0
        self.curves = 0
        self.sweeps = 0
        self.closed = False

    # ------------------------------------------------------------------ what the station has
    @property
    def has_field_supply(self) -> bool:
        ins = self.station.instruments
        return ins is not None and ins.field_supply is not None

    def device_info(self, device: int) -> DeviceInfo:
        """Where ``device`` is reached (from the station's positioner or switch) and its last reading."""
        self._check_device(device)
        ins = self.station.instruments
        where = "simulated backend (no positioner or switch)"
        if ins is not None and ins.positioner is not None:
            p = ins.positioner
            where = f"stage axis {p.axis} at {(p.origin + device * p.pitch) * 1e3:.4f} mm"
        elif ins is not None and ins.switch is not None:
            from instruments.keithley2700 import channel_of

            where = f"switch channel {channel_of(device, tuple(ins.switch.slots))}"
        level = int(self.last_level[device])
        signal = float(self.last_signal[device])
        return DeviceInfo(device, where, None if level < 0 else level, None if math.isnan(signal) else signal)

    # ------------------------------------------------------------------ checks (nothing sent)
    def problems(self, *, device: int | None = None, amplitude: float | None = None, width: float | None = None,
                 count: int | None = None) -> dict[str, str]:
        """``{field: message}`` for every value that would be refused; empty when all are fine.

        The envelope test is the chip's own (``Envelope.check_pulse``); nothing is sent."""
        out: dict[str, str] = {}
        env = self.chip.envelope
        if device is not None and not 0 <= device < self.chip.n:
            out["device"] = f"device {device} is not on the chip (0..{self.chip.n - 1})"
        if count is not None and count < 1:
            out["count"] = f"count must be at least 1, got {count}"
        for name, value, lo, hi, unit in (("amplitude", amplitude, env.amplitude_min, env.amplitude_max,
                                           env.amplitude_unit),
                                          ("width", width, env.width_min, env.width_max, "s")):
            if value is None:
                continue
            if not (math.isfinite(value) and lo <= torch.tensor(value, dtype=torch.float32).item() <= hi):
                out[name] = f"{value:.6g} {unit} is outside the station envelope [{lo:.6g}, {hi:.6g}] {unit}"
        return out

    def _check_device(self, device: int) -> None:
        if not 0 <= int(device) < self.chip.n:
            raise IndexError(f"device {device} is not on the chip (0..{self.chip.n - 1})")

    # ------------------------------------------------------------------ recording
    def _action(self, kind: str, device: int, amplitude: float = math.nan, width: float = math.nan, count: int = 0,
                result: str = "") -> int:
        row = np.zeros(1, ACTION_DTYPE)
        row[0] = (time.time(), kind.encode(), device, amplitude, width, count, result.encode()[:200])
        self.writer.append("bench/actions", row)
        self.writer.flush()
        self.actions += 1
        return self.actions - 1

    def _do(self, kind: str, device: int, fn, *, amplitude=math.nan, width=math.nan, count=0, describe_result=None):
        """Run one chip operation under the lock and record it (refused and failed ones too)."""
        if self.closed:
            raise InstrumentError("the bench session is closed")
        with self.lock:
            try:
                result = fn()
            except (EnvelopeError, IndexError, ValueError, InstrumentError) as exc:
                what = "refused" if isinstance(exc, (EnvelopeError, IndexError, ValueError)) else "failed"
                self._action(kind, device, amplitude, width, count, f"{what}: {exc}")
                raise
            text = describe_result(result) if describe_result else "done"
            index = self._action(kind, device, amplitude, width, count, text)
        return result, index

    # ------------------------------------------------------------------ actions
    def reset(self, device: int) -> None:
        """Put ``device`` in its reference state (the station's reset pulse)."""
        self._do("reset", device, lambda: self.chip.reset([device]))
        self.last_level[device] = -1

    def pulse(self, device: int, amplitude: float, width: float, count: int = 1) -> None:
        """``count`` write pulses of ``amplitude`` (family unit) and ``width`` (s) on ``device``, one batch."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self._do("pulse", device, lambda: self.chip.pulse([device] * count, amplitude, width),
                 amplitude=amplitude, width=width, count=count)
        self.last_level[device] = -1

    def read(self, device: int, repeats: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Read ``device`` ``repeats`` times: raw signals (V or ohm) and decided levels, each ``(repeats,)``."""
        def describe(r):
            levels = r.level[0].cpu().numpy()
            return f"levels {np.bincount(levels, minlength=self.chip.levels).tolist()} (count per level)"

        result, index = self._do("read", device, lambda: self.chip.read([device], repeats), count=repeats,
                                 describe_result=describe)
        signal = result.signal[0].double().cpu().numpy()
        level = result.level[0].cpu().numpy().astype(np.int64)
        rows = np.zeros(len(signal), READING_DTYPE)
        rows["time"], rows["action"], rows["device"] = time.time(), index, device
        rows["repeat"], rows["signal"], rows["level"] = np.arange(len(signal)), signal, level
        self.writer.append("bench/readings", rows)
        self.writer.flush()
        self.last_level[device] = int(level[-1])
        self.last_signal[device] = float(signal[-1])
        return signal, level

    def new_curve(self) -> int:
        """Number of a new S-curve (points of one curve share it)."""
        self.curves += 1
        return self.curves - 1

    def scurve_point(self, curve: int, device: int, amplitude: float, width: float, trials: int) -> np.ndarray:
        """``trials`` x (reset + pulse + read) of ``device`` at one amplitude: counts per level ``(levels,)``."""
        def describe(c):
            return f"switched {trials - int(c[0, 0])} of {trials}"

        counts, _ = self._do("scurve_point", device,
                             lambda: self.chip.trial_levels([device], amplitude, width, trials),
                             amplitude=amplitude, width=width, count=trials, describe_result=describe)
        counts = counts[0].cpu().numpy().astype(np.int64)
        row = np.zeros(1, SCURVE_DTYPE)
        row[0] = (time.time(), curve, device, amplitude, width, trials, trials - int(counts[0]))
        self.writer.append("bench/scurve", row)
        self.writer.flush()
        return counts

    def fit_scurve(self, curve: int, device: int, amplitudes, width: float, trials: int, level_counts,
                   tau0: float = 1e-9, level: float = 0.95) -> fitting.FitResult:
        """Fit the family's default switching law to one device's S-curve, as the calibration protocol does.

        ``amplitudes`` ``(P,)`` in the family unit, ``level_counts`` ``(P, levels)``; ``tau0`` (s) is
        fixed for the laws that use it (thermal activation)."""
        amps = torch.as_tensor(np.asarray(amplitudes, dtype=np.float64))
        counts = torch.as_tensor(np.asarray(level_counts, dtype=np.int64))
        switched = (trials - counts[:, 0]).unsqueeze(0)
        widths = torch.full_like(amps, float(width))
        law = self.law
        fit = law.fit(amps, widths, counts.unsqueeze(0) if law.level_counts else switched, trials,
                      levels=self.chip.levels, level=level, tau0=tau0)
        row = np.zeros(1, FIT_DTYPE)
        p = len(fit.names)
        row["time"], row["curve"], row["device"], row["width"] = time.time(), curve, device, width
        row["law"], row["names"] = law.name.encode(), ",".join(fit.names).encode()
        for key in ("estimate", "ci_low", "ci_high"):
            row[key][0, :p] = getattr(fit, key)[0].cpu().numpy()
        row["converged"] = bool(fit.converged[0])
        self.writer.append("bench/fits", row)
        values = ", ".join(f"{n}={float(v):.4g}" for n, v in zip(fit.names, fit.estimate[0]))
        self._action("scurve_fit", device, width=width, count=len(amps),
                     result=f"{law.name}: {values}" + ("" if bool(fit.converged[0]) else " (not converged)"))
        return fit

    def new_sweep(self) -> int:
        self.sweeps += 1
        return self.sweeps - 1

    def field_point(self, sweep: int, device: int, field: float, width: float) -> tuple[float, int]:
        """One field pulse (T, ``width`` s) on ``device`` then one Kerr read: (signal in V, level).

        Only on a station with a field supply (Kerr bench); the field goes through the chip's
        envelope like any pulse."""
        if not self.has_field_supply:
            raise ValueError(f"station {self.station.station.name!r} has no field supply")

        def op():
            self.chip.pulse([device], field, width)
            return self.chip.read([device], 1)

        result, _ = self._do("field_point", device, op, amplitude=field, width=width, count=1,
                             describe_result=lambda r: f"signal {float(r.signal[0, 0]):.6g} {self.chip.signal_unit}, "
                                                       f"level {int(r.level[0, 0])}")
        signal, lev = float(result.signal[0, 0]), int(result.level[0, 0])
        row = np.zeros(1, FIELD_DTYPE)
        row[0] = (time.time(), sweep, device, field, width, signal, lev)
        self.writer.append("bench/field", row)
        self.writer.flush()
        self.last_level[device], self.last_signal[device] = lev, signal
        return signal, lev

    # ------------------------------------------------------------------ safety and the end
    def safe_state(self) -> str:
        """Every instrument to its safe state now (waits for an action in progress to end).

        Returns ``"confirmed"``; raises InstrumentError (recorded) if not confirmed."""
        self._do("safe_state", -1, self.chip.safe_state, describe_result=lambda _: "confirmed")
        return "confirmed"

    def close(self, reason: str = "bench session closed") -> None:
        """Chip to its safe state and released; the bench file closed. Safe to call twice.

        The file's exit status is ``success``, or ``failed`` with the error when the safe state
        was not confirmed (which is then raised)."""
        if self.closed:
            return
        self.closed = True
        with self.lock:
            try:
                self.chip.close()
            except Exception as exc:
                self.writer.event("safe_state_fail", str(exc))
                self.writer.close("failed", f"{reason}; safe state not confirmed: {exc}")
                raise
            self.writer.close("success", reason)


def read_bench_file(reader) -> dict | None:
    """The bench datasets of a :class:`~labctl.store.RunReader` as numpy arrays, or None if the file
    is not a bench file: ``actions``, ``readings``, ``scurve``, ``fits``, ``field``."""
    names = set(reader.names())
    if "bench/actions" not in names:
        return None
    return {key: np.asarray(reader.dataset(f"bench/{key}")) for key in ("actions", "readings", "scurve", "fits", "field")
            if f"bench/{key}" in names}
