#!/usr/bin/python
"""Ansible module tls_probe: prove a TLS endpoint's configuration with real handshakes."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tls_probe
short_description: Probe a TLS server with real handshakes and check it against a policy
description:
  - Connects to I(host):I(port) and performs one real TLS handshake per protocol version
    (SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3) with SNI, using Python's C(ssl) module (OpenSSL).
  - Old versions are offered with C(@SECLEVEL=0) on the client context. Without it OpenSSL 3 refuses to
    offer TLS 1.0/1.1 at all and a probe would wrongly report them as disabled. When the local OpenSSL
    cannot offer a version at all (SSLv3 on current Debian) the version is reported as
    C(unsupported_by_probe), never as C(refused).
  - Enumerates the TLS 1.2 cipher suites the server accepts (every suite the local OpenSSL can offer),
    reads the certificate chain the server sends, its expiry, key type and size, checks the host name
    against the subjectAltName and reads the C(Strict-Transport-Security) header. Optionally checks that
    plain HTTP redirects to HTTPS.
  - The C(chain_trusted) verdict always comes from a separate handshake that verifies the chain against
    the trust store (I(ca_path) or the system store). Verification is never switched off for that verdict;
    the per-version handshakes do not verify because they only report protocol support.
  - Certificates are parsed with the standard library only, so the module runs on a bare Debian host.
  - Policy options (I(min_version), I(forbid_ciphers), I(allowed_ciphers), I(min_days_valid),
    I(require_trusted), I(require_hsts), I(require_hostname_match)) fail the task and list every violation.
  - Read-only; never reports C(changed). Safe in check mode.
version_added: "0.1.0"
author: schoolgate TLS area
options:
  host:
    description: Address to connect to (name or IP).
    type: str
    required: true
  port:
    description: TLS port.
    type: int
    default: 443
  server_name:
    description:
      - Name sent as SNI and used for the host name check.
      - Defaults to I(host) unless I(host) is an IP address.
    type: str
  ca_path:
    description:
      - Trust store for the C(chain_trusted) verdict, a PEM file or an OpenSSL hashed directory.
        The system store is used when omitted.
    type: path
  timeout:
    description: Seconds allowed for each connection.
    type: float
    default: 5.0
  enumerate_ciphers:
    description: Enumerate the TLS 1.2 cipher suites the server accepts.
    type: bool
    default: true
  http_path:
    description: Path requested over TLS to read the C(Strict-Transport-Security) header.
    type: str
    default: /
  http_port:
    description:
      - When set, also connect to this plain-HTTP port and report whether it redirects to HTTPS.
    type: int
  min_version:
    description:
      - Fail when the server accepts any protocol older than this one, or none at least this new.
    type: str
    choices: [SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3]
  forbid_ciphers:
    description:
      - Fail when an accepted cipher suite matches one of these shell-style patterns
        (for example C(*-CBC-*), C(*SHA), C(DHE-*)). Compared with OpenSSL names.
    type: list
    elements: str
    default: []
  allowed_ciphers:
    description:
      - Fail when the server accepts a TLS 1.2 cipher suite that is not in this list (OpenSSL names).
        An empty list disables the check.
    type: list
    elements: str
    default: []
  min_days_valid:
    description: Fail when the server certificate expires in fewer days than this.
    type: int
  require_trusted:
    description: Fail when the chain does not verify against the trust store.
    type: bool
    default: false
  require_hsts:
    description: Fail when the C(Strict-Transport-Security) header is missing.
    type: bool
    default: false
  require_hostname_match:
    description: Fail when I(server_name) is not covered by the certificate's subjectAltName.
    type: bool
    default: false
notes:
  - Supports check mode; the module only reads.
  - The cipher enumeration can only find suites the probing OpenSSL is able to offer; RETURN value
    C(probe.tls12_ciphers_offerable) says how many that was.
  - TLS 1.3 suites cannot be chosen from Python, so only the negotiated TLS 1.3 suite is reported.
  - Traffic goes only to I(host); in the schoolgate lab that is 127.0.0.1 or a lab container.
"""

