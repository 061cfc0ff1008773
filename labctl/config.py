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

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """Bad configuration; the message is one line naming the file, the key and what was expected."""


class Strict(BaseModel):
    """Base of every config table: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------- physics tables
class DWNanowirePhysics(Strict):
    """Simulated DW nanowires (see simulated_bench.physics.dw_nanowire). SI units."""

    law: Literal["logistic", "gaussian"] = "logistic"
    x0: float = Field(4.63168e-3, gt=0, description="mid-point depinning field, tesla")
    dx: float = Field(2.72741e3, gt=0, description="logistic slope, 1/tesla")
    a: float = Field(0.97813, ge=0, le=1, description="logistic contrast (floor = 1 - a)")
    sigma: float = Field(0.62e-3, gt=0, description="Gaussian depinning-field spread, tesla")
    x0_spread: float = Field(0.05, ge=0, le=0.5, description="relative device-to-device std of x0")
    dx_spread: float = Field(0.10, ge=0, le=1, description="relative std of dx (and sigma)")
    a_spread: float = Field(0.005, ge=0, le=0.2, description="absolute std of a")
    kerr_contrast: float = Field(1e-3, gt=0, description="lock-in signal step on switching, volts")
    kerr_offset: float = Field(2e-3, description="lock-in signal before switching, volts")
    read_noise: float = Field(1.5e-4, ge=0, description="Kerr read noise std, volts")
    field_energy_coefficient: float = Field(200.0, ge=0, description="field-line energy k in k*B^2*t, J/(T^2 s)")
    read_energy_j: float = Field(0.0, ge=0, description="energy per Kerr read dissipated on chip, joules")
    reset_energy_j: float = Field(0.0, ge=0, description="energy per re-nucleation, joules")


class STTMTJPhysics(Strict):
    """Simulated STT-MTJs (see simulated_bench.physics.stt_mtj). SI units."""

    r_p: float = Field(3e3, gt=0, description="parallel resistance, ohms")
    tmr: float = Field(1.5, gt=0, le=10, description="tunnelling magnetoresistance, fraction")
    delta_p2ap: float = Field(45.0, gt=0, le=200)
    vc0_p2ap: float = Field(0.8, gt=0, le=5, description="volts")
    delta_ap2p: float = Field(42.0, gt=0, le=200)
    vc0_ap2p: float = Field(0.6, gt=0, le=5, description="volts")
    tau0: float = Field(1e-9, gt=0, le=1e-6, description="attempt time, seconds")
    delta_spread: float = Field(0.05, ge=0, le=0.5)
    vc0_spread: float = Field(0.03, ge=0, le=0.5)
    r_spread: float = Field(0.03, ge=0, le=0.5)
    read_noise: float = Field(60.0, ge=0, description="resistance read noise std, ohms")
    read_bias: float = Field(0.05, gt=0, description="read bias, volts")
    read_time: float = Field(1e-6, gt=0, description="read integration time, seconds")
    reset_energy_j: float = Field(2e-12, ge=0)


class DWMTJPhysics(Strict):
    """Simulated K-state DW-MTJs (see simulated_bench.physics.dw_mtj). SI units."""

    levels: int = Field(5, ge=2, le=16, description="pinning sites K")
    i_c: float = Field(100e-6, gt=0, description="depinning current, amperes")
    mobility: float = Field(2e12, gt=0, description="sites per ampere-second above i_c")
    sigma: float = Field(0.15, gt=0, le=5, description="landing spread, sites")
    i_c_spread: float = Field(0.05, ge=0, le=0.5)
    mobility_spread: float = Field(0.05, ge=0, le=0.5)
    sigma_spread: float = Field(0.2, ge=0, le=1)
    r_p: float = Field(3e3, gt=0, description="ohms, wall at the last site")
    tmr: float = Field(1.0, gt=0, le=10)
    read_noise: float = Field(20.0, ge=0, description="ohms")
    read_bias: float = Field(0.05, gt=0, description="volts")
    read_time: float = Field(1e-6, gt=0, description="seconds")
    reset_energy_j: float = Field(5e-12, ge=0)


class DWNanowireChip(Strict):
    family: Literal["dw_nanowire"]
    n: int = Field(ge=1, le=10_000_000, description="number of synapses")
    seed: int = Field(0, ge=0, description="physics seed: device construction and random streams")
    physics: DWNanowirePhysics = DWNanowirePhysics()


class STTMTJChip(Strict):
    family: Literal["stt_mtj"]
    n: int = Field(ge=1, le=10_000_000)
    seed: int = Field(0, ge=0)
    physics: STTMTJPhysics = STTMTJPhysics()


class DWMTJChip(Strict):
    family: Literal["dw_mtj"]
    n: int = Field(ge=1, le=10_000_000)
    seed: int = Field(0, ge=0)
    physics: DWMTJPhysics = DWMTJPhysics()


ChipConfig = Annotated[Union[DWNanowireChip, STTMTJChip, DWMTJChip], Field(discriminator="family")]


class EnvelopeConfig(Strict):
    """Safe limits; amplitude in the family's unit (T, A or V), width in seconds, bias in volts."""

    amplitude_min: float
    amplitude_max: float
    width_min: float = Field(gt=0)
    width_max: float = Field(gt=0)
    read_bias_max: float = Field(0.2, ge=0)

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

    resource: str = Field("auto", min_length=1, description="VISA resource string, or 'auto': the simulated bench this station starts ([bench] start = true)")
    timeout_s: float = Field(2.0, gt=0, le=600, description="VISA timeout, seconds")
    retries: int = Field(2, ge=0, le=10, description="reconnect-and-retry attempts after a timeout, lost connection or garbled reply")
    visa_library: str = Field("", description="pyvisa backend: '' for the system default, '@py' for pyvisa-py")
    read_termination: str = "\n"
    write_termination: str = "\n"
    port: int = Field(0, ge=0, le=65535, description="simulated bench only: TCP port to serve on (0 = any free port)")


