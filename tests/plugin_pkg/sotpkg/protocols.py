"""``sot-sweep``: the calibration sweep with the SOT-MTJ's law, and the switching current it finds.

Besides the calibration's datasets it declares two hinted ones, so that a window shows them as
weights with no change of its own: the fitted i50 of every device (amperes) and the switched
fraction measured at the sweep's middle current.
"""

from __future__ import annotations

import numpy as np

from labctl.store import DatasetSpec
from protocols.calibration import Calibration


class SotSweep(Calibration):
    """An S-curve of every SOT-MTJ and its fitted i50; summary adds the spread of i50 (amperes)."""

    kind = "sot-sweep"
    families = ("sot_mtj",)

    def layout(self) -> list[int]:
        """Devices as rows of 8 (one flat row if the count does not divide)."""
        return [self.n // 8, 8] if self.n % 8 == 0 else [1, self.n]

    def describe(self) -> dict[str, DatasetSpec]:
        specs = super().describe()
        specs["sot/i50"] = DatasetSpec(np.float64, (self.n,), "A", "fitted i50 of every device (first width)",
                                       hint={"view": "weights", "role": "control", "label": "fitted i50",
                                             "shape": self.layout(), "when": "end"})
        specs["sot/p_mid"] = DatasetSpec(np.float64, (self.n,), "", "switched fraction at the middle current",
                                         hint={"view": "weights", "role": "effective", "label": "switching probability",
                                               "shape": self.layout(), "when": "end", "range": [0, 1]})
        return specs

    def fit_all(self, writer=None) -> None:
        super().fit_all(writer)
        if writer is not None:
            writer.write("sot/i50", self.fit.param("x0").double().numpy())
            mid = len(self.amplitudes) // 2
            writer.write("sot/p_mid", (self.counts[0, mid].double() / self.settings.repeats).numpy())

    def summary(self):
        out = super().summary()
        if self.fit is not None and bool(self.fit.converged.any()):
            i50 = self.fit.param("x0")[self.fit.converged]
            out["i50_spread"] = float(i50.std() / i50.mean())
        return out
