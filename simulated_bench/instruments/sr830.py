"""Simulated SRS SR830 lock-in, as PyMeasure's ``SR830`` (and labctl's extension) drives it.

X is the Kerr signal of the wire under the laser spot (volts, from the shared chip's read).
The data buffer stores channel 1 (X) and channel 2 (Y = 0): with sample-rate index 14
("trigger") one point per rising edge at TRIG IN, which the bench delivers from the pulse
source's marker channel, while the buffer is started (``STRT``) and not paused; ``REST`` clears
it, ``SPTS?`` counts points, ``TRCA? i,j,k`` returns ``k`` points of channel ``i`` from ``j``
(each followed by a comma). The SR830 is not SCPI: headers are four letters followed directly by
their parameters (``SENS5``, ``OUTP?1``); errors set bits of ``*ESR?`` (the simulator also keeps
an SCPI error queue, ``SYST:ERR?``). The four auxiliary outputs (``AUXV i,x``, volts within
+-10.5) are kept and reported; the auxiliary inputs read 0 V.
"""

from __future__ import annotations

import re

import numpy as np

from .scpi import CommandError, SimulatedInstrument, command, integer, number

BUFFER = 16383
_HEADER = re.compile(r"^\s*(\*?[A-Za-z]+(?::[A-Za-z]+)*\??)\s*(.*)$", re.S)


class SR830Sim(SimulatedInstrument):
    """The SR830 simulator (see the module docstring)."""

    identity = "Stanford_Research_Systems,SR830,s/nSIM00004,ver1.07"
    model = "SR830"

    def reset(self) -> None:
        self.ddef = {1: 0, 2: 0}
        self.srat = 4
        self.tstr = 0
        self.recording = False
        self.buffer: list[float] = []
        self.settings = {"SENS": 22, "OFLT": 8, "OFSL": 1, "FMOD": 1, "ISRC": 0, "IGND": 0, "ICPL": 0,
                         "ILIN": 0, "RMOD": 1, "SYNC": 0, "HARM": 1, "SEND": 1, "RSLP": 0}
        self.floats = {"FREQ": 1000.0, "PHAS": 0.0, "SLVL": 1.0}
        self.aux_out = {i: 0.0 for i in range(1, 5)}

    def split(self, command_text: str) -> tuple[str, str]:
        m = _HEADER.match(command_text)
        if not m:
            raise CommandError(-113, command_text[:20])
        return m.group(1), m.group(2)

    def status(self) -> dict:
        return {"recording": self.recording, "points": len(self.buffer), "sine_v": self.floats["SLVL"]}

    def outputs_safe(self) -> bool:
        return not self.recording

    def store(self, values: np.ndarray) -> None:
        """Trigger edges from the bench: one point each while recording in trigger mode."""
        if self.recording and self.srat == 14:
            room = BUFFER - len(self.buffer)
            self.buffer.extend(float(v) for v in values[:room])

    def x(self) -> float:
        return float(self.bench.kerr_signal(1)[0]) if self.bench is not None else 0.0

    # ------------------------------------------------------------------ buffer
    @command("REST")
    def rest(self, args):
        self.buffer.clear()
        self.recording = False

    @command("STRT")
    def strt(self, args):
        self.recording = True

    @command("PAUS")
    def paus(self, args):
        self.recording = False

    @command("SPTS?")
    def spts(self, args):
        return str(len(self.buffer))

    @command("TRCA?", "TRCB?")
    def trca(self, args):
        parts = [p for p in args.replace(" ", "").split(",")]
        if len(parts) != 3:
            raise CommandError(-109, "TRCA? needs channel, first point, count")
        channel, first, count = integer(parts[0], 1, 2), integer(parts[1], 0, BUFFER), integer(parts[2], 1, BUFFER)
        if first + count > len(self.buffer):
            raise CommandError(-222, f"points {first}..{first + count - 1} not in a buffer of {len(self.buffer)}")
        data = self.buffer[first:first + count] if channel == 1 else [0.0] * count
        return "".join(f"{v:.6e}," for v in data)

    @command("SRAT")
    def srat_set(self, args):
        self.srat = integer(args, 0, 14)

    @command("SRAT?")
    def srat_query(self, args):
        return str(self.srat)

    @command("TSTR")
    def tstr_set(self, args):
        self.tstr = integer(args, 0, 1)

    @command("TSTR?")
    def tstr_query(self, args):
        return str(self.tstr)

    @command("TRIG")
    def trig(self, args):
        if self.bench is not None:
            self.store(self.bench.kerr_signal(1))

    @command("FAST")
    def fast(self, args):
        integer(args, 0, 2)

    @command("STRD")
    def strd(self, args):
        self.recording = True

    # ------------------------------------------------------------------ display and outputs
    @command("DDEF")
    def ddef_set(self, args):
        parts = args.split(",")
        if len(parts) < 2:
            raise CommandError(-109, "DDEF needs channel and display")
        channel = integer(parts[0], 1, 2)
        self.ddef[channel] = integer(parts[1], 0, 4)

    @command("DDEF?")
    def ddef_query(self, args):
        return f"{self.ddef[integer(args, 1, 2)]},0"

    @command("OUTP?")
    def outp(self, args):
        which = integer(args, 1, 4)
        if which == 2:
            return f"{0.0:.6e}"
        x = self.x()
        value = {1: x, 3: abs(x), 4: 0.0 if x >= 0 else 180.0}[which]
        return f"{value:.6e}"

    @command("SNAP?")
    def snap(self, args):
        values = []
        for item in args.replace(" ", "").split(","):
            which = integer(item, 1, 11)
            values.append(self.x() if which in (1, 3) else (self.floats["FREQ"] if which == 9 else 0.0))
        return ",".join(f"{v:.6e}" for v in values)

    @command("OAUX?")
    def oaux(self, args):
        integer(args, 1, 4)
        return "0.000"

    @command("AUXV")
    def auxv_set(self, args):
        parts = args.split(",")
        if len(parts) != 2:
            raise CommandError(-109, "AUXV needs output and volts")
        self.aux_out[integer(parts[0], 1, 4)] = number(parts[1], -10.5, 10.5)

    @command("AUXV?")
    def auxv_query(self, args):
        return f"{self.aux_out[integer(args, 1, 4)]:.3f}"

    @command("LIAS?", "ERRS?")
    def status_bytes(self, args):
        return "0"

    # ------------------------------------------------------------------ settings
    _RANGES = {"SENS": 26, "OFLT": 19, "OFSL": 3, "FMOD": 1, "ISRC": 3, "IGND": 1, "ICPL": 1, "ILIN": 3,
               "RMOD": 2, "SYNC": 1, "HARM": 19999, "SEND": 1, "RSLP": 2}

    def execute(self, command_text: str):
        """Integer and float settings by table; everything else by the declared handlers."""
        header, args = self.split(command_text)
        key = header.rstrip("?").upper()
        if key in self._RANGES:
            if header.endswith("?"):
                return str(self.settings[key])
            self.settings[key] = integer(args, 0 if key != "HARM" else 1, self._RANGES[key])
            return None
        if key in ("FREQ", "PHAS", "SLVL"):
            if header.endswith("?"):
                return f"{self.floats[key]:.6g}"
            lo, hi = {"FREQ": (0.001, 102000), "PHAS": (-360, 729.99), "SLVL": (0.004, 5.0)}[key]
            self.floats[key] = number(args, lo, hi)
            return None
        return super().execute(command_text)
