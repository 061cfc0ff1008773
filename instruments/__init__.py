"""Instrument drivers behind role interfaces (PulseSource, FieldSupply, KerrReadout, Positioner, SourceMeter, Switch)."""
