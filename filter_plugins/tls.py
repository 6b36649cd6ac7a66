"""Jinja filters for TLS facts: protocol version ordering and certificate days left.

Used by the `tls` role and by audit playbooks that read `tls_probe` results:

    {{ probe.accepted_versions | tls_version_min }}                 -> "TLSv1.2"
    {{ 'TLSv1.1' | tls_version_compare('TLSv1.2') }}                -> -1
    {{ probe.accepted_versions | tls_versions_below('TLSv1.2') }}   -> []
    {{ probe.certificate.not_after | tls_days_left }}               -> 364
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable

# Canonical names follow Python's ssl.TLSVersion / OpenSSL's SSL_get_version() spelling.
TLS_VERSION_ORDER: tuple[str, ...] = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")

_ALIASES = {
    "sslv2": "SSLv2",
    "ssl2": "SSLv2",
    "sslv3": "SSLv3",
    "ssl3": "SSLv3",
    "tlsv1": "TLSv1",
    "tlsv1.0": "TLSv1",
    "tls1": "TLSv1",
    "tls1.0": "TLSv1",
    "tls1_0": "TLSv1",
    "tlsv1_0": "TLSv1",
    "tlsv1.1": "TLSv1.1",
    "tls1.1": "TLSv1.1",
    "tls1_1": "TLSv1.1",
    "tlsv1_1": "TLSv1.1",
    "tlsv1.2": "TLSv1.2",
    "tls1.2": "TLSv1.2",
    "tls1_2": "TLSv1.2",
    "tlsv1_2": "TLSv1.2",
    "tlsv1.3": "TLSv1.3",
    "tls1.3": "TLSv1.3",
    "tls1_3": "TLSv1.3",
    "tlsv1_3": "TLSv1.3",
}


class TLSFilterError(ValueError):
    """Raised for input a filter cannot interpret; the message names the bad value."""


def tls_version_normalize(version: str) -> str:
    """Return the canonical spelling ("TLSv1.2") of a protocol name ("tls1_2", "TLS 1.2", "TLSv1.2")."""
    if not isinstance(version, str):
        raise TLSFilterError(f"TLS version must be a string, got {type(version).__name__}: {version!r}")
    key = re.sub(r"\s+", "", version).lower()
    if key in _ALIASES:
        return _ALIASES[key]
    raise TLSFilterError(
        f"unknown TLS protocol version {version!r}; expected one of {list(TLS_VERSION_ORDER)}"
    )


def tls_version_index(version: str) -> int:
    """Position of a version in the ordering (SSLv2 = 0 ... TLSv1.3 = 5)."""
    return TLS_VERSION_ORDER.index(tls_version_normalize(version))


def tls_version_compare(left: str, right: str) -> int:
    """-1, 0 or 1 as `left` is older than, equal to or newer than `right`."""
    a, b = tls_version_index(left), tls_version_index(right)
    return (a > b) - (a < b)


def tls_version_at_least(version: str, minimum: str) -> bool:
    return tls_version_index(version) >= tls_version_index(minimum)


def tls_versions_sort(versions: Iterable[str], reverse: bool = False) -> list[str]:
    """Sort protocol names oldest first (canonical spelling); `reverse=True` for newest first."""
    return sorted((tls_version_normalize(v) for v in versions), key=tls_version_index, reverse=reverse)


def tls_version_min(versions: Iterable[str]) -> str | None:
    ordered = tls_versions_sort(versions)
    return ordered[0] if ordered else None


def tls_version_max(versions: Iterable[str]) -> str | None:
    ordered = tls_versions_sort(versions)
    return ordered[-1] if ordered else None


def tls_versions_below(versions: Iterable[str], minimum: str) -> list[str]:
    """The versions in `versions` older than `minimum` (what a policy check reports as violations)."""
    floor = tls_version_index(minimum)
    return [v for v in tls_versions_sort(versions) if tls_version_index(v) < floor]


_OPENSSL_TIME = re.compile(
    r"^(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<time>\d{2}:\d{2}:\d{2})\s+(?P<year>\d{4})\s+GMT$"
)


def _parse_time(value: object) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(value, tz=_dt.UTC)
    if not isinstance(value, str) or not value.strip():
        raise TLSFilterError(f"cannot read a certificate time from {value!r}")
    text = value.strip()
    # "Jun  1 12:00:00 2027 GMT" (openssl x509 -enddate, Python getpeercert()).
    match = _OPENSSL_TIME.match(text)
    if match:
        parsed = _dt.datetime.strptime(
            f"{match['mon']} {match['day']} {match['time']} {match['year']}", "%b %d %H:%M:%S %Y"
        )
        return parsed.replace(tzinfo=_dt.UTC)
    # ASN.1 GeneralizedTime as community.crypto returns it: "20270601120000Z".
    if re.fullmatch(r"\d{14}Z", text):
        return _dt.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=_dt.UTC)
    try:
        parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise TLSFilterError(f"cannot read a certificate time from {value!r}: {exc}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)


def tls_days_left(not_after: object, now: object = None) -> int:
    """Whole days until `not_after` (negative once expired). Accepts ISO 8601, openssl and ASN.1 forms."""
    end = _parse_time(not_after)
    start = _parse_time(now) if now is not None else _dt.datetime.now(tz=_dt.UTC)
    return int((end - start).total_seconds() // 86400)


class FilterModule:
    def filters(self) -> dict:
        return {
            "tls_version_normalize": tls_version_normalize,
            "tls_version_index": tls_version_index,
            "tls_version_compare": tls_version_compare,
            "tls_version_at_least": tls_version_at_least,
            "tls_versions_sort": tls_versions_sort,
            "tls_version_min": tls_version_min,
            "tls_version_max": tls_version_max,
            "tls_versions_below": tls_versions_below,
            "tls_days_left": tls_days_left,
        }
