"""A Keithley 6221 current source with arbitrary waveforms, in the ``pulse_source`` role.

For this test plugin its SCPI is the 33500B's (a stand-in: the plugin mechanism is what is
tested); the adapter declares its role, its driver and its settings model, so a station file
may name it ``model = "Keithley6221"`` (entry point) or ``"sotpkg.drivers:Keithley6221PulseSource"``.
"""

from __future__ import annotations

from pydantic import Field

from instruments.agilent33500 import Agilent33500PulseSource, LabAgilent33500
from instruments.settings import AdapterSettings


class Keithley6221Settings(AdapterSettings):
    max_points: int = Field(65536, ge=64, le=65536, description="samples per arbitrary waveform")
    compliance_v: float = Field(10.0, gt=0, le=105, description="voltage compliance, volts")


class LabKeithley6221(LabAgilent33500):
    """The driver (a stand-in speaking the 33500B's commands)."""


class Keithley6221PulseSource(Agilent33500PulseSource):
    role = "pulse_source"
    driver = LabKeithley6221
    settings_model = Keithley6221Settings
    simulator = "sotpkg.simulator:Keithley6221Sim"  # what the simulated bench serves for this model

    def __init__(self, link, *, max_points: int = 65536, compliance_v: float = 10.0):
        super().__init__(link, max_points=max_points)
        self.compliance_v = compliance_v
