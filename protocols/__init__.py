"""Protocols: what runs on a chip (calibrate, program, train, infer), seen only through SynapseArray."""
