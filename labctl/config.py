"""Station and protocol configuration: TOML files validated with pydantic.

A station file says what chip is at the probe station (family, size, physics for the simulated
backend), its safety envelope, and which backend drives it. A protocol file names a protocol
kind and its settings; the settings model belongs to the protocol (``protocols/``), validated
here with the same error reporting.

Every error is one line naming the file, the key and what was expected, e.g.
``station.toml: key 'envelope.width_max': expected a number greater than 0 (got -1.0)``.
Embedded files ship in ``labctl/defaults`` and are addressed by name (``sim-dw``).
"""

from __future__ import annotations

import difflib
import re
import reprlib
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """Bad configuration; the message is one line naming the file, the key and what was expected."""


class Strict(BaseModel):
    """Base of every config table: unknown keys are errors, values are immutable.

    Values are taken as written: no bool passes as a number, no 2.0 as an integer, no string as a
    number (pydantic strict mode); every float is finite (no inf or nan); no text holds a NUL.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text without NUL characters")
        return value


# ---------------------------------------------------------------------------- names, seeds, paths
NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
NAME_RULE = "a name of 1 to 100 letters, digits, '-', '_' or '.', not starting with '.'"


def _check_name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(NAME_RULE)
    return value


Name = Annotated[str, AfterValidator(_check_name)]
"""A station or protocol name: it becomes part of a file name, so it cannot hold a path."""

def _check_seed(value: int) -> int:
    if not 0 <= value < 2**63:
        raise ValueError("a seed: an integer 0 <= seed < 2**63")
    return value


Seed = Annotated[int, AfterValidator(_check_seed)]
"""A random seed: 0 <= seed < 2**63 (what torch and numpy generators take)."""


def safe_file_stem(name: str) -> str:
    """A file-name stem made from ``name`` that cannot leave its folder.

    Every character other than a letter, digit, ``-``, ``_`` or ``.`` becomes ``_``, leading dots go,
    and the result is cut to 100 characters (``"run"`` if nothing is left). A valid :data:`Name` is
    returned unchanged.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:100]
    return stem or "run"


# ---------------------------------------------------------------------------- physics tables
class DWNanowirePhysics(Strict):
    """Simulated DW nanowires (see simulated_bench.physics.dw_nanowire). SI units."""

    law: Literal["logistic", "gaussian"] = "logistic"
    x0: float = Field(4.63168e-3, gt=0, le=10, description="mid-point depinning field, tesla (0 < x0 <= 10 T)")
    dx: float = Field(2.72741e3, gt=0, le=1e9, description="logistic slope, 1/tesla (at most 1e9)")
    a: float = Field(0.97813, ge=0, le=1, description="logistic contrast (floor = 1 - a)")
    sigma: float = Field(0.62e-3, gt=0, le=10, description="Gaussian depinning-field spread, tesla (at most 10 T)")
    x0_spread: float = Field(0.05, ge=0, le=0.5, description="relative device-to-device std of x0")
    dx_spread: float = Field(0.10, ge=0, le=1, description="relative std of dx (and sigma)")
    a_spread: float = Field(0.005, ge=0, le=0.2, description="absolute std of a")
    kerr_contrast: float = Field(1e-3, gt=0, le=10, description="lock-in signal step on switching, volts (at most 10 V)")
    kerr_offset: float = Field(2e-3, ge=-10, le=10, description="lock-in signal before switching, volts (|offset| <= 10 V)")
    read_noise: float = Field(1.5e-4, ge=0, le=10, description="Kerr read noise std, volts (at most 10 V)")
    field_energy_coefficient: float = Field(200.0, ge=0, le=1e9, description="field-line energy k in k*B^2*t, J/(T^2 s) (at most 1e9)")
    read_energy_j: float = Field(0.0, ge=0, le=1, description="energy per Kerr read dissipated on chip, joules (at most 1 J)")
    reset_energy_j: float = Field(0.0, ge=0, le=1, description="energy per re-nucleation, joules (at most 1 J)")


