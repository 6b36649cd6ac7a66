"""Error catalogue: ESIA-0070xx codes returned by the provider and schoolgate's own SG-ESIA-1xx codes.

Every error carries a Russian message (for school staff), an English message (for developers/logs) and a hint
that says what to check. ESIA texts are paraphrased from public client libraries and the «Методические
рекомендации по использованию ЕСИА»; they are not an official list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogueEntry:
    code: str
    oauth_error: str
    message_ru: str
    message_en: str
    hint: str


_ENTRIES: tuple[CatalogueEntry, ...] = (
    CatalogueEntry(
        "ESIA-007002",
        "invalid_request",
        "Несоответствие сертификата информационной системы",
        "The certificate does not match the one registered for the system",
        "Upload the certificate you sign with to the system's card on the ESIA technology portal.",
    ),
    CatalogueEntry(
        "ESIA-007004",
        "access_denied",
        "Пользователь или сервер авторизации отклонил запрос",
        "The resource owner or authorization server denied the request",
        "The user pressed «Отказать» or has no rights for the requested scope; ask them to retry.",
    ),
    CatalogueEntry(
        "ESIA-007005",
        "unauthorized_client",
        "Система-клиент не имеет права запрашивать маркер доступа этим способом",
        "The client is not authorized to request an access token using this method",
        "Check client_id (the system mnemonic), that the system is registered in this ESIA environment "
        "(test vs production) and the signature algorithm configured for it (RS256 / GOST3410_2012_256).",
    ),
    CatalogueEntry(
        "ESIA-007006",
        "invalid_scope",
        "Запрошенная область доступа (scope) указана неверно",
        "The requested scope is invalid, unknown or malformed",
        "Scopes are space-separated, lower-case, and must be approved for the system.",
    ),
    CatalogueEntry(
        "ESIA-007007",
        "server_error",
        "Внутренняя ошибка сервера авторизации",
        "The authorization server encountered an internal error",
        "Provider-side problem: retry later with backoff; the agent keeps data queued.",
    ),
    CatalogueEntry(
        "ESIA-007008",
        "temporarily_unavailable",
        "Сервер авторизации временно недоступен",
        "The authorization server is temporarily unable to handle the request",
        "Maintenance or overload: retry later with backoff.",
    ),
    CatalogueEntry(
        "ESIA-007011",
        "invalid_grant",
        "Код авторизации или маркер обновления недействителен, просрочен или отозван",
        "The provided authorization grant or refresh token is invalid, expired, revoked, "
        "or was issued to another client",
        "Codes are single-use and short-lived; exchange them at once, and use the newest refresh token.",
    ),
    CatalogueEntry(
        "ESIA-007012",
        "unsupported_grant_type",
        "Тип гранта не поддерживается",
        "The authorization grant type is not supported",
        "grant_type must be authorization_code, refresh_token or client_credentials.",
    ),
    CatalogueEntry(
        "ESIA-007014",
        "invalid_request",
        "Запрос не содержит обязательного параметра",
        "The request does not contain the mandatory parameter",
        "v2/v3 need client_certificate_hash; all versions need client_id, scope, timestamp, state, "
        "client_secret (and redirect_uri for v2+).",
    ),
    CatalogueEntry(
        "ESIA-007015",
        "invalid_request",
        "Неверное время запроса (timestamp)",
        "The request timestamp is invalid or too far from the server time",
        "timestamp must be 'yyyy.MM.dd HH:mm:ss +0000' and the server clock must be in sync (chrony).",
    ),
    CatalogueEntry(
        "ESIA-007019",
        "access_denied",
        "Нет разрешения на доступ к запрошенным данным (noGrants)",
        "The system has no grant for the requested scope (noGrants)",
        "Request the scope for the system on the technology portal, or drop it from the request.",
    ),
    CatalogueEntry(
        "ESIA-007023",
        "invalid_request",
        "Неверный адрес возврата (redirect_uri)",
        "redirect_uri does not match the registered one",
        "redirect_uri must equal, byte for byte, one registered for the system, and be the same string "
        "that was signed.",
    ),
    CatalogueEntry(
        "ESIA-007053",
        "access_denied",
        "client_secret сформирован некорректно (clientSecretWrong)",
        "client_secret is wrong: it does not match the certificate, the system, "
        "or the certificate is inactive",
        "Hash computed over PEM or with SHA-1? client_certificate_hash must be GOST R 34.11-2012-256 "
        "(Streebog) over the DER certificate, 64 hex chars. Also check the signed string's order for this "
        "version, the byte order of the signature (CryptoPro vs OpenSSL) and that the certificate is "
        "registered and active. Run `schoolgate esia verify-secret` to see which part differs.",
    ),
    # schoolgate's own codes (never sent by ESIA)
    CatalogueEntry(
        "SG-ESIA-101",
        "",
        "Не найден движок ГОСТ для OpenSSL",
        "OpenSSL GOST engine is not available",
        "Install the Debian package libengine-gost-openssl (apt-get install libengine-gost-openssl), or set "
        "the signer's 'engine' setting.",
    ),
    CatalogueEntry(
        "SG-ESIA-102",
        "",
        "Не найдена программа openssl",
        "The openssl binary was not found",
        "Install the Debian package openssl or set SCHOOLGATE_OPENSSL / the signer's 'openssl' setting.",
    ),
    CatalogueEntry(
        "SG-ESIA-103",
        "",
        "Ошибка программы подписи",
        "The signing tool failed",
        "Check the signer's 'command' setting, the key container and its PIN; run the command by hand.",
    ),
    CatalogueEntry(
        "SG-ESIA-104",
        "",
        "Не установлена библиотека cryptography",
        "The Python package 'cryptography' is required for RSA/ECDSA",
        "Install python3-cryptography (Debian) or use signer type 'openssl-gost'/'command'.",
    ),
    CatalogueEntry(
        "SG-ESIA-105",
        "",
        "Закрытый ключ не соответствует сертификату",
        "The private key does not match the certificate",
        "Use the key pair the certificate was issued for; compare public keys with "
        "`openssl pkey -pubout` and `openssl x509 -pubkey`.",
    ),
    CatalogueEntry(
        "SG-ESIA-106",
        "",
        "Срок действия сертификата истёк или ещё не начался",
        "The certificate is expired or not yet valid",
        "Renew the signing certificate at the accredited CA (УЦ) and register the new one in ESIA.",
    ),
    CatalogueEntry(
        "SG-ESIA-107",
        "",
        "Подпись не прошла проверку",
        "The signature does not verify",
        "See the details for which signed part differs.",
    ),
    CatalogueEntry(
        "SG-ESIA-108",
        "",
        "Не удалось прочитать сертификат или ключ",
        "Certificate or key could not be read",
        "Expect PEM or DER X.509; keys in PEM (PKCS#8). Keys exported from CryptoPro need conversion.",
    ),
    CatalogueEntry(
        "SG-ESIA-109",
        "",
        "Неподдерживаемый алгоритм",
        "Unsupported algorithm",
        "Supported: RSA (RS256), ECDSA P-256 (ES256), GOST R 34.10-2012 256/512.",
    ),
    CatalogueEntry(
        "SG-ESIA-110",
        "",
        "Маркер доступа недействителен",
        "The access token is invalid",
        "See the details: malformed, wrong signature, expired, wrong issuer or client_id.",
    ),
    CatalogueEntry(
        "SG-ESIA-111",
        "",
        "Неверные параметры запроса",
        "Invalid request parameters",
        "See the details for the parameter and the expected format.",
    ),
    CatalogueEntry(
        "SG-ESIA-120",
        "",
        "Неверная кодировка base64",
        "Invalid base64/base64url data",
        "Values are base64url; both padded and unpadded forms are accepted.",
    ),
    CatalogueEntry(
        "SG-ESIA-130",
        "",
        "Недопустимый XML-документ",
        "Unsafe or oversized XML document",
        "DTDs, entities and external references are refused; documents must stay under the size limit.",
    ),
)

CATALOGUE: dict[str, CatalogueEntry] = {entry.code: entry for entry in _ENTRIES}

_CODE_RE = re.compile(r"(ESIA-\d{6}|SG-ESIA-\d{3})")


def normalize_code(code: str) -> str:
    """Accept 'ESIA-007053', '007053', '7053', 'esia-007053' and return the canonical code."""
    text = code.strip().upper()
    found = _CODE_RE.search(text)
    if found:
        return found.group(1)
    if text.isdigit():
        return f"ESIA-{int(text):06d}"
    return text


class EsiaError(Exception):
    """An ESIA protocol error with Russian/English messages, a hint and optional details."""

    def __init__(self, code: str, message_ru: str, message_en: str, hint: str = "", detail: str = "") -> None:
        self.code = code
        self.message_ru = message_ru
        self.message_en = message_en
        self.hint = hint
        self.detail = detail
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.code}: {self.message_en}"
        if self.detail:
            text += f" ({self.detail})"
        return text

    @classmethod
    def from_code(cls, code: str, detail: str = "") -> EsiaError:
        canonical = normalize_code(code)
        entry = CATALOGUE.get(canonical)
        if entry is None:
            return cls(canonical, "Неизвестная ошибка ЕСИА", "Unknown ESIA error", "", detail)
        return cls(entry.code, entry.message_ru, entry.message_en, entry.hint, detail)

    # Alias that reads better at call sites raising schoolgate's own codes.
    local = from_code

    @classmethod
    def from_response(cls, body: dict) -> EsiaError:
        """Build from an ESIA JSON error body ``{"error": ..., "error_description": "ESIA-0070xx: ..."}``."""
        description = str(body.get("error_description", ""))
        found = _CODE_RE.search(description.upper())
        code = found.group(1) if found else f"ESIA-{body.get('error', 'unknown')}"
        return cls.from_code(code, detail=description)

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "message_ru": self.message_ru,
            "message_en": self.message_en,
            "hint": self.hint,
            "detail": self.detail,
        }

    def explain(self) -> str:
        return format_explanation(self.code, self.message_ru, self.message_en, self.hint, self.detail)


def format_explanation(code: str, ru: str, en: str, hint: str, detail: str = "") -> str:
    lines = [code, f"  RU: {ru}", f"  EN: {en}"]
    if detail:
        lines.append(f"  details: {detail}")
    if hint:
        lines.append(f"  hint: {hint}")
    return "\n".join(lines)


def explain(code: str) -> str:
    """Human-readable explanation of a code; raises KeyError for codes not in the catalogue."""
    entry = CATALOGUE[normalize_code(code)]
    return format_explanation(entry.code, entry.message_ru, entry.message_en, entry.hint)