class PulseSourceTable(InstrumentTable):
    model: Literal["Agilent33500", "Keysight81160A"]
    max_points: int = Field(65536, ge=64, le=16_000_000, description="samples per arbitrary waveform")
    units_per_volt: float = Field(1.0, gt=0, description="TMR bench: device amplitude per output volt (V/V for STT-MTJs, A/V = 1/R_series for DW-MTJs)")


class FieldSupplyTable(InstrumentTable):
    model: Literal["KepcoBOP3612"]
    gain: float = Field(gt=0, description="supply current per volt at its analog input, A/V")
    coil: float = Field(gt=0, description="field at the sample per ampere of magnet current, T/A")
    voltage_limit: float = Field(20.0, gt=0, le=36, description="compliance voltage in current mode, volts")
    ramp_steps: int = Field(5, ge=1, le=1000)
    ramp_pause_s: float = Field(0.01, ge=0, le=10)


class KerrReadoutTable(InstrumentTable):
    model: Literal["SR830"]
    levels: list[float] | None = Field(None, min_length=2, max_length=2, description="lock-in X of an unswitched and a switched wire, volts (default: from chip.physics)")


class PositionerTable(InstrumentTable):
    model: Literal["ESP300"]
    pitch: float = Field(gt=0, le=0.1, description="spacing of the wires along the axis, metres")
    origin: float = Field(0.0, ge=-0.1, le=0.1, description="stage position of wire 0, metres")
    axis: int = Field(1, ge=1, le=3)


class SourceMeterTable(InstrumentTable):
    model: Literal["Keithley2400", "Keithley2450"]
    read_bias: float | None = Field(None, gt=0, description="read bias, volts (default: chip.physics.read_bias)")
    compliance: float = Field(1e-3, gt=0, le=1.05, description="current compliance, amperes")
    nplc: float = Field(0.01, ge=0.01, le=10, description="integration time, power-line cycles")
    levels: list[float] | None = Field(None, min_length=2, description="resistance of each level, ohms (default: from chip.physics)")
    ramp_steps: int = Field(5, ge=1, le=1000)
    ramp_pause_s: float = Field(0.01, ge=0, le=10)


class SwitchTable(InstrumentTable):
    model: Literal["Keithley2700"]
    slots: list[Literal[1, 2]] = Field([1], min_length=1, max_length=2, description="slots holding 7709 matrix cards, in device order")


class InstrumentsConfig(Strict):
    """``[instruments]``: the trial sequence, and one ``[instruments.<role>]`` table per role."""

    reset_amplitude: float = Field(description="amplitude of the reset pulse (family unit); must lie in the envelope")
    reset_width: float = Field(gt=0, description="width of the reset pulse, seconds; must lie in the envelope")
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
    """One injected fault: after ``after`` messages to ``role``, hit ``count`` of them (0 = all)."""

    kind: Literal["timeout", "drop", "garble"]
    role: Literal["pulse_source", "field_supply", "kerr_readout", "positioner", "source_meter", "switch"]
    after: int = Field(0, ge=0)
    count: int = Field(1, ge=0, description="messages hit; 0 = every one from then on (a persistent fault)")


