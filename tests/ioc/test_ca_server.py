"""The IOC's tuning of caproto's update batching (ioc/ca_server.py)."""
from __future__ import annotations

from caproto.server import common

from xspress3.ioc import ca_server


def test_update_batching_gap_is_ours_unless_the_site_set_caprotos(monkeypatch):
    monkeypatch.setattr(common, "HIGH_LOAD_TIMEOUT", 0.01)
    monkeypatch.setenv("CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC", "0.01")
    ca_server.tune_update_batching()
    assert common.HIGH_LOAD_TIMEOUT == 0.01

    monkeypatch.delenv("CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC")
    ca_server.tune_update_batching()
    assert common.HIGH_LOAD_TIMEOUT == ca_server.UPDATE_BATCH_GAP_S
