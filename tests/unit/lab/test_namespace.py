import pytest

from schoolgate.lab import cli, podman, site


@pytest.mark.parametrize("value", ["T", "1abc", "toolongname", "a-b", "a b"])
def test_bad_namespace_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("SCHOOLGATE_LAB", value)
    with pytest.raises(ValueError, match="SCHOOLGATE_LAB"):
        podman.lab_namespace()


def test_namespace_selects_network_inventory_and_fact_cache(monkeypatch):
    monkeypatch.setenv("SCHOOLGATE_LAB", "acc")
    assert podman.lab_namespace() == "acc"
    assert podman.network_name() == "schoolgate-acc"
    assert cli.inventory_path("acc").name == "inventory.lab-acc.ini"
    env = site.ansible_env("acc")
    assert env["ANSIBLE_CACHE_PLUGIN_CONNECTION"].endswith("/.cache/facts-acc")
    assert env["SCHOOLGATE_LAB"] == "acc"


def test_default_lab_is_unchanged(monkeypatch):
    monkeypatch.delenv("SCHOOLGATE_LAB", raising=False)
    assert podman.network_name() == "schoolgate"
    assert cli.inventory_path("").name == "inventory.lab.ini"
    monkeypatch.delenv("ANSIBLE_CACHE_PLUGIN_CONNECTION", raising=False)
    assert "ANSIBLE_CACHE_PLUGIN_CONNECTION" not in site.ansible_env("")


def test_cli_rejects_bad_namespace_before_doing_anything(monkeypatch, capsys):
    from schoolgate.cli import main

    monkeypatch.setenv("SCHOOLGATE_LAB", "")  # restored after the test: main() sets it from --lab

    assert main(["lab", "--lab", "Bad!", "status"]) == 2
    assert "SCHOOLGATE_LAB='Bad!'" in capsys.readouterr().err
