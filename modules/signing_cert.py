#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: schoolgate contributors. Apache-2.0.
"""Ansible module `signing_cert`: the school's signing key, CSR and certificate."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: signing_cert
short_description: Manage the school's signing key, CSR and certificate (GOST-ready)
description:
  - Generates the school's private signing key B(on the managed host) (GOST R 34.10-2012 256 bit by default,
    via OpenSSL and the gost engine; RSA or ECDSA selectable). The key never leaves the host and never
    appears in the module's output.
  - Writes a certificate signing request (CSR) carrying the school's subject fields (ОГРН, ИНН, organisation,
    CN, ...). Only the CSR is meant to be fetched to the controller and sent to the CA (УЦ).
  - Installs the certificate issued by the CA (PEM or DER, optionally with a chain or as a PKCS#7 bundle)
    or a PKCS#12 file, after validating that it matches the key, chains up to the configured trust anchors,
    is inside its validity window, allows digitalSignature and uses the expected algorithm and key size.
    When a check fails nothing is installed and the error explains, in Russian for the school admin,
    what is wrong and which role variable fixes it.
  - Supports renewal. With O(renew=true) a next key and CSR (C(key.next.pem), C(csr.next.pem)) are generated
    alongside the current ones, which keep working. Installing a certificate issued for the next key
    promotes the next key to the current one in the same step.
  - Returns structured facts about the installed certificate, including the ESIA C(client_certificate_hash)
    computed by the schoolgate ESIA core (module_utils C(schoolgate_esia)).
  - Optionally checks a signer configuration (the one the agent uses) by signing and verifying a probe
    message with the ESIA core's signer.
version_added: "0.1.0"
author: schoolgate contributors
options:
  state:
    description:
      - V(present) ensures the key and CSR exist and, when a certificate is given, installs it.
      - V(absent) removes the key, CSR, certificate, chain and renewal files from O(path).
    type: str
    choices: [present, absent]
    default: present
  path:
    description: Directory holding C(key.pem), C(csr.pem), C(cert.pem), C(chain.pem), C(trust.pem).
    type: path
    default: /etc/schoolgate/signing
  owner:
    description: User owning the private key (the agent's user). The key is mode 0600.
    type: str
    default: schoolgate
  group:
    description: Group of the directory and of the public files (directory 0750, public files 0640).
    type: str
    default: schoolgate
  algorithm:
    description:
      - Key algorithm for newly generated keys, and the algorithm an installed certificate must use.
    type: str
    choices: [gost2012_256, gost2012_512, rsa, ecdsa]
    default: gost2012_256
  gost_paramset:
    description: GOST R 34.10-2012 parameter set (A, B, C for 256 bit; A, B, C for 512 bit).
    type: str
    default: A
  rsa_bits:
    description: RSA key size for new keys; also the minimum accepted RSA size of a certificate.
    type: int
    default: 3072
  ec_curve:
    description: ECDSA curve for new keys.
    type: str
    choices: [P-256, P-384]
    default: P-256
  subject:
    description:
      - Subject of the CSR. Keys are OpenSSL short names or the Russian attribute names
        C(OGRN) (1.2.643.100.1), C(INN) (1.2.643.3.131.1.1, ИНН of a person), C(INNLE) (1.2.643.100.4, ИНН of
        a legal entity), C(SNILS) (1.2.643.100.3).
      - Fields are written in a fixed order (C, ST, L, street, O, OU, title, CN, SN, GN, emailAddress, OGRN,
        SNILS, INNLE, INN) whatever the order of the keys.
      - Required with O(state=present) unless a PKCS#12 is installed.
    type: dict
  certificate:
    description:
      - The issued certificate, base64 of the file's bytes (PEM, DER, or a PKCS#7 bundle). A PEM bundle may
        contain the chain too; the certificate matching the key is taken as the leaf.
    type: str
  chain:
    description: Intermediate certificates, each base64 of a PEM/DER/PKCS#7 file.
    type: list
    elements: str
    default: []
  pkcs12:
    description:
      - A PKCS#12 file (base64 of its bytes) with the key and certificate, instead of the host-made key.
    type: str
  pkcs12_passphrase:
    description: Passphrase of O(pkcs12). Keep it in Ansible Vault.
    type: str
  trust_anchors:
    description:
      - Trusted root certificates (base64 of PEM/DER files, one or more certificates each). Required to
        install a certificate; the chain must end at one of them.
    type: list
    elements: str
    default: []
  min_days_left:
    description: Refuse a certificate that expires in fewer days than this.
    type: int
    default: 1
  renew:
    description:
      - Generate C(key.next.pem) and C(csr.next.pem) for renewal.
      - They are kept until a certificate for them is installed.
    type: bool
    default: false
  signer_config:
    description:
      - Path of a signer configuration (JSON, see the ESIA core's C(make_signer)) to probe by signing
        and verifying a message. Skipped in check mode and while no certificate is installed.
    type: path
  openssl:
    description: OpenSSL binary on the managed host.
    type: str
    default: openssl
notes:
  - Supports check mode and diff mode. Diffs show certificate facts only, never key material.
  - Requires C(openssl) on the host and, for GOST, the gost engine (Debian package C(libengine-gost-openssl)).
requirements: [openssl, "libengine-gost-openssl (GOST algorithms)"]
"""

