"""Protocols: what runs on a chip (calibrate, program, train, infer), seen only through SynapseArray.

``REGISTRY`` maps the ``kind`` named in a protocol file to its class: the built-in protocols, then
those installed packages declare as entry points in the group ``labctl.protocols`` (kind -> class).
A protocol file may also name a class directly, ``kind = "mypkg.rules:MyRule"``:
``REGISTRY.get(kind)`` resolves both.
"""

from labctl.plugins import Registry

from .base import ChipProtocol, Settings
from .calibration import Calibration
from .cluster import TrainCluster
from .hebbian import TrainHebbian
from .kstate import KStateTraining
from .meanvar import MeanVarTraining

BUILTIN: tuple[type[ChipProtocol], ...] = (Calibration, MeanVarTraining, KStateTraining, TrainCluster, TrainHebbian)


def _check(obj) -> str | None:
    if not (isinstance(obj, type) and issubclass(obj, ChipProtocol)):
        return f"not a protocols.ChipProtocol subclass (got {obj!r})"
    return None


REGISTRY = Registry("labctl.protocols", lambda: {cls.kind: cls for cls in BUILTIN}, check=_check)

__all__ = ["BUILTIN", "REGISTRY", "ChipProtocol", "Settings"]
