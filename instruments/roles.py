"""Role interfaces: what labctl needs of each instrument, whatever its make.

A lab with another model adds one adapter class implementing the role. Every role is reached
through a :class:`~instruments.link.Link` and has:

- :meth:`Role.configure`: bring the instrument to labctl's set-up, then read its error queue and
  raise :class:`~instruments.errors.InstrumentError` if it reported anything;
- :meth:`Role.safe_state`: outputs off, biases ramped to zero; safe to call at any time;
- :meth:`Role.errors`: read (and so clear) the instrument's error queue.

Batch operations (``load``, ``fire``, ``arm``, ``fetch``, ``move_to``, ``route``) try once and
raise :class:`~instruments.errors.TransientError` on a communication failure, so that the caller
retries the whole batch; configuration and safe state retry by themselves.

Units are SI: volts, amperes, tesla, ohms, metres, seconds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .errors import InstrumentError, describe
from .link import Link
from .waveform import Waveform


class Role(ABC):
    """One instrument in one role, reached through ``link``."""

    role: str = ""

    def __init__(self, link: Link):
        self.link = link

    @property
    def driver(self) -> Any:
        return self.link.driver

    def configure(self) -> None:
        """Set the instrument up for labctl, then check its error queue.

        A setting the driver refuses (a PyMeasure validator's ValueError) is an InstrumentError
        naming the role's station table."""
        try:
            self.link.call(self._configure)
        except InstrumentError:
            raise
        except ValueError as exc:
            raise InstrumentError(f"{self.link.where}: cannot configure: {describe(exc)}; check the settings "
                                  f"in [instruments.{self.link.role}]") from exc
        self.raise_errors("after configuring")

    def safe_state(self) -> None:
        """Outputs off, biases ramped to zero, confirmed by read-back (retried like any idempotent
        operation). If the instrument does not answer, the same commands are sent once more
        without reading anything back (a setpoint then jumps to zero instead of ramping) and the
        InstrumentError is raised: the safe state is not confirmed."""
        try:
            self.link.call(self._safe_state)
        except InstrumentError:
            try:
                self.link.attempt(self._blind_safe_state)
            except Exception:  # noqa: BLE001 - best effort; the error below says it all
                pass
            raise

    def _blind_safe_state(self, driver) -> None:
        """Write-only version of :meth:`_safe_state` (nothing to do for roles without outputs)."""

    def errors(self) -> list[str]:
        """Read the instrument's error queue until it is empty; one string per error."""
        return self.link.call(self._errors)

    def raise_errors(self, when: str) -> None:
        errors = self.errors()
        if errors:
            raise InstrumentError(f"{self.link.where} reported {when}: {'; '.join(errors)}")

    def identify(self) -> str:
        """The instrument's ``*IDN?`` reply."""
        return self.link.call(lambda d: d.ask("*IDN?").strip())

    def output_state(self) -> tuple[str, bool | None]:
        """What the instrument reports of its outputs, queried (never inferred): ``(text, off)``.

        ``off`` is True when every output is off and every source at zero (the safe state), False
        when something is on, None for a role without outputs (lock-in, stage)."""
        return self.link.call(self._output_state)

    def _output_state(self, driver) -> tuple[str, bool | None]:
        return "no outputs", None

    @abstractmethod
    def _configure(self, driver) -> None: ...

    @abstractmethod
    def _safe_state(self, driver) -> None: ...

    @abstractmethod
    def _errors(self, driver) -> list[str]: ...


def scpi_errors(driver) -> list[str]:
    """Drain a SCPI error queue (``SYST:ERR?`` until code 0), as PyMeasure's ``check_errors`` does."""
    errors = []
    for _ in range(32):  # an instrument's queue holds at most a few dozen entries
        code, *message = [str(v).strip() for v in driver.values("SYST:ERR?", cast=str, maxsplit=1)]
        try:
            number = int(float(code))
        except ValueError:
            from .errors import ReplyError

            raise ReplyError(f"unexpected error-queue reply {code!r}") from None
        if number == 0:
            return errors
        errors.append(f"{number},{message[0] if message else ''}")
    return errors


class PulseSource(Role):
    """Arbitrary-waveform pulse source: channel 1 drives, channel 2 carries read triggers."""

    role = "pulse_source"
    #: Largest number of samples in one waveform.
    max_points: int = 65536
    #: Largest absolute output voltage, volts.
    max_volts: float = 5.0
    #: Shortest sample period, seconds.
    min_dt: float = 4e-9

    @property
    def min_step_volts(self) -> float:
        """Smallest non-zero output step, volts (0: not known for this model)."""
        return 0.0

    def check(self, wave: Waveform) -> None:
        """Refuse a waveform the instrument cannot play, before anything is sent."""
        if len(wave) > self.max_points:
            raise ValueError(f"{self.link.where}: waveform of {len(wave)} points exceeds {self.max_points}")
        if wave.peak > self.max_volts:
            raise ValueError(f"{self.link.where}: waveform peak {wave.peak:.4g} V exceeds +-{self.max_volts} V")
        if wave.dt < self.min_dt:
            raise ValueError(f"{self.link.where}: sample period {wave.dt:.3g} s is below {self.min_dt:.3g} s")

    def load(self, wave: Waveform) -> None:
        """Upload both channels (one transaction)."""
        self.check(wave)
        self.link.attempt(self._load, wave)

    def fire(self) -> None:
        """Trigger one burst of the loaded waveform and wait until it has played (one transaction)."""
        self.link.attempt(self._fire)

    @abstractmethod
    def _load(self, driver, wave: Waveform) -> None: ...

    @abstractmethod
    def _fire(self, driver) -> None: ...


class FieldSupply(Role):
    """Bipolar supply driving the electromagnet from the pulse source's output (current mode).

    ``gain`` is the supply's transconductance under external control (A/V) and ``coil`` the
    magnet's field per ampere at the sample (T/A), both station calibration constants.
    """

    role = "field_supply"

    def __init__(self, link: Link, *, gain: float, coil: float, voltage_limit: float = 20.0,
                 ramp_steps: int = 5, ramp_pause_s: float = 0.01):
        super().__init__(link)
        self.gain = gain
        self.coil = coil
        self.voltage_limit = voltage_limit
        self.ramp_steps = ramp_steps
        self.ramp_pause_s = ramp_pause_s

    @property
    def tesla_per_volt(self) -> float:
        """Field at the sample per volt of the pulse source, T/V."""
        return self.gain * self.coil


class KerrReadout(Role):
    """Lock-in amplifier on the Kerr photodiode, storing one reading per trigger in its buffer."""

    role = "kerr_readout"
    max_points: int = 16383

    def arm(self) -> None:
        """Clear the buffer and start storing one point per trigger (one transaction)."""
        self.link.attempt(self._arm)

    def fetch(self, count: int) -> np.ndarray:
        """The ``count`` readings taken since :meth:`arm`, volts (two transactions)."""
        return self.link.attempt(self._fetch, count)

    @abstractmethod
    def _arm(self, driver) -> None: ...

    @abstractmethod
    def _fetch(self, driver, count: int) -> np.ndarray: ...


class Positioner(Role):
    """Stage that puts the laser spot over one wire: wire ``k`` sits at ``origin + k * pitch``."""

    role = "positioner"

    def __init__(self, link: Link, *, pitch: float, origin: float = 0.0, axis: int = 1):
        super().__init__(link)
        self.pitch = pitch
        self.origin = origin
        self.axis = axis

    def position_of(self, device: int) -> float:
        """Stage position of wire ``device``, metres."""
        return self.origin + device * self.pitch

    def move_to(self, position: float) -> None:
        """Move to ``position`` (metres) and return when the motion is done (one transaction)."""
        self.link.attempt(self._move_to, position)

    @abstractmethod
    def _move_to(self, driver, position: float) -> None: ...


class SourceMeter(Role):
    """Source-measure unit: sources the read bias and stores one resistance per trigger."""

    role = "source_meter"
    max_points: int = 2500

    def __init__(self, link: Link, *, read_bias: float, compliance: float = 1e-3, nplc: float = 0.01,
                 ramp_steps: int = 5, ramp_pause_s: float = 0.01):
        super().__init__(link)
        self.read_bias = read_bias
        self.compliance = compliance
        self.nplc = nplc
        self.ramp_steps = ramp_steps
        self.ramp_pause_s = ramp_pause_s

    def arm(self, count: int) -> None:
        """Clear the buffer and wait for ``count`` trigger-link triggers (one transaction)."""
        if not 1 <= count <= self.max_points:
            raise ValueError(f"{self.link.where}: buffer holds 1..{self.max_points} readings, asked for {count}")
        self.link.attempt(self._arm, count)

    def fetch(self, count: int) -> np.ndarray:
        """The ``count`` resistances (ohms) stored since :meth:`arm` (one transaction)."""
        return self.link.attempt(self._fetch, count)

    @abstractmethod
    def _arm(self, driver, count: int) -> None: ...

    @abstractmethod
    def _fetch(self, driver, count: int) -> np.ndarray: ...


class Switch(Role):
    """Switch matrix: connects the pulse source and the source meter to one device at a time."""

    role = "switch"

    def route(self, device: int) -> None:
        """Open everything, close the crosspoint of ``device``, confirm (one transaction)."""
        self.link.attempt(self._route, device)

    @abstractmethod
    def _route(self, driver, device: int) -> None: ...


# ---------------------------------------------------------------------------- helpers for adapters
def parse_floats(reply: str, count: int | None = None, what: str = "reply") -> np.ndarray:
    """Comma-separated numbers (a trailing comma is allowed); ReplyError if garbled or miscounted."""
    from .errors import ReplyError

    text = reply.strip().rstrip(",")
    try:
        values = np.array([float(v) for v in text.split(",")] if text else [], dtype=np.float64)
    except ValueError:
        raise ReplyError(f"garbled {what}: {reply[:60]!r}") from None
    if count is not None and len(values) != count:
        raise ReplyError(f"{what}: expected {count} values, got {len(values)}")
    return values


def confirm(reply: str, expected: tuple[str, ...], what: str) -> None:
    """Check a read-back after a safe-state command; ReplyError (so: retried) if it differs."""
    from .errors import ReplyError

    text = reply.strip()
    if text.upper() not in expected:
        raise ReplyError(f"{what} reads back {text[:40]!r}, expected {expected[0]!r}")


def ramp(read_setpoint, write_setpoint, target: float, steps: int, pause_s: float) -> None:
    """Ramp a source setpoint linearly from its present value to ``target`` in ``steps`` steps."""
    import time

    start = float(parse_floats(str(read_setpoint()), 1, "setpoint")[0])
    if start == target:
        write_setpoint(target)
        return
    for value in np.linspace(start, target, max(int(steps), 1) + 1)[1:]:
        write_setpoint(float(value))
        if pause_s > 0:
            time.sleep(pause_s)
