"""Device families: one descriptor per family, found by name, entry point or ``module:Class`` reference.

``get(name)`` is what every module asks instead of switching on a family's name::

    family = families.get(station.chip.family)
    family.amplitude_unit, family.default_law().param_names, family.nominal_levels(physics)

Built-in families are listed in :data:`BUILTIN`; an installed package adds one with an entry
point in the group ``labctl.families`` (name -> its :class:`DeviceFamily` subclass), and a
station file may name one directly: ``family = "mypkg.devices:SotMtj"``.
"""

from __future__ import annotations

from labctl.plugins import PluginError, Registry

from .base import DeviceFamily, Law, LawParam
from .dw_mtj import DWMTJ
from .dw_nanowire import DWNanowire
from .stt_mtj import STTMTJ

BUILTIN: tuple[type[DeviceFamily], ...] = (DWNanowire, STTMTJ, DWMTJ)


def _check(obj) -> str | None:
    if not (isinstance(obj, type) and issubclass(obj, DeviceFamily)):
        return f"not a labctl.families.DeviceFamily subclass (got {obj!r})"
    return obj.problem()


REGISTRY = Registry("labctl.families", lambda: {f.name: f for f in BUILTIN}, check=_check)


def get(name_or_ref: str) -> type[DeviceFamily]:
    """The descriptor of a family named in a station file (a name or a ``module:Class`` reference).

    Raises PluginError (a ValueError) with one line: the known names, or the import error.
    """
    return REGISTRY.resolve(name_or_ref)


def names() -> list[str]:
    """Names of the registered families (built in and installed), sorted."""
    return sorted(REGISTRY)


def law_names() -> list[str]:
    """Names of every registered family's laws, in the order of the families and their laws."""
    return list(dict.fromkeys(law.name for family in REGISTRY.values() for law in family.laws))


def find_law(name: str) -> Law:
    """The law called ``name`` of the first registered family that has one (KeyError if none does).

    For a reader that knows a calibration's law name (``summary["law"]``) but not its family.
    """
    for family in REGISTRY.values():
        for law in family.laws:
            if law.name == name:
                return law
    raise KeyError(f"no registered family has a law {name!r} (laws: {', '.join(law_names())})")


def reference(cls: type) -> str:
    """The ``module:Class`` reference of a class (e.g. a family's simulator, for the simulated bench)."""
    return f"{cls.__module__}:{cls.__qualname__}"


class _AnyFamily:
    """``families = ANY`` on a protocol: it runs on every family (``in`` is always true)."""

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self):
        return iter(names())

    def __repr__(self) -> str:
        return "ANY"


ANY = _AnyFamily()

__all__ = ["ANY", "BUILTIN", "DeviceFamily", "Law", "LawParam", "PluginError", "REGISTRY", "find_law", "get",
           "law_names", "names", "reference"]
