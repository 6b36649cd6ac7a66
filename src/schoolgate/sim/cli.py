"""`schoolgate sim ...`: run the provider simulator."""

from __future__ import annotations

import argparse
import os
import ssl
from pathlib import Path

from .. import aio

DEFAULT_STATE_DIR = Path(os.environ.get("SCHOOLGATE_SIM_STATE", "/var/lib/schoolgate-sim"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sim", help="provider simulator (ESIA, service registry, data intake)")
    sub = parser.add_subparsers(dest="sim_command", metavar="SIM_COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="run the simulator HTTP(S) server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="SQLite database and keys")
    serve.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate chain (PEM)")
    serve.add_argument("--tls-key", type=Path, help="private key of --tls-cert")
    serve.add_argument(
        "--esia-key-type",
        choices=("gost", "rsa"),
        default="gost",
        help="algorithm of the simulated ESIA's token signing keys (GOST3410_2012_256 or RS256)",
    )
    serve.add_argument("--esia-token-lifetime", type=int, default=3600, metavar="SECONDS")
    serve.add_argument("--provider-token-lifetime", type=int, default=86400, metavar="SECONDS")
    serve.add_argument(
        "--document-ready-after",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long a requested справка stays pending",
    )
    serve.add_argument("--issuer", default="http://esia-sim.schoolgate.test/")
    serve.add_argument(
        "--admin-token-file",
        type=Path,
        help="require this token (file content) in X-Admin-Token for /admin/v1/*",
    )
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(handler=_serve)

    openapi = sub.add_parser("openapi", help="print the simulator's OpenAPI document")
    openapi.set_defaults(handler=_openapi)


def _openapi(args: argparse.Namespace) -> int:
    from .admin import openapi_text

    print(openapi_text(), end="")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from . import logs
    from .app import create_app
    from .config import SimConfig

    logs.setup(args.log_level)
    # Everything the simulator writes (SQLite + WAL files, keys) is private to its user.
    os.umask(0o077)
    admin_token = args.admin_token_file.read_text().strip() if args.admin_token_file else None
    config = SimConfig(
        state_dir=args.state_dir,
        host=args.host,
        port=args.port,
        esia_token_lifetime_s=args.esia_token_lifetime,
        provider_token_lifetime_s=args.provider_token_lifetime,
        document_ready_after_s=args.document_ready_after,
        esia_key_type=args.esia_key_type,
        admin_token=admin_token,
        issuer=args.issuer,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        log_level=args.log_level,
    )
    ssl_context = None
    if args.tls_cert:
        if not args.tls_key:
            raise SystemExit("--tls-key is required with --tls-cert")
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    app = create_app(config)
    logs.log(
        "sim.start", host=args.host, port=args.port, tls=bool(ssl_context), state_dir=str(args.state_dir)
    )
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        ssl_context=ssl_context,
        print=None,
        access_log=None,
        loop=aio.new_event_loop(),
    )
    return 0
