"""Which adapter serves which instrument model in which role, and how to open one.

A station file names a model per role (``[instruments.pulse_source] model = "Agilent33500"``);
:func:`open_role` connects to it and returns the role adapter (not yet configured).

The built-in models are in :data:`BUILTIN`. An installed package adds a model with an entry
point in the group ``labctl.instruments`` (model name -> adapter class); a station file may also
name an adapter directly, ``model = "mypkg.drivers:Keithley6221Source"``. Such an adapter class
declares ``role`` (the role it fills), ``driver`` (its PyMeasure instrument class) and
``settings_model`` (a pydantic model of the keyword arguments it takes besides its link: the
other keys of its station table are validated against it).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

from .agilent33500 import Agilent33500PulseSource, LabAgilent33500
from .esp300 import ESP300Positioner, LabESP300
from .keithley2700 import Keithley2700Switch, LabKeithley2700
from .keithley_smu import Keithley2400SourceMeter, Keithley2450SourceMeter, LabKeithley2400, LabKeithley2450
from .kepco import KepcoFieldSupply, LabKepcoBOP3612
from .keysight81160a import Keysight81160APulseSource, LabKeysight81160A
from .link import Link, TransactionCounter
from .roles import Role
from .settings import (AdapterSettings, FieldSupplySettings, NoSettings, PositionerSettings, PulseSourceSettings,
                       SourceMeterSettings, SwitchSettings)
from .sr830 import LabSR830, SR830KerrReadout

ROLES = ("pulse_source", "field_supply", "kerr_readout", "positioner", "source_meter", "switch")
ENTRY_POINT_GROUP = "labctl.instruments"


@dataclass(frozen=True)
class InstrumentModel:
    """One instrument model: the role it fills, its driver, its role adapter and the adapter's settings."""

    name: str
    role: str
    driver: type
    adapter: type[Role]
    settings: type[BaseModel]


BUILTIN: tuple[InstrumentModel, ...] = (
    InstrumentModel("Agilent33500", "pulse_source", LabAgilent33500, Agilent33500PulseSource, PulseSourceSettings),
    InstrumentModel("Keysight81160A", "pulse_source", LabKeysight81160A, Keysight81160APulseSource, PulseSourceSettings),
    InstrumentModel("KepcoBOP3612", "field_supply", LabKepcoBOP3612, KepcoFieldSupply, FieldSupplySettings),
    InstrumentModel("SR830", "kerr_readout", LabSR830, SR830KerrReadout, NoSettings),
    InstrumentModel("ESP300", "positioner", LabESP300, ESP300Positioner, PositionerSettings),
    InstrumentModel("Keithley2400", "source_meter", LabKeithley2400, Keithley2400SourceMeter, SourceMeterSettings),
    InstrumentModel("Keithley2450", "source_meter", LabKeithley2450, Keithley2450SourceMeter, SourceMeterSettings),
    InstrumentModel("Keithley2700", "switch", LabKeithley2700, Keithley2700Switch, SwitchSettings),
)

#: role -> model -> (driver class, adapter class), the built-in models
MODELS: dict[str, dict[str, tuple[type, type[Role]]]] = {
    role: {m.name: (m.driver, m.adapter) for m in BUILTIN if m.role == role} for role in ROLES
}


def from_adapter(name: str, adapter: Any) -> InstrumentModel:
    """The model a plugin adapter class describes (its ``role``, ``driver``, ``settings_model``).

    Raises ValueError (one line) for anything that is not such a class.
    """
    if not (isinstance(adapter, type) and issubclass(adapter, Role)):
        raise ValueError(f"not an instruments.roles.Role subclass (got {adapter!r})")
    role = getattr(adapter, "role", None)
    if role not in ROLES:
        raise ValueError(f"{adapter.__name__}.role must be one of {', '.join(ROLES)} (got {role!r})")
    driver = getattr(adapter, "driver", None)
    if not isinstance(driver, type):
        raise ValueError(f"{adapter.__name__}.driver must be its instrument driver class")
    settings = getattr(adapter, "settings_model", NoSettings)
    if not (isinstance(settings, type) and issubclass(settings, BaseModel)):
        raise ValueError(f"{adapter.__name__}.settings_model must be a pydantic model")
    return InstrumentModel(name, role, driver, adapter, settings)


_installed: dict[str, InstrumentModel] | None = None
broken: dict[str, str] = {}
"""Entry points that failed to load: model name -> one-line reason."""


def installed() -> dict[str, InstrumentModel]:
    """Models of installed packages (entry points ``labctl.instruments``), loaded once."""
    global _installed
    if _installed is None:
        found: dict[str, InstrumentModel] = {}
        builtin = {m.name for m in BUILTIN}
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in builtin:
                continue
            try:
                found[ep.name] = from_adapter(ep.name, ep.load())
            except Exception as exc:
                broken[ep.name] = f"entry point {ep.value!r}: {type(exc).__name__}: {exc}"
        _installed = found
    return _installed


def models(role: str) -> dict[str, InstrumentModel]:
    """Every registered model of ``role``: built in, then installed."""
    every = {m.name: m for m in BUILTIN}
    every.update(installed())
    return {name: m for name, m in every.items() if m.role == role}


def resolve(role: str, model: str) -> InstrumentModel:
    """The model ``model`` names in ``role``: a registered name or a ``module:Class`` reference.

    Raises KeyError with a one-line message: the known models of the role, or the import error.
    """
    known = models(role)
    if model in known:
        return known[model]
    module, sep, attribute = model.partition(":")
    if not sep:
        names = list(known)
        listed = (", ".join(repr(n) for n in names[:-1]) + f" or {names[-1]!r}") if len(names) > 1 else \
            (repr(names[0]) if names else "none")
        raise KeyError(f"expected one of {listed} (got {model!r}), or a 'module:Class' reference")
    try:
        obj: Any = importlib.import_module(module)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise KeyError(f"cannot import {model!r} ({type(exc).__name__}: {first})") from None
    try:
        found = from_adapter(model, obj)
    except ValueError as exc:
        raise KeyError(f"{model!r}: {exc}") from None
    if found.role != role:
        raise KeyError(f"{model!r} is a {found.role} adapter, not a {role}")
    return found


def open_role(
    role: str,
    model: str,
    resource: str,
    *,
    timeout_s: float = 2.0,
    retries: int = 2,
    visa_library: str = "",
    read_termination: str = "\n",
    write_termination: str = "\n",
    counter: TransactionCounter | None = None,
    **settings: Any,
) -> Role:
    """Connect to ``model`` at ``resource`` and wrap it in its ``role`` adapter.

    ``settings`` are the role's own keyword arguments (e.g. ``gain`` and ``coil`` of a field
    supply). Raises :class:`~instruments.errors.InstrumentError` if the instrument cannot be
    reached after ``retries`` retries, ``KeyError`` for an unknown role or model.
    """
    if role not in ROLES:
        raise KeyError(f"no role {role!r} (roles: {', '.join(ROLES)})")
    try:
        found = resolve(role, model)
    except KeyError as exc:
        raise KeyError(f"no adapter for model {model!r} in role {role!r}: {exc.args[0]}") from None
    link = Link(role, model, found.driver, resource, timeout_s=timeout_s, retries=retries,
                visa_library=visa_library, read_termination=read_termination,
                write_termination=write_termination, counter=counter)
    link.open()
    return found.adapter(link, **settings)


__all__ = ["AdapterSettings", "BUILTIN", "InstrumentModel", "MODELS", "ROLES", "from_adapter", "installed",
           "models", "open_role", "resolve"]
