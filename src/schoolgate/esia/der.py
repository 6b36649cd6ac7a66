"""Just enough DER/PEM handling to read X.509 certificates with the standard library.

Target hosts may lack ``cryptography``; ``cryptography`` also cannot read GOST public keys. This reader
extracts what the protocol needs: the DER bytes, algorithms, names, serial and validity.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import EsiaError

_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.S)

OIDS = {
    "1.2.840.113549.1.1.1": "rsaEncryption",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.10045.2.1": "ecPublicKey",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.3.1.7": "prime256v1",
    "1.3.132.0.34": "secp384r1",
    "1.2.643.7.1.1.1.1": "gost2012_256",
    "1.2.643.7.1.1.1.2": "gost2012_512",
    "1.2.643.7.1.1.3.2": "gost2012_256-signature",
    "1.2.643.7.1.1.3.3": "gost2012_512-signature",
    "1.2.643.2.2.19": "gost2001",
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.42": "GN",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.2.643.100.1": "OGRN",
    "1.2.643.100.3": "SNILS",
    "1.2.643.3.131.1.1": "INN",
    "1.2.643.100.4": "INNLE",
    "1.2.643.100.5": "OGRNIP",
}


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes
    end: int  # offset just after this element in the parent buffer


def read_tlv(data: bytes, offset: int = 0) -> Tlv:
    try:
        tag = data[offset]
        length = data[offset + 1]
        pos = offset + 2
        if tag & 0x1F == 0x1F:
            raise ValueError("multi-byte tags are not used in certificates")
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4:
                raise ValueError("unsupported length encoding")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        end = pos + length
        if end > len(data):
            raise ValueError("element runs past the end of the data")
        return Tlv(tag, data[pos:end], end)
    except (IndexError, ValueError) as exc:
        raise EsiaError.local("SG-ESIA-108", detail=f"DER: {exc}") from exc


def children(value: bytes) -> list[Tlv]:
    items, pos = [], 0
    while pos < len(value):
        item = read_tlv(value, pos)
        items.append(item)
        pos = item.end
    return items


def decode_oid(value: bytes) -> str:
    first = value[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    acc = 0
    for byte in value[1:]:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(acc)
            acc = 0
    return ".".join(str(p) for p in parts)


def decode_time(tlv: Tlv) -> datetime:
    text = tlv.value.decode("ascii")
    if tlv.tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _decode_string(tlv: Tlv) -> str:
    if tlv.tag == 0x1E:  # BMPString
        return tlv.value.decode("utf-16-be")
    return tlv.value.decode("utf-8", errors="replace")


def decode_name(value: bytes) -> list[tuple[str, str]]:
    result = []
    for rdn in children(value):
        for atv in children(rdn.value):
            oid_tlv, val_tlv = children(atv.value)[:2]
            oid = decode_oid(oid_tlv.value)
            result.append((OIDS.get(oid, oid), _decode_string(val_tlv)))
    return result


def format_name(parts: list[tuple[str, str]]) -> str:
    return ", ".join(f"{k}={v}" for k, v in parts)


def pem_blocks(data: bytes, label: str | None = None) -> list[bytes]:
    blocks = []
    for match in _PEM_RE.finditer(data):
        if label is None or match.group(1).decode() == label:
            try:
                blocks.append(base64.b64decode(b"".join(match.group(2).split()), validate=True))
            except binascii.Error as exc:
                raise EsiaError.local("SG-ESIA-108", detail=f"PEM body: {exc}") from exc
    return blocks


def certificate_der(cert: bytes | str) -> bytes:
    """Return the DER encoding of a certificate given as PEM text/bytes or DER bytes (first cert if many)."""
    data = cert.encode("ascii") if isinstance(cert, str) else bytes(cert)
    if b"-----BEGIN" in data:
        blocks = pem_blocks(data, "CERTIFICATE")
        if not blocks:
            raise EsiaError.local("SG-ESIA-108", detail="no 'BEGIN CERTIFICATE' block in PEM data")
        data = blocks[0]
    outer = read_tlv(data)
    if outer.tag != 0x30:
        raise EsiaError.local("SG-ESIA-108", detail="not a DER certificate (no outer SEQUENCE)")
    return data[: outer.end]


def certificate_to_pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True)
class ParsedCertificate:
    der: bytes
    serial: int
    signature_algorithm: str
    issuer: list[tuple[str, str]]
    subject: list[tuple[str, str]]
    not_before: datetime
    not_after: datetime
    key_algorithm: str
    key_parameters: str


def parse_certificate(cert: bytes | str) -> ParsedCertificate:
    der = certificate_der(cert)
    try:
        tbs, sig_alg, _sig = children(read_tlv(der).value)[:3]
        fields = children(tbs.value)
        if fields[0].tag == 0xA0:  # explicit [0] version
            fields = fields[1:]
        serial_tlv, _alg, issuer, validity, subject, spki = fields[:6]
        not_before, not_after = (decode_time(t) for t in children(validity.value)[:2])
        spki_alg = children(children(spki.value)[0].value)
        key_oid = decode_oid(spki_alg[0].value)
        params = ""
        if len(spki_alg) > 1 and spki_alg[1].tag == 0x06:
            params = decode_oid(spki_alg[1].value)
        elif len(spki_alg) > 1 and spki_alg[1].tag == 0x30:
            inner = children(spki_alg[1].value)
            if inner and inner[0].tag == 0x06:
                params = decode_oid(inner[0].value)
        sig_oid = decode_oid(children(sig_alg.value)[0].value)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise EsiaError.local("SG-ESIA-108", detail=f"certificate structure: {exc}") from exc
    return ParsedCertificate(
        der=der,
        serial=int.from_bytes(serial_tlv.value, "big", signed=True),
        signature_algorithm=OIDS.get(sig_oid, sig_oid),
        issuer=decode_name(issuer.value),
        subject=decode_name(subject.value),
        not_before=not_before,
        not_after=not_after,
        key_algorithm=OIDS.get(key_oid, key_oid),
        key_parameters=OIDS.get(params, params),
    )