EXAMPLES = r"""
- name: Prove the portal is TLS 1.2+ with the Mozilla intermediate ciphers
  tls_probe:
    host: 127.0.0.1
    port: 443
    server_name: school.example.ru
    ca_path: /etc/nginx/schoolgate-tls/trust.pem
    http_port: 80
    min_version: TLSv1.2
    allowed_ciphers:
      - ECDHE-RSA-AES128-GCM-SHA256
      - ECDHE-RSA-AES256-GCM-SHA384
      - ECDHE-RSA-CHACHA20-POLY1305
      - DHE-RSA-AES128-GCM-SHA256
      - DHE-RSA-AES256-GCM-SHA384
      - DHE-RSA-CHACHA20-POLY1305
    forbid_ciphers: ["*-CBC-*", "*-SHA", "RC4-*", "*NULL*"]
    min_days_valid: 30
    require_trusted: true
    require_hsts: true
  register: portal_tls

- name: Show which protocols are accepted
  ansible.builtin.debug:
    msg: "{{ portal_tls.accepted_versions }} / expires in {{ portal_tls.certificate.days_left }} days"

- name: Audit only (never fail), e.g. across a fleet
  tls_probe:
    host: "{{ inventory_hostname }}"
    enumerate_ciphers: false
  register: audit_tls
"""

RETURN = r"""
host:
  description: Address probed.
  returned: always
  type: str
port:
  description: Port probed.
  returned: always
  type: int
server_name:
  description: SNI name sent (null for an IP address without I(server_name)).
  returned: always
  type: str
protocols:
  description:
    - One entry per version, C(status) one of C(accepted), C(refused), C(unsupported_by_probe), C(error),
      with the negotiated cipher when accepted and the OpenSSL reason otherwise.
  returned: always
  type: dict
  sample:
    SSLv3: {status: unsupported_by_probe, detail: "the local OpenSSL was built without SSLv3"}
    TLSv1: {status: refused, detail: "TLSV1_ALERT_PROTOCOL_VERSION"}
    TLSv1.2: {status: accepted, cipher: ECDHE-RSA-AES128-GCM-SHA256, bits: 128}
accepted_versions:
  description: Versions that completed a handshake, oldest first.
  returned: always
  type: list
  elements: str
  sample: [TLSv1.2, TLSv1.3]
refused_versions:
  description: Versions the server refused.
  returned: always
  type: list
  elements: str
unsupported_by_probe:
  description: Versions the local OpenSSL could not offer, so nothing is known about them.
  returned: always
  type: list
  elements: str
lowest_version:
  description: Oldest accepted version (null when none).
  returned: always
  type: str
tls12_ciphers:
  description: TLS 1.2 cipher suites the server accepted (OpenSSL names), in the order found.
  returned: always
  type: list
  elements: str
tls13_cipher:
  description: Suite negotiated with TLS 1.3, when accepted.
  returned: always
  type: str
certificate:
  description:
    - The leaf certificate the server sent. Keys C(subject), C(issuer) (RFC 4514-like strings),
      C(common_name), C(serial), C(not_before), C(not_after) (ISO 8601 UTC), C(days_left), C(key_type)
      (RSA, EC, Ed25519, Ed448, DSA, GOST2012-256, GOST2012-512), C(key_size), C(curve),
      C(signature_algorithm), C(san_dns), C(san_ip), C(is_ca), C(ocsp_urls), C(sha256).
  returned: when a handshake succeeded
  type: dict
chain:
  description: Every certificate the server sent, leaf first, each with the same keys as C(certificate).
  returned: when a handshake succeeded
  type: list
  elements: dict
chain_length:
  description: Number of certificates the server sent.
  returned: always
  type: int
chain_source:
  description: C(peer_chain) when the whole chain was read, C(leaf_only) when this Python cannot expose it.
  returned: always
  type: str
chain_complete:
  description: True when every certificate sent after the leaf issued the one before it.
  returned: always
  type: bool
chain_trusted:
  description: Verdict of a verifying handshake against the trust store (null when no handshake was possible).
  returned: always
  type: bool
chain_error:
  description: OpenSSL's verification error when C(chain_trusted) is false.
  returned: always
  type: str
hostname_match:
  description: Whether I(server_name) (or I(host)) is covered by the certificate's subjectAltName.
  returned: always
  type: bool
hsts:
  description:
    - C(present), C(value), C(max_age), C(include_subdomains), C(preload), C(status) of the HTTPS response.
  returned: always
  type: dict
http_redirect:
  description: C(status), C(location), C(to_https) of the plain-HTTP answer when I(http_port) is set.
  returned: when http_port is set
  type: dict
violations:
  description: Policy violations found (the task fails when this is not empty).
  returned: always
  type: list
  elements: str
probe:
  description: What the probing side could do, C(openssl), C(python), C(tls12_ciphers_offerable).
  returned: always
  type: dict
"""

