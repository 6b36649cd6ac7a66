"""filter_plugins/tls.py: version ordering and days left."""

from __future__ import annotations

import datetime as dt

import pytest


def test_normalize_spellings(tls_filters):
    for spelling in ("TLSv1.2", "tls1_2", "TLS 1.2", "tlsv1.2", "tls1.2"):
        assert tls_filters.tls_version_normalize(spelling) == "TLSv1.2"
    assert tls_filters.tls_version_normalize("TLSv1.0") == "TLSv1"
    with pytest.raises(ValueError, match="unknown TLS protocol version 'TLSv2'"):
        tls_filters.tls_version_normalize("TLSv2")
    with pytest.raises(ValueError, match="must be a string"):
        tls_filters.tls_version_normalize(1.2)


def test_ordering(tls_filters):
    f = tls_filters
    assert f.tls_version_compare("TLSv1.1", "TLSv1.2") == -1
    assert f.tls_version_compare("tls1_3", "TLSv1.2") == 1
    assert f.tls_version_compare("TLSv1", "tls1.0") == 0
    # Plain string sorting gets SSLv3 vs TLS wrong; the filter uses the protocol order.
    assert f.tls_versions_sort(["TLSv1.3", "TLSv1", "SSLv3", "TLSv1.2", "TLSv1.1"]) == [
        "SSLv3",
        "TLSv1",
        "TLSv1.1",
        "TLSv1.2",
        "TLSv1.3",
    ]
    assert f.tls_versions_sort(["TLSv1.2", "TLSv1.3"], reverse=True) == ["TLSv1.3", "TLSv1.2"]
    assert f.tls_version_min(["TLSv1.3", "TLSv1.2"]) == "TLSv1.2"
    assert f.tls_version_max(["TLSv1.3", "TLSv1.2"]) == "TLSv1.3"
    assert f.tls_version_min([]) is None
    assert f.tls_versions_below(["TLSv1.3", "TLSv1", "TLSv1.2", "TLSv1.1"], "TLSv1.2") == ["TLSv1", "TLSv1.1"]
    assert f.tls_versions_below(["TLSv1.3"], "TLSv1.2") == []
    assert f.tls_version_at_least("TLSv1.3", "TLSv1.2") and not f.tls_version_at_least("TLSv1.1", "tls1_2")


NOW = dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "days"),
    [
        ("2027-12-04T12:00:00+00:00", 365),
        ("2027-12-04T12:00:00Z", 365),
        ("20261214120000Z", 10),
        ("Dec 14 11:59:59 2026 GMT", 9),
        ("Dec  5 12:00:00 2026 GMT", 1),
        ("2026-12-01T12:00:00+00:00", -3),
        ("2026-12-04T11:00:00+00:00", -1),
    ],
)
def test_days_left(tls_filters, value, days):
    assert tls_filters.tls_days_left(value, NOW.isoformat()) == days


def test_days_left_now_default_and_errors(tls_filters):
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30, hours=1)).isoformat()
    assert tls_filters.tls_days_left(future) == 30
    with pytest.raises(ValueError, match="cannot read a certificate time"):
        tls_filters.tls_days_left("next tuesday")
    with pytest.raises(ValueError, match="cannot read a certificate time"):
        tls_filters.tls_days_left("")


def test_days_left_matches_probe(tls_filters, tls_probe, pki):
    """The filter and the module agree on the same certificate."""
    from cryptography.hazmat.primitives.serialization import Encoding

    info = tls_probe.parse_certificate(pki.leaf_cert.public_bytes(Encoding.DER))
    assert tls_filters.tls_days_left(info["not_after"]) == info["days_left"]


def test_parse_certificate_matches_cryptography(tls_probe, pki):
    from cryptography.hazmat.primitives.serialization import Encoding

    for cert in (pki.leaf_cert, pki.intermediate_cert):
        info = tls_probe.parse_certificate(cert.public_bytes(Encoding.DER))
        assert info["subject"] == cert.subject.rfc4514_string()
        assert info["issuer"] == cert.issuer.rfc4514_string()
        assert info["not_before"] == cert.not_valid_before_utc.isoformat()
        assert info["not_after"] == cert.not_valid_after_utc.isoformat()
        assert info["key_size"] == cert.public_key().key_size
        assert int(info["serial"], 16) == cert.serial_number


def test_filters_are_registered(tls_filters):
    names = tls_filters.FilterModule().filters()
    assert {"tls_version_compare", "tls_versions_sort", "tls_days_left", "tls_versions_below"} <= set(names)
