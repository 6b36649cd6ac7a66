"""Real headless Chromium (Debian `chromium` + `chromedriver`, driven by selenium) for the ESIA login and the
parent's signing page, and for checking that generated HTML (reports, runbook) renders.

TLS stays verified: the browser gets a throw-away profile whose NSS database trusts exactly the configured
CA bundle (`certutil` from libnss3-tools), and lab names are mapped to container addresses with
--host-resolver-rules, so the certificate is checked against the real name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class BrowserUnavailable(RuntimeError):
    """Chromium, chromedriver or certutil is missing; the message names the Debian package."""


def _nss_trust(home: Path, ca_files: list[str]) -> None:
    """An NSS database in the throw-away profile that trusts exactly the certificates of these PEM bundles."""
    certutil = shutil.which("certutil")
    if certutil is None:
        raise BrowserUnavailable(
            "certutil not found: apt-get install libnss3-tools (the browser must trust the CA)"
        )
    blocks: dict[str, None] = {}  # the same CA in several bundles is added once
    for ca_file in ca_files:
        pem = Path(ca_file).read_text(encoding="ascii", errors="replace")
        for b in pem.split("-----END CERTIFICATE-----"):
            if "-----BEGIN CERTIFICATE-----" in b:
                blocks[
                    "-----BEGIN CERTIFICATE-----"
                    + b.split("-----BEGIN CERTIFICATE-----", 1)[1]
                    + "-----END CERTIFICATE-----\n"
                ] = None
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    for i, block in enumerate(blocks):
        one = home / f"ca-{i}.pem"
        one.write_text(block, encoding="ascii")
        subprocess.run(
            [certutil, "-A", "-d", f"sql:{db}", "-t", "C,,", "-n", f"schoolgate-trust-{i}", "-i", str(one)],
            check=True,
            capture_output=True,
        )


@contextlib.contextmanager
def chromium(
    *, ca_files: list[str] | None = None, resolve: dict[str, str] | None = None, page_timeout_s: float = 30
) -> Iterator[Any]:
    chrome, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chrome and driver_bin):
        raise BrowserUnavailable("headless browser needs Debian packages chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="schoolgate-chromium-") as tmp:
        home = Path(tmp)
        if any(ca_files or []):
            _nss_trust(home, [c for c in ca_files or [] if c])
        opts = webdriver.ChromeOptions()
        opts.binary_location = chrome
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1600",
            f"--user-data-dir={home / 'profile'}",
        ):
            opts.add_argument(arg)
        if resolve:
            rules = ",".join(f"MAP {name} {addr}" for name, addr in sorted(resolve.items()))
            opts.add_argument(f"--host-resolver-rules={rules}")
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        env = {**os.environ, "HOME": str(home)}
        driver = webdriver.Chrome(service=Service(driver_bin, env=env), options=opts)
        driver.set_page_load_timeout(page_timeout_s)
        try:
            yield driver
        finally:
            driver.quit()


def wait_for(predicate: Callable[[], T], timeout_s: float = 30.0, what: str = "condition") -> T:
    """Poll until predicate() is truthy; a page still loading (element missing or stale) means "not yet"."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except WebDriverException as exc:
            last, value = exc, None
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not reached in {timeout_s:.0f} s (last browser error: {last})")


def console_errors(driver: Any) -> list[str]:
    """SEVERE entries of the page's console (JavaScript errors, failed loads)."""
    try:
        entries = driver.get_log("browser")
    except Exception:
        return []
    return [str(e.get("message", ""))[:300] for e in entries if e.get("level") == "SEVERE"]


def render_check(html_path: Path, screenshot: Path) -> dict[str, Any]:
    """Open a local HTML file in headless Chromium, screenshot it, and report title and console errors."""
    with chromium() as driver:
        driver.get(html_path.resolve().as_uri())
        wait_for(lambda: driver.execute_script("return document.readyState") == "complete", 30, "page load")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        return {
            "title": driver.title,
            "errors": console_errors(driver),
            "text_length": len(driver.find_element("tag name", "body").text),
            "screenshot": str(screenshot),
        }
