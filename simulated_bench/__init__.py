"""The simulated bench: device physics and SCPI simulators of the lab's instruments."""
