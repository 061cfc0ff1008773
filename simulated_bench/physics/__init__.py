"""Device physics of the simulated chip: one class per device family, structs of torch tensors.

``FAMILIES`` maps a built-in family name to its simulator class; each class names its parameter
model (``params_model``, a :class:`PhysicsParams` subclass: the one place the defaults live).
:func:`physics_class` also takes a ``module:Class`` reference (a plugin's simulator).
"""

import importlib

from .device_array import BinaryDeviceArray, DeviceArray, PhysicsCounters, PhysicsParams, RandomStreams
from .dw_mtj import DWMTJArray, DWMTJPhysics
from .dw_nanowire import DWNanowireArray, DWNanowirePhysics
from .stt_mtj import STTMTJArray, STTMTJPhysics

FAMILIES = {cls.family: cls for cls in (DWNanowireArray, DWMTJArray, STTMTJArray)}


def physics_class(name_or_ref: str) -> type[DeviceArray]:
    """The simulator class of a built-in family name or of a ``module:Class`` reference.

    Raises ValueError (one line) for an unknown name, a reference that does not import or that
    names something other than a DeviceArray subclass.
    """
    if name_or_ref in FAMILIES:
        return FAMILIES[name_or_ref]
    module, sep, attribute = name_or_ref.partition(":")
    if not sep:
        raise ValueError(f"no simulated family {name_or_ref!r} (known: {', '.join(FAMILIES)}, or 'module:Class')")
    try:
        cls = getattr(importlib.import_module(module), attribute)
    except Exception as exc:
        raise ValueError(f"cannot import {name_or_ref!r} ({type(exc).__name__}: {exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, DeviceArray)):
        raise ValueError(f"{name_or_ref!r} is not a simulated_bench.physics.DeviceArray subclass")
    return cls

__all__ = [
    "BinaryDeviceArray", "DeviceArray", "DWMTJArray", "DWMTJPhysics", "DWNanowireArray", "DWNanowirePhysics",
    "FAMILIES", "PhysicsCounters", "PhysicsParams", "physics_class", "RandomStreams", "STTMTJArray", "STTMTJPhysics",
]
