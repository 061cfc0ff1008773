"""A labctl plugin: spin-orbit-torque MTJs (binary, switched by in-plane current pulses)."""
