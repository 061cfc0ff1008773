"""Device physics of the simulated chip: three families as structs of torch tensors."""

from .device_array import BinaryDeviceArray, DeviceArray, PhysicsCounters, RandomStreams
from .dw_mtj import DWMTJArray
from .dw_nanowire import DWNanowireArray
from .stt_mtj import STTMTJArray

FAMILIES = {cls.family: cls for cls in (DWNanowireArray, DWMTJArray, STTMTJArray)}

__all__ = [
    "BinaryDeviceArray", "DeviceArray", "DWMTJArray", "DWNanowireArray", "FAMILIES",
    "PhysicsCounters", "RandomStreams", "STTMTJArray",
]
