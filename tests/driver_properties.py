"""What a PyMeasure driver class declares: its properties, their SCPI commands and validators.

``Instrument.control``/``measurement``/``setting`` build properties whose ``fget``/``fset``
closures carry the commands, ``values``, ``validator`` and ``map_values`` as keyword defaults; a
dynamic property can be overridden per class (``<name>_<parameter>`` attributes, as the 81160A
channel does). :func:`driver_properties` reads them for a driver class, its channels
(``ChannelCreator``/``MultiChannelCreator``) and, for the ESP300, its axes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from pymeasure.instruments.common_base import CommonBase, DynamicProperty


@dataclass(frozen=True)
class DriverProperty:
    """One property of a driver (or of one of its channels, ``owner`` the attribute path)."""

    owner: str  # "" for the instrument itself, "ch_1", "x", ...
    name: str
    get_command: str | None
    set_command: str | None
    validator: Any
    values: Any
    map_values: bool

    @property
    def path(self) -> str:
        return f"{self.owner}.{self.name}" if self.owner else self.name

    @property
    def settable(self) -> bool:
        return self.set_command is not None


def _defaults(fn) -> dict[str, Any]:
    if fn is None:
        return {}
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def _declared(cls: type) -> list[tuple[str, property]]:
    found = {}
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            if isinstance(attr, property):
                found[name] = attr
            elif name in found:
                del found[name]
    return sorted(found.items())


def class_properties(cls: type, owner: str = "") -> list[DriverProperty]:
    """The command-backed properties ``cls`` declares (plain Python properties are left out)."""
    out = []
    for name, prop in _declared(cls):
        get_params, set_params = _defaults(prop.fget), _defaults(prop.fset)
        if "get_command" not in get_params and "set_command" not in set_params:
            continue  # a hand-written property, not a declared SCPI control
        params = {**get_params, **set_params}
        if isinstance(prop, DynamicProperty):
            for key in params:
                override = f"{name}_{key}"
                if hasattr(cls, override):
                    params[key] = getattr(cls, override)
        out.append(DriverProperty(owner, name, params.get("get_command") if prop.fget else None,
                                  params.get("set_command") if prop.fset else None,
                                  params.get("validator"), params.get("values"), bool(params.get("map_values"))))
    return out


def driver_properties(cls: type, axes: dict[str, type] | None = None) -> list[DriverProperty]:
    """The properties of driver ``cls``, of each of its channels, and of ``axes`` (attribute name
    -> class, for drivers that build sub-objects in ``__init__`` such as the ESP300's axes)."""
    props = class_properties(cls)
    for name, creator in CommonBase.get_channels(cls):
        for channel_cls, channel_id in creator.pairs:
            if isinstance(creator, CommonBase.MultiChannelCreator):
                owner = f"{creator.kwargs.get('prefix', 'ch_')}{channel_id}"
            else:
                owner = name
            props += class_properties(channel_cls, owner)
    for owner, axis_cls in (axes or {}).items():
        props += class_properties(axis_cls, owner)
    return props