EXAMPLES = r"""
- name: Key and CSR on the school host
  signing_cert:
    subject:
      C: RU
      O: МБОУ СОШ № 1
      CN: МБОУ СОШ № 1
      OGRN: "1027700132195"
      INNLE: "7701234567"
  register: sc

- name: Fetch only the CSR
  ansible.builtin.fetch:
    src: "{{ sc.csr_path }}"
    dest: "csr/{{ inventory_hostname }}.csr"
    flat: true

- name: Install the issued certificate
  signing_cert:
    subject: "{{ school_subject }}"
    certificate: "{{ lookup('file', 'issued/' ~ inventory_hostname ~ '.crt') | b64encode }}"
    trust_anchors:
      - "{{ lookup('file', 'trust/uc-root.pem') | b64encode }}"

- name: Install from PKCS#12
  signing_cert:
    pkcs12: "{{ p12_b64 }}"
    pkcs12_passphrase: "{{ vault_p12_passphrase }}"
    trust_anchors: "{{ anchors_b64 }}"
  no_log: true
"""

RETURN = r"""
key_path:
  description: Path of the private key on the host (the key itself is never returned).
  returned: state=present
  type: str
  sample: /etc/schoolgate/signing/key.pem
csr_path:
  description: Path of the current CSR.
  returned: state=present
  type: str
  sample: /etc/schoolgate/signing/csr.pem
cert_path:
  description: Path of the installed certificate.
  returned: state=present
  type: str
key_algorithm:
  description: Algorithm of the current key.
  returned: state=present and a key exists
  type: str
  sample: gost2012_256
status:
  description: C(installed) when a valid certificate is installed, C(awaiting_certificate) otherwise.
  returned: state=present
  type: str
renewal:
  description: Renewal state; C(pending) is true while C(key.next.pem) waits for its certificate.
  returned: state=present
  type: dict
  contains:
    pending: {description: A next key exists., type: bool}
    key_path: {description: Path of the next key., type: str}
    csr_path: {description: Path of the next CSR., type: str}
certificate:
  description: Facts about the installed certificate.
  returned: when a certificate is installed
  type: dict
  contains:
    subject: {description: Subject (RFC 2253 style string), type: str}
    issuer: {description: Issuer, type: str}
    serial: {description: Serial number (hex), type: str}
    not_before: {description: Start of validity (ISO 8601 in UTC), type: str}
    not_after: {description: End of validity (ISO 8601 in UTC), type: str}
    days_left: {description: Whole days until not_after, type: int}
    thumbprint:
      description: SHA-1 of the DER certificate in upper-case hex (as CryptoPro and Windows show it).
      type: str
    sha256_fingerprint: {description: SHA-256 of the DER certificate in hex, type: str}
    client_certificate_hash:
      description:
        - ESIA client_certificate_hash (Streebog-256 of the DER for GOST certificates), from the ESIA core.
      type: str
    algorithm: {description: Public key algorithm, type: str}
    key_bits: {description: Public key size in bits, type: int}
    key_usage: {description: Key usage names, type: list, elements: str}
signer_probe:
  description: Result of signing and verifying a probe message with O(signer_config).
  returned: when signer_config is set and a certificate is installed (not in check mode)
  type: dict
  contains:
    type: {description: Signer type, type: str}
    ok: {description: The probe signature verified, type: bool}
    signature_bytes: {description: Length of the raw probe signature, type: int}
"""

import base64
import datetime
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.schoolgate_esia.certhash import certificate_info, client_certificate_hash

    ESIA_IMPORT_ERROR = None
except ImportError as exc:  # the module must still explain itself when module_utils is missing
    ESIA_IMPORT_ERROR = exc

GOST_ALGORITHMS = ("gost2012_256", "gost2012_512")
SUBJECT_OIDS = {
    "C": "2.5.4.6",
    "ST": "2.5.4.8",
    "L": "2.5.4.7",
    "street": "2.5.4.9",
    "O": "2.5.4.10",
    "OU": "2.5.4.11",
    "title": "2.5.4.12",
    "CN": "2.5.4.3",
    "SN": "2.5.4.4",
    "GN": "2.5.4.42",
    "emailAddress": "1.2.840.113549.1.9.1",
    "OGRN": "1.2.643.100.1",
    "SNILS": "1.2.643.100.3",
    "INNLE": "1.2.643.100.4",
    "INN": "1.2.643.3.131.1.1",
}
# OpenSSL 3.0 knows OGRN/SNILS/INN but not INNLE; the CSR config declares it.
REQ_CONFIG = """oid_section = sg_oids
[sg_oids]
INNLE = 1.2.643.100.4
[req]
distinguished_name = sg_dn
string_mask = utf8only
utf8 = yes
prompt = no
[sg_dn]
CN = unused
"""
PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")
FILES = ("key.pem", "csr.pem", "cert.pem", "chain.pem", "trust.pem", "key.next.pem", "csr.next.pem")


class CertError(Exception):
    """A refusal the school admin must understand: Russian text + the variable to fix."""

    def __init__(self, code: str, message_ru: str, variable: str, detail: str = "") -> None:
        self.code = code
        self.message_ru = message_ru
        self.variable = variable
        self.detail = detail
        super().__init__(message_ru)

    def render(self) -> str:
        text = "[%s] %s Что исправить: %s." % (self.code, self.message_ru, self.variable)
        if self.detail:
            text += " (openssl: %s)" % self.detail.strip().splitlines()[-1][:300]
        return text


