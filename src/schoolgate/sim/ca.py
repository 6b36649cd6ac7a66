"""The accredited CA stand-in (УЦ): issues signing certificates from CSRs with a GOST R 34.10-2012 root.

A school identifies itself with its regional access code (X-Access-Code), as it would with its contract at a
real УЦ. The CSR's self-signature is checked (proof of possession); the private key never comes here.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ..esia import certhash
from ..esia.errors import EsiaError
from .common import BAD_BODY, SimError, ctx, not_found, ok, read_json, require_object
from .keys import MAX_CERT_DAYS
from .logs import log
from .region import dossier_for


async def ca_certificate(request: web.Request) -> web.Response:
    pem = ctx(request).keys.ca_cert.read_bytes()
    return web.Response(body=pem, content_type="application/x-pem-file")


def _public(pem: str, info: dict) -> dict:
    return {
        "serial": str(info.get("serial")),
        "subject": info.get("subject"),
        "issuer": info.get("issuer"),
        "not_after": str(info.get("not_after")),
        "algorithm": info.get("algorithm"),
        "certificate": pem,
    }


async def issue(request: web.Request) -> web.Response:
    dossier = dossier_for(request)
    data = require_object(await read_json(request), "csr")
    csr = data["csr"]
    if not isinstance(csr, str) or "BEGIN CERTIFICATE REQUEST" not in csr or len(csr) > 64 * 1024:
        raise SimError(400, "invalid_request", BAD_BODY, "csr must be a PEM certificate request")
    days = data.get("days", 365)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_CERT_DAYS:
        raise SimError(400, "invalid_request", BAD_BODY, f"days must be an integer 1..{MAX_CERT_DAYS}")
    sim = ctx(request)
    loop = asyncio.get_running_loop()
    try:
        # openssl runs in a thread: issuing must not stall the intake on the event loop.
        cert = await loop.run_in_executor(None, lambda: sim.keys.issue_certificate(csr.encode(), days=days))
        info = certhash.certificate_info(cert)
        digest = certhash.client_certificate_hash(cert)
    except EsiaError as exc:
        raise SimError(400, "invalid_request", "SIM-400", f"CSR refused: {exc}") from exc
    pem = cert.decode()
    sim.store.execute(
        "INSERT INTO issued_certificates(serial, subject, not_after, certificate_pem, created_at)"
        " VALUES (?,?,?,?,?)",
        (str(info.get("serial")), str(info.get("subject")), str(info.get("not_after")), pem, time.time()),
    )
    log("ca.issued", serial=str(info.get("serial")), dossier_id=dossier["dossier_id"], days=days)
    body = _public(pem, info)
    body.update(chain=sim.keys.ca_cert.read_text(), certificate_hash=digest)
    return ok(body, status=201)


async def get_issued(request: web.Request) -> web.Response:
    row = ctx(request).store.one(
        "SELECT certificate_pem FROM issued_certificates WHERE serial = ?", (request.match_info["serial"],)
    )
    if row is None:
        raise not_found("certificate")
    pem = row["certificate_pem"]
    return ok(_public(pem, certhash.certificate_info(pem.encode())))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/ca/v1/ca.crt", ca_certificate),
        web.post("/ca/v1/certificates", issue),
        web.get("/ca/v1/certificates/{serial}", get_issued),
    ]