import datetime
import fnmatch
import hashlib
import ipaddress
import socket
import ssl
import warnings

from ansible.module_utils.basic import AnsibleModule

VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_TLS_VERSION_ENUM = {
    "SSLv3": "SSLv3",
    "TLSv1": "TLSv1",
    "TLSv1.1": "TLSv1_1",
    "TLSv1.2": "TLSv1_2",
    "TLSv1.3": "TLSv1_3",
}
_HAS_FLAG = {
    "SSLv3": "HAS_SSLv3",
    "TLSv1": "HAS_TLSv1",
    "TLSv1.1": "HAS_TLSv1_1",
    "TLSv1.2": "HAS_TLSv1_2",
    "TLSv1.3": "HAS_TLSv1_3",
}
# Everything the local OpenSSL knows, including suites it would not offer at its default security level.
_ALL_CIPHERS = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
# OpenSSL reasons that mean "this client could not even offer the version": never report those as refused.
# (UNSUPPORTED_PROTOCOL is not one of them: it is the client rejecting an older version the server chose.)
_CLIENT_CANNOT_OFFER = ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "NO_SUITABLE_SIGNATURE_ALGORITHM")


class ProbeError(Exception):
    """The endpoint could not be probed at all (TCP connection failed, bad arguments)."""


# --------------------------------------------------------------------------------------------------
# Minimal DER reader: enough of X.509 to report subject, validity, key and SAN without `cryptography`,
# because target hosts may only have the standard library.

_OID_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.5": "serialNumber",
    "2.5.4.9": "street",
    "2.5.4.12": "title",
    "2.5.4.4": "SN",
    "2.5.4.42": "GN",
    "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.643.100.1": "OGRN",
    "1.2.643.3.131.1.1": "INN",
    "1.2.643.100.4": "INNLE",
    "1.2.643.100.3": "SNILS",
}
_KEY_ALGS = {
    "1.2.840.113549.1.1.1": "RSA",
    "1.2.840.10045.2.1": "EC",
    "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448",
    "1.2.840.10040.4.1": "DSA",
    "1.2.840.113549.1.1.10": "RSA-PSS",
    "1.2.643.7.1.1.1.1": "GOST2012-256",
    "1.2.643.7.1.1.1.2": "GOST2012-512",
}
_CURVES = {
    "1.2.840.10045.3.1.7": ("prime256v1", 256),
    "1.3.132.0.34": ("secp384r1", 384),
    "1.3.132.0.35": ("secp521r1", 521),
    "1.3.132.0.10": ("secp256k1", 256),
    "1.3.36.3.3.2.8.1.1.7": ("brainpoolP256r1", 256),
    "1.3.36.3.3.2.8.1.1.11": ("brainpoolP384r1", 384),
}
_SIG_ALGS = {
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.10": "rsassaPss",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.3.101.112": "ED25519",
    "1.3.101.113": "ED448",
    "1.2.643.7.1.1.3.2": "GOST R 34.10-2012 256",
    "1.2.643.7.1.1.3.3": "GOST R 34.10-2012 512",
}


class DerError(ValueError):
    pass


def _der_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """Return (tag, content_start, content_end) of the element at `pos`."""
    if pos + 2 > len(data):
        raise DerError("truncated DER element")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DerError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise DerError("DER element runs past the end")
    return tag, pos, end


def _der_children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    children = []
    pos = start
    while pos < end:
        tag, cstart, cend = _der_tlv(data, pos)
        children.append((tag, cstart, cend))
        pos = cend
    return children


def _oid(raw: bytes) -> str:
    if not raw:
        raise DerError("empty OID")
    parts = [raw[0] // 40, raw[0] % 40] if raw[0] < 80 else [2, raw[0] - 80]
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _der_string(tag: int, raw: bytes) -> str:
    if tag == 0x1E:
        return raw.decode("utf-16-be", "replace")
    if tag == 0x1C:
        return raw.decode("utf-32-be", "replace")
    if tag in (0x0C, 0x13, 0x16, 0x12, 0x1A):
        return raw.decode("utf-8", "replace")
    return raw.decode("latin-1")


def _der_time(tag: int, raw: bytes) -> datetime.datetime:
    text = raw.decode("ascii")
    fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
    return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)


