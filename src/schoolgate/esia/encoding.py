"""base64url helpers.

ESIA public clients disagree on padding. We *emit* unpadded base64url (RFC 7515 §2 style, what ESIA
examples show) and *accept* both padded and unpadded on input, as well as standard base64 ('+' and '/').
"""

from __future__ import annotations

import base64
import binascii

from .errors import EsiaError


def b64url_encode(data: bytes, *, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode("ascii")
    return text if padded else text.rstrip("=")


def b64url_decode(text: str | bytes, *, what: str = "value") -> bytes:
    """Decode base64url or base64, padded or not; whitespace is ignored."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise EsiaError.local("SG-ESIA-120", detail=f"{what}: not ASCII") from exc
    cleaned = "".join(text.split()).replace("+", "-").replace("/", "_").rstrip("=")
    if len(cleaned) % 4 == 1:
        raise EsiaError.local("SG-ESIA-120", detail=f"{what}: impossible base64 length {len(cleaned)}")
    try:
        return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError) as exc:
        raise EsiaError.local("SG-ESIA-120", detail=f"{what}: {exc}") from exc
