"""The simulator's own key material, kept in <state_dir>/keys (0700 directory, 0600 keys).

* ESIA token signing keys: a current one plus the previous ones (rotation keeps old tokens verifiable and
  publishes every certificate at /aas/oauth2/certs, as ESIA does during its own rotations).
* The accredited CA stand-in (УЦ): a GOST R 34.10-2012 root that issues signing certificates from CSRs
  (through schoolgate.pki, the project's one CA implementation).
* Test users' signing certificates (the parent signs documents with one), issued by that CA.
* The provider organisation's document signing certificate (signs generated справки).

Keys are generated here, on the host that uses them, and never leave it. Signing and verification go through
the ESIA core (schoolgate.esia); this module only runs the CA operations of openssl.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .. import pki
from ..esia import openssl
from ..esia.errors import EsiaError
from ..esia.signing import Signer, make_signer
from .store import Store

GOST_ENGINE = "gost"
CA_ORGANIZATION = "schoolgate simulator"
CA_COMMON_NAME = "schoolgate simulated accredited CA (UC)"
SIGNING_EXTENDED_KEY_USAGE = ("clientAuth", "emailProtection")
ESIA_SUBJECT = "/C=RU/O=schoolgate simulator/CN=ESIA simulator token signing {n}"
ORG_SUBJECT = "/C=RU/O=schoolgate simulator/CN=Provider document signing"
CA_DAYS = 3650
MAX_CERT_DAYS = 3 * 366


def _private_mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def generate_key(path: Path, key_type: str = "gost") -> Path:
    """A new private key written 0600 (umask set around openssl so the file is never world-readable)."""
    if key_type == "gost":
        args = ["genpkey", "-algorithm", "gost2012_256", "-pkeyopt", "paramset:A", "-out", str(path)]
        engine: str | None = GOST_ENGINE
    elif key_type == "rsa":
        args = ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path)]
        engine = None
    else:
        raise ValueError(f"key type must be gost or rsa, not {key_type!r}")
    old = os.umask(0o077)
    try:
        openssl.run_openssl(args, engine=engine, what=f"generate {key_type} key")
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    path.with_suffix(".type").write_text(key_type)
    return path


def _engine_for(key: Path) -> str | None:
    # GOST keys need the engine loaded to be read; RSA keys must not depend on it.
    marker = key.with_suffix(".type")
    key_type = marker.read_text().strip() if marker.exists() else "gost"
    return GOST_ENGINE if key_type == "gost" else None


def csr_for(key: Path, subject: str) -> bytes:
    return openssl.run_openssl(
        ["req", "-new", "-key", str(key), "-subj", subject],
        engine=_engine_for(key),
        what="certificate request",
    )


class KeyRing:
    def __init__(self, state_dir: Path, store: Store, *, esia_key_type: str = "gost") -> None:
        self.dir = _private_mkdir(state_dir / "keys")
        self.store = store
        self.esia_key_type = esia_key_type
        self._signers: dict[str, Signer] = {}
        self._ensure_ca()
        self._ensure_esia()
        self._ensure_org()

    # -- CA (УЦ) ------------------------------------------------------------------------------------
    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    def _ensure_ca(self) -> None:
        # The one CA implementation (schoolgate.pki) creates the root, once; a GOST key as a real УЦ has.
        pki.init_ca(
            self.dir,
            common_name=CA_COMMON_NAME,
            organization=CA_ORGANIZATION,
            algorithm="gost2012_256",
            days=CA_DAYS,
        )

    def issue_certificate(self, csr_pem: bytes, *, days: int) -> bytes:
        """Issue a signing certificate for a CSR (GOST or RSA public key) with the GOST root, through the
        one CA implementation (schoolgate.pki), which checks the CSR's own signature first (proof of
        possession of the private key) and keeps the school's subject (ОГРН, ИНН) as it is."""
        if not 1 <= days <= CA_DAYS:
            raise ValueError(f"days must be 1..{CA_DAYS}")
        try:
            return pki.issue_certificate(
                csr_pem,
                ca_cert=self.ca_cert,
                ca_key=self.ca_key,
                days=days,
                key_usage=pki.DEFAULT_KEY_USAGE,
                extended_key_usage=SIGNING_EXTENDED_KEY_USAGE,
            )
        except pki.PkiError as exc:
            raise EsiaError.local("SG-ESIA-107", detail=f"CSR refused by the CA: {exc}") from exc

    def new_key_and_cert(
        self, name: str, subject: str, *, days: int = 365, key_type: str = "gost"
    ) -> tuple[Path, Path]:
        key = self.dir / f"{name}.key"
        cert = self.dir / f"{name}.crt"
        if not cert.exists():
            if key.exists():
                key.unlink()
            generate_key(key, key_type)
            cert.write_bytes(self.issue_certificate(csr_for(key, subject), days=days))
        return key, cert

    def signer(self, name: str) -> Signer:
        """Signer for one of our own keys, via the ESIA core."""
        if name not in self._signers:
            key, cert = self.dir / f"{name}.key", self.dir / f"{name}.crt"
            kind = "openssl-gost" if _engine_for(key) else "cryptography"
            self._signers[name] = make_signer({"type": kind, "key": str(key), "cert": str(cert)})
        return self._signers[name]

    # -- ESIA token signing keys ------------------------------------------------------------------
    def _ensure_esia(self) -> None:
        if self.store.get_kv("esia_keys") is None:
            self.rotate_esia()

    def rotate_esia(self) -> dict[str, Any]:
        names: list[str] = self.store.get_kv("esia_keys", [])
        name = f"esia-{len(names) + 1}"
        self.new_key_and_cert(
            name, ESIA_SUBJECT.format(n=len(names) + 1), days=CA_DAYS, key_type=self.esia_key_type
        )
        names.append(name)
        self.store.set_kv("esia_keys", names)
        self.store.set_kv("esia_rotated_at", time.time())
        return {"current": name, "keys": names}

    @property
    def esia_key_names(self) -> list[str]:
        return list(self.store.get_kv("esia_keys", []))

    @property
    def esia_current(self) -> str:
        return self.esia_key_names[-1]

    def esia_certificates_pem(self) -> list[bytes]:
        return [(self.dir / f"{n}.crt").read_bytes() for n in self.esia_key_names]

    def _ensure_org(self) -> None:
        self.new_key_and_cert("org", ORG_SUBJECT, days=CA_DAYS)

    def user_key(self, oid: str, subject: str) -> tuple[Path, Path]:
        return self.new_key_and_cert(f"user-{oid}", subject, days=365)

    # -- tokens (through the ESIA core) -------------------------------------------------------------
    def issue_jwt(self, claims: dict[str, Any]) -> str:
        from ..esia import tokens

        return tokens.issue_token(self.signer(self.esia_current), claims)

    def verify_access_token(self, token: str, *, client_id: str | None = None) -> dict[str, Any]:
        from ..esia import tokens

        issuer = self.store.get_kv("issuer")
        try:
            return tokens.verify_token(
                token, self.esia_certificates_pem(), issuer=issuer, client_id=client_id
            )
        except EsiaError:
            raise
        except ValueError as exc:
            raise EsiaError.from_code("SG-ESIA-110", str(exc)) from exc
