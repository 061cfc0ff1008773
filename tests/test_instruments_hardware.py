"""Real instruments: run only with `pytest --station my-lab.toml` (a station with real addresses).

Non-destructive: identifies and configures every instrument, reads its error queue, and brings
it to its safe state. No pulse reaches the chip.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.hardware


def test_real_instruments_configure_and_reach_safe_state(real_station):
    from instruments.link import TransactionCounter
    from instruments.registry import open_role
    from labctl.config import load_station
    from labctl.instrument_station import role_settings

    station = load_station(real_station)
    assert station.station.backend == "instruments" and station.instruments is not None
    counter = TransactionCounter()
    for role, table in station.instruments.roles().items():
        adapter = open_role(role, table.model, table.resource, timeout_s=table.timeout_s, retries=table.retries,
                            visa_library=table.visa_library, read_termination=table.read_termination,
                            write_termination=table.write_termination, counter=counter,
                            **role_settings(station, role))
        try:
            assert adapter.identify()
            adapter.configure()
            adapter.safe_state()
            assert adapter.errors() == []
        finally:
            adapter.link.close()
