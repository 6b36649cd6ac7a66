"""``schoolgate esia ...``: diagnostics for the ESIA protocol core."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .errors import CATALOGUE, EsiaError, explain, normalize_code


def register(subparsers: Any) -> None:
    esia = subparsers.add_parser("esia", help="ESIA protocol tools: certificate hash, client_secret, tokens")
    sub = esia.add_subparsers(dest="esia_command", metavar="ESIA_COMMAND")
    sub.required = True

    p = sub.add_parser("cert-hash", help="client_certificate_hash (Streebog-256 over DER) of a certificate")
    p.add_argument("cert", type=Path)
    p.add_argument("--hash-alg", choices=["gost12_256", "sha256"], default="gost12_256")
    p.add_argument("--info", action="store_true", help="also print subject, issuer, validity, algorithm")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cert_hash)

    p = sub.add_parser("client-secret", help="build a client_secret (v1 CMS, v2/v3 raw signature)")
    _secret_args(p)
    p.add_argument("--key", type=Path, help="private key (PEM); not needed for --signer command")
    p.add_argument("--signer", choices=["openssl-gost", "cryptography", "command", "auto"], default="auto")
    p.add_argument("--engine", default="gost", help="OpenSSL engine for GOST (default gost)")
    p.add_argument("--raw-command", help="command signer: raw signature command ({in} {out} {cert})")
    p.add_argument("--cms-command", help="command signer: detached CMS command")
    p.add_argument("--byte-order", choices=["as-is", "reverse"], default="as-is")
    p.add_argument("--json", action="store_true", help="print all request parameters as JSON")
    p.set_defaults(handler=_client_secret)

    p = sub.add_parser("verify-secret", help="verify a client_secret and explain which part mismatched")
    _secret_args(p)
    p.add_argument("--secret", required=True, help="the client_secret (base64url, padded or not)")
    p.add_argument("--cert-hash", help="client_certificate_hash sent with the request (v2/v3)")
    p.add_argument("--max-skew", type=int, default=3600, help="allowed timestamp skew in seconds")
    p.add_argument("--accept-reversed", action="store_true", help="accept byte-reversed raw signatures")
    p.set_defaults(handler=_verify_secret)

    p = sub.add_parser("decode-token", help="decode a JWT access token, optionally verifying it")
    p.add_argument("token", help="the token, or - to read it from stdin")
    p.add_argument("--verify-with", type=Path, action="append", default=[], metavar="CERT")
    p.add_argument("--issuer", help="expected iss (default: not checked)")
    p.add_argument("--client-id", help="expected client_id")
    p.add_argument("--leeway", type=int, default=30)
    p.add_argument("--gost-byte-order", choices=["as-is", "reverse"], default="as-is")
    p.set_defaults(handler=_decode_token)

    p = sub.add_parser("explain", help="explain an ESIA-0070xx or SG-ESIA code (Russian + English + hint)")
    p.add_argument("code", nargs="?", help="e.g. ESIA-007053; omit to list all codes")
    p.set_defaults(handler=_explain)

    p = sub.add_parser("validate", help="validate a payload file against a contract")
    p.add_argument("kind", choices=sorted(__import__(f"{__package__}.contracts", fromlist=["KINDS"]).KINDS))
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=["json", "xml", "csv"], default=None, help="default: from extension")
    p.set_defaults(handler=_validate)


def _secret_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", choices=["v1", "v2", "v3"], required=True, dest="secret_version")
    p.add_argument("--cert", type=Path, required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--scope", required=True, help="space-separated scopes, exactly as sent")
    p.add_argument("--state", help="UUIDv4 (default: a new one)")
    p.add_argument("--timestamp", help="'yyyy.MM.dd HH:mm:ss +0000' (default: now)")
    p.add_argument("--redirect-uri")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--code")
    group.add_argument("--refresh-token")


def _fail(exc: EsiaError) -> int:
    print(exc.explain(), file=sys.stderr)
    return 1


def _cert_hash(args: argparse.Namespace) -> int:
    from .certhash import certificate_info, client_certificate_hash

    try:
        data = args.cert.read_bytes()
        digest = client_certificate_hash(data, hash_alg=args.hash_alg)
        info = certificate_info(data) if args.info or args.json else None
    except OSError as exc:
        print(f"cannot read {args.cert}: {exc.strerror}", file=sys.stderr)
        return 1
    except EsiaError as exc:
        return _fail(exc)
    if args.json:
        print(
            json.dumps(
                {"client_certificate_hash": digest, "hash_alg": args.hash_alg, **(info or {})},
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    print(digest)
    if info:
        for key in ("subject", "issuer", "serial", "not_before", "not_after", "days_left", "algorithm"):
            print(f"{key}: {info[key]}")
    return 0


def _defaults(args: argparse.Namespace) -> tuple[str, str]:
    from .secret import esia_timestamp, new_state

    return args.state or new_state(), args.timestamp or esia_timestamp()


def _client_secret(args: argparse.Namespace) -> int:
    from .certhash import client_certificate_hash, is_gost
    from .secret import client_secret
    from .signing import make_signer

    state, timestamp = _defaults(args)
    try:
        kind = args.signer
        if kind == "auto":
            kind = (
                "command"
                if (args.raw_command or args.cms_command)
                else ("openssl-gost" if is_gost(args.cert.read_bytes()) else "cryptography")
            )
        config: dict[str, Any] = {
            "type": kind,
            "cert": str(args.cert),
            "engine": args.engine,
            "raw_command": args.raw_command,
            "cms_command": args.cms_command,
            "byte_order": args.byte_order,
        }
        if args.key:
            config["key"] = str(args.key)
        password = os.environ.get("SCHOOLGATE_ESIA_KEY_PASSWORD")
        if password:
            config["password"] = password
        signer = make_signer(config)
        secret = client_secret(
            args.secret_version,
            signer,
            client_id=args.client_id,
            scope=args.scope,
            timestamp=timestamp,
            state=state,
            redirect_uri=args.redirect_uri,
            code=args.code,
            refresh_token=args.refresh_token,
        )
        cert_hash = client_certificate_hash(signer.certificate_der) if args.secret_version != "v1" else None  # noqa: S105
    except OSError as exc:
        print(f"cannot read: {exc}", file=sys.stderr)
        return 1
    except EsiaError as exc:
        return _fail(exc)
    if args.json:
        out = {
            "client_id": args.client_id,
            "scope": args.scope,
            "timestamp": timestamp,
            "state": state,
            "client_secret": secret,
        }
        if args.redirect_uri:
            out["redirect_uri"] = args.redirect_uri
        if cert_hash:
            out["client_certificate_hash"] = cert_hash
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(secret)
    return 0


def _verify_secret(args: argparse.Namespace) -> int:
    from .secret import verify_client_secret

    if not args.state or not args.timestamp:
        print("verify-secret needs --state and --timestamp exactly as sent", file=sys.stderr)
        return 2
    try:
        check = verify_client_secret(
            args.secret_version,
            args.secret,
            certificate=args.cert.read_bytes(),
            client_id=args.client_id,
            scope=args.scope,
            timestamp=args.timestamp,
            state=args.state,
            redirect_uri=args.redirect_uri,
            code=args.code,
            refresh_token=args.refresh_token,
            client_certificate_hash=args.cert_hash,
            max_skew_s=args.max_skew,
            accept_reversed=args.accept_reversed,
        )
    except OSError as exc:
        print(f"cannot read {args.cert}: {exc.strerror}", file=sys.stderr)
        return 1
    except EsiaError as exc:
        return _fail(exc)
    if check.ok:
        print(f"OK: {args.secret_version} client_secret verifies with {args.cert}")
        return 0
    print(f"MISMATCH ({args.secret_version}):")
    for problem in check.problems:
        print(f"  - {problem}")
    for cause in check.likely_causes:
        print(f"  likely cause: {cause}")
    print(explain("ESIA-007053"))
    return 1


def _decode_token(args: argparse.Namespace) -> int:
    from .tokens import decode_token, verify_token

    token = sys.stdin.read().strip() if args.token == "-" else args.token  # noqa: S105
    try:
        header, claims, _sig = decode_token(token)
        print(json.dumps({"header": header, "claims": claims}, ensure_ascii=False, indent=2))
        if args.verify_with:
            certs = [path.read_bytes() for path in args.verify_with]
            verify_token(
                token,
                certs,
                issuer=args.issuer,
                client_id=args.client_id,
                leeway=args.leeway,
                gost_byte_order=args.gost_byte_order,
            )
            print("signature and claims: OK")
    except OSError as exc:
        print(f"cannot read certificate: {exc}", file=sys.stderr)
        return 1
    except EsiaError as exc:
        return _fail(exc)
    return 0


def _explain(args: argparse.Namespace) -> int:
    if not args.code:
        for code, entry in CATALOGUE.items():
            print(f"{code}  {entry.message_en}")
        return 0
    try:
        print(explain(args.code))
    except KeyError:
        print(
            f"{normalize_code(args.code)} is not in the catalogue; known: {', '.join(CATALOGUE)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .contracts import validate

    fmt = args.format or {".xml": "xml", ".csv": "csv"}.get(args.file.suffix.lower(), "json")
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    errors = validate(args.kind, data, fmt)
    for error in errors:
        print(error)
    if not errors:
        print(f"OK: {args.file} is a valid {args.kind} payload")
    return 1 if errors else 0