class OpenSSL:
    """Thin runner around the openssl CLI; the gost engine is added when available."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.gost = False

    def run(
        self,
        args: list[str],
        data: bytes | None = None,
        env_extra: dict[str, str] | None = None,
        check: bool = True,
        engine: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = [self.binary, *args]
        if engine and self.gost and args[0] not in ("engine", "version", "asn1parse"):
            cmd[2:2] = ["-engine", "gost"]
        env = dict(os.environ)
        env.update(env_extra or {})
        proc = subprocess.run(cmd, input=data, capture_output=True, env=env, check=False)
        if check and proc.returncode != 0:
            raise OpenSSLFailure(args[0], proc.stderr.decode("utf-8", "replace"))
        return proc

    def detect_gost(self) -> bool:
        try:
            proc = self.run(["engine", "-t", "gost"], check=False)
        except OSError:
            return False
        self.gost = proc.returncode == 0 and b"available" in proc.stdout
        return self.gost


class OpenSSLFailure(Exception):
    def __init__(self, command: str, stderr: str) -> None:
        self.command = command
        self.stderr = stderr
        super().__init__("openssl %s: %s" % (command, stderr.strip()))


def split_certificates(ossl: OpenSSL, blob: bytes, variable: str) -> list[bytes]:
    """PEM bundle, DER certificate or PKCS#7 (PEM/DER) -> list of PEM certificates (bytes)."""
    blob = blob.strip() if blob.lstrip().startswith(b"-----") else blob
    if b"-----BEGIN CERTIFICATE-----" in blob:
        certs = [m.group(0) + b"\n" for m in PEM_CERT_RE.finditer(blob)]
    elif b"-----BEGIN PKCS7-----" in blob:
        certs = _pkcs7_certs(ossl, blob, "PEM", variable)
    else:
        proc = ossl.run(["x509", "-inform", "DER", "-outform", "PEM"], data=blob, check=False)
        certs = [proc.stdout] if proc.returncode == 0 else _pkcs7_certs(ossl, blob, "DER", variable)
    if not certs:
        raise CertError(
            "SC-FORMAT", "Файл не содержит ни одного сертификата (ожидается PEM, DER или PKCS#7).", variable
        )
    return [_normalise_pem(ossl, c, variable) for c in certs]


def _pkcs7_certs(ossl: OpenSSL, blob: bytes, form: str, variable: str) -> list[bytes]:
    proc = ossl.run(["pkcs7", "-inform", form, "-print_certs"], data=blob, check=False)
    if proc.returncode != 0:
        raise CertError(
            "SC-FORMAT",
            "Файл не распознан как сертификат: ожидается PEM, DER или PKCS#7.",
            variable,
            proc.stderr.decode("utf-8", "replace"),
        )
    return [m.group(0) + b"\n" for m in PEM_CERT_RE.finditer(proc.stdout)]


def _normalise_pem(ossl: OpenSSL, pem: bytes, variable: str) -> bytes:
    proc = ossl.run(["x509", "-outform", "PEM"], data=pem, check=False)
    if proc.returncode != 0:
        raise CertError(
            "SC-FORMAT",
            "Сертификат повреждён и не читается OpenSSL.",
            variable,
            proc.stderr.decode("utf-8", "replace"),
        )
    return proc.stdout


def pem_to_der(pem: bytes) -> bytes:
    body = b"".join(line for line in pem.strip().splitlines() if not line.startswith(b"-----"))
    return base64.b64decode(body)


def cert_pubkey(ossl: OpenSSL, pem: bytes) -> bytes:
    return ossl.run(["x509", "-noout", "-pubkey"], data=pem).stdout.strip()


def key_pubkey(ossl: OpenSSL, key_path: str) -> bytes:
    return ossl.run(["pkey", "-in", key_path, "-pubout"]).stdout.strip()


def cert_text(ossl: OpenSSL, pem: bytes) -> str:
    return ossl.run(["x509", "-noout", "-text"], data=pem).stdout.decode("utf-8", "replace")


def cert_algorithm(text: str) -> tuple[str, int]:
    """(family, bits) from `openssl x509 -text`; family uses the names of the algorithm option."""
    match = re.search(r"Public Key Algorithm:\s*(.+)", text)
    name = match.group(1).strip() if match else "unknown"
    bits_match = re.search(r"Public-Key:\s*\((\d+) bit\)", text)
    bits = int(bits_match.group(1)) if bits_match else 0
    if "GOST R 34.10-2012 with 256" in name:
        return "gost2012_256", 256
    if "GOST R 34.10-2012 with 512" in name:
        return "gost2012_512", 512
    if name == "rsaEncryption":
        return "rsa", bits
    if name == "id-ecPublicKey":
        return "ecdsa", bits
    return name, bits


def key_usage(text: str) -> list[str]:
    match = re.search(r"X509v3 Key Usage:.*\n\s*(.+)", text)
    if not match:
        return []
    return [part.strip() for part in match.group(1).split(",")]