def _der_name(data: bytes, start: int, end: int) -> tuple[str, list[tuple[str, str]]]:
    pairs = []
    for _set_tag, sstart, send in _der_children(data, start, end):
        for _seq_tag, astart, aend in _der_children(data, sstart, send):
            (_oid_tag, ostart, oend), (vtag, vstart, vend) = _der_children(data, astart, aend)[:2]
            oid = _oid(data[ostart:oend])
            pairs.append((_OID_NAMES.get(oid, oid), _der_string(vtag, data[vstart:vend])))
    text = ",".join(f"{k}={v}" for k, v in reversed(pairs))
    return text, pairs


def parse_certificate(der: bytes, now: datetime.datetime | None = None) -> dict:
    """Describe an X.509 certificate (DER) with the fields a TLS audit needs."""
    now = now or datetime.datetime.now(tz=datetime.timezone.utc)
    _tag, cstart, cend = _der_tlv(der, 0)
    _tbs_tag, tstart, tend = _der_children(der, cstart, cend)[0]
    fields = _der_children(der, tstart, tend)
    if fields and fields[0][0] == 0xA0:  # explicit version
        fields = fields[1:]
    serial_f, sig_f, issuer_f, validity_f, subject_f, spki_f = fields[:6]
    extensions = [f for f in fields[6:] if f[0] == 0xA3]

    sig_oid_tlv = _der_children(der, sig_f[1], sig_f[2])[0]
    sig_oid = _oid(der[sig_oid_tlv[1] : sig_oid_tlv[2]])
    issuer, _ = _der_name(der, issuer_f[1], issuer_f[2])
    subject, subject_pairs = _der_name(der, subject_f[1], subject_f[2])
    (nb_tag, nb_s, nb_e), (na_tag, na_s, na_e) = _der_children(der, validity_f[1], validity_f[2])
    not_before = _der_time(nb_tag, der[nb_s:nb_e])
    not_after = _der_time(na_tag, der[na_s:na_e])

    alg_f, bits_f = _der_children(der, spki_f[1], spki_f[2])[:2]
    alg_children = _der_children(der, alg_f[1], alg_f[2])
    key_oid = _oid(der[alg_children[0][1] : alg_children[0][2]])
    key_type = _KEY_ALGS.get(key_oid, key_oid)
    key_size = None
    curve = None
    if key_type in ("RSA", "RSA-PSS"):
        key_der = der[bits_f[1] + 1 : bits_f[2]]  # skip the BIT STRING's unused-bits byte
        _t, ks, ke = _der_tlv(key_der, 0)
        modulus_tlv = _der_children(key_der, ks, ke)[0]
        key_size = int.from_bytes(key_der[modulus_tlv[1] : modulus_tlv[2]], "big").bit_length()
    elif key_type == "EC" and len(alg_children) > 1 and alg_children[1][0] == 0x06:
        curve_oid = _oid(der[alg_children[1][1] : alg_children[1][2]])
        curve, key_size = _CURVES.get(curve_oid, (curve_oid, None))
    elif key_type in ("Ed25519", "GOST2012-256"):
        key_size = 256
    elif key_type in ("Ed448",):
        key_size = 456
    elif key_type == "GOST2012-512":
        key_size = 512

    san_dns: list[str] = []
    san_ip: list[str] = []
    ocsp_urls: list[str] = []
    is_ca = False
    for _t, es, ee in extensions:
        seq = _der_children(der, es, ee)[0]
        for _xt, xs, xe in _der_children(der, seq[1], seq[2]):
            parts = _der_children(der, xs, xe)
            ext_oid = _oid(der[parts[0][1] : parts[0][2]])
            value_tlv = parts[-1]
            value = der[value_tlv[1] : value_tlv[2]]
            if ext_oid == "2.5.29.17":
                _vt, vs, ve = _der_tlv(value, 0)
                for gtag, gs, gend in _der_children(value, vs, ve):
                    if gtag == 0x82:
                        san_dns.append(value[gs:gend].decode("ascii", "replace"))
                    elif gtag == 0x87:
                        san_ip.append(str(ipaddress.ip_address(value[gs:gend])))
            elif ext_oid == "2.5.29.19":
                _vt, vs, ve = _der_tlv(value, 0)
                inner = _der_children(value, vs, ve)
                is_ca = bool(inner and inner[0][0] == 0x01 and value[inner[0][1]] != 0)
            elif ext_oid == "1.3.6.1.5.5.7.1.1":
                _vt, vs, ve = _der_tlv(value, 0)
                for _adt, ads, ade in _der_children(value, vs, ve):
                    method, location = _der_children(value, ads, ade)[:2]
                    if _oid(value[method[1] : method[2]]) == "1.3.6.1.5.5.7.48.1" and location[0] == 0x86:
                        ocsp_urls.append(value[location[1] : location[2]].decode("ascii", "replace"))

    common_names = [v for k, v in subject_pairs if k == "CN"]
    return {
        "subject": subject,
        "issuer": issuer,
        "common_name": common_names[0] if common_names else None,
        "serial": format(int.from_bytes(der[serial_f[1] : serial_f[2]], "big"), "X"),
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": int((not_after - now).total_seconds() // 86400),
        "expired": not_after <= now,
        "key_type": key_type,
        "key_size": key_size,
        "curve": curve,
        "signature_algorithm": _SIG_ALGS.get(sig_oid, sig_oid),
        "san_dns": san_dns,
        "san_ip": san_ip,
        "is_ca": is_ca,
        "self_signed": subject == issuer,
        "ocsp_urls": ocsp_urls,
        "sha256": hashlib.sha256(der).hexdigest(),
    }


