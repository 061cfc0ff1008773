"""Device physics of the simulated chip: one class per device family, structs of torch tensors.

``FAMILIES`` maps a family name to its simulator class; each class names its parameter model
(``params_model``, a :class:`PhysicsParams` subclass: the one place the defaults live).
"""

from .device_array import BinaryDeviceArray, DeviceArray, PhysicsCounters, PhysicsParams, RandomStreams
from .dw_mtj import DWMTJArray, DWMTJPhysics
from .dw_nanowire import DWNanowireArray, DWNanowirePhysics
from .stt_mtj import STTMTJArray, STTMTJPhysics

FAMILIES = {cls.family: cls for cls in (DWNanowireArray, DWMTJArray, STTMTJArray)}

__all__ = [
    "BinaryDeviceArray", "DeviceArray", "DWMTJArray", "DWMTJPhysics", "DWNanowireArray", "DWNanowirePhysics",
    "FAMILIES", "PhysicsCounters", "PhysicsParams", "RandomStreams", "STTMTJArray", "STTMTJPhysics",
]