def subject_pairs(ossl: OpenSSL, kind: str, pem: bytes) -> list[tuple[str, str]]:
    """[(oid, value)] of a CSR or certificate subject, in order."""
    out = ossl.run([kind, "-noout", "-subject", "-nameopt", "oid,utf8,sep_multiline,-esc_msb"], data=pem)
    pairs = []
    for line in out.stdout.decode("utf-8").splitlines()[1:]:
        oid, _, value = line.strip().partition("=")
        pairs.append((oid, value))
    return pairs


def ordered_subject(subject: dict[str, Any]) -> list[tuple[str, str]]:
    """Subject fields in the fixed order of SUBJECT_OIDS: module arguments arrive with their keys sorted,
    so the caller's order cannot be kept; a fixed conventional order keeps CSRs stable and readable."""
    return [(key, str(subject[key])) for key in SUBJECT_OIDS if key in subject]


def desired_pairs(subject: dict[str, Any]) -> list[tuple[str, str]]:
    return [(SUBJECT_OIDS[k], v) for k, v in ordered_subject(subject)]


def subj_arg(subject: dict[str, Any]) -> str:
    def esc(value: object) -> str:
        return re.sub(r"([\\/+])", r"\\\1", str(value))

    return "".join("/%s=%s" % (k, esc(v)) for k, v in ordered_subject(subject))


