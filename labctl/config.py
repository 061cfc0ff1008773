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
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from simulated_bench.physics import DWMTJPhysics, DWNanowirePhysics, STTMTJPhysics  # noqa: F401  (re-exported)

from . import families
from .plugins import PluginError, is_reference, load_reference

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


# ---------------------------------------------------------------------------- the chip
class ChipTable(Strict):
    """``[chip]``: which family, how many synapses, the physics seed and ``[chip.physics]``.

    ``family`` is a registered family's name (``labctl.families``) or a ``module:Class`` reference
    to a family descriptor. A station file is validated against the model :func:`chip_model`
    builds for its family, whose ``physics`` is the family's own parameter model (defaults and
    bounds in the family's physics module).
    """

    family: str = Field(min_length=1, max_length=200, description="device family: a registered name or 'module:Class'")
    n: int = Field(ge=1, le=10_000_000, description="number of synapses")
    seed: Seed = Field(0, description="physics seed: device construction and random streams, 0 <= seed < 2**63")
    physics: Any = None


_CHIP_MODELS: dict[type, type[ChipTable]] = {}


def chip_model(family) -> type[ChipTable]:
    """The ``[chip]`` model of a family descriptor: ChipTable with the family's physics model."""
    if family not in _CHIP_MODELS:
        physics = family.physics_model()
        _CHIP_MODELS[family] = create_model(f"{family.__name__}Chip", __base__=ChipTable,
                                            physics=(physics, Field(default_factory=physics)))
    return _CHIP_MODELS[family]


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
    """One instrument: its model, its VISA resource and how to talk to it.

    ``model`` is a registered model of the role (``instruments.registry``: built in or installed
    through the ``labctl.instruments`` entry points) or a ``module:Class`` reference to an adapter.
    The table's other keys are the adapter's settings: a station file is validated against the
    model :func:`role_table_model` builds, this table plus the adapter's ``settings_model``.
    """

    model: str = Field(min_length=1, max_length=200, description="instrument model: a registered name or 'module:Class'")
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
    units_per_volt: float = Field(1.0, gt=0, le=1e3, description="TMR bench: device amplitude per output volt (V/V for STT-MTJs, A/V = 1/R_series for DW-MTJs; at most 1e3)")


class FieldSupplyTable(InstrumentTable):
    pass


class KerrReadoutTable(InstrumentTable):
    levels: list[Annotated[float, Field(ge=-10, le=10)]] | None = Field(None, min_length=2, max_length=2, description="lock-in X of an unswitched and a switched wire, volts, |X| <= 10 V (default: from chip.physics)")


class PositionerTable(InstrumentTable):
    pass


class SourceMeterTable(InstrumentTable):
    levels: list[Annotated[float, Field(gt=0, le=1e9)]] | None = Field(None, min_length=2, max_length=16, description="resistance of each level, ohms, 0 < R <= 1 Gohm (default: from chip.physics)")


class SwitchTable(InstrumentTable):
    pass


ROLE_TABLES: dict[str, type[InstrumentTable]] = {
    "pulse_source": PulseSourceTable, "field_supply": FieldSupplyTable, "kerr_readout": KerrReadoutTable,
    "positioner": PositionerTable, "source_meter": SourceMeterTable, "switch": SwitchTable,
}
"""role -> the labctl side of its table (connection, and what the rig uses: amplitude scale, levels)."""

INSTRUMENT_ROLES = tuple(ROLE_TABLES)

_ROLE_MODELS: dict[tuple[str, type], type[InstrumentTable]] = {}


def role_table_model(role: str, settings: type[BaseModel]) -> type[InstrumentTable]:
    """The model of an ``[instruments.<role>]`` table whose adapter takes ``settings``."""
    key = (role, settings)
    if key not in _ROLE_MODELS:
        base = ROLE_TABLES[role]
        _ROLE_MODELS[key] = create_model(f"{base.__name__}_{settings.__name__}", __base__=(base, settings))
    return _ROLE_MODELS[key]


def adapter_settings(role: str, table: InstrumentTable) -> dict[str, Any]:
    """The adapter's settings from a validated ``role`` table: its keys that are not the labctl side's."""
    own = ROLE_TABLES[role].model_fields
    return {k: getattr(table, k) for k in type(table).model_fields if k not in own}


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
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="torch device of the simulated physics: "
                                                   "cpu, cuda, or auto (cuda when available, else cpu)")


