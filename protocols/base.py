"""What every protocol is: settings, the datasets it writes, a generator of safe points, a summary.

A protocol sees the chip only through the ``SynapseArray`` interface. Its ``run(ctx)`` yields a
``Progress`` at every safe point; the run engine handles pause, stop, abort and checkpoints
there. A protocol that can resume keeps its position in ``state_dict()`` and continues from it
when ``run`` is called again after ``load_state_dict``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterator

from pydantic import BaseModel, ConfigDict

from labctl.chip import SynapseArray
from labctl.engine import Progress, RunContext
from labctl.store import DatasetSpec


class Settings(BaseModel):
    """Base of protocol settings tables: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ChipProtocol(ABC):
    """Base class of labctl protocols.

    Class attributes: ``kind`` (the name used in protocol files), ``settings_model`` (the
    pydantic model of the ``[settings]`` table) and ``families`` (chip families it can run on).
    """

    kind: ClassVar[str]
    settings_model: ClassVar[type[Settings]]
    families: ClassVar[tuple[str, ...]]

    def __init__(self, name: str, settings: Settings, chip: SynapseArray, seed: int = 0):
        if chip.family not in self.families:
            raise ValueError(
                f"protocol {name!r} ({self.kind}) runs on {', '.join(self.families)} chips, "
                f"but the station's chip is {chip.family}"
            )
        self.name = name
        self.settings = settings
        self.chip = chip
        self.seed = seed

    @abstractmethod
    def describe(self) -> dict[str, DatasetSpec]:
        """The datasets this protocol writes, declared before the run starts (SWMR needs them up front)."""

    @abstractmethod
    def run(self, ctx: RunContext) -> Iterator[Progress]:
        """Do the work, yielding at every safe point."""

    @abstractmethod
    def summary(self) -> dict[str, Any]:
        """Final metrics, for the run file, ``labctl info`` and the end-of-run table."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue from the last safe point (default: nothing to resume)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
