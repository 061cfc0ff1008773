"""The labctl probe-station GUI (PyQt5 + pyqtgraph); the only package that imports Qt.

``labctl gui [FILE.h5] [--station STATION]`` starts it (see :mod:`labctl.gui.app`).
"""


def main(argv=None) -> int:
    from .app import main as _main

    return _main(argv)
