"""Which adapter class serves which model in which role, and how to open one.

A station file names a model per role (``[instruments.pulse_source] model = "Agilent33500"``);
:func:`open_role` connects to it and returns the role adapter (not yet configured).
"""

from __future__ import annotations

from typing import Any

from .agilent33500 import Agilent33500PulseSource, LabAgilent33500
from .esp300 import ESP300Positioner, LabESP300
from .keithley2700 import Keithley2700Switch, LabKeithley2700
from .keithley_smu import Keithley2400SourceMeter, Keithley2450SourceMeter, LabKeithley2400, LabKeithley2450
from .kepco import KepcoFieldSupply, LabKepcoBOP3612
from .keysight81160a import Keysight81160APulseSource, LabKeysight81160A
from .link import Link, TransactionCounter
from .roles import Role
from .sr830 import LabSR830, SR830KerrReadout

#: role -> model -> (driver class, adapter class)
MODELS: dict[str, dict[str, tuple[type, type[Role]]]] = {
    "pulse_source": {
        "Agilent33500": (LabAgilent33500, Agilent33500PulseSource),
        "Keysight81160A": (LabKeysight81160A, Keysight81160APulseSource),
    },
    "field_supply": {"KepcoBOP3612": (LabKepcoBOP3612, KepcoFieldSupply)},
    "kerr_readout": {"SR830": (LabSR830, SR830KerrReadout)},
    "positioner": {"ESP300": (LabESP300, ESP300Positioner)},
    "source_meter": {
        "Keithley2400": (LabKeithley2400, Keithley2400SourceMeter),
        "Keithley2450": (LabKeithley2450, Keithley2450SourceMeter),
    },
    "switch": {"Keithley2700": (LabKeithley2700, Keithley2700Switch)},
}

ROLES = tuple(MODELS)


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
    try:
        driver_cls, adapter_cls = MODELS[role][model]
    except KeyError:
        known = ", ".join(MODELS.get(role, {})) or "none"
        raise KeyError(f"no adapter for model {model!r} in role {role!r} (known: {known})") from None
    link = Link(role, model, driver_cls, resource, timeout_s=timeout_s, retries=retries,
                visa_library=visa_library, read_termination=read_termination,
                write_termination=write_termination, counter=counter)
    link.open()
    return adapter_cls(link, **settings)
