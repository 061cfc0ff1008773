"""Instrument drivers behind role interfaces (PulseSource, FieldSupply, KerrReadout, Positioner, SourceMeter, Switch).

PyMeasure drivers, extended where labctl needs a command they lack, wrapped in small role
adapters (``roles.py``); one module per supported model; :func:`registry.open_role` connects a
station's instrument. This package never imports ``simulated_bench``: the two meet over VISA.
"""

from .errors import InstrumentError, ReplyError, TransientError, UnreachableError
from .link import Link, TransactionCounter
from .roles import FieldSupply, KerrReadout, Positioner, PulseSource, Role, SourceMeter, Switch
from .waveform import Waveform, compose, samples_per_trial

__all__ = [
    "FieldSupply", "InstrumentError", "KerrReadout", "Link", "Positioner", "PulseSource", "ReplyError",
    "Role", "SourceMeter", "Switch", "TransactionCounter", "TransientError", "Waveform", "compose",
    "UnreachableError", "samples_per_trial",
]