class SigningCert:
    def __init__(self, module: AnsibleModule) -> None:
        self.m = module
        self.p = module.params
        self.dir = self.p["path"]
        self.ossl = OpenSSL(self.p["openssl"])
        self.changed = False
        self.changes = []  # human-readable plan lines (diff / check mode)
        self.before = {}
        self.after = {}

    def f(self, name: str) -> str:
        return os.path.join(self.dir, name)

    # ---------- helpers that write -------------------------------------------------------------
    def _ids(self) -> tuple[int, int]:
        try:
            uid = pwd.getpwnam(self.p["owner"]).pw_uid
        except KeyError:
            raise CertError(
                "SC-OWNER",
                "Пользователь-владелец ключа %s не существует на сервере." % self.p["owner"],
                "signing_cert_owner",
            ) from None
        try:
            gid = grp.getgrnam(self.p["group"]).gr_gid
        except KeyError:
            raise CertError(
                "SC-OWNER", "Группа %s не существует на сервере." % self.p["group"], "signing_cert_group"
            ) from None
        return uid, gid

    def ensure_dir(self) -> bool:
        _uid, gid = self._ids()
        if not os.path.isdir(self.dir):
            self._change("каталог %s будет создан" % self.dir)
            if self.m.check_mode:
                return False
            os.makedirs(self.dir, mode=0o750)
        st = os.stat(self.dir)
        if (st.st_mode & 0o7777, st.st_uid, st.st_gid) != (0o750, 0, gid):
            self._change("права каталога %s" % self.dir)
            if not self.m.check_mode:
                os.chown(self.dir, 0, gid)
                os.chmod(self.dir, 0o750)  # noqa: S103 - the agent's group must traverse it
        return True

    def _change(self, line: str) -> None:
        self.changed = True
        self.changes.append(line)

    def _place(self, src: str, name: str, secret: bool) -> None:
        """Atomically move a file prepared in the staging dir into place with its mode and owner."""
        uid, gid = self._ids()
        if secret:
            os.chown(src, uid, gid)
            os.chmod(src, 0o600)
        else:
            os.chown(src, 0, gid)
            os.chmod(src, 0o640)
        os.replace(src, self.f(name))

    def _fix_perms(self, name: str, secret: bool) -> None:
        path = self.f(name)
        if not os.path.exists(path):
            return
        uid, gid = self._ids()
        want = (0o600, uid, gid) if secret else (0o640, 0, gid)
        st = os.stat(path)
        if (st.st_mode & 0o7777, st.st_uid, st.st_gid) != want:
            self._change("права файла %s" % path)
            if not self.m.check_mode:
                os.chown(path, want[1], want[2])
                os.chmod(path, want[0])

    def _write_public(self, name: str, content: bytes) -> bool:
        path = self.f(name)
        old = None
        if os.path.exists(path):
            with open(path, "rb") as fh:
                old = fh.read()
        if old == content:
            self._fix_perms(name, secret=False)
            return False
        self._change("%s будет %s" % (path, "обновлён" if old is not None else "записан"))
        if self.m.check_mode:
            return True
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".%s." % name)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        self._place(tmp, name, secret=False)
        return True

    # ---------- key and CSR --------------------------------------------------------------------
    def generate_key(self, name: str) -> None:
        self._change("закрытый ключ %s (%s) будет создан на сервере" % (self.f(name), self.p["algorithm"]))
        if self.m.check_mode:
            return
        algo = self.p["algorithm"]
        if algo in GOST_ALGORITHMS:
            args = ["-algorithm", algo, "-pkeyopt", "paramset:%s" % self.p["gost_paramset"]]
        elif algo == "rsa":
            args = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % self.p["rsa_bits"]]
        else:
            args = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:%s" % self.p["ec_curve"]]
            args += ["-pkeyopt", "ec_param_enc:named_curve"]
        stage = tempfile.mkdtemp(dir=self.dir, prefix=".keygen.")
        try:
            tmp = os.path.join(stage, name)
            old_umask = os.umask(0o077)
            try:
                self.ossl.run(["genpkey", *args, "-out", tmp])
            finally:
                os.umask(old_umask)
            self._place(tmp, name, secret=True)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def ensure_csr(self, key_name: str, csr_name: str) -> None:
        key_path, csr_path = self.f(key_name), self.f(csr_name)
        subject = self.p["subject"]
        if os.path.exists(csr_path) and os.path.exists(key_path):
            with open(csr_path, "rb") as fh:
                csr = fh.read()
            proc = self.ossl.run(["req", "-noout", "-pubkey"], data=csr, check=False)
            same_key = proc.returncode == 0 and proc.stdout.strip() == key_pubkey(self.ossl, key_path)
            if same_key and subject_pairs(self.ossl, "req", csr) == desired_pairs(subject):
                self._fix_perms(csr_name, secret=False)
                return
        self._change("запрос на сертификат %s будет создан (%s)" % (csr_path, subj_arg(subject)))
        if self.m.check_mode or not os.path.exists(key_path):
            return
        stage = tempfile.mkdtemp(dir=self.dir, prefix=".csr.")
        try:
            cnf = os.path.join(stage, "req.cnf")
            with open(cnf, "w", encoding="utf-8") as fh:
                fh.write(REQ_CONFIG)
            tmp = os.path.join(stage, csr_name)
            try:
                self.ossl.run(
                    [
                        "req",
                        "-new",
                        "-config",
                        cnf,
                        "-utf8",
                        "-key",
                        key_path,
                        "-subj",
                        subj_arg(subject),
                        "-out",
                        tmp,
                    ]
                )
            except OpenSSLFailure as exc:
                raise CertError(
                    "SC-SUBJECT",
                    "Не удалось создать запрос на сертификат с этими полями субъекта.",
                    "signing_cert_subject",
                    exc.stderr,
                ) from None
            self._place(tmp, csr_name, secret=False)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    # ---------- certificate validation ---------------------------------------------------------
    def _b64(self, value: str, variable: str) -> bytes:
        try:
            return base64.b64decode(value, validate=False)
        except (ValueError, TypeError):
            raise CertError("SC-FORMAT", "Значение не является base64 содержимого файла.", variable) from None

    def load_input(self, stage: str) -> tuple[bytes, list[bytes], str]:
        """(leaf_pem, chain_pems, key_source); key_source: 'key.pem', 'key.next.pem' or a staged key path."""
        p = self.p
        chain = []
        for item in p["chain"]:
            chain += split_certificates(
                self.ossl, self._b64(item, "signing_cert_chain_src"), "signing_cert_chain_src"
            )
        if p["pkcs12"]:
            p12 = os.path.join(stage, "in.p12")
            with open(p12, "wb") as fh:
                fh.write(self._b64(p["pkcs12"], "signing_cert_pkcs12_src"))
            env = {"SG_P12_PASS": p["pkcs12_passphrase"] or ""}
            key_tmp = os.path.join(stage, "p12key.pem")
            old_umask = os.umask(0o077)
            try:
                proc = self.ossl.run(
                    [
                        "pkcs12",
                        "-in",
                        p12,
                        "-passin",
                        "env:SG_P12_PASS",
                        "-nocerts",
                        "-nodes",
                        "-out",
                        key_tmp,
                    ],
                    env_extra=env,
                    check=False,
                )
            finally:
                os.umask(old_umask)
            if proc.returncode != 0:
                err = proc.stderr.decode("utf-8", "replace")
                if "mac verify" in err.lower() or "invalid password" in err.lower():
                    raise CertError(
                        "SC-P12-PASSWORD",
                        "Неверный пароль файла PKCS#12: файл не удалось расшифровать.",
                        "signing_cert_pkcs12_passphrase (в Ansible Vault)",
                    )
                raise CertError("SC-P12", "Файл PKCS#12 не читается.", "signing_cert_pkcs12_src", err)
            proc = self.ossl.run(
                ["pkcs12", "-in", p12, "-passin", "env:SG_P12_PASS", "-nokeys"], env_extra=env, check=False
            )
            if proc.returncode != 0:
                raise CertError(
                    "SC-P12",
                    "Сертификаты в PKCS#12 не читаются.",
                    "signing_cert_pkcs12_src",
                    proc.stderr.decode("utf-8", "replace"),
                )
            certs = split_certificates(self.ossl, proc.stdout, "signing_cert_pkcs12_src")
            keys = {key_pubkey(self.ossl, key_tmp): key_tmp}
            variable = "signing_cert_pkcs12_src"
        else:
            certs = split_certificates(
                self.ossl,
                self._b64(p["certificate"], "signing_cert_certificate_src"),
                "signing_cert_certificate_src",
            )
            keys = {}
            for name in ("key.pem", "key.next.pem"):
                if os.path.exists(self.f(name)):
                    keys[key_pubkey(self.ossl, self.f(name))] = name
            variable = "signing_cert_certificate_src"
        leaf, key_source = None, None
        for cert in certs:
            source = keys.get(cert_pubkey(self.ossl, cert))
            if source and leaf is None:
                leaf, key_source = cert, source
            else:
                chain.append(cert)
        if leaf is None:
            raise CertError(
                "SC-KEY-MISMATCH",
                "Сертификат выпущен для другого ключа: его открытый ключ не совпадает с закрытым ключом школы"
                " (%s). Отправьте в УЦ запрос %s и установите выпущенный по нему сертификат."
                % (", ".join(sorted(set(keys.values()))) or "ключа нет", self.f("csr.pem")),
                variable,
            )
        return leaf, _dedupe(chain), key_source

    def validate(self, leaf: bytes, chain: list[bytes], anchors: list[bytes], stage: str) -> None:
        info = certificate_info(pem_to_der(leaf))
        not_before = datetime.datetime.fromisoformat(info["not_before"])
        not_after = datetime.datetime.fromisoformat(info["not_after"])
        if info["expired"]:
            raise CertError(
                "SC-EXPIRED",
                "Срок действия сертификата истёк %s UTC. Получите в УЦ новый сертификат."
                % not_after.strftime("%Y-%m-%d %H:%M"),
                "signing_cert_certificate_src",
            )
        if info["not_yet_valid"]:
            raise CertError(
                "SC-NOT-YET-VALID",
                "Сертификат начнёт действовать только %s UTC (проверьте и время на сервере)."
                % not_before.strftime("%Y-%m-%d %H:%M"),
                "signing_cert_certificate_src",
            )
        days_left = info["days_left"]
        if days_left < self.p["min_days_left"]:
            raise CertError(
                "SC-EXPIRES-SOON",
                "Сертификат истекает через %d дн. (%s UTC), меньше допустимых %d. Запросите новый сертификат."
                % (days_left, not_after.strftime("%Y-%m-%d"), self.p["min_days_left"]),
                "signing_cert_certificate_src или signing_cert_min_days_left",
            )
        text = cert_text(self.ossl, leaf)
        if "Digital Signature" not in key_usage(text):
            raise CertError(
                "SC-KEY-USAGE",
                "В сертификате нет назначения «цифровая подпись» (keyUsage digitalSignature);"
                " ЕСИА его не примет."
                " Запросите в УЦ сертификат для подписи.",
                "signing_cert_certificate_src",
            )
        family, bits = cert_algorithm(text)
        want = self.p["algorithm"]
        if family != want:
            raise CertError(
                "SC-ALGORITHM",
                "Алгоритм ключа сертификата %s, а ожидается %s." % (family, want),
                "signing_cert_algorithm (или сертификат signing_cert_certificate_src)",
            )
        if (family == "rsa" and bits < 2048) or (family == "ecdsa" and bits < 256):
            raise CertError(
                "SC-KEY-SIZE",
                "Слишком короткий ключ сертификата: %d бит." % bits,
                "signing_cert_rsa_bits",
            )
        anchors_path = os.path.join(stage, "anchors.pem")
        with open(anchors_path, "wb") as fh:
            fh.write(b"".join(anchors))
        args = ["verify", "-CAfile", anchors_path]
        if chain:
            untrusted = os.path.join(stage, "untrusted.pem")
            with open(untrusted, "wb") as fh:
                fh.write(b"".join(chain))
            args += ["-untrusted", untrusted]
        leaf_path = os.path.join(stage, "leaf.pem")
        with open(leaf_path, "wb") as fh:
            fh.write(leaf)
        proc = self.ossl.run([*args, leaf_path], check=False)
        if proc.returncode != 0:
            raise CertError(
                "SC-UNTRUSTED",
                "Цепочка сертификата не доверена: она не сходится к корневым сертификатам"
                " из доверенного списка"
                " (либо не хватает промежуточного сертификата УЦ).",
                "signing_cert_trust_anchors (корневые сертификаты УЦ) или signing_cert_chain_src",
                (proc.stderr or proc.stdout).decode("utf-8", "replace"),
            )

    # ---------- facts ---------------------------------------------------------------------------
    def facts(self, leaf: bytes) -> dict[str, Any]:
        """Certificate facts from the ESIA core; only key usage and key size come from openssl's text."""
        der = pem_to_der(leaf)
        info = certificate_info(der)
        text = cert_text(self.ossl, leaf)
        _family, bits = cert_algorithm(text)
        hash_alg = "gost12_256" if self.ossl.gost else "sha256"
        return {
            "subject": info["subject"],
            "subject_fields": info.get("subject_fields"),
            "issuer": info["issuer"],
            "serial": info["serial"],
            "not_before": info["not_before"],
            "not_after": info["not_after"],
            "days_left": info["days_left"],
            "thumbprint": hashlib.sha1(der).hexdigest().upper(),  # noqa: S324 - an identifier, not security
            "sha256_fingerprint": info["sha256_fingerprint"],
            "client_certificate_hash": client_certificate_hash(
                der, hash_alg=hash_alg, openssl_path=self.p["openssl"]
            ),
            "client_certificate_hash_alg": hash_alg,
            "algorithm": info["algorithm"],
            "key_algorithm": info["key_algorithm"],
            "signature_algorithm": info.get("signature_algorithm"),
            "key_bits": bits,
            "key_usage": key_usage(text),
        }

    # ---------- main flows ----------------------------------------------------------------------
    def present(self) -> dict[str, Any]:
        p = self.p
        if not self.ossl.detect_gost() and p["algorithm"] in GOST_ALGORITHMS:
            raise CertError(
                "SC-NO-GOST-ENGINE",
                "В OpenSSL на сервере нет ГОСТ-движка (gost engine):"
                " ключ ГОСТ Р 34.10-2012 создать и проверить"
                " нельзя. Установите пакет libengine-gost-openssl.",
                "signing_cert_packages (или signing_cert_algorithm, если нужен не ГОСТ)",
            )
        installing = bool(p["certificate"] or p["pkcs12"])
        if installing and not p["trust_anchors"]:
            raise CertError(
                "SC-NO-ANCHORS",
                "Не задан ни один доверенный корневой сертификат УЦ для проверки цепочки.",
                "signing_cert_trust_anchors",
            )
        if not p["pkcs12"] and not p["subject"]:
            raise CertError(
                "SC-SUBJECT", "Не заданы поля субъекта (ОГРН, ИНН, O, CN).", "signing_cert_subject"
            )
        dir_exists = self.ensure_dir()
        self.before = self._state_summary()

        result = {
            "key_path": self.f("key.pem"),
            "csr_path": self.f("csr.pem"),
            "cert_path": self.f("cert.pem"),
            "chain_path": self.f("chain.pem"),
            "trust_path": self.f("trust.pem"),
        }
        if not p["pkcs12"]:
            if not os.path.exists(self.f("key.pem")):
                if dir_exists:
                    self.generate_key("key.pem")
                else:
                    self._change("закрытый ключ будет создан на сервере")
            self._fix_perms("key.pem", secret=True)
            if os.path.exists(self.f("key.pem")) or not self.m.check_mode:
                self.ensure_csr("key.pem", "csr.pem")
        if p["renew"]:
            if not os.path.exists(self.f("key.next.pem")):
                self.generate_key("key.next.pem") if dir_exists else self._change("новый ключ будет создан")
            self._fix_perms("key.next.pem", secret=True)
            if os.path.exists(self.f("key.next.pem")):
                self.ensure_csr("key.next.pem", "csr.next.pem")

        if installing:
            self.install(dir_exists)

        leaf = None
        if os.path.exists(self.f("cert.pem")):
            with open(self.f("cert.pem"), "rb") as fh:
                leaf = fh.read()
            key_exists = os.path.exists(self.f("key.pem")) and not self.m.check_mode
            if key_exists and cert_pubkey(self.ossl, leaf) != key_pubkey(self.ossl, self.f("key.pem")):
                raise CertError(
                    "SC-KEY-MISMATCH",
                    "Установленный сертификат %s не соответствует ключу %s."
                    % (self.f("cert.pem"), self.f("key.pem")),
                    "signing_cert_certificate_src",
                )
        if leaf:
            result["certificate"] = self.facts(leaf)
            result["status"] = "installed"
        else:
            result["status"] = "awaiting_certificate"
        if os.path.exists(self.f("key.pem")):
            result["key_algorithm"] = self._key_algorithm(self.f("key.pem"))
        result["renewal"] = {
            "pending": os.path.exists(self.f("key.next.pem")),
            "key_path": self.f("key.next.pem"),
            "csr_path": self.f("csr.next.pem"),
        }
        if p["signer_config"] and leaf and not self.m.check_mode:
            result["signer_probe"] = self.probe_signer()
        self.after = self._state_summary()
        return result

    def install(self, dir_exists: bool) -> None:
        p = self.p
        stage = tempfile.mkdtemp(prefix=".install.", dir=self.dir if dir_exists else None)
        try:
            anchors = []
            for item in p["trust_anchors"]:
                anchors += split_certificates(
                    self.ossl, self._b64(item, "signing_cert_trust_anchors"), "signing_cert_trust_anchors"
                )
            leaf, chain, key_source = self.load_input(stage)
            self.validate(leaf, chain, anchors, stage)
            # Everything checked: from here on only writes.
            if key_source == "key.next.pem":
                self._change("ключ для продления %s становится текущим" % self.f("key.next.pem"))
                if not self.m.check_mode:
                    os.replace(self.f("key.next.pem"), self.f("key.pem"))
                    if os.path.exists(self.f("csr.next.pem")):
                        os.replace(self.f("csr.next.pem"), self.f("csr.pem"))
            elif key_source not in ("key.pem", None):  # PKCS#12 key
                same = os.path.exists(self.f("key.pem")) and key_pubkey(
                    self.ossl, self.f("key.pem")
                ) == key_pubkey(self.ossl, key_source)
                if not same:
                    self._change("закрытый ключ из PKCS#12 будет установлен в %s" % self.f("key.pem"))
                    if not self.m.check_mode:
                        self._place(key_source, "key.pem", secret=True)
                else:
                    self._fix_perms("key.pem", secret=True)
            self._write_public("cert.pem", leaf)
            self._write_public("chain.pem", b"".join(chain))
            self._write_public("trust.pem", b"".join(anchors))
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _key_algorithm(self, path: str) -> str:
        """Algorithm of a private key, from the OID of its public key (no key material is read here)."""
        pub = key_pubkey(self.ossl, path)
        out = self.ossl.run(["asn1parse"], data=pub).stdout.decode("utf-8", "replace")
        match = re.search(r"OBJECT\s*:(.+)", out)
        name = match.group(1).strip() if match else "unknown"
        return {
            "GOST R 34.10-2012 with 256 bit modulus": "gost2012_256",
            "GOST R 34.10-2012 with 512 bit modulus": "gost2012_512",
            "rsaEncryption": "rsa",
            "id-ecPublicKey": "ecdsa",
        }.get(name, name)

    def probe_signer(self) -> dict[str, Any]:
        from ansible.module_utils.schoolgate_esia.signing import make_signer
        from ansible.module_utils.schoolgate_esia.verify import verify_cms_detached, verify_raw

        path = self.p["signer_config"]
        try:
            with open(path, encoding="utf-8") as fh:
                config = json.load(fh)
        except (OSError, ValueError) as exc:
            raise CertError(
                "SC-SIGNER", "Конфигурация подписи %s не читается: %s" % (path, exc), "signing_cert_signer"
            ) from None
        probe = b"schoolgate signer probe " + os.urandom(16).hex().encode()
        try:
            signer = make_signer(config)
            signature = signer.sign_raw(probe)
            verify_raw(signer.certificate_der, probe, signature)
            cms = signer.sign_cms_detached(probe)
            verify_cms_detached(cms, probe, expected_cert=signer.certificate_der)
        except Exception as exc:  # any signer failure is reported the same way, with its text
            raise CertError(
                "SC-SIGNER",
                "Пробная подпись не прошла проверку: подписчик типа %s не работает (%s)."
                % (config.get("type"), exc),
                "signing_cert_signer",
            ) from None
        return {
            "type": config.get("type"),
            "ok": True,
            "signature_bytes": len(signature),
            "cms_bytes": len(cms),
        }

    def _state_summary(self) -> str:
        lines = []
        for name in FILES:
            path = self.f(name)
            if not os.path.exists(path):
                continue
            if name.startswith("key"):
                lines.append("%s: закрытый ключ (содержимое не показывается)" % name)
            elif name == "cert.pem":
                with open(path, "rb") as fh:
                    pem = fh.read()
                try:
                    info = certificate_info(pem_to_der(pem))
                    lines.append(
                        "cert.pem: %s; serial %s; до %s; sha256 %s"
                        % (info["subject"], info["serial"], info["not_after"], info["sha256_fingerprint"])
                    )
                except Exception:  # a broken file is shown as such in the diff
                    lines.append("cert.pem: не читается")
            else:
                with open(path, "rb") as fh:
                    lines.append("%s: sha256 %s" % (name, hashlib.sha256(fh.read()).hexdigest()))
        return "\n".join(lines) + "\n"

    def absent(self) -> dict[str, Any]:
        self.before = self._state_summary() if os.path.isdir(self.dir) else ""
        for name in FILES:
            path = self.f(name)
            if os.path.exists(path):
                self._change("%s будет удалён" % path)
                if not self.m.check_mode:
                    os.unlink(path)
        self.after = self._state_summary() if os.path.isdir(self.dir) else ""
        return {}


