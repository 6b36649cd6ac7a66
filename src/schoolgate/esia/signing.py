"""Signers: one interface over ``cryptography`` (RSA/ECDSA), OpenSSL+gost-engine and site commands.

Byte order: ``sign_raw`` always returns the signature in *OpenSSL order* (what ``openssl dgst -sign``
emits and ``openssl dgst -verify`` accepts). CryptoPro tools (``cryptcp``, ``csptest``) emit GOST
signatures byte-reversed; a ``CommandSigner`` with ``byte_order='reverse'`` turns them around.
ECDSA raw signatures are DER (as OpenSSL emits); JWT code converts to r||s itself.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from . import openssl
from .certhash import signature_algorithm_for
from .der import ParsedCertificate, certificate_der, certificate_to_pem, parse_certificate
from .errors import EsiaError

GOST_DIGESTS = {"GOST3410_2012_256": "md_gost12_256", "GOST3410_2012_512": "md_gost12_512"}


@runtime_checkable
class Signer(Protocol):
    certificate_der: bytes
    algorithm: str

    def sign_raw(self, data: bytes) -> bytes: ...

    def sign_cms_detached(self, data: bytes) -> bytes: ...


def _read(source: str | os.PathLike[str] | bytes, what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise EsiaError.local("SG-ESIA-108", detail=f"{what} {source}: {exc.strerror}") from exc


def check_validity(parsed: ParsedCertificate, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    if now > parsed.not_after:
        raise EsiaError.local("SG-ESIA-106", detail=f"expired on {parsed.not_after.isoformat()}")
    if now < parsed.not_before:
        raise EsiaError.local("SG-ESIA-106", detail=f"valid only from {parsed.not_before.isoformat()}")


class _Base:
    certificate_der: bytes
    algorithm: str
    allow_expired: bool = False

    def _load_cert(self, cert: str | os.PathLike[str] | bytes) -> None:
        self.certificate_der = certificate_der(_read(cert, "certificate"))
        self._parsed = parse_certificate(self.certificate_der)
        self.algorithm = signature_algorithm_for(self.certificate_der)

    def _check(self) -> None:
        if not self.allow_expired:
            check_validity(self._parsed)

    @property
    def certificate_pem(self) -> bytes:
        return certificate_to_pem(self.certificate_der)


class CryptographySigner(_Base):
    """RSA (RS256, PKCS#1 v1.5 + SHA-256) and ECDSA P-256 (ES256) with the ``cryptography`` package."""

    def __init__(
        self,
        key: str | os.PathLike[str] | bytes,
        cert: str | os.PathLike[str] | bytes,
        *,
        password: bytes | None = None,
        cms_attributes: bool = False,
        allow_expired: bool = False,
    ) -> None:
        try:
            from cryptography.hazmat.primitives import serialization
        except ImportError as exc:
            raise EsiaError.local("SG-ESIA-104") from exc
        self._load_cert(cert)
        self.allow_expired = allow_expired
        self.cms_attributes = cms_attributes
        key_bytes = _read(key, "key")
        try:
            if b"-----BEGIN" in key_bytes:
                self._key = serialization.load_pem_private_key(key_bytes, password)
            else:
                self._key = serialization.load_der_private_key(key_bytes, password)
        except (ValueError, TypeError) as exc:
            raise EsiaError.local("SG-ESIA-108", detail=f"private key: {exc}") from exc
        from cryptography import x509

        cert_obj = x509.load_der_x509_certificate(self.certificate_der)
        self._cert = cert_obj
        if self.algorithm not in ("RS256", "ES256"):
            raise EsiaError.local(
                "SG-ESIA-109", detail=f"{self.algorithm} certificate with cryptography signer"
            )
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        if self._key.public_key().public_bytes(der, pub) != cert_obj.public_key().public_bytes(der, pub):
            raise EsiaError.local("SG-ESIA-105", detail="cryptography signer: key and certificate differ")

    def sign_raw(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding

        self._check()
        if self.algorithm == "RS256":
            return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def sign_cms_detached(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.serialization import pkcs7

        self._check()
        options = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
        if not self.cms_attributes:
            options.append(pkcs7.PKCS7Options.NoAttributes)
        builder = (
            pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(self._cert, self._key, hashes.SHA256())
        )
        return builder.sign(serialization.Encoding.DER, options)


class OpenSSLGostSigner(_Base):
    """GOST R 34.10-2012 (256/512) via ``openssl`` + gost-engine subprocesses.

    The key stays where the caller keeps it (a 0600 file); if given as bytes it is written 0600 into a
    private 0700 directory for the duration of one call. A key password is passed through the child's
    environment (``-passin env:``), never on the command line.
    """

    def __init__(
        self,
        key: str | os.PathLike[str] | bytes,
        cert: str | os.PathLike[str] | bytes,
        *,
        engine: str = openssl.DEFAULT_ENGINE,
        openssl_path: str | None = None,
        password: str | None = None,
        cms_attributes: bool = False,
        allow_expired: bool = False,
        check_key: bool = True,
    ) -> None:
        self._load_cert(cert)
        if self.algorithm not in GOST_DIGESTS:
            raise EsiaError.local(
                "SG-ESIA-109", detail=f"openssl-gost signer needs a GOST certificate, got {self.algorithm}"
            )
        self.engine = engine
        self.openssl_path = openssl_path
        self.allow_expired = allow_expired
        self.cms_attributes = cms_attributes
        self._password = password
        self._key_path = None if isinstance(key, bytes) else Path(key)
        self._key_bytes = key if isinstance(key, bytes) else None
        if self._key_path is not None and not self._key_path.is_file():
            raise EsiaError.local("SG-ESIA-108", detail=f"key file {self._key_path} does not exist")
        if check_key:
            self._check_key_matches()

    @property
    def digest(self) -> str:
        return GOST_DIGESTS[self.algorithm]

    def _run(self, args: list[str], stdin: bytes, what: str) -> bytes:
        with openssl.private_dir() as tmp:
            key_path = self._key_path or openssl.write_private(tmp / "key.pem", self._key_bytes or b"")
            cert_path = openssl.write_private(tmp / "cert.pem", self.certificate_pem)
            argv = [a.replace("{key}", str(key_path)).replace("{cert}", str(cert_path)) for a in args]
            env = None
            if self._password is not None and "{key}" in " ".join(args):
                argv = [*argv[:1], "-passin", "env:SCHOOLGATE_ESIA_KEYPASS", *argv[1:]]
                env = {**os.environ, "SCHOOLGATE_ESIA_KEYPASS": self._password}
            return openssl.run_openssl(
                argv, stdin=stdin, engine=self.engine, openssl=self.openssl_path, what=what, env=env
            )

    def _check_key_matches(self) -> None:
        key_pub = self._run(["pkey", "-in", "{key}", "-pubout", "-outform", "DER"], b"", "read GOST key")
        cert_pub = self._run(["x509", "-in", "{cert}", "-pubkey", "-noout"], b"", "read certificate key")
        from .der import pem_blocks

        blocks = pem_blocks(cert_pub, "PUBLIC KEY")
        if not blocks or blocks[0] != key_pub:
            raise EsiaError.local("SG-ESIA-105", detail="openssl-gost signer: key and certificate differ")

    def sign_raw(self, data: bytes) -> bytes:
        self._check()
        return self._run(["dgst", f"-{self.digest}", "-sign", "{key}"], data, "GOST raw signature")

    def sign_cms_detached(self, data: bytes) -> bytes:
        self._check()
        args = [
            "cms",
            "-sign",
            "-binary",
            "-outform",
            "DER",
            "-md",
            self.digest,
            "-signer",
            "{cert}",
            "-inkey",
            "{key}",
        ]
        if not self.cms_attributes:
            args.append("-noattr")
        return self._run(args, data, "GOST CMS signature")


class CommandSigner(_Base):
    """A site-provided signing tool (e.g. CryptoPro ``cryptcp``/``csptest`` wrapped in a script).

    ``raw_command``/``cms_command`` are argv lists (or shell-like strings split with shlex, never run
    through a shell) with placeholders ``{in}`` (file with the data), ``{out}`` (file the tool writes) and
    ``{cert}``. Without ``{in}`` the data goes to stdin; without ``{out}`` the signature is read from
    stdout. ``output`` is 'der' (binary) or 'base64'. ``byte_order='reverse'`` reverses raw signatures
    (CryptoPro order → OpenSSL order).
    """

    def __init__(
        self,
        cert: str | os.PathLike[str] | bytes,
        *,
        raw_command: Sequence[str] | str | None = None,
        cms_command: Sequence[str] | str | None = None,
        byte_order: str = "as-is",
        output: str = "der",
        timeout: float = 60.0,
        allow_expired: bool = False,
    ) -> None:
        self._load_cert(cert)
        if byte_order not in ("as-is", "reverse"):
            raise EsiaError.local(
                "SG-ESIA-111", detail=f"byte_order must be 'as-is' or 'reverse', not {byte_order!r}"
            )
        if output not in ("der", "base64"):
            raise EsiaError.local("SG-ESIA-111", detail=f"output must be 'der' or 'base64', not {output!r}")
        self.raw_command = _argv(raw_command)
        self.cms_command = _argv(cms_command)
        self.byte_order = byte_order
        self.output = output
        self.timeout = timeout
        self.allow_expired = allow_expired

    def _invoke(self, argv: list[str] | None, data: bytes, setting: str) -> bytes:
        if not argv:
            raise EsiaError.local(
                "SG-ESIA-103", detail=f"command signer: setting {setting!r} is not configured"
            )
        self._check()
        with openssl.private_dir() as tmp:
            in_path = openssl.write_private(tmp / "data.bin", data)
            out_path = tmp / "signature.out"
            cert_path = openssl.write_private(tmp / "cert.pem", self.certificate_pem)
            expanded = [
                a.replace("{in}", str(in_path))
                .replace("{out}", str(out_path))
                .replace("{cert}", str(cert_path))
                for a in argv
            ]
            uses_in = any("{in}" in a for a in argv)
            uses_out = any("{out}" in a for a in argv)
            try:
                proc = subprocess.run(
                    expanded,
                    input=None if uses_in else data,
                    capture_output=True,
                    timeout=self.timeout,
                    check=False,
                )
            except FileNotFoundError as exc:
                raise EsiaError.local(
                    "SG-ESIA-103", detail=f"command signer: {argv[0]!r} not found (setting {setting!r})"
                ) from exc
            except subprocess.TimeoutExpired as exc:
                raise EsiaError.local(
                    "SG-ESIA-103", detail=f"command signer timed out after {self.timeout} s"
                ) from exc
            if proc.returncode != 0:
                stderr = proc.stderr.decode("utf-8", "replace").strip().splitlines()[:3]
                raise EsiaError.local(
                    "SG-ESIA-103", detail=f"{argv[0]} rc={proc.returncode}: {'; '.join(stderr)}"
                )
            result = out_path.read_bytes() if uses_out and out_path.exists() else proc.stdout
        if self.output == "base64":
            from .encoding import b64url_decode

            result = b64url_decode(result, what="command signer output")
        if not result:
            raise EsiaError.local("SG-ESIA-103", detail=f"{argv[0]} produced no signature")
        return result

    def sign_raw(self, data: bytes) -> bytes:
        sig = self._invoke(self.raw_command, data, "raw_command")
        return sig[::-1] if self.byte_order == "reverse" else sig

    def sign_cms_detached(self, data: bytes) -> bytes:
        return self._invoke(self.cms_command, data, "cms_command")


def _argv(command: Sequence[str] | str | None) -> list[str] | None:
    if command is None:
        return None
    if isinstance(command, str):
        return shlex.split(command)
    return [str(part) for part in command]


def make_signer(config: Mapping[str, Any]) -> Signer:
    """Build a signer from configuration.

    ``{"type": "openssl-gost", "key": path, "cert": path, "engine": "gost", "openssl": path}``
    ``{"type": "cryptography", "key": path, "cert": path}``
    ``{"type": "command", "cert": path, "raw_command": [...], "cms_command": [...], "byte_order": "reverse"}``
    Common: ``allow_expired`` (bool), ``cms_attributes`` (bool, signed attributes in CMS).
    """
    kind = config.get("type")
    common = {"allow_expired": bool(config.get("allow_expired", False))}
    if "cert" not in config:
        raise EsiaError.local("SG-ESIA-111", detail="signer setting 'cert' is required")
    if kind in ("openssl-gost", "cryptography") and "key" not in config:
        raise EsiaError.local("SG-ESIA-111", detail=f"signer type {kind!r} needs setting 'key'")
    if kind == "openssl-gost":
        password = config.get("password")
        return OpenSSLGostSigner(
            config["key"],
            config["cert"],
            engine=config.get("engine", openssl.DEFAULT_ENGINE),
            openssl_path=config.get("openssl"),
            password=password,
            cms_attributes=bool(config.get("cms_attributes", False)),
            **common,
        )
    if kind == "cryptography":
        password = config.get("password")
        return CryptographySigner(
            config["key"],
            config["cert"],
            password=password.encode() if isinstance(password, str) else password,
            cms_attributes=bool(config.get("cms_attributes", False)),
            **common,
        )
    if kind == "command":
        return CommandSigner(
            config["cert"],
            raw_command=config.get("raw_command"),
            cms_command=config.get("cms_command"),
            byte_order=config.get("byte_order", "as-is"),
            output=config.get("output", "der"),
            timeout=float(config.get("timeout", 60)),
            **common,
        )
    raise EsiaError.local(
        "SG-ESIA-111", detail=f"signer 'type' must be openssl-gost, cryptography or command, not {kind!r}"
    )