class STTMTJPhysics(Strict):
    """Simulated STT-MTJs (see simulated_bench.physics.stt_mtj). SI units."""

    r_p: float = Field(3e3, gt=0, le=1e9, description="parallel resistance, ohms (at most 1 Gohm)")
    tmr: float = Field(1.5, gt=0, le=10, description="tunnelling magnetoresistance, fraction")
    delta_p2ap: float = Field(45.0, gt=0, le=200)
    vc0_p2ap: float = Field(0.8, gt=0, le=5, description="volts")
    delta_ap2p: float = Field(42.0, gt=0, le=200)
    vc0_ap2p: float = Field(0.6, gt=0, le=5, description="volts")
    tau0: float = Field(1e-9, gt=0, le=1e-6, description="attempt time, seconds")
    delta_spread: float = Field(0.05, ge=0, le=0.5)
    vc0_spread: float = Field(0.03, ge=0, le=0.5)
    r_spread: float = Field(0.03, ge=0, le=0.5)
    read_noise: float = Field(60.0, ge=0, le=1e9, description="resistance read noise std, ohms (at most 1 Gohm)")
    read_bias: float = Field(0.05, gt=0, le=10, description="read bias, volts (at most 10 V)")
    read_time: float = Field(1e-6, gt=0, le=1, description="read integration time, seconds (at most 1 s)")
    reset_energy_j: float = Field(2e-12, ge=0, le=1, description="joules (at most 1 J)")


class DWMTJPhysics(Strict):
    """Simulated K-state DW-MTJs (see simulated_bench.physics.dw_mtj). SI units."""

    levels: int = Field(5, ge=2, le=16, description="pinning sites K")
    i_c: float = Field(100e-6, gt=0, le=1, description="depinning current, amperes (at most 1 A)")
    mobility: float = Field(2e12, gt=0, le=1e20, description="sites per ampere-second above i_c (at most 1e20)")
    sigma: float = Field(0.15, gt=0, le=5, description="landing spread, sites")
    i_c_spread: float = Field(0.05, ge=0, le=0.5)
    mobility_spread: float = Field(0.05, ge=0, le=0.5)
    sigma_spread: float = Field(0.2, ge=0, le=1)
    r_p: float = Field(3e3, gt=0, le=1e9, description="ohms, wall at the last site (at most 1 Gohm)")
    tmr: float = Field(1.0, gt=0, le=10)
    read_noise: float = Field(20.0, ge=0, le=1e9, description="ohms (at most 1 Gohm)")
    read_bias: float = Field(0.05, gt=0, le=10, description="volts (at most 10 V)")
    read_time: float = Field(1e-6, gt=0, le=1, description="seconds (at most 1 s)")
    reset_energy_j: float = Field(5e-12, ge=0, le=1, description="joules (at most 1 J)")


class DWNanowireChip(Strict):
    family: Literal["dw_nanowire"]
    n: int = Field(ge=1, le=10_000_000, description="number of synapses")
    seed: Seed = Field(0, description="physics seed: device construction and random streams, 0 <= seed < 2**63")
    physics: DWNanowirePhysics = DWNanowirePhysics()


class STTMTJChip(Strict):
    family: Literal["stt_mtj"]
    n: int = Field(ge=1, le=10_000_000)
    seed: Seed = 0
    physics: STTMTJPhysics = STTMTJPhysics()


class DWMTJChip(Strict):
    family: Literal["dw_mtj"]
    n: int = Field(ge=1, le=10_000_000)
    seed: Seed = 0
    physics: DWMTJPhysics = DWMTJPhysics()


ChipConfig = Annotated[Union[DWNanowireChip, STTMTJChip, DWMTJChip], Field(discriminator="family")]


AMPLITUDE_LIMIT = 100.0
"""Largest |amplitude| any envelope may allow, in the family's unit (100 T, 100 A, 100 V): far above
any on-chip pulse, so a typo such as ``1e30`` is refused rather than taken as a limit."""


class EnvelopeConfig(Strict):
    """Safe limits; amplitude in the family's unit (T, A or V), width in seconds, bias in volts.

    All finite: |amplitude| <= 100 (family unit), 0 < width <= 10 s, 0 <= read bias <= 10 V.
    """

    amplitude_min: float = Field(ge=-AMPLITUDE_LIMIT, le=AMPLITUDE_LIMIT, description="family unit (T, A or V)")
    amplitude_max: float = Field(ge=-AMPLITUDE_LIMIT, le=AMPLITUDE_LIMIT, description="family unit (T, A or V)")
    width_min: float = Field(gt=0, le=10, description="seconds")
    width_max: float = Field(gt=0, le=10, description="seconds")
    read_bias_max: float = Field(0.2, ge=0, le=10, description="largest |read bias|, volts")

    @model_validator(mode="after")
    def _ordered(self):
        if self.amplitude_min > self.amplitude_max:
            raise ValueError("amplitude_min must not exceed amplitude_max")
        if self.width_min > self.width_max:
            raise ValueError("width_min must not exceed width_max")
        return self


