"""client_secret builders and verifiers, timestamp/state/base64url helpers."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schoolgate.cli import main
from schoolgate.esia.certhash import client_certificate_hash
from schoolgate.esia.der import certificate_to_pem
from schoolgate.esia.encoding import b64url_decode, b64url_encode
from schoolgate.esia.errors import EsiaError
from schoolgate.esia.secret import (
    client_secret,
    client_secret_v1,
    client_secret_v2,
    esia_timestamp,
    is_uuid4,
    new_state,
    parse_esia_timestamp,
    secret_message,
    verify_client_secret,
)

# Reset by the `_clock` fixture once the session certificates exist (they are valid from their creation).
NOW = datetime.now(UTC).replace(microsecond=0)
TS = NOW.strftime("%Y.%m.%d %H:%M:%S +0000")
BASE = {
    "client_id": "SCHOOL-001",
    "scope": "openid fullname",
    "timestamp": TS,
    "state": "c0a8f5d2-1111-4222-8333-444455556666",
}
EXTRA = {
    "v1": {},
    "v2": {"redirect_uri": "https://school.example/esia/cb"},
    "v3": {"redirect_uri": "https://school.example/esia/cb", "code": "eyJ2ZXIiOjF9.code"},
}


@pytest.fixture(scope="module", autouse=True)
def _clock(pairs):
    """Tests here run "now" (after the session keys were made), however long the suite ran before."""
    global NOW, TS
    NOW = (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0)
    TS = NOW.strftime("%Y.%m.%d %H:%M:%S +0000")
    BASE["timestamp"] = TS


def test_timestamp_format_and_parse():
    assert esia_timestamp(datetime(2026, 12, 4, 10, tzinfo=UTC)) == "2026.12.04 10:00:00 +0000"
    msk = timezone(timedelta(hours=3))
    assert esia_timestamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=msk)) == "2026.01.02 03:04:05 +0300"
    assert esia_timestamp(datetime(2026, 1, 2, 3, 4, 5)) == "2026.01.02 03:04:05 +0000"  # naive = UTC
    assert parse_esia_timestamp("2026.12.04 10:00:00 +0000") == datetime(2026, 12, 4, 10, tzinfo=UTC)
    for bad in ("2026-12-04 10:00:00 +0000", "2026.12.04 10:00:00", "2026.13.04 10:00:00 +0000", ""):
        with pytest.raises(EsiaError) as info:
            parse_esia_timestamp(bad)
        assert info.value.code == "ESIA-007015"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)))
def test_timestamp_round_trip(moment):
    assert parse_esia_timestamp(esia_timestamp(moment)) == moment.replace(microsecond=0)


def test_state_is_uuid4():
    states = {new_state() for _ in range(50)}
    assert len(states) == 50 and all(is_uuid4(s) and uuid.UUID(s).version == 4 for s in states)
    assert not is_uuid4(str(uuid.uuid1())) and not is_uuid4("not-a-uuid")


@given(st.binary(max_size=300))
def test_base64url_unpadded_out_both_accepted(data):
    encoded = b64url_encode(data)
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded
    assert b64url_decode(encoded) == data
    assert b64url_decode(b64url_encode(data, padded=True)) == data
    import base64

    assert b64url_decode(base64.b64encode(data).decode()) == data  # standard alphabet too


def test_base64url_garbage():
    with pytest.raises(EsiaError) as info:
        b64url_decode("abcde")
    assert info.value.code == "SG-ESIA-120"


def test_signed_strings_are_in_the_documented_order():
    assert secret_message("v1", **BASE) == "openid fullname" + TS + "SCHOOL-001" + BASE["state"]
    v2 = "SCHOOL-001openid fullname" + TS + BASE["state"] + "https://school.example/esia/cb"
    assert secret_message("v2", **BASE, **EXTRA["v2"]) == v2
    assert secret_message("v3", **BASE, **EXTRA["v3"]) == v2 + "eyJ2ZXIiOjF9.code"
    assert (
        secret_message("v3", **BASE, redirect_uri=EXTRA["v2"]["redirect_uri"], refresh_token="R") == v2 + "R"
    )
    with pytest.raises(EsiaError) as info:
        secret_message("v2", **BASE)
    assert info.value.code == "ESIA-007014"
    with pytest.raises(EsiaError, match="not both"):
        secret_message("v3", **BASE, redirect_uri="x", code="c", refresh_token="r")


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
@pytest.mark.parametrize(
    "name",
    [
        "cryptography-rsa",
        "cryptography-ec",
        "openssl-gost256",
        "openssl-gost512",
        "command-cryptopro-reversed",
    ],
)
def test_every_signer_and_version_round_trips(signers, name, version):
    signer = signers[name]
    secret = client_secret(version, signer, **BASE, **EXTRA[version])
    cert_hash = client_certificate_hash(signer.certificate_der) if version != "v1" else None
    check = verify_client_secret(
        version,
        secret,
        certificate=signer.certificate_der,
        now=NOW,
        client_certificate_hash=cert_hash,
        **BASE,
        **EXTRA[version],
    )
    assert check.ok, check
    check.raise_for_problems()
    # and padded base64url is accepted as well
    padded = b64url_encode(b64url_decode(secret), padded=True)
    assert verify_client_secret(
        version,
        padded,
        certificate=signer.certificate_der,
        now=NOW,
        client_certificate_hash=cert_hash,
        **BASE,
        **EXTRA[version],
    ).ok


def test_contract_wrappers(signers):
    signer = signers["cryptography-rsa"]
    v1 = client_secret_v1(signer, **BASE)
    assert verify_client_secret("v1", v1, certificate=signer.certificate_der, now=NOW, **BASE).ok
    v3 = client_secret_v2(signer, **BASE, **EXTRA["v3"])  # with code = the v3 string
    h = client_certificate_hash(signer.certificate_der)
    assert verify_client_secret(
        "v3",
        v3,
        certificate=signer.certificate_der,
        now=NOW,
        client_certificate_hash=h,
        **BASE,
        **EXTRA["v3"],
    ).ok


printable = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x44F, blacklist_categories=("Cs",)),
    min_size=1,
    max_size=30,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    client_id=printable,
    scope=printable,
    redirect=printable,
    code=printable,
    state=st.uuids(version=4).map(str),
    field=st.sampled_from(["client_id", "scope", "state", "redirect_uri", "code"]),
)
def test_property_any_changed_part_is_detected(signers, client_id, scope, redirect, code, state, field):
    signer = signers["cryptography-rsa"]
    params = {
        "client_id": client_id,
        "scope": scope,
        "timestamp": TS,
        "state": state,
        "redirect_uri": redirect,
        "code": code,
    }
    secret = client_secret("v3", signer, **params)
    h = client_certificate_hash(signer.certificate_der, hash_alg="sha256")
    kwargs = {
        "certificate": signer.certificate_der,
        "now": NOW,
        "client_certificate_hash": h,
        "hash_alg": "sha256",
        "diagnose": False,
    }
    assert verify_client_secret("v3", secret, **params, **kwargs).ok
    changed = dict(params)
    changed[field] = str(uuid.uuid4()) if field == "state" else params[field] + "Я"
    check = verify_client_secret("v3", secret, **changed, **kwargs)
    assert not check.ok and "does not verify" in check.problems[0]
    with pytest.raises(EsiaError) as info:
        check.raise_for_problems()
    assert info.value.code == "ESIA-007053"


def _check(signers, version, secret, name="openssl-gost256", cert_hash=None, **overrides):
    signer = signers[name]
    params = {**BASE, **EXTRA[version], **overrides}
    if cert_hash is None and version != "v1":
        cert_hash = client_certificate_hash(signer.certificate_der)
    return verify_client_secret(
        version,
        secret,
        certificate=signer.certificate_der,
        now=NOW,
        client_certificate_hash=cert_hash,
        **params,
    )


def test_diagnosis_hash_over_pem_or_sha1(signers):
    signer = signers["openssl-gost256"]
    secret = client_secret("v2", signer, **BASE, **EXTRA["v2"])
    sha1 = hashlib.sha1(signer.certificate_der).hexdigest()
    check = _check(signers, "v2", secret, cert_hash=sha1)
    assert not check.ok and "SHA-1 over DER" in check.likely_causes[0]
    pem_hash = client_certificate_hash(signer.certificate_der)  # correct one first
    from schoolgate.esia.certhash import streebog256

    over_pem = streebog256(certificate_to_pem(signer.certificate_der))
    assert over_pem != pem_hash
    check = _check(signers, "v2", secret, cert_hash=over_pem)
    assert "GOST over the PEM file instead of DER" in check.likely_causes
    with pytest.raises(EsiaError, match="PEM"):
        check.raise_for_problems()


def test_diagnosis_byte_order_and_wrong_version(signers):
    signer = signers["openssl-gost256"]
    secret = client_secret("v2", signer, **BASE, **EXTRA["v2"])
    reversed_secret = b64url_encode(b64url_decode(secret)[::-1])
    check = _check(signers, "v2", reversed_secret)
    assert "reversed (CryptoPro order)" in check.likely_causes[0]
    assert _check(signers, "v2", reversed_secret).ok is False
    accepted = verify_client_secret(
        "v2",
        reversed_secret,
        certificate=signer.certificate_der,
        now=NOW,
        client_certificate_hash=client_certificate_hash(signer.certificate_der),
        accept_reversed=True,
        **BASE,
        **EXTRA["v2"],
    )
    assert accepted.ok
    # a v2 string presented to /v3/te (code not signed)
    check = _check(signers, "v3", secret)
    assert "no code/refresh_token" in check.likely_causes[0]
    # a v1 CMS presented where a raw signature is expected
    cms = client_secret("v1", signer, **BASE)
    assert "detached CMS" in _check(signers, "v2", cms).likely_causes[0]
    # v1 signed in the v2 order
    raw_v2_order = secret_message("v2", **BASE, **EXTRA["v2"]).encode()
    wrong_order = b64url_encode(signer.sign_cms_detached(raw_v2_order))
    check = _check(signers, "v1", wrong_order, redirect_uri=EXTRA["v2"]["redirect_uri"])
    assert "v2 order" in check.likely_causes[0]


def test_diagnosis_timezone_and_certificate(signers):
    signer = signers["openssl-gost256"]
    shifted = {
        **BASE,
        "timestamp": (NOW + timedelta(hours=3)).strftime("%Y.%m.%d %H:%M:%S +0000"),
    }  # Moscow wall time labelled +0000
    secret = client_secret("v2", signer, **shifted, **EXTRA["v2"])
    check = _check(signers, "v2", secret)
    assert any("shifted by +3 h" in c for c in check.likely_causes)
    # v1 CMS from another certificate than the registered one
    other = client_secret("v1", signers["openssl-gost512"], **BASE)
    check = _check(signers, "v1", other)
    assert "not the registered one" in check.likely_causes[0]
    # stale timestamp
    check = verify_client_secret(
        "v1",
        client_secret("v1", signer, **BASE),
        certificate=signer.certificate_der,
        now=NOW + timedelta(hours=5),
        **BASE,
    )
    assert not check.ok and "away from server time" in check.problems[0]


def test_missing_parameters_raise_007014(signers):
    signer = signers["cryptography-rsa"]
    with pytest.raises(EsiaError) as info:
        verify_client_secret("v2", "AAAA", certificate=signer.certificate_der, **BASE, **EXTRA["v2"])
    assert info.value.code == "ESIA-007014" and "client_certificate_hash" in info.value.detail
    with pytest.raises(EsiaError) as info:
        client_secret("v1", signer, **{**BASE, "client_id": ""})
    assert info.value.code == "ESIA-007014"
    with pytest.raises(EsiaError, match="UUIDv4"):
        client_secret("v1", signer, **{**BASE, "state": "1234"})


def test_cli_client_secret_and_verify_secret(pairs, capsys):
    pair = pairs["gost256"]
    common = [
        "--cert",
        str(pair.cert),
        "--client-id",
        BASE["client_id"],
        "--scope",
        BASE["scope"],
        "--state",
        BASE["state"],
        "--timestamp",
        esia_timestamp(),
        "--redirect-uri",
        "https://s/cb",
    ]
    assert (
        main(["esia", "client-secret", "--version", "v3", "--key", str(pair.key), *common, "--code", "C"])
        == 0
    )
    secret = capsys.readouterr().out.strip()
    h = client_certificate_hash(pair.cert_pem)
    assert (
        main(
            [
                "esia",
                "verify-secret",
                "--version",
                "v3",
                *common,
                "--code",
                "C",
                "--secret",
                secret,
                "--cert-hash",
                h,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("OK")
    assert (
        main(
            [
                "esia",
                "verify-secret",
                "--version",
                "v3",
                *common,
                "--refresh-token",
                "D",
                "--secret",
                secret,
                "--cert-hash",
                h,
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "ESIA-007053" in out
    sha1 = hashlib.sha1(pair.cert.read_bytes()).hexdigest()
    assert (
        main(
            [
                "esia",
                "verify-secret",
                "--version",
                "v3",
                *common,
                "--code",
                "C",
                "--secret",
                secret,
                "--cert-hash",
                sha1,
            ]
        )
        == 1
    )
    assert "likely cause:" in capsys.readouterr().out
    # --json output carries everything needed for the request; the key never appears
    assert main(["esia", "client-secret", "--version", "v2", "--key", str(pair.key), *common, "--json"]) == 0
    printed = capsys.readouterr().out
    assert '"client_certificate_hash": "' + h in printed
    assert "PRIVATE KEY" not in printed


def test_cli_command_signer_with_cryptopro_byte_order(pairs, reverse_tool, capsys):
    pair = pairs["gost256"]
    common = [
        "--cert",
        str(pair.cert),
        "--client-id",
        "SCHOOL-001",
        "--scope",
        "openid",
        "--state",
        BASE["state"],
        "--timestamp",
        esia_timestamp(),
        "--redirect-uri",
        "https://s/cb",
    ]
    raw_command = f"{reverse_tool} {pair.key} {{in}} {{out}}"
    assert (
        main(
            [
                "esia",
                "client-secret",
                "--version",
                "v2",
                *common,
                "--signer",
                "command",
                "--raw-command",
                raw_command,
                "--byte-order",
                "reverse",
            ]
        )
        == 0
    )
    secret = capsys.readouterr().out.strip()
    h = client_certificate_hash(pair.cert_pem)
    assert (
        main(["esia", "verify-secret", "--version", "v2", *common, "--secret", secret, "--cert-hash", h]) == 0
    )
    capsys.readouterr()
    # the same tool without the byte-order setting: rejected, and the verifier says why
    assert (
        main(
            [
                "esia",
                "client-secret",
                "--version",
                "v2",
                *common,
                "--signer",
                "command",
                "--raw-command",
                raw_command,
            ]
        )
        == 0
    )
    wrong = capsys.readouterr().out.strip()
    assert (
        main(["esia", "verify-secret", "--version", "v2", *common, "--secret", wrong, "--cert-hash", h]) == 1
    )
    assert "byte_order: reverse" in capsys.readouterr().out
    # no command configured: the error names the setting
    assert main(["esia", "client-secret", "--version", "v2", *common, "--signer", "command"]) == 1
    assert "raw_command" in capsys.readouterr().err


def test_esia_is_a_schoolgate_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["esia", "--help"])
    out = capsys.readouterr().out
    for command in ("cert-hash", "client-secret", "verify-secret", "decode-token", "explain", "validate"):
        assert command in out