class BenchConfig(Strict):
    """``[bench]``: the simulated bench behind a station's instruments (ignored by real labs)."""

    start: bool = Field(False, description="open_chip starts the simulated bench on 127.0.0.1 itself")
    latency_s: float = Field(0.0, ge=0, le=10, description="added delay of every reply, seconds")
    nucleation_field: float = Field(8e-3, gt=0, description="Kerr bench: a field pulse at or below minus this re-nucleates the wall, tesla")
    stuck: list[int] = Field([], description="synapses stuck in stuck_level")
    stuck_level: int = Field(1, ge=0)
    faults: list[BenchFault] = []


class StationHeader(Strict):
    name: str = Field(min_length=1)
    description: str = ""
    backend: Literal["simulated", "instruments"] = "simulated"


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
                raise ValueError("backend 'instruments' needs an [instruments] table")
            return self
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
    name: str = Field(min_length=1)
    kind: str = Field(min_length=1, description="which protocol runs: see `labctl protocols`")
    description: str = ""
    station: str = Field("sim-dw", description="default station: embedded name or TOML path")
    seed: int = Field(0, ge=0, description="seed of the protocol's own randomness")


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


def read_toml(name_or_path: str | Path, kind: Literal["stations", "protocols"]) -> tuple[dict, str]:
    """Read a TOML file given by path or embedded name; returns (data, source label for errors)."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if path.suffix != ".toml" and text_name in embedded_names(kind):
        source = f"<embedded {kind[:-1]} {text_name}>"
        text = resources.files(DEFAULTS).joinpath(kind, text_name + ".toml").read_text()
    else:
        source = text_name
        if not path.is_file():
            raise ConfigError(
                f"{source}: no such file (expected a TOML {kind[:-1]} file or an embedded name: "
                f"{', '.join(embedded_names(kind))})"
            )
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot read ({exc})") from exc
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from exc


_TAGS = {"dw_nanowire", "stt_mtj", "dw_mtj"}


def _describe(error: dict, model: type[BaseModel], prefix: str) -> str:
    loc = [str(part) for part in error["loc"] if str(part) not in _TAGS]
    key = ".".join([prefix, *loc] if prefix else loc) or "(top level)"
    kind = error["type"]
    got = error.get("input")
    if kind == "extra_forbidden":
        return f"key '{key}': unknown key (check the spelling; see the documented keys of this table)"
    if kind == "missing":
        return f"key '{key}': missing (a value is required)"
    ctx = error.get("ctx") or {}
    if kind == "union_tag_invalid":  # e.g. chip.family = "memristor"
        key = f"{key}.{str(ctx.get('discriminator', '')).strip(chr(39))}"
        return f"key '{key}': expected one of {ctx.get('expected_tags', '')} (got {ctx.get('tag')!r})"
    expected = error["msg"]
    for bound, words in (("gt", "greater than"), ("ge", "at least"), ("lt", "less than"), ("le", "at most")):
        if bound in ctx:
            expected = f"a number {words} {ctx[bound]}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        expected = expected.replace("Input should be", "").strip() or expected
        expected = f"{expected}"
    elif kind == "literal_error":
        expected = f"one of {ctx.get('expected', '')}"
    elif kind == "value_error":
        expected = str(ctx.get("error", expected))
    expected = expected[0].lower() + expected[1:] if expected else expected
    return f"key '{key}': expected {expected} (got {got!r})" if not isinstance(got, dict) else f"key '{key}': {expected}"


def validate(model: type[M], data: Any, source: str, prefix: str = "") -> M:
    """Validate ``data`` against ``model``; a failure raises a one-line ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        message = f"{source}: {_describe(errors[0], model, prefix)}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        raise ConfigError(message) from None


def load_station(name_or_path: str | Path) -> StationConfig:
    """Load and validate a station file (path or embedded name)."""
    data, source = read_toml(name_or_path, "stations")
    return validate(StationConfig, data, source)


def load_protocol_file(name_or_path: str | Path) -> tuple[ProtocolFile, str]:
    """Load a protocol file's header; the settings are validated by the protocol kind."""
    data, source = read_toml(name_or_path, "protocols")
    return validate(ProtocolFile, data, source), source