def hostname_matches(name: str, san_dns: list[str], san_ip: list[str]) -> bool:
    """RFC 6125 matching on subjectAltName only (CN is ignored, as browsers do)."""
    if not name:
        return False
    try:
        wanted_ip = ipaddress.ip_address(name)
    except ValueError:
        wanted_ip = None
    if wanted_ip is not None:
        return any(ipaddress.ip_address(ip) == wanted_ip for ip in san_ip)
    host = name.rstrip(".").lower()
    for pattern in san_dns:
        pattern = pattern.rstrip(".").lower()
        if pattern == host:
            return True
        # Wildcard only as the whole left-most label, matching exactly one label.
        if (
            pattern.startswith("*.")
            and "." in host
            and pattern.count(".") >= 2
            and host.split(".", 1)[1] == pattern[2:]
        ):
            return True
    return False


# --------------------------------------------------------------------------------------------------
# Handshakes


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason)
    return f"{type(exc).__name__}: {exc}"


def _protocol_context(version: str | None, ciphers: str = _ALL_CIPHERS) -> ssl.SSLContext:
    """Client context that offers exactly `version` (or everything) and does not verify.

    Used only to learn what the server accepts; trust is judged by `_verifying_handshake`.
    """
    with warnings.catch_warnings():
        # Python deprecates TLSv1/TLSv1.1 constants; offering them is the whole point of the probe.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        # OpenSSL 3 will not offer TLS < 1.2 (nor SHA-1 signatures) above security level 0.
        ctx.set_ciphers(ciphers)
        if version is not None:
            enum = getattr(ssl.TLSVersion, _TLS_VERSION_ENUM[version])
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = enum
            ctx.minimum_version = enum
        else:
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return ctx


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ProbeError(f"cannot connect to {host}:{port}: {exc}") from exc


def _peer_chain(tls: ssl.SSLSocket) -> tuple[list[bytes], str]:
    """DER certificates the server sent, leaf first."""
    getter = getattr(tls, "get_unverified_chain", None)  # public since Python 3.13
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)  # private 3.10-3.12
    if getter is not None:
        try:
            chain = getter() or []
            ders = [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]
            if ders:
                return ders, "peer_chain"
        except (AttributeError, ValueError, ssl.SSLError):
            pass
    leaf = tls.getpeercert(binary_form=True)
    return ([leaf] if leaf else []), "leaf_only"


def try_version(host: str, port: int, sni: str | None, version: str, timeout: float) -> dict:
    """One handshake offering exactly `version`."""
    if not getattr(ssl, _HAS_FLAG[version], False) or not hasattr(ssl.TLSVersion, _TLS_VERSION_ENUM[version]):
        return {
            "status": "unsupported_by_probe",
            "detail": f"the local OpenSSL ({ssl.OPENSSL_VERSION}) was built without {version}",
        }
    try:
        ctx = _protocol_context(version)
    except (ssl.SSLError, ValueError) as exc:
        return {"status": "unsupported_by_probe", "detail": f"cannot configure {version}: {_reason(exc)}"}
    sock = _connect(host, port, timeout)
    try:
        with ctx.wrap_socket(sock, server_hostname=sni) as tls:
            negotiated = tls.version()
            cipher = tls.cipher()
            if negotiated != version:
                return {"status": "error", "detail": f"offered only {version} but negotiated {negotiated}"}
            return {"status": "accepted", "cipher": cipher[0], "bits": cipher[2]}
    except ssl.SSLError as exc:
        reason = _reason(exc)
        if any(code in reason for code in _CLIENT_CANNOT_OFFER) and "ALERT" not in reason:
            return {
                "status": "unsupported_by_probe",
                "detail": f"the local OpenSSL refused to offer {version}: {reason}",
            }
        return {"status": "refused", "detail": reason}
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
        return {"status": "refused", "detail": f"connection closed during handshake: {exc}"}
    except TimeoutError:
        return {"status": "error", "detail": "timed out during handshake"}
    except OSError as exc:
        return {"status": "error", "detail": _reason(exc)}
    finally:
        sock.close()