class StationConfig(Strict):
    """A station file. Validated in two steps (:meth:`model_validate`): the chip's family and each
    instrument's model are looked up first, then the file is validated against the model built
    for them (the family's physics table, each adapter's settings)."""

    station: StationHeader
    chip: ChipTable
    envelope: EnvelopeConfig
    instruments: InstrumentsConfig | None = None
    bench: BenchConfig | None = None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs) -> "StationConfig":
        if cls is not StationConfig or not isinstance(obj, dict):
            return super().model_validate(obj, **kwargs)
        return _station_model(obj).model_validate(obj, **kwargs)

    @classmethod
    def model_for(cls, data: Any) -> type[StationConfig]:
        """The model ``data`` is validated against (for messages about its keys); this one if none."""
        try:
            return _station_model(data) if cls is StationConfig and isinstance(data, dict) else cls
        except ValidationError:
            return cls

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
        missing = [r for r in families.get(self.chip.family).bench_roles if getattr(ins, r) is None]
        if missing:
            raise ValueError(f"a {self.chip.family} station needs [instruments.{missing[0]}]"
                             + (f" (and {', '.join(missing[1:])})" if missing[1:] else ""))
        e = self.envelope
        if not (e.amplitude_min <= ins.reset_amplitude <= e.amplitude_max and e.width_min <= ins.reset_width <= e.width_max):
            raise ValueError("instruments.reset_amplitude and reset_width must lie inside the envelope")
        bias = getattr(ins.source_meter, "read_bias", None)
        if bias is not None and bias > e.read_bias_max:
            raise ValueError(f"instruments.source_meter.read_bias exceeds envelope.read_bias_max {e.read_bias_max} V")
        if getattr(ins.switch, "slots", None) is not None and self.chip.n > 48 * len(ins.switch.slots):
            raise ValueError(f"{self.chip.n} synapses need {-(-self.chip.n // 48)} 7709 cards, slots lists {len(ins.switch.slots)}")
        auto = [r for r, t in ins.roles().items() if t.resource == "auto"]
        if auto and not (self.bench is not None and self.bench.start):
            raise ValueError(f"instruments.{auto[0]}.resource is 'auto' but [bench] start is not true")
        if self.bench is not None and any(i >= self.chip.n for i in self.bench.stuck):
            raise ValueError(f"bench.stuck lists a synapse beyond chip.n = {self.chip.n}")
        return self


_STATION_MODELS: dict[tuple, type[StationConfig]] = {}


def _unresolved(loc: tuple, message: str, value: Any) -> dict:
    return {"type": PydanticCustomError("unresolved", "{message}", {"message": message}), "loc": loc, "input": value}


def _station_model(data: dict) -> type[StationConfig]:
    """The StationConfig subclass for the family and instrument models a station file names.

    Raises a ValidationError (located at ``chip.family`` or ``instruments.<role>.model``) for a
    name that is not registered or a ``module:Class`` reference that does not import. Anything
    else wrong is left to the validation that follows.
    """
    from instruments.registry import resolve as resolve_instrument

    errors: list[dict] = []
    chip, family = data.get("chip"), None
    if isinstance(chip, dict) and isinstance(chip.get("family"), str):
        try:
            family = families.get(chip["family"])
        except PluginError as exc:
            errors.append(_unresolved(("chip", "family"), str(exc), chip["family"]))
    settings: dict[str, type[BaseModel]] = {}
    tables = data.get("instruments")
    for role in INSTRUMENT_ROLES:
        table = tables.get(role) if isinstance(tables, dict) else None
        if isinstance(table, dict) and isinstance(table.get("model"), str):
            try:
                settings[role] = resolve_instrument(role, table["model"]).settings
            except KeyError as exc:
                errors.append(_unresolved(("instruments", role, "model"), exc.args[0], table["model"]))
    if errors:
        raise ValidationError.from_exception_data("StationConfig", errors)
    key = (family, tuple(sorted(settings.items())))
    if key not in _STATION_MODELS:
        fields: dict[str, Any] = {}
        if family is not None:
            fields["chip"] = (chip_model(family), ...)
        if settings:
            roles: dict[str, Any] = {role: (role_table_model(role, m) | None, None) for role, m in settings.items()}
            if "pulse_source" in roles:
                roles["pulse_source"] = (role_table_model("pulse_source", settings["pulse_source"]), ...)
            fields["instruments"] = (create_model("InstrumentsConfig_", __base__=InstrumentsConfig, **roles) | None, None)
        _STATION_MODELS[key] = create_model("StationConfig_", __base__=StationConfig, **fields) if fields else StationConfig
    return _STATION_MODELS[key]


