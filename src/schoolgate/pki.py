"""The one certificate authority implementation of schoolgate: creates a CA and issues certificates from CSRs.

In production the school's signing certificate comes from an accredited CA (УЦ). In the lab and in tests
this module plays that CA with ``openssl`` + the GOST engine: it creates a CA (GOST R 34.10-2012 by default)
and issues certificates from CSRs, including deliberately flawed ones (expired, without digitalSignature)
that the negative tests of the ``signing_cert`` role need. Its users:

* the provider simulator's УЦ (``schoolgate.sim.keys`` → ``/ca/v1/certificates``), which issues the lab
  schools' signing certificates in ``make lab`` and the simulator's own ESIA/user/organisation certificates;
* the ``signing_cert`` Molecule scenario (no provider host there) through the command line below;
* the negative-test fixtures (expired, without digitalSignature, other CA).

Command line (the role's controller-side issuer, ``signing_cert_lab_ca: true``, Molecule only)::

    python -m schoolgate.pki init-ca --dir lab/state/signing-ca
    python -m schoolgate.pki sign --dir lab/state/signing-ca --csr host.csr --out host.crt
    python -m schoolgate.pki check --cert host.crt --csr host.csr --ca uc-root.pem   # exit 0 = current

``sign`` is idempotent: when ``--out`` already holds a certificate for the CSR's key and subject that is
valid for more than ``--renew-days`` it prints ``unchanged`` and leaves it alone.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

DEFAULT_KEY_USAGE = ("critical", "digitalSignature", "nonRepudiation")
GOST_ALGORITHMS = ("gost2012_256", "gost2012_512")


class PkiError(RuntimeError):
    """openssl refused an operation; the message carries its stderr summary."""


def _openssl(args: Sequence[str], *, stdin: bytes | None = None, engine: bool = True) -> bytes:
    argv = ["openssl", args[0]]
    if engine:
        argv += ["-engine", "gost"]
    argv += list(args[1:])
    proc = subprocess.run(argv, input=stdin, capture_output=True, check=False, timeout=60)
    if proc.returncode != 0:
        err = "; ".join(
            line
            for line in proc.stderr.decode("utf-8", "replace").splitlines()
            if not line.startswith("Engine ")
        )
        raise PkiError(f"openssl {args[0]} failed: {err[:800]}")
    return proc.stdout


def _asn1_time(moment: datetime) -> str:
    # openssl ca wants UTCTime before 2050 and GeneralizedTime after.
    moment = moment.astimezone(UTC)
    if moment.year < 2050:
        return moment.strftime("%y%m%d%H%M%SZ")
    return moment.strftime("%Y%m%d%H%M%SZ")


def generate_key(path: Path, algorithm: str = "gost2012_256", *, paramset: str = "A") -> Path:
    """A private key written 0600 from the start (mkstemp), then moved into place."""
    if algorithm in GOST_ALGORITHMS:
        args = ["-algorithm", algorithm, "-pkeyopt", f"paramset:{paramset}"]
    elif algorithm == "rsa":
        args = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"]
    elif algorithm == "ecdsa":
        args = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key.")
    os.close(fd)
    try:
        _openssl(["genpkey", *args, "-out", tmp])
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def create_csr(key: Path, subject: str) -> bytes:
    """A CSR (PEM) for ``key`` with an openssl ``-subj`` style subject (tests and lab fixtures)."""
    return _openssl(["req", "-new", "-utf8", "-key", str(key), "-subj", subject])


def init_ca(
    directory: Path,
    *,
    common_name: str = "schoolgate lab УЦ",
    organization: str = "schoolgate lab",
    algorithm: str = "gost2012_256",
    days: int = 3650,
) -> tuple[Path, Path]:
    """Create (once) a self-signed CA in ``directory``: ``ca.crt`` and ``ca.key`` (0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    cert, key = directory / "ca.crt", directory / "ca.key"
    if cert.exists() and key.exists():
        return cert, key
    generate_key(key, algorithm)
    org, cn = organization.replace("/", r"\/"), common_name.replace("/", r"\/")
    subject = f"/C=RU/O={org}/CN={cn}"
    _openssl(
        [
            "req",
            "-x509",
            "-new",
            "-utf8",
            "-key",
            str(key),
            "-subj",
            subject,
            "-days",
            str(days),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "subjectKeyIdentifier=hash",
            "-out",
            str(cert),
        ]
    )
    return cert, key


def _ca_config(
    work: Path, ca_cert: Path, ca_key: Path, key_usage: Sequence[str], extended_key_usage: Sequence[str]
) -> Path:
    (work / "index.txt").write_text("")
    (work / "index.txt.attr").write_text("unique_subject = no\n")
    (work / "serial").write_text(secrets.token_hex(16) + "\n")
    ku = ",".join(key_usage) if key_usage else ""
    ext = [
        "basicConstraints = critical,CA:FALSE",
        "subjectKeyIdentifier = hash",
        "authorityKeyIdentifier = keyid",
    ]
    if ku:
        ext.append(f"keyUsage = {ku}")
    if extended_key_usage:
        ext.append("extendedKeyUsage = " + ",".join(extended_key_usage))
    config = work / "ca.cnf"
    config.write_text(
        "oid_section = sg_oids\n[sg_oids]\nINNLE = 1.2.643.100.4\n"
        "[ca]\ndefault_ca = sg\n"
        f"[sg]\ndir = {work}\ndatabase = {work}/index.txt\nserial = {work}/serial\n"
        f"new_certs_dir = {work}\ncertificate = {ca_cert}\nprivate_key = {ca_key}\n"
        "default_md = default\npolicy = sg_policy\nunique_subject = no\ncopy_extensions = none\n"
        "x509_extensions = sg_ext\nutf8 = yes\nstring_mask = utf8only\n"
        "[sg_policy]\ncommonName = supplied\n"
        "[sg_ext]\n" + "\n".join(ext) + "\n",
        encoding="utf-8",
    )
    return config


def issue_certificate(
    csr_pem: bytes,
    *,
    ca_cert: Path,
    ca_key: Path,
    days: int = 365,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key_usage: Sequence[str] | None = DEFAULT_KEY_USAGE,
    extended_key_usage: Sequence[str] = (),
) -> bytes:
    """Sign ``csr_pem`` with the CA and return the certificate (PEM).

    The CSR's self-signature is checked and its subject kept as is (ОГРН/ИНН included). ``not_before`` /
    ``not_after`` allow back-dated (expired) certificates for negative tests; ``key_usage=None`` leaves the
    keyUsage extension out entirely.
    """
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    end = not_after or start + timedelta(days=days)
    with tempfile.TemporaryDirectory(prefix="schoolgate-pki-") as tmp:
        work = Path(tmp)
        config = _ca_config(work, ca_cert, ca_key, key_usage or (), extended_key_usage)
        csr = work / "req.csr"
        csr.write_bytes(csr_pem)
        out = work / "out.crt"
        _openssl(["req", "-in", str(csr), "-noout", "-verify"])
        _openssl(
            [
                "ca",
                "-batch",
                "-config",
                str(config),
                "-preserveDN",
                "-notext",
                "-utf8",
                "-startdate",
                _asn1_time(start),
                "-enddate",
                _asn1_time(end),
                "-in",
                str(csr),
                "-out",
                str(out),
            ]
        )
        return out.read_bytes()


def _pubkey(kind: str, pem: bytes) -> bytes:
    return _openssl([kind, "-noout", "-pubkey"], stdin=pem).strip()


def _subject(kind: str, pem: bytes) -> bytes:
    return _openssl([kind, "-noout", "-subject", "-nameopt", "oid,utf8,sep_multiline,-esc_msb"], stdin=pem)


def up_to_date(cert_pem: bytes, csr_pem: bytes, ca_cert: Path, *, renew_days: int) -> bool:
    """True when ``cert_pem`` is this CA's certificate for the CSR's key and subject, not due for renewal."""
    try:
        if _pubkey("x509", cert_pem) != _pubkey("req", csr_pem):
            return False
        if _subject("x509", cert_pem).splitlines()[1:] != _subject("req", csr_pem).splitlines()[1:]:
            return False
        with tempfile.NamedTemporaryFile(suffix=".crt") as leaf:
            leaf.write(cert_pem)
            leaf.flush()
            _openssl(["verify", "-CAfile", str(ca_cert), leaf.name])
        _openssl(["x509", "-noout", "-checkend", str(renew_days * 86400)], stdin=cert_pem, engine=False)
    except PkiError:
        return False
    return True


def pkcs12_export(key: Path, cert: Path, passphrase: str, *, chain: Path | None = None) -> bytes:
    """PKCS#12 of a key and certificate (tests and lab only; the passphrase goes through the environment)."""
    args = ["pkcs12", "-export", "-inkey", str(key), "-in", str(cert), "-passout", "env:SG_PKI_PASS"]
    if chain:
        args += ["-certfile", str(chain)]
    argv = ["openssl", args[0], "-engine", "gost", *args[1:]]
    proc = subprocess.run(
        argv, capture_output=True, check=False, env={**os.environ, "SG_PKI_PASS": passphrase}, timeout=60
    )
    if proc.returncode != 0:
        raise PkiError("openssl pkcs12 -export failed: " + proc.stderr.decode("utf-8", "replace")[:800])
    return proc.stdout


def _cmd_init(args: argparse.Namespace) -> int:
    cert, _ = init_ca(Path(args.dir), common_name=args.cn, algorithm=args.algorithm)
    print(cert)
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    ca_cert, ca_key = directory / "ca.crt", directory / "ca.key"
    csr_pem = Path(args.csr).read_bytes()
    out = Path(args.out)
    if out.exists() and up_to_date(out.read_bytes(), csr_pem, ca_cert, renew_days=args.renew_days):
        print("unchanged")
        return 0
    cert = issue_certificate(csr_pem, ca_cert=ca_cert, ca_key=ca_key, days=args.days)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name("." + out.name + ".tmp")
    tmp.write_bytes(cert)
    os.replace(tmp, out)
    serial = re.sub(
        r"^serial=", "", _openssl(["x509", "-noout", "-serial"], stdin=cert, engine=False).decode()
    )
    print(f"issued serial {serial.strip()}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    # Exit 0: --cert is --ca's certificate for the CSR's key and subject and not due for renewal; 1: it is
    # not (or a file is missing), so the CA has to issue one.
    paths = [Path(args.cert), Path(args.csr), Path(args.ca)]
    if not all(p.is_file() for p in paths):
        print("missing")
        return 1
    cert, csr, ca = paths
    current = up_to_date(cert.read_bytes(), csr.read_bytes(), ca, renew_days=args.renew_days)
    print("current" if current else "outdated")
    return 0 if current else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schoolgate.pki", description="lab CA for signing certificates"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_init = sub.add_parser("init-ca", help="create the lab CA once")
    p_init.add_argument("--dir", required=True)
    p_init.add_argument("--cn", default="schoolgate lab УЦ")
    p_init.add_argument(
        "--algorithm", default="gost2012_256", choices=["gost2012_256", "gost2012_512", "rsa", "ecdsa"]
    )
    p_init.set_defaults(handler=_cmd_init)
    p_sign = sub.add_parser("sign", help="issue a certificate from a CSR (idempotent)")
    p_sign.add_argument("--dir", required=True)
    p_sign.add_argument("--csr", required=True)
    p_sign.add_argument("--out", required=True)
    p_sign.add_argument("--days", type=int, default=365)
    p_sign.add_argument("--renew-days", type=int, default=30)
    p_sign.set_defaults(handler=_cmd_sign)
    p_check = sub.add_parser("check", help="exit 0 when a certificate is current for a CSR, 1 when not")
    p_check.add_argument("--cert", required=True)
    p_check.add_argument("--csr", required=True)
    p_check.add_argument("--ca", required=True, help="the issuing CA's certificate (PEM)")
    p_check.add_argument("--renew-days", type=int, default=30)
    p_check.set_defaults(handler=_cmd_check)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except (PkiError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "PkiError",
    "create_csr",
    "generate_key",
    "init_ca",
    "issue_certificate",
    "pkcs12_export",
    "up_to_date",
]