def _handshake_details(host: str, port: int, sni: str | None, timeout: float) -> dict:
    """Handshake at the best common version, returning the served chain (DER)."""
    ctx = _protocol_context(None)
    sock = _connect(host, port, timeout)
    try:
        with ctx.wrap_socket(sock, server_hostname=sni) as tls:
            chain, source = _peer_chain(tls)
            return {"chain": chain, "chain_source": source, "version": tls.version()}
    finally:
        sock.close()


def offerable_tls12_ciphers() -> list[str]:
    ctx = _protocol_context("TLSv1.2")
    return [c["name"] for c in ctx.get_ciphers() if c.get("protocol") != "TLSv1.3"]


def enumerate_tls12_ciphers(host: str, port: int, sni: str | None, timeout: float) -> list[str]:
    """Offer every suite, drop the one the server picked, repeat until the server refuses.

    Needs one handshake per accepted suite plus one, instead of one per suite the client knows.
    """
    remaining = offerable_tls12_ciphers()
    accepted: list[str] = []
    while remaining:
        try:
            ctx = _protocol_context("TLSv1.2", ":".join(remaining) + ":@SECLEVEL=0")
        except ssl.SSLError:
            break
        sock = _connect(host, port, timeout)
        try:
            with ctx.wrap_socket(sock, server_hostname=sni) as tls:
                chosen = tls.cipher()[0]
        except (ssl.SSLError, OSError):
            break
        finally:
            sock.close()
        if chosen in accepted or chosen not in remaining:
            break  # defensive: a server echoing a suite we did not offer would loop forever
        accepted.append(chosen)
        remaining.remove(chosen)
    return accepted


