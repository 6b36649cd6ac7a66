"""Flawed certificates for the negative checks, issued by the lab CA code (schoolgate.pki) on the controller.

Usage: make_fixtures.py CSR OUTDIR — CSR is the one the module made on the target host.
"""

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from schoolgate import pki


def main() -> int:
    csr = Path(sys.argv[1]).read_bytes()
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = pki.init_ca(out / "ca", common_name="negative-tests УЦ")
    other_cert, other_key = pki.init_ca(out / "other-ca", common_name="чужой УЦ")
    (out / "anchor.crt").write_bytes(ca_cert.read_bytes())
    now = datetime.now(UTC)
    (out / "expired.crt").write_bytes(
        pki.issue_certificate(
            csr,
            ca_cert=ca_cert,
            ca_key=ca_key,
            not_before=now - timedelta(days=400),
            not_after=now - timedelta(days=1),
        )
    )
    (out / "no-digital-signature.crt").write_bytes(
        pki.issue_certificate(csr, ca_cert=ca_cert, ca_key=ca_key, key_usage=("critical", "keyEncipherment"))
    )
    (out / "untrusted.crt").write_bytes(pki.issue_certificate(csr, ca_cert=other_cert, ca_key=other_key))
    # A certificate for a key that is not the host's: the CA's own "other" key signs a CSR for itself.
    stranger_key = pki.generate_key(out / "stranger.key")
    stranger_csr = pki.create_csr(stranger_key, "/CN=stranger")
    (out / "other-key.crt").write_bytes(pki.issue_certificate(stranger_csr, ca_cert=ca_cert, ca_key=ca_key))
    stranger_crt = out / "stranger.crt"
    stranger_crt.write_bytes((out / "other-key.crt").read_bytes())
    (out / "bundle.p12").write_bytes(pki.pkcs12_export(stranger_key, stranger_crt, "правильный-пароль"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
