"""``sot-sweep``: the calibration sweep with the SOT-MTJ's law, and the switching current it finds."""

from __future__ import annotations

from protocols.calibration import Calibration


class SotSweep(Calibration):
    """An S-curve of every SOT-MTJ and its fitted i50; summary adds the spread of i50 (amperes)."""

    kind = "sot-sweep"
    families = ("sot_mtj",)

    def summary(self):
        out = super().summary()
        if self.fit is not None and bool(self.fit.converged.any()):
            i50 = self.fit.param("x0")[self.fit.converged]
            out["i50_spread"] = float(i50.std() / i50.mean())
        return out
