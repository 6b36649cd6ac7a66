"""The lab apt cache is restarted when podman says "running" but nothing answers on its port."""

from __future__ import annotations

import contextlib

import pytest

from schoolgate.lab import aptcache, images, podman


@pytest.fixture
def fake_podman(monkeypatch: pytest.MonkeyPatch, tmp_path):
    calls: list[str] = []
    monkeypatch.setenv("SCHOOLGATE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(images, "ensure_image", lambda suite, log: None)
    monkeypatch.setattr(images, "_locked", lambda name: contextlib.nullcontext())
    monkeypatch.setattr(podman, "ensure_network", lambda name=None: False)
    monkeypatch.setattr(podman, "image_labels", lambda image: {images.RECIPE_LABEL: aptcache.recipe_hash()})
    monkeypatch.setattr(podman, "container_state", lambda name: "running")
    monkeypatch.setattr(podman, "remove_container", lambda name: calls.append(f"remove {name}") or True)
    monkeypatch.setattr(podman, "run", lambda args, **kw: calls.append(" ".join(args[:2])))
    return calls


def test_a_running_cache_that_answers_is_kept(fake_podman, monkeypatch):
    monkeypatch.setattr(aptcache, "probe", lambda timeout=2.0: True)
    assert aptcache.ensure(log=lambda _m: None) == "running"
    assert fake_podman == []


def test_a_running_cache_that_does_not_answer_is_replaced(fake_podman, monkeypatch):
    answered = iter([False, False, False])
    said: list[str] = []
    monkeypatch.setattr(aptcache, "PROBE_PAUSE_S", 0.0)
    monkeypatch.setattr(aptcache, "probe", lambda timeout=2.0: next(answered))
    monkeypatch.setattr(aptcache, "answers", lambda timeout=2.0: True)
    assert aptcache.ensure(log=said.append) == "started"
    assert fake_podman == [f"remove {aptcache.NAME}", "run -d"]
    assert any("did not answer 3 probes" in m for m in said)


def test_one_missed_probe_does_not_replace_a_cache_in_use(fake_podman, monkeypatch):
    answered = iter([False, True])
    monkeypatch.setattr(aptcache, "PROBE_PAUSE_S", 0.0)
    monkeypatch.setattr(aptcache, "probe", lambda timeout=2.0: next(answered))
    assert aptcache.ensure(log=lambda _m: None) == "running"
    assert fake_podman == []


def test_podman_not_knowing_the_address_is_no_miss(fake_podman, monkeypatch):
    # podman busy (inspect failed) twice between two refusals, then the cache answers: kept.
    answered = iter([False, None, None, False, True])
    monkeypatch.setattr(aptcache, "PROBE_PAUSE_S", 0.0)
    monkeypatch.setattr(aptcache, "probe", lambda timeout=2.0: next(answered))
    assert aptcache.ensure(log=lambda _m: None) == "running"
    assert fake_podman == []


def test_the_log_directory_is_mounted_from_the_host_cache(fake_podman, monkeypatch, tmp_path):
    runs: list[list[str]] = []
    states = iter(["exited", "running"])
    monkeypatch.setattr(podman, "container_state", lambda name: next(states))
    monkeypatch.setattr(podman, "run", lambda args, **kw: runs.append(list(args)))
    monkeypatch.setattr(aptcache, "answers", lambda timeout=2.0: True)
    assert aptcache.ensure(log=lambda _m: None) == "started"
    assert f"{tmp_path}/apt-cacher-ng-log:/var/log/apt-cacher-ng" in runs[0]


def test_answers_probes_the_containers_addresses(monkeypatch):
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setattr(images, "APT_CACHE_PORT", port)
        monkeypatch.setattr(aptcache, "_addresses", lambda: ["127.0.0.1"])
        assert aptcache.answers(timeout=1)
    monkeypatch.setattr(aptcache, "_addresses", lambda: ["127.0.0.1"])
    assert aptcache.probe(timeout=1) is False
    monkeypatch.setattr(aptcache, "_addresses", lambda: [])
    assert aptcache.probe(timeout=1) is None
