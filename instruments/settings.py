"""Settings models of the built-in role adapters: what a station's ``[instruments.<role>]`` table may set.

An adapter's settings are the keyword arguments it takes besides its link (a field supply's
gain and coil, a source meter's compliance). Each model is pydantic: unknown keys are errors,
values are taken as written and every float is finite; the bounds and units are in the
descriptions. A plugin adapter declares its own model as ``settings_model`` on its class; the
station loader validates the table against the model of the adapter its ``model`` names.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class AdapterSettings(BaseModel):
    """Base of an adapter's settings model (no settings: an adapter that takes only its link)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class PulseSourceSettings(AdapterSettings):
    """Arbitrary-waveform pulse sources (Agilent 33500, Keysight 81160A)."""

    max_points: int = Field(65536, ge=64, le=16_000_000, description="samples per arbitrary waveform")


class FieldSupplySettings(AdapterSettings):
    """Bipolar current supply driving the magnet from its analog input (Kepco BOP 36-12)."""

    gain: float = Field(gt=0, le=100, description="supply current per volt at its analog input, A/V (0 < gain <= 100)")
    coil: float = Field(gt=0, le=10, description="field at the sample per ampere of magnet current, T/A (0 < coil <= 10)")
    voltage_limit: float = Field(20.0, gt=0, le=36, description="compliance voltage in current mode, volts")
    ramp_steps: int = Field(5, ge=1, le=1000, description="steps of a setpoint ramp")
    ramp_pause_s: float = Field(0.01, ge=0, le=10, description="pause between ramp steps, seconds")


class PositionerSettings(AdapterSettings):
    """Motion controller moving the Kerr laser spot along the wires (Newport ESP300)."""

    pitch: float = Field(gt=0, le=0.1, description="spacing of the wires along the axis, metres")
    origin: float = Field(0.0, ge=-0.1, le=0.1, description="stage position of wire 0, metres")
    axis: int = Field(1, ge=1, le=3, description="controller axis")


class SourceMeterSettings(AdapterSettings):
    """Source meter reading device resistances (Keithley 2400, 2450)."""

    read_bias: float | None = Field(None, gt=0, le=10, description="read bias, volts, at most 10 V (default: chip.physics.read_bias)")
    compliance: float = Field(1e-3, gt=0, le=1.05, description="current compliance, amperes")
    nplc: float = Field(0.01, ge=0.01, le=10, description="integration time, power-line cycles")
    ramp_steps: int = Field(5, ge=1, le=1000, description="steps of a bias ramp")
    ramp_pause_s: float = Field(0.01, ge=0, le=10, description="pause between ramp steps, seconds")


class SwitchSettings(AdapterSettings):
    """Switch matrix routing one device at a time (Keithley 2700 with 7709 cards)."""

    slots: list[Literal[1, 2]] = Field([1], min_length=1, max_length=2, description="slots holding 7709 matrix cards, in device order")


class NoSettings(AdapterSettings):
    """An adapter configured by nothing but its link (the SR830 lock-in)."""


