#!/usr/bin/python3
"""Check a PEM certificate chain and private key before nginx uses them (standard library only).

Report mode (preflight):   tls_pair_check.py --cert CHAIN --key KEY      -> JSON on stdout, exit 0
Validate mode (copy):      tls_pair_check.py --validate --cert CANDIDATE --key KEY  -> exit 1 on any problem

Installed by the schoolgate `tls` role; never prints key material.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import stat
import sys
import tempfile

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _no_password() -> str:
    raise ValueError("encrypted")


def check(cert: str, key: str) -> dict:
    result: dict = {"cert_exists": os.path.isfile(cert), "key_exists": os.path.isfile(key), "problems": []}
    if not result["cert_exists"]:
        result["problems"].append("cert_missing")
    if not result["key_exists"]:
        result["problems"].append("key_missing")
    if result["key_exists"]:
        mode = stat.S_IMODE(os.stat(key).st_mode)
        result["key_mode"] = format(mode, "04o")
        if mode & 0o077:
            result["problems"].append("key_mode")
    if result["problems"]:
        return result
    with open(cert, "rb") as handle:
        data = handle.read()
    blocks = _PEM_CERT.findall(data)
    result["chain_count"] = len(blocks)
    if not blocks:
        result["problems"].append("cert_not_pem")
        return result
    # Python decodes only files; the first block is the leaf.
    with tempfile.NamedTemporaryFile(suffix=".pem") as leaf:
        leaf.write(blocks[0] + b"\n")
        leaf.flush()
        try:
            info = ssl._ssl._test_decode_cert(leaf.name)
        except (ssl.SSLError, AttributeError, ValueError) as exc:
            info = {}
            result["decode_error"] = str(exc)
    result["not_after"] = info.get("notAfter")
    result["ocsp"] = list(info.get("OCSP", ()))
    result["san"] = [v for k, v in info.get("subjectAltName", ()) if k in ("DNS", "IP Address")]
    if result["not_after"]:
        import datetime

        expires = datetime.datetime.fromtimestamp(
            ssl.cert_time_to_seconds(result["not_after"]), tz=datetime.UTC
        )
        result["days_left"] = int((expires - datetime.datetime.now(tz=datetime.UTC)).total_seconds() // 86400)
        if result["days_left"] < 0:
            result["problems"].append("cert_expired")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # OpenSSL's SSL_CTX_check_private_key: the key must belong to the first certificate.
        ctx.load_cert_chain(cert, key, password=_no_password)
    except ValueError:
        result["problems"].append("key_encrypted")
    except ssl.SSLError as exc:
        reason = getattr(exc, "reason", "") or str(exc)
        result["load_error"] = reason
        result["problems"].append("key_mismatch" if "MISMATCH" in reason.upper() else "key_unreadable")
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--validate", action="store_true")
    args = parser.parse_args()
    result = check(args.cert, args.key)
    if args.validate:
        # The candidate is a temporary file written by Ansible: its mode is not ours to judge.
        problems = [p for p in result["problems"] if p != "key_mode"]
        if problems:
            print(
                f"certificate {args.cert} rejected: {', '.join(problems)} {result.get('load_error', '')}",
                file=sys.stderr,
            )
            return 1
        return 0
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
