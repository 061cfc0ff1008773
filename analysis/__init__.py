"""Pure maths for labctl: switching laws, their maximum-likelihood fits, energy and metrics.

Nothing here imports the rest of labctl.
"""
