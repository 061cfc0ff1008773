"""labctl: lab control for hardware-in-the-loop machine learning on magnetic stochastic synapses."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labctl")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
