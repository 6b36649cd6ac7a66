"""module_utils/schoolgate_http.py against the real simulator: backoff, Retry-After, 4xx not retried."""

from __future__ import annotations

import importlib.util

import pytest
import requests

from .conftest import ROOT

_spec = importlib.util.spec_from_file_location(
    "schoolgate_http", ROOT / "module_utils" / "schoolgate_http.py"
)
assert _spec and _spec.loader
http = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(http)


def _faults(sim, **cfg) -> None:
    resp = requests.put(sim.base + "/admin/v1/faults", json=cfg, timeout=10)
    assert resp.status_code == 200, resp.text


def test_retry_after_is_honoured_and_capped(sim, access_code):
    _faults(sim, rate_429=1.0, retry_after_s=7, paths=["/cabinet/"])
    waits: list[float] = []
    client = http.JsonClient(
        sim.base,
        attempts=3,
        backoff=0.01,
        backoff_max=5,
        headers={"X-Access-Code": access_code},
        sleep=waits.append,
    )
    with pytest.raises(http.HttpError) as err:
        client.request("GET", "/cabinet/v1/services")
    assert err.value.status == 429 and err.value.attempts == 3
    assert waits == [5, 5]  # Retry-After 7 s, capped by backoff_max
    assert access_code not in str(err.value)


def test_5xx_backoff_doubles_then_success(sim, access_code):
    _faults(sim, rate_5xx=1.0, status_5xx=502, paths=["/cabinet/"])
    waits: list[float] = []

    def sleep(delay: float) -> None:
        waits.append(delay)
        if len(waits) == 2:
            requests.delete(sim.base + "/admin/v1/faults", timeout=10)

    client = http.JsonClient(
        sim.base, attempts=5, backoff=0.5, backoff_max=30, headers={"X-Access-Code": access_code}, sleep=sleep
    )
    assert "services" in client.request("GET", "/cabinet/v1/services")
    assert waits == [0.5, 1.0]
    assert [r["status"] for r in client.retries] == [502, 502]


def test_4xx_is_not_retried(sim):
    waits: list[float] = []
    client = http.JsonClient(sim.base, attempts=5, headers={"X-Access-Code": "wrong"}, sleep=waits.append)
    with pytest.raises(http.HttpError) as err:
        client.request("GET", "/cabinet/v1/services")
    assert err.value.status == 401 and err.value.attempts == 1 and waits == []
    assert err.value.code == "SIM-401"


def test_connection_refused_is_retried_then_reported():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits: list[float] = []
    client = http.JsonClient(f"http://127.0.0.1:{port}", attempts=2, backoff=0.1, sleep=waits.append)
    with pytest.raises(http.HttpError) as err:
        client.request("GET", "/x")
    assert err.value.status == 0 and "network error" in err.value.reason and waits == [0.1]
