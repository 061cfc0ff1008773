"""Shared pytest set-up: headless Qt, and the ``--station`` option for real-hardware tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_addoption(parser):
    parser.addoption(
        "--station",
        default=None,
        help="station TOML file for real instruments; tests marked 'hardware' run only when it is given",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--station"):
        return
    skip = pytest.mark.skip(reason="needs real instruments: pass --station my-lab.toml")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def real_station(request):
    """Path of the real-instrument station file given with --station."""
    return request.config.getoption("--station")