def _dedupe(certs: list[bytes]) -> list[bytes]:
    seen, out = set(), []
    for cert in certs:
        if cert not in seen:
            seen.add(cert)
            out.append(cert)
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            path=dict(type="path", default="/etc/schoolgate/signing"),
            owner=dict(type="str", default="schoolgate"),
            group=dict(type="str", default="schoolgate"),
            algorithm=dict(
                type="str", choices=["gost2012_256", "gost2012_512", "rsa", "ecdsa"], default="gost2012_256"
            ),
            gost_paramset=dict(type="str", default="A"),
            rsa_bits=dict(type="int", default=3072),
            ec_curve=dict(type="str", choices=["P-256", "P-384"], default="P-256"),
            subject=dict(type="dict"),
            certificate=dict(type="str"),
            chain=dict(type="list", elements="str", default=[]),
            pkcs12=dict(type="str", no_log=True),
            pkcs12_passphrase=dict(type="str", no_log=True),
            trust_anchors=dict(type="list", elements="str", default=[]),
            min_days_left=dict(type="int", default=1),
            renew=dict(type="bool", default=False),
            signer_config=dict(type="path"),
            openssl=dict(type="str", default="openssl"),
        ),
        mutually_exclusive=[("certificate", "pkcs12")],
        required_by={"pkcs12": "pkcs12_passphrase"},
        supports_check_mode=True,
    )
    if ESIA_IMPORT_ERROR is not None:
        module.fail_json(
            msg="schoolgate ESIA core (module_utils/schoolgate_esia) is not available: %s" % ESIA_IMPORT_ERROR
        )
    subject = module.params["subject"] or {}
    for key, value in subject.items():
        if key not in SUBJECT_OIDS or "\n" in str(value) or not str(value).strip():
            module.fail_json(
                msg="[SC-SUBJECT] Поле субъекта %r не поддерживается или пустое."
                " Что исправить: signing_cert_subject"
                " (допустимо: %s)." % (key, ", ".join(SUBJECT_OIDS))
            )
    sc = SigningCert(module)
    try:
        result = sc.present() if module.params["state"] == "present" else sc.absent()
    except CertError as exc:
        module.fail_json(msg=exc.render(), error_code=exc.code, variable=exc.variable, changed=False)
    except OpenSSLFailure as exc:
        module.fail_json(
            msg="openssl %s failed: %s" % (exc.command, exc.stderr.strip()[-500:]), changed=sc.changed
        )
    result["changed"] = sc.changed
    result["plan"] = sc.changes
    if module._diff:
        result["diff"] = {
            "before": sc.before,
            "after": sc.after
            if not module.check_mode
            else sc.before + "".join("+ %s\n" % c for c in sc.changes),
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