# ---------------------------------------------------------------------------- instruments (backend = "instruments")
class InstrumentTable(Strict):
    """One instrument: its VISA resource and how to talk to it."""

    resource: str = Field("auto", min_length=1, max_length=256, description="VISA resource string, or 'auto': the simulated bench this station starts ([bench] start = true)")
    timeout_s: float = Field(2.0, gt=0, le=600, description="VISA timeout, seconds")
    retries: int = Field(2, ge=0, le=10, description="reconnect-and-retry attempts after a timeout, lost connection or garbled reply")
    visa_library: str = Field("", max_length=256, description="pyvisa backend: '' for the system default, '@py' for pyvisa-py")
    read_termination: str = Field("\n", pattern=r"^[\r\n]{0,2}$", description="'\\n', '\\r\\n', '\\r' or ''")
    write_termination: str = Field("\n", pattern=r"^[\r\n]{0,2}$", description="'\\n', '\\r\\n', '\\r' or ''")
    port: int = Field(0, ge=0, le=65535, description="simulated bench only: TCP port to serve on (0 = any free port)")

    @field_validator("resource", "visa_library")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable() or value != value.strip():
            raise ValueError("printable text without leading or trailing spaces, e.g. 'GPIB0::12::INSTR', "
                             "'TCPIP::192.168.0.5::5025::SOCKET' or 'auto'")
        return value


class PulseSourceTable(InstrumentTable):
    model: Literal["Agilent33500", "Keysight81160A"]
    max_points: int = Field(65536, ge=64, le=16_000_000, description="samples per arbitrary waveform")
    units_per_volt: float = Field(1.0, gt=0, le=1e3, description="TMR bench: device amplitude per output volt (V/V for STT-MTJs, A/V = 1/R_series for DW-MTJs; at most 1e3)")


class FieldSupplyTable(InstrumentTable):
    model: Literal["KepcoBOP3612"]
    gain: float = Field(gt=0, le=100, description="supply current per volt at its analog input, A/V (0 < gain <= 100)")
    coil: float = Field(gt=0, le=10, description="field at the sample per ampere of magnet current, T/A (0 < coil <= 10)")
    voltage_limit: float = Field(20.0, gt=0, le=36, description="compliance voltage in current mode, volts")
    ramp_steps: int = Field(5, ge=1, le=1000)
    ramp_pause_s: float = Field(0.01, ge=0, le=10)


class KerrReadoutTable(InstrumentTable):
    model: Literal["SR830"]
    levels: list[Annotated[float, Field(ge=-10, le=10)]] | None = Field(None, min_length=2, max_length=2, description="lock-in X of an unswitched and a switched wire, volts, |X| <= 10 V (default: from chip.physics)")


class PositionerTable(InstrumentTable):
    model: Literal["ESP300"]
    pitch: float = Field(gt=0, le=0.1, description="spacing of the wires along the axis, metres")
    origin: float = Field(0.0, ge=-0.1, le=0.1, description="stage position of wire 0, metres")
    axis: int = Field(1, ge=1, le=3)


class SourceMeterTable(InstrumentTable):
    model: Literal["Keithley2400", "Keithley2450"]
    read_bias: float | None = Field(None, gt=0, le=10, description="read bias, volts, at most 10 V (default: chip.physics.read_bias)")
    compliance: float = Field(1e-3, gt=0, le=1.05, description="current compliance, amperes")
    nplc: float = Field(0.01, ge=0.01, le=10, description="integration time, power-line cycles")
    levels: list[Annotated[float, Field(gt=0, le=1e9)]] | None = Field(None, min_length=2, max_length=16, description="resistance of each level, ohms, 0 < R <= 1 Gohm (default: from chip.physics)")
    ramp_steps: int = Field(5, ge=1, le=1000)
    ramp_pause_s: float = Field(0.01, ge=0, le=10)


class SwitchTable(InstrumentTable):
    model: Literal["Keithley2700"]
    slots: list[Literal[1, 2]] = Field([1], min_length=1, max_length=2, description="slots holding 7709 matrix cards, in device order")


