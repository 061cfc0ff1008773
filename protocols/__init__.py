"""Protocols: what runs on a chip (calibrate, program, train, infer), seen only through SynapseArray.

``REGISTRY`` maps the ``kind`` named in a protocol file to its class.
"""

from .base import ChipProtocol, Settings
from .calibration import Calibration
from .cluster import TrainCluster
from .hebbian import TrainHebbian
from .kstate import KStateTraining
from .meanvar import MeanVarTraining

REGISTRY: dict[str, type[ChipProtocol]] = {cls.kind: cls for cls in (Calibration, MeanVarTraining, KStateTraining,
                                                                   TrainCluster, TrainHebbian)}

__all__ = ["REGISTRY", "ChipProtocol", "Settings"]