class ProtocolHeader(Strict):
    name: Name
    kind: str = Field(min_length=1, max_length=100, description="which protocol runs: see `labctl protocols`")
    description: str = Field("", max_length=10_000)
    station: str = Field("sim-dw", min_length=1, max_length=4096, description="default station: embedded name or TOML path")
    seed: Seed = Field(0, description="seed of the protocol's own randomness, 0 <= seed < 2**63")

    @field_validator("kind")
    @classmethod
    def _importable(cls, value: str) -> str:
        """A ``module:Class`` kind must import (a registered name is checked against the registry later)."""
        if is_reference(value):
            try:
                load_reference(value)
            except PluginError as exc:
                raise PydanticCustomError("unresolved", "{message}", {"message": str(exc)}) from None
        return value


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


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, Union, Annotated and list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys of the table at ``loc`` (the location of one of its keys), for "did you mean"."""
    current = [model]
    for part in loc[:-1]:
        current = [sub for m in current if part in m.model_fields for sub in _models_in(m.model_fields[part].annotation)]
    return sorted({key for m in current for key in m.model_fields})


_WORDS = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}


def _describe(error: dict, model: type[BaseModel], prefix: str) -> str:
    """One validation error as ``key 'a.b': expected ... (got ...)``."""
    loc = [str(part) for part in error["loc"]]
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
    if kind == "unresolved":  # a family, model or kind not registered, or a reference that does not import
        return f"key '{key}': {error['msg']}"
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
    shape = model.model_for(data) if hasattr(model, "model_for") else model  # for "did you mean"
    problems = list(dict.fromkeys(_describe(e, shape, prefix) for e in errors))
    message = "; ".join(problems[:MAX_LISTED])
    if len(problems) > MAX_LISTED:
        message += f"; and {len(problems) - MAX_LISTED} more problems"
    raise ConfigError(f"{source}: {message}".replace("\n", " ").replace("\r", " "))


def load_station(name_or_path: str | Path) -> StationConfig:
    """Load and validate a station file (path or embedded name)."""
    data, source = read_toml(name_or_path, "stations")
    station = validate(StationConfig, data, source)
    resolve_device(station.station.device, source)
    return station


def resolve_device(setting: str, source: str = "station") -> str:
    """The torch device name for a station's ``[station] device`` setting (``cpu``, ``cuda``, ``auto``).

    ``auto`` is ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``; ``cuda`` on a machine
    without CUDA is a one-line ConfigError naming the file and the key.
    """
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{source}: key 'station.device': 'cuda' but this machine has no CUDA device "
                          f"(torch {torch.__version__}); use 'cpu' or 'auto'")
    return setting


def load_protocol_file(name_or_path: str | Path) -> tuple[ProtocolFile, str]:
    """Load a protocol file's header; the settings are validated by the protocol kind.

    A ``kind = "rules/my_rule.py:MyRule"`` file reference is relative to the protocol file's
    folder; it is made absolute here, so a run file records where the rule is and ``labctl
    resume`` finds it from any working directory."""
    data, source = read_toml(name_or_path, "protocols")
    header = data.get("protocol") if isinstance(data, dict) else None
    kind = header.get("kind") if isinstance(header, dict) else None
    if isinstance(kind, str) and Path(source).is_file():
        file_part, _, attribute = kind.rpartition(":")
        if file_part.endswith(".py") and not Path(file_part).is_absolute():
            absolute = (Path(source).resolve().parent / file_part).as_posix()
            data = {**data, "protocol": {**header, "kind": f"{absolute}:{attribute}"}}
    pfile = validate(ProtocolFile, data, source)
    return pfile, source
