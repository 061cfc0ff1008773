"""The simulated Keithley 6221 for the socket bench: the 33500B simulator under another model name.

The adapter names it (``Keithley6221PulseSource.simulator``); labctl passes that reference to
the simulated bench, which imports it (the bench knows only its built-in simulators by name).
"""

from simulated_bench.instruments.agilent33500 import Agilent33500Sim


class Keithley6221Sim(Agilent33500Sim):
    """Answers as the stand-in driver speaks."""