def verifying_handshake(
    host: str, port: int, sni: str | None, ca_path: str | None, timeout: float
) -> tuple[bool | None, str | None]:
    """Chain verdict from a handshake that verifies against the trust store (default security level)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    # The host name is judged separately (hostname_match) so the chain verdict stays about the chain.
    ctx.check_hostname = False
    if ca_path:
        import os

        if os.path.isdir(ca_path):
            ctx.load_verify_locations(capath=ca_path)
        else:
            ctx.load_verify_locations(cafile=ca_path)
    else:
        ctx.load_default_certs()
    try:
        sock = _connect(host, port, timeout)
    except ProbeError as exc:
        return None, str(exc)
    try:
        with ctx.wrap_socket(sock, server_hostname=sni):
            return True, None
    except ssl.SSLCertVerificationError as exc:
        return False, exc.verify_message or _reason(exc)
    except ssl.SSLError as exc:
        return None, f"no verifying handshake possible: {_reason(exc)}"
    except OSError as exc:
        return None, f"no verifying handshake possible: {exc}"
    finally:
        sock.close()


def _http_request(sock: socket.socket, host_header: str, path: str, limit: int = 65536) -> tuple[int, dict]:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: schoolgate-tls-probe\r\n"
        "Connection: close\r\n\r\n"
    )
    sock.sendall(request.encode("ascii"))
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("iso-8859-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ProbeError(f"not an HTTP response: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers.setdefault(key.strip().lower(), value.strip())
    return int(parts[1]), headers


def read_hsts(host: str, port: int, sni: str | None, path: str, timeout: float) -> dict:
    """Read Strict-Transport-Security. The header is public, so no verification is needed to read it."""
    result: dict = {
        "present": False,
        "value": None,
        "max_age": None,
        "include_subdomains": False,
        "preload": False,
        "status": None,
        "error": None,
    }
    ctx = _protocol_context(None)
    try:
        sock = _connect(host, port, timeout)
        with ctx.wrap_socket(sock, server_hostname=sni) as tls:
            status, headers = _http_request(tls, sni or host, path)
    except (ProbeError, ssl.SSLError, OSError) as exc:
        result["error"] = _reason(exc)
        return result
    result["status"] = status
    value = headers.get("strict-transport-security")
    if value:
        result.update(present=True, value=value)
        for directive in (d.strip() for d in value.split(";")):
            lower = directive.lower()
            if lower.startswith("max-age="):
                try:
                    result["max_age"] = int(directive.split("=", 1)[1].strip().strip('"'))
                except ValueError:
                    result["max_age"] = None
            elif lower == "includesubdomains":
                result["include_subdomains"] = True
            elif lower == "preload":
                result["preload"] = True
    return result


def read_http_redirect(host: str, port: int, host_header: str, timeout: float) -> dict:
    result: dict = {"status": None, "location": None, "to_https": False, "error": None}
    try:
        with _connect(host, port, timeout) as sock:
            status, headers = _http_request(sock, host_header, "/schoolgate-probe?x=1")
    except (ProbeError, OSError) as exc:
        result["error"] = _reason(exc)
        return result
    location = headers.get("location")
    result.update(
        status=status,
        location=location,
        to_https=status in (301, 302, 307, 308)
        and bool(location)
        and location.lower().startswith("https://"),
    )
    return result


def _chain_complete(chain: list[dict]) -> bool:
    """Each certificate after the leaf must have issued the one before it."""
    if not chain:
        return False
    if len(chain) == 1:
        return chain[0]["self_signed"]
    return all(chain[i]["issuer"] == chain[i + 1]["subject"] for i in range(len(chain) - 1))


def probe(
    host: str,
    port: int = 443,
    server_name: str | None = None,
    ca_path: str | None = None,
    timeout: float = 5.0,
    enumerate_ciphers: bool = True,
    http_path: str = "/",
    http_port: int | None = None,
) -> dict:
    """Run every handshake and return the facts (no policy)."""
    if server_name is None:
        try:
            ipaddress.ip_address(host)
            sni = None
        except ValueError:
            sni = host
    else:
        sni = server_name
    # Fail early and clearly when nothing listens, instead of five "error" rows.
    _connect(host, port, timeout).close()

    protocols = {v: try_version(host, port, sni, v, timeout) for v in VERSIONS}
    accepted = [v for v in VERSIONS if protocols[v]["status"] == "accepted"]
    facts: dict = {
        "host": host,
        "port": port,
        "server_name": sni,
        "protocols": protocols,
        "accepted_versions": accepted,
        "refused_versions": [v for v in VERSIONS if protocols[v]["status"] == "refused"],
        "unsupported_by_probe": [v for v in VERSIONS if protocols[v]["status"] == "unsupported_by_probe"],
        "lowest_version": accepted[0] if accepted else None,
        "highest_version": accepted[-1] if accepted else None,
        "tls12_ciphers": [],
        "tls13_cipher": protocols["TLSv1.3"].get("cipher"),
        "certificate": None,
        "chain": [],
        "chain_length": 0,
        "chain_source": None,
        "chain_complete": False,
        "chain_trusted": None,
        "chain_error": None,
        "hostname_match": False,
        "hsts": None,
        "probe": {
            "openssl": ssl.OPENSSL_VERSION,
            "python": ".".join(str(p) for p in __import__("sys").version_info[:3]),
            "tls12_ciphers_offerable": len(offerable_tls12_ciphers()),
        },
    }
    if enumerate_ciphers and "TLSv1.2" in accepted:
        facts["tls12_ciphers"] = enumerate_tls12_ciphers(host, port, sni, timeout)
    if accepted:
        details = _handshake_details(host, port, sni, timeout)
        now = datetime.datetime.now(tz=datetime.timezone.utc)
        chain = [parse_certificate(der, now) for der in details["chain"]]
        facts.update(
            chain=chain,
            chain_length=len(chain),
            chain_source=details["chain_source"],
            certificate=chain[0] if chain else None,
            chain_complete=_chain_complete(chain),
        )
        if chain:
            facts["hostname_match"] = hostname_matches(sni or host, chain[0]["san_dns"], chain[0]["san_ip"])
        trusted, error = verifying_handshake(host, port, sni, ca_path, timeout)
        facts.update(chain_trusted=trusted, chain_error=error)
        facts["hsts"] = read_hsts(host, port, sni, http_path, timeout)
    if http_port:
        facts["http_redirect"] = read_http_redirect(host, http_port, sni or host, timeout)
    return facts


def check_policy(
    facts: dict,
    min_version: str | None = None,
    forbid_ciphers: list[str] | None = None,
    allowed_ciphers: list[str] | None = None,
    min_days_valid: int | None = None,
    require_trusted: bool = False,
    require_hsts: bool = False,
    require_hostname_match: bool = False,
) -> list[str]:
    violations: list[str] = []
    accepted = facts["accepted_versions"]
    if not accepted:
        violations.append("no protocol version completed a handshake")
    if min_version:
        floor = VERSIONS.index(min_version)
        too_old = [v for v in accepted if VERSIONS.index(v) < floor]
        if too_old:
            violations.append(f"accepts {', '.join(too_old)} (policy min_version {min_version})")
        if accepted and not any(VERSIONS.index(v) >= floor for v in accepted):
            violations.append(f"accepts nothing at or above min_version {min_version}")
        unknown = [v for v in facts["unsupported_by_probe"] if VERSIONS.index(v) < floor and v != "SSLv3"]
        if unknown:
            violations.append(f"could not test {', '.join(unknown)} with this OpenSSL; min_version unproven")
    negotiated = list(facts["tls12_ciphers"])
    for version in accepted:
        cipher = facts["protocols"][version].get("cipher")
        if cipher and cipher not in negotiated:
            negotiated.append(cipher)
    for pattern in forbid_ciphers or []:
        hits = [c for c in negotiated if fnmatch.fnmatchcase(c, pattern)]
        if hits:
            violations.append(
                f"accepts forbidden cipher(s) {', '.join(hits)} (forbid_ciphers pattern {pattern!r})"
            )
    if allowed_ciphers:
        extra = [c for c in facts["tls12_ciphers"] if c not in allowed_ciphers]
        if extra:
            violations.append(f"accepts TLS 1.2 cipher(s) outside allowed_ciphers: {', '.join(extra)}")
    cert = facts.get("certificate")
    if min_days_valid is not None:
        if cert is None:
            violations.append("no certificate read, min_days_valid unproven")
        elif cert["days_left"] < min_days_valid:
            violations.append(
                f"certificate expires in {cert['days_left']} days ({cert['not_after']}), "
                f"policy min_days_valid {min_days_valid}"
            )
    if require_trusted and facts.get("chain_trusted") is not True:
        violations.append(f"chain not trusted: {facts.get('chain_error') or 'no verifying handshake'}")
    if require_hsts and not (facts.get("hsts") or {}).get("present"):
        violations.append("no Strict-Transport-Security header")
    if require_hostname_match and not facts.get("hostname_match"):
        violations.append(f"certificate does not cover {facts.get('server_name') or facts['host']}")
    return violations


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "port": {"type": "int", "default": 443},
            "server_name": {"type": "str"},
            "ca_path": {"type": "path"},
            "timeout": {"type": "float", "default": 5.0},
            "enumerate_ciphers": {"type": "bool", "default": True},
            "http_path": {"type": "str", "default": "/"},
            "http_port": {"type": "int"},
            "min_version": {"type": "str", "choices": list(VERSIONS)},
            "forbid_ciphers": {"type": "list", "elements": "str", "default": []},
            "allowed_ciphers": {"type": "list", "elements": "str", "default": []},
            "min_days_valid": {"type": "int"},
            "require_trusted": {"type": "bool", "default": False},
            "require_hsts": {"type": "bool", "default": False},
            "require_hostname_match": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not p["http_path"].startswith("/"):
        module.fail_json(msg=f"http_path must start with '/', got {p['http_path']!r}")
    try:
        facts = probe(
            p["host"],
            p["port"],
            p["server_name"],
            p["ca_path"],
            p["timeout"],
            p["enumerate_ciphers"],
            p["http_path"],
            p["http_port"],
        )
    except ProbeError as exc:
        module.fail_json(msg=str(exc), host=p["host"], port=p["port"])
    except (ssl.SSLError, OSError, DerError) as exc:
        module.fail_json(
            msg=f"probe of {p['host']}:{p['port']} failed: {_reason(exc)}", host=p["host"], port=p["port"]
        )
    violations = check_policy(
        facts,
        p["min_version"],
        p["forbid_ciphers"],
        p["allowed_ciphers"],
        p["min_days_valid"],
        p["require_trusted"],
        p["require_hsts"],
        p["require_hostname_match"],
    )
    facts["violations"] = violations
    if violations:
        module.fail_json(
            msg=f"TLS policy violated on {p['host']}:{p['port']}: " + "; ".join(violations),
            changed=False,
            **facts,
        )
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
