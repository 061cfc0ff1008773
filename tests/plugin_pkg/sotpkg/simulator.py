"""The simulated Keithley 6221 for the socket bench: the 33500B simulator under another model name.

labctl's simulated bench looks simulators up in ``simulated_bench.instruments.SIMULATORS`` only;
an entry-point group for plugin simulators is what it would need to serve this one.
"""

from simulated_bench.instruments.agilent33500 import Agilent33500Sim


class Keithley6221Sim(Agilent33500Sim):
    """Answers as the stand-in driver speaks."""