class InstrumentsConfig(Strict):
    """``[instruments]``: the trial sequence, and one ``[instruments.<role>]`` table per role."""

    reset_amplitude: float = Field(ge=-AMPLITUDE_LIMIT, le=AMPLITUDE_LIMIT, description="amplitude of the reset pulse (family unit); must lie in the envelope")
    reset_width: float = Field(gt=0, le=10, description="width of the reset pulse, seconds; must lie in the envelope")
    read_samples: int = Field(2, ge=1, le=1_000_000, description="samples of each read window after a write")
    read_dt: float = Field(1e-6, gt=0, le=1, description="sample period of read-only waveforms, seconds")
    pulse_source: PulseSourceTable
    field_supply: FieldSupplyTable | None = None
    kerr_readout: KerrReadoutTable | None = None
    positioner: PositionerTable | None = None
    source_meter: SourceMeterTable | None = None
    switch: SwitchTable | None = None

    def roles(self) -> dict[str, InstrumentTable]:
        return {name: getattr(self, name) for name in INSTRUMENT_ROLES if getattr(self, name) is not None}


INSTRUMENT_ROLES = ("pulse_source", "field_supply", "kerr_readout", "positioner", "source_meter", "switch")
BENCH_ROLES = {"dw_nanowire": ("pulse_source", "field_supply", "kerr_readout", "positioner"),
               "stt_mtj": ("pulse_source", "source_meter", "switch"),
               "dw_mtj": ("pulse_source", "source_meter", "switch")}


class BenchFault(Strict):
    """One injected fault: after ``after`` messages to ``role``, hit ``count`` of them (0 = all).

    ``outage``: the instrument's server stops answering (refuses connections) for ``duration_s``
    seconds, as a power-cycled LAN instrument does; a run rides it out (suspends) if it is shorter
    than the station's ``suspend_timeout_s``."""

    kind: Literal["timeout", "drop", "garble", "outage"]
    role: Literal["pulse_source", "field_supply", "kerr_readout", "positioner", "source_meter", "switch"]
    after: int = Field(0, ge=0, le=10**12, description="messages before the fault")
    count: int = Field(1, ge=0, le=10**12, description="messages hit; 0 = every one from then on (a persistent fault)")
    duration_s: float = Field(0.0, ge=0, le=86400, description="outage only: seconds until the instrument answers again")


class BenchConfig(Strict):
    """``[bench]``: the simulated bench behind a station's instruments (ignored by real labs)."""

    start: bool = Field(False, description="open_chip starts the simulated bench on 127.0.0.1 itself")
    latency_s: float = Field(0.0, ge=0, le=10, description="added delay of every reply, seconds")
    nucleation_field: float = Field(8e-3, gt=0, le=10, description="Kerr bench: a field pulse at or below minus this re-nucleates the wall, tesla (at most 10 T)")
    stuck: list[Annotated[int, Field(ge=0)]] = Field([], description="synapses stuck in stuck_level")
    stuck_level: int = Field(1, ge=0, le=15)
    faults: list[BenchFault] = Field([], max_length=100)


class StationHeader(Strict):
    name: Name
    description: str = Field("", max_length=10_000)
    backend: Literal["simulated", "instruments"] = "simulated"
    suspend_timeout_s: float = Field(600.0, ge=0, le=7 * 86400, description="how long an instrument outage is "
                                     "waited out before the run fails, seconds (finite, 0 <= t <= 7 days)")


