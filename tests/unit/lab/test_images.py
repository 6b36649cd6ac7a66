from pathlib import Path

import pytest

from schoolgate.lab import images


def test_recipe_hash_is_stable_and_sensitive(monkeypatch):
    a = images.recipe_for("bookworm")
    assert a.hash() == images.recipe_for("bookworm").hash()
    assert a.hash() != images.recipe_for("trixie").hash()
    monkeypatch.setenv("SCHOOLGATE_DEBIAN_MIRROR", "http://deb.debian.org/debian/")
    assert images.recipe_for("bookworm").hash() != a.hash()


def test_recipe_hash_changes_with_files():
    a = images.recipe_for("bookworm")
    files = dict(a.files)
    files["etc/apt/sources.list"] = ("deb http://example.invalid/ bookworm main\n", 0o644)
    b = images.Recipe(a.suite, a.mirror, files=files)
    assert a.debootstrap_hash() == b.debootstrap_hash()
    assert a.hash() != b.hash()


def test_unknown_suite():
    with pytest.raises(ValueError, match="unknown suite"):
        images.recipe_for("buster")


def test_sources_include_security_on_the_same_mirror():
    text = images.sources_list("trixie", "http://deb.debian.org/debian")
    assert "deb http://deb.debian.org/debian-security trixie-security main" in text
    assert "deb http://deb.debian.org/debian trixie-updates main" in text


def _fake_rootfs(root: Path, suite: str, packages: list[str]) -> Path:
    (root / "sbin").mkdir(parents=True)
    (root / "sbin" / "init").write_text("")
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text(f"ID=debian\nVERSION_CODENAME={suite}\n")
    (root / "var/lib/dpkg").mkdir(parents=True)
    blocks = [f"Package: {p}\nStatus: install ok installed\nVersion: 1\n" for p in packages]
    (root / "var/lib/dpkg/status").write_text("\n".join(blocks))
    return root


def test_complete_rootfs_is_adopted(tmp_path):
    recipe = images.recipe_for("bookworm")
    root = _fake_rootfs(tmp_path / "r", "bookworm", list(recipe.include))
    assert images._rootfs_usable(root, recipe)


def test_rootfs_missing_a_package_or_wrong_suite_is_not_adopted(tmp_path):
    recipe = images.recipe_for("bookworm")
    root = _fake_rootfs(tmp_path / "a", "bookworm", list(recipe.include)[:-1])
    assert not images._rootfs_usable(root, recipe)
    root = _fake_rootfs(tmp_path / "b", "trixie", list(recipe.include))
    assert not images._rootfs_usable(root, recipe)


def test_interrupted_debootstrap_is_not_adopted(tmp_path):
    recipe = images.recipe_for("bookworm")
    root = _fake_rootfs(tmp_path / "r", "bookworm", list(recipe.include))
    (root / "debootstrap").mkdir()
    assert not images._rootfs_usable(root, recipe)


def test_customise_writes_proxy_probe_and_empties_machine_id(tmp_path):
    recipe = images.recipe_for("trixie")
    root = _fake_rootfs(tmp_path / "r", "trixie", list(recipe.include))
    (root / "etc/machine-id").write_text("0123456789abcdef\n")
    (root / "etc/hostname").write_text("builder\n")
    images.customise(root, recipe)
    probe = root / images.PROXY_DETECT_PATH
    assert probe.stat().st_mode & 0o777 == 0o755
    assert "schoolgate-aptcache" in probe.read_text() and "DIRECT" in probe.read_text()
    assert (root / "etc/machine-id").read_text() == ""
    assert not (root / "etc/hostname").exists()
    assert (root / "var/lib/apt/lists").stat().st_mtime == 0  # apt cache_valid_time must refresh
