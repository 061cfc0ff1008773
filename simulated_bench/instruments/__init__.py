"""SCPI simulators of the lab's instruments, answering the strings PyMeasure's drivers send.

One module per model; :data:`SIMULATORS` maps the model names used in station files to the
simulator classes. They never import ``instruments/``: the two meet over VISA.
"""

from .agilent33500 import Agilent33500Sim
from .esp300 import ESP300Sim
from .keithley2700 import Keithley2700Sim
from .keithley_smu import Keithley2400Sim, Keithley2450Sim
from .kepco import KepcoBOP3612Sim
from .keysight81160a import Keysight81160ASim
from .scpi import CommandError, SimulatedInstrument
from .sr830 import SR830Sim

SIMULATORS: dict[str, type[SimulatedInstrument]] = {
    "Agilent33500": Agilent33500Sim,
    "Keysight81160A": Keysight81160ASim,
    "KepcoBOP3612": KepcoBOP3612Sim,
    "SR830": SR830Sim,
    "ESP300": ESP300Sim,
    "Keithley2400": Keithley2400Sim,
    "Keithley2450": Keithley2450Sim,
    "Keithley2700": Keithley2700Sim,
}

__all__ = [
    "Agilent33500Sim", "CommandError", "ESP300Sim", "Keithley2400Sim", "Keithley2450Sim", "Keithley2700Sim",
    "KepcoBOP3612Sim", "Keysight81160ASim", "SIMULATORS", "SR830Sim", "SimulatedInstrument",
]