class StationConfig(Strict):
    station: StationHeader
    chip: ChipConfig
    envelope: EnvelopeConfig
    instruments: InstrumentsConfig | None = None
    bench: BenchConfig | None = None

    @model_validator(mode="after")
    def _bias_in_envelope(self):
        bias = getattr(self.chip.physics, "read_bias", None)
        if bias is not None and bias > self.envelope.read_bias_max:
            raise ValueError(
                f"chip.physics.read_bias {bias} V exceeds envelope.read_bias_max {self.envelope.read_bias_max} V"
            )
        return self

    @model_validator(mode="after")
    def _instruments_complete(self):
        ins = self.instruments
        if ins is None:
            if self.station.backend == "instruments":
                raise ValueError("station.backend is 'instruments' but the file has no [instruments] table "
                                 "(add one, or set backend = 'simulated')")
            return self
        if self.station.backend == "simulated":
            raise ValueError("station.backend is 'simulated' (in-process physics, no instruments) but the file has "
                             "an [instruments] table (set backend = 'instruments', or remove [instruments])")
        missing = [r for r in BENCH_ROLES[self.chip.family] if getattr(ins, r) is None]
        if missing:
            raise ValueError(f"a {self.chip.family} station needs [instruments.{missing[0]}]"
                             + (f" (and {', '.join(missing[1:])})" if missing[1:] else ""))
        e = self.envelope
        if not (e.amplitude_min <= ins.reset_amplitude <= e.amplitude_max and e.width_min <= ins.reset_width <= e.width_max):
            raise ValueError("instruments.reset_amplitude and reset_width must lie inside the envelope")
        if ins.source_meter is not None and ins.source_meter.read_bias is not None and ins.source_meter.read_bias > e.read_bias_max:
            raise ValueError(f"instruments.source_meter.read_bias exceeds envelope.read_bias_max {e.read_bias_max} V")
        if ins.switch is not None and self.chip.n > 48 * len(ins.switch.slots):
            raise ValueError(f"{self.chip.n} synapses need {-(-self.chip.n // 48)} 7709 cards, slots lists {len(ins.switch.slots)}")
        auto = [r for r, t in ins.roles().items() if t.resource == "auto"]
        if auto and not (self.bench is not None and self.bench.start):
            raise ValueError(f"instruments.{auto[0]}.resource is 'auto' but [bench] start is not true")
        if self.bench is not None and any(i >= self.chip.n for i in self.bench.stuck):
            raise ValueError(f"bench.stuck lists a synapse beyond chip.n = {self.chip.n}")
        return self


class ProtocolHeader(Strict):
    name: Name
    kind: str = Field(min_length=1, max_length=100, description="which protocol runs: see `labctl protocols`")
    description: str = Field("", max_length=10_000)
    station: str = Field("sim-dw", min_length=1, max_length=4096, description="default station: embedded name or TOML path")
    seed: Seed = Field(0, description="seed of the protocol's own randomness, 0 <= seed < 2**63")


class ProtocolFile(Strict):
    """A protocol file before its settings are validated by the protocol kind's own model."""

    protocol: ProtocolHeader
    settings: dict[str, Any] = {}


# ---------------------------------------------------------------------------- loading
DEFAULTS = "labctl.defaults"


def embedded_names(kind: Literal["stations", "protocols"]) -> list[str]:
    """Names of the embedded station or protocol files (without ``.toml``)."""
    folder = resources.files(DEFAULTS).joinpath(kind)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


MAX_FILE_BYTES = 1 << 20
"""Largest configuration file read, bytes (1 MiB): station and protocol files are a few kB."""

_REPR = reprlib.Repr()  # bounded repr of a bad value: short, and safe on deeply nested input
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 60, 60, 3, 6, 6


def _label(text: str) -> str:
    """A file name fit for a one-line message: escaped if not printable, shortened if very long."""
    label = text if text.isprintable() else repr(text)
    return label if len(label) <= 200 else f"{label[:120]}... ({len(text)} characters)"


def read_toml(name_or_path: str | Path, kind: Literal["stations", "protocols"]) -> tuple[dict, str]:
    """Read a TOML file given by path or embedded name; returns (data, source label for errors).

    Every failure (missing, a directory, unreadable, over 1 MiB, not UTF-8, empty, not TOML, nested
    too deeply) is a one-line ConfigError naming the file.
    """
    text_name = str(name_or_path)
    path = Path(text_name)
    expected = f"expected a TOML {kind[:-1]} file"
    if path.suffix != ".toml" and text_name in embedded_names(kind):
        source = f"<embedded {kind[:-1]} {text_name}>"
        text = resources.files(DEFAULTS).joinpath(kind, text_name + ".toml").read_text()
    else:
        source = _label(text_name)
        if "\x00" in text_name:
            raise ConfigError(f"{source}: not a file name (it holds a NUL character; {expected})")
        try:
            if path.is_dir():
                raise ConfigError(f"{source}: is a directory, {expected}")
            if not path.is_file():
                raise ConfigError(f"{source}: no such file ({expected} or an embedded name: "
                                  f"{', '.join(embedded_names(kind))})")
            with path.open("rb") as stream:
                raw = stream.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read ({exc.strerror or type(exc).__name__}; {expected})") from None
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError(f"{source}: larger than {MAX_FILE_BYTES} bytes ({expected}; they are a few kB)")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}; "
                              f"{expected})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid TOML here (arrays or tables nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise ConfigError(f"{source}: not valid TOML here ({str(exc).split(';')[0]})") from None
    if not data:
        raise ConfigError(f"{source}: the file is empty (no keys; {expected})")
    return data, source


_TAGS = {"dw_nanowire", "stt_mtj", "dw_mtj"}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, Union, Annotated and list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys of the table at ``loc`` (the location of one of its keys), for "did you mean"."""
    current = [model]
    for part in loc[:-1]:
        if part in _TAGS:  # a discriminated union's branch: keep the models of that chip family
            current = [m for m in current if part in getattr(m.model_fields.get("family"), "annotation",
                                                              Any).__args__] or current
            continue
        current = [sub for m in current if part in m.model_fields for sub in _models_in(m.model_fields[part].annotation)]
    return sorted({key for m in current for key in m.model_fields})


_WORDS = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}


def _describe(error: dict, model: type[BaseModel], prefix: str) -> str:
    """One validation error as ``key 'a.b': expected ... (got ...)``."""
    loc = [str(part) for part in error["loc"] if str(part) not in _TAGS]
    key = ".".join([prefix, *loc] if prefix else loc) or "(top level)"
    kind = error["type"]
    got = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), _known_keys(model, error["loc"]), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "check the spelling; see the documented keys of this table"
        return f"key '{key}': unknown key ({hint})"
    if kind == "missing":
        return f"key '{key}': missing (a value is required)"
    if kind == "union_tag_invalid":  # e.g. chip.family = "memristor"
        key = f"{key}.{str(ctx.get('discriminator', '')).strip(chr(39))}"
        return f"key '{key}': expected one of {ctx.get('expected_tags', '')} (got {_REPR.repr(ctx.get('tag'))})"
    if kind == "union_tag_not_found":
        key = f"{key}.{str(ctx.get('discriminator', '')).strip(chr(39))}"
        return f"key '{key}': missing (one of {', '.join(repr(t) for t in sorted(_TAGS))})"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"key '{key}': expected a table (got {_REPR.repr(got)})"
    expected = error["msg"]
    for bound, words in _WORDS.items():
        if bound in ctx:
            expected = f"a number {words} {ctx[bound]}"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind == "finite_number":
        expected = expected.replace("Input should be", "").strip() or expected
    elif kind == "literal_error":
        expected = f"one of {ctx.get('expected', '')}"
    elif kind == "value_error":
        expected = str(ctx.get("error", expected))
    elif kind == "string_pattern_mismatch":
        expected = f"text matching {ctx.get('pattern', '')}"
    expected = expected[0].lower() + expected[1:] if expected else expected
    if key == "(top level)" and kind == "value_error":
        return expected  # a cross-check between keys: its message names them
    return f"key '{key}': expected {expected} (got {_REPR.repr(got)})" if not isinstance(got, dict) else f"key '{key}': {expected}"


MAX_LISTED = 10


def validate(model: type[M], data: Any, source: str, prefix: str = "") -> M:
    """Validate ``data`` against ``model``; a failure raises a one-line ConfigError listing every problem.

    Unknown keys come first (with a "did you mean" from the table's keys), then the others,
    separated by ``; ``; more than 10 are counted, not listed.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    except RecursionError:
        raise ConfigError(f"{source}: tables or arrays nested too deeply") from None
    problems = list(dict.fromkeys(_describe(e, model, prefix) for e in errors))
    message = "; ".join(problems[:MAX_LISTED])
    if len(problems) > MAX_LISTED:
        message += f"; and {len(problems) - MAX_LISTED} more problems"
    raise ConfigError(f"{source}: {message}".replace("\n", " ").replace("\r", " "))


def load_station(name_or_path: str | Path) -> StationConfig:
    """Load and validate a station file (path or embedded name)."""
    data, source = read_toml(name_or_path, "stations")
    return validate(StationConfig, data, source)


def load_protocol_file(name_or_path: str | Path) -> tuple[ProtocolFile, str]:
    """Load a protocol file's header; the settings are validated by the protocol kind."""
    data, source = read_toml(name_or_path, "protocols")
    return validate(ProtocolFile, data, source), source
