#!/usr/bin/python
"""Ansible module: the school portal's registration as a service in the provider cabinet, and its token."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gosuslugi_service
short_description: Register the school portal as a service with the provider and manage its access token
description:
  - Declares the portal's registration in the provider cabinet (seed stage 3) - unique name (the ESIA system
    mnemonic, C(client_id)), API URL and signing certificate. The remote registration is read first and only
    what differs is changed; a new signing certificate is uploaded in place (the service id stays).
  - Manages the provider access token of the service - issued when missing, rotated when it expires within
    O(token_rotate_before_s) or on request, revoked with O(token_state=absent). The token is written only to
    O(token_path) on the host (mode 0600, owner O(token_owner)); it never appears in results or logs.
  - Talks to the cabinet API with the regional access code (C(X-Access-Code)), TLS verification always on
    against O(ca_file) or the system trust store; retries with exponential backoff on 5xx, 429 (honouring
    C(Retry-After)), timeouts and connection errors. 4xx and ESIA-style codes fail with a Russian message and
    the hint from the ESIA core's error catalogue.
  - Supports check mode and diff.
version_added: "0.1.0"
author: schoolgate
options:
  state:
    description: V(present) registers/updates the service; V(absent) deletes it (its tokens die with it) and
      removes the token files.
    type: str
    choices: [present, absent]
    default: present
  name:
    description: Service name = ESIA system mnemonic (C(client_id)), C(^[A-Za-z0-9_.-]{2,64}$).
    type: str
    required: true
  api_url:
    description: The portal's API URL the provider calls (http(s)). Required with O(state=present).
    type: str
  certificate:
    description: Signing certificate, PEM text. Mutually exclusive with O(certificate_path).
    type: str
  certificate_path:
    description: Path on the host of the PEM signing certificate (the signing_cert role's C(cert.pem)).
    type: path
  base_url:
    description: Provider base URL for the chosen O(environment), e.g. C(https://provider).
    type: str
    required: true
  environment:
    description: Which provider environment O(base_url) and O(ca_file) belong to; recorded with the token so
      a token of the test bench is never used against production.
    type: str
    choices: [test, prod]
    default: test
  ca_file:
    description: CA bundle (path on the host) that verifies the provider's TLS certificate. Empty uses the
      system trust store. Verification cannot be turned off.
    type: path
  access_code:
    description: Regional access code from onboarding (keep it in Ansible Vault).
    type: str
    required: true
    no_log: true
  token_state:
    description:
      - V(present) issues a token when none is stored or the stored one is revoked, expired or expiring within
        O(token_rotate_before_s) (then it is rotated).
      - V(rotated) rotates the stored token now (always changes).
      - V(absent) revokes the stored token and removes the token files.
      - V(ignore) leaves tokens alone.
    type: str
    choices: [present, rotated, absent, ignore]
    default: present
  token_path:
    description: File on the host that receives the token (only the token), mode 0600. Its metadata
      (token id, expiry, environment — no secret) goes to C(<token_path>.json), mode 0600.
    type: path
    default: /etc/schoolgate/provider-token
  token_owner:
    description: Owner of the token files (the agent's user).
    type: str
    default: root
  token_group:
    description: Group of the token files.
    type: str
    default: root
  token_lifetime_s:
    description: Lifetime requested for new tokens, seconds.
    type: int
    default: 2592000
  token_rotate_before_s:
    description: Rotate a token that expires within this many seconds.
    type: int
    default: 604800
  attempts:
    description: Attempts per request on 5xx/429/timeouts before failing.
    type: int
    default: 5
  backoff_s:
    description: First retry delay, doubled on each attempt (capped by O(backoff_max_s)).
    type: float
    default: 1.0
  backoff_max_s:
    description: Longest single wait between attempts, also the cap for C(Retry-After).
    type: float
    default: 30.0
  timeout_s:
    description: Timeout of one HTTP request.
    type: float
    default: 30.0
notes:
  - The client certificate hash is computed on the host with the ESIA core (GOST R 34.11-2012 over the DER
    certificate), so a GOST certificate needs C(openssl) with the GOST engine
    (installed by the signing_cert role).
"""

EXAMPLES = r"""
- name: Register the portal and keep its provider token fresh
  gosuslugi_service:
    name: SCHOOL001
    api_url: https://school-001.example/api
    certificate_path: /etc/schoolgate/signing/cert.pem
    base_url: "{{ registration_environments[registration_environment].base_url }}"
    ca_file: "{{ registration_environments[registration_environment].ca_file }}"
    environment: "{{ registration_environment }}"
    access_code: "{{ registration_access_code }}"
    token_owner: schoolgate-agent
    token_group: schoolgate-agent
  no_log: true
  register: service

- name: Rotate the token now (e.g. after a suspected leak)
  gosuslugi_service:
    name: SCHOOL001
    api_url: https://school-001.example/api
    certificate_path: /etc/schoolgate/signing/cert.pem
    base_url: https://provider
    access_code: "{{ registration_access_code }}"
    token_state: rotated

- name: Remove the registration (its tokens are revoked with it)
  gosuslugi_service:
    name: SCHOOL001
    base_url: https://provider
    access_code: "{{ registration_access_code }}"
    state: absent
"""

RETURN = r"""
service_id:
  description: Id of the service in the provider cabinet (empty when absent).
  type: str
  returned: always
  sample: 3f1c2a9e-0d7b-4c1e-9f57-0b1d2f3e4a5b
mnemonic:
  description: The service name = ESIA client_id.
  type: str
  returned: always
  sample: SCHOOL001
service:
  description: The registration as the provider reports it (no secrets).
  type: dict
  returned: when registered
  sample: {service_id: "3f1c...", name: SCHOOL001, api_url: "https://school-001.example/api",
           certificate_hash: "8a7f...", created_at: "2026-12-04T16:40:00Z"}
actions:
  description: What was (or, in check mode, would be) done, in order.
  type: list
  elements: str
  returned: always
  sample: [register, issue_token]
certificate_hash:
  description: client_certificate_hash of the certificate (Streebog-256 over DER, 64 hex).
  type: str
  returned: with state=present
token:
  description: Token metadata (never the token itself).
  type: dict
  returned: when token_state is not ignore
  sample: {token_id: "b2c...", status: active, expires_at: "2027-01-03T16:40:00Z",
           path: /etc/schoolgate/provider-token,
           environment: test}
retries:
  description: Requests that were retried (method, path, attempt, status, delay_s).
  type: list
  elements: dict
  returned: always
"""

import calendar
import json
import os
import time
from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.schoolgate_http import HttpError, JsonClient

try:
    from ansible.module_utils.schoolgate_esia.errors import CATALOGUE, EsiaError
except ImportError:  # pragma: no cover - module_utils missing means a broken checkout
    CATALOGUE, EsiaError = {}, None  # type: ignore[assignment]

SERVICES = "/cabinet/v1/services"
ACCESS_CODE_HINT = (
    "Проверьте код доступа регионального центра (переменная registration_access_code в Ansible Vault, "
    "выдаётся playbooks/onboard.yml) и что он относится к выбранной среде (test/prod)."
)


class Failure(Exception):
    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


def explain_http(exc: HttpError, action: str) -> Failure:
    """Turn an HTTP failure into a message school staff can act on (Russian first, the code and hint)."""
    code = exc.code
    details: Dict[str, Any] = {"status": exc.status, "code": code, "attempts": exc.attempts}
    if exc.status == 0:
        return Failure(
            "%s: поставщик недоступен (%s), попыток: %d. Проверьте адрес (base_url), сеть и "
            "хранилище доверенных "
            "сертификатов (ca_file)." % (action, exc.reason, exc.attempts),
            **details,
        )
    if exc.status >= 500 or exc.status == 429:
        return Failure(
            "%s: поставщик отвечает ошибкой HTTP %d (%s) после %d попыток. Повторите позже; если ошибка не "
            "проходит — обратитесь в поддержку поставщика."
            % (action, exc.status, exc.description, exc.attempts),
            **details,
        )
    message_ru = exc.body.get("message_ru")
    hint = exc.body.get("hint") or ""
    if EsiaError is not None and (code.startswith("ESIA-") or code.startswith("SG-ESIA-")):
        err = EsiaError.from_code(code, exc.description)
        message_ru = message_ru or err.message_ru
        hint = hint or err.hint
        details["esia"] = err.as_dict()
    if (exc.status == 401 and code.startswith("SIM-")) or (exc.status == 401 and not code):
        message_ru = message_ru or "Код доступа не принят"
        hint = hint or ACCESS_CODE_HINT
    if exc.status == 409:
        hint = hint or "Имя сервиса (мнемоника) уже занято другой организацией: выберите другое имя."
    text = "%s: HTTP %d %s — %s" % (action, exc.status, code or "", message_ru or exc.description)
    if message_ru:
        text += " (%s)" % exc.description
    if hint:
        text += ". Что сделать: " + hint
    return Failure(text, **details)


class Registration:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.actions: List[str] = []
        self.client = JsonClient(
            self.p["base_url"],
            ca_file=self.p["ca_file"],
            timeout=self.p["timeout_s"],
            attempts=self.p["attempts"],
            backoff=self.p["backoff_s"],
            backoff_max=self.p["backoff_max_s"],
            headers={"X-Access-Code": self.p["access_code"]},
        )

    def call(self, action: str, method: str, path: str, body: Any = None) -> Dict[str, Any]:
        try:
            return self.client.request(method, path, body)
        except HttpError as exc:
            raise explain_http(exc, action) from None

    # -- service ------------------------------------------------------------------------------------------
    def find(self) -> Optional[Dict[str, Any]]:
        services = self.call("Чтение регистрации", "GET", SERVICES).get("services", [])
        for svc in services:
            if svc.get("name") == self.p["name"]:
                return svc
        return None

    def certificate_pem(self) -> str:
        if self.p["certificate"]:
            return self.p["certificate"]
        path = self.p["certificate_path"]
        try:
            with open(path, "r", encoding="ascii") as fh:
                return fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise Failure(
                "Сертификат подписи %s не читается (%s): сначала выполните роль signing_cert." % (path, exc)
            ) from None

    def certificate_hash(self, pem: str) -> str:
        from ansible.module_utils.schoolgate_esia.certhash import client_certificate_hash

        try:
            return client_certificate_hash(pem.encode("ascii"))
        except Exception as exc:  # the ESIA core explains (e.g. no GOST engine); keep its text and hint
            text = "Не удалось вычислить client_certificate_hash сертификата: %s" % exc
            details: Dict[str, Any] = {}
            if EsiaError is not None and isinstance(exc, EsiaError):
                text = "Сертификат подписи не принят (%s: %s). Что сделать: %s" % (
                    exc.code,
                    exc.message_ru,
                    exc.hint or "проверьте файл сертификата",
                )
                details = {"code": exc.code, "esia": exc.as_dict()}
            raise Failure(text, **details) from None

    def ensure_present(self) -> Dict[str, Any]:
        pem = self.certificate_pem()
        digest = self.certificate_hash(pem)
        current = self.find()
        wanted = {"name": self.p["name"], "api_url": self.p["api_url"], "certificate_hash": digest}
        before = None if current is None else {k: current.get(k) for k in wanted}
        if current is None:
            self.actions.append("register")
            if not self.check:
                current = self.call(
                    "Регистрация сервиса",
                    "POST",
                    SERVICES,
                    {"name": self.p["name"], "api_url": self.p["api_url"], "certificate": pem},
                )
        else:
            sid = current["service_id"]
            if current.get("api_url") != self.p["api_url"]:
                self.actions.append("update_api_url")
                if not self.check:
                    current = self.call(
                        "Изменение адреса API",
                        "PATCH",
                        "%s/%s" % (SERVICES, sid),
                        {"api_url": self.p["api_url"]},
                    )
            if current.get("certificate_hash") != digest:
                self.actions.append("update_certificate")
                if not self.check:
                    current = self.call(
                        "Замена сертификата",
                        "PUT",
                        "%s/%s/certificate" % (SERVICES, sid),
                        {"certificate": pem},
                    )
        return {"before": before, "after": wanted, "service": current, "certificate_hash": digest}

    def ensure_absent(self) -> Dict[str, Any]:
        current = self.find()
        if current is not None:
            self.actions.append("delete")
            if not self.check:
                self.call("Удаление сервиса", "DELETE", "%s/%s" % (SERVICES, current["service_id"]))
        return {
            "before": None if current is None else {"name": current["name"]},
            "after": None,
            "service": None,
        }

    # -- token --------------------------------------------------------------------------------------------
    @property
    def meta_path(self) -> str:
        return self.p["token_path"] + ".json"

    def read_meta(self) -> Optional[Dict[str, Any]]:
        if not (os.path.exists(self.p["token_path"]) and os.path.exists(self.meta_path)):
            return None
        try:
            with open(self.meta_path, "r", encoding="utf-8") as fh:
                meta = json.load(fh)
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and meta.get("token_id") else None

    def remote_token(self, sid: str, token_id: str) -> Optional[Dict[str, Any]]:
        tokens = self.call("Чтение токенов", "GET", "%s/%s/tokens" % (SERVICES, sid)).get("tokens", [])
        for tok in tokens:
            if tok.get("token_id") == token_id:
                return tok
        return None

    def write_token(self, issued: Dict[str, Any], sid: str) -> Dict[str, Any]:
        meta = {
            "token_id": issued["token_id"],
            "service_id": sid,
            "mnemonic": self.p["name"],
            "environment": self.p["environment"],
            "base_url": self.p["base_url"],
            "expires_at": issued["expires_at"],
        }
        self._write_secret(self.p["token_path"], issued["access_token"])
        self._write_secret(self.meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return meta

    def _write_secret(self, path: str, text: str) -> None:
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            raise Failure("Каталог %s не существует (его создаёт роль agent/registration)." % directory)
        tmp = os.path.join(directory, ".%s.tmp" % os.path.basename(path))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        self.module.set_owner_if_different(tmp, self.p["token_owner"], False)
        self.module.set_group_if_different(tmp, self.p["token_group"], False)
        os.rename(tmp, path)  # atomic: the agent never reads a half-written token

    def files_drifted(self) -> bool:
        """Mode/owner of stored files differ from what is asked (fixed without touching the token)."""
        changed = False
        for path in (self.p["token_path"], self.meta_path):
            args = {
                "path": path,
                "mode": "0600",
                "owner": self.p["token_owner"],
                "group": self.p["token_group"],
            }
            file_args = self.module.load_file_common_arguments(args)
            changed = self.module.set_fs_attributes_if_different(file_args, False) or changed
        return changed

    def remove_token_files(self) -> bool:
        removed = False
        for path in (self.p["token_path"], self.meta_path):
            if os.path.exists(path):
                removed = True
                if not self.check:
                    os.unlink(path)
        return removed

    def ensure_token(self, sid: Optional[str]) -> Dict[str, Any]:
        state = self.p["token_state"]
        meta = self.read_meta()
        if meta is not None and (meta.get("service_id") != sid or meta.get("base_url") != self.p["base_url"]):
            meta_other = meta  # a token of another registration/environment: never reuse it
            meta = None
        else:
            meta_other = None
        remote = self.remote_token(sid, meta["token_id"]) if (meta and sid) else None
        status = remote.get("status") if remote else "missing"
        if state == "absent" or sid is None:
            if remote is not None and status == "active":
                self.actions.append("revoke_token")
                if not self.check:
                    self.call("Отзыв токена", "DELETE", "%s/%s/tokens/%s" % (SERVICES, sid, meta["token_id"]))
            if self.remove_token_files():
                self.actions.append("remove_token_files")
            return {"status": "absent", "path": self.p["token_path"]}
        expires_in = self._expires_in(remote) if remote else 0.0
        if state == "rotated" and status == "active":
            action = "rotate_token"
        elif status != "active":
            action = "issue_token"
        elif expires_in < self.p["token_rotate_before_s"]:
            action = "rotate_token"
        else:
            action = ""
        if meta_other is not None and not action:
            action = "issue_token"
        if not action:
            if self.files_drifted():
                self.actions.append("fix_token_file_mode")
            return {**self._public(meta), "status": status}
        self.actions.append(action)
        if self.check:
            return {
                "status": "would_" + action,
                "path": self.p["token_path"],
                "environment": self.p["environment"],
            }
        body = {"lifetime_s": self.p["token_lifetime_s"]}
        if action == "rotate_token":
            issued = self.call(
                "Ротация токена", "POST", "%s/%s/tokens/%s/rotate" % (SERVICES, sid, meta["token_id"]), body
            )
        else:
            issued = self.call("Выпуск токена", "POST", "%s/%s/tokens" % (SERVICES, sid), body)
        new_meta = self.write_token(issued, sid)
        issued.clear()  # drop the secret from memory as soon as it is on disk
        return {**self._public(new_meta), "status": "active"}

    def _public(self, meta: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "token_id": meta.get("token_id"),
            "expires_at": meta.get("expires_at"),
            "environment": meta.get("environment"),
            "path": self.p["token_path"],
        }

    @staticmethod
    def _expires_in(remote: Dict[str, Any]) -> float:
        try:
            expires = calendar.timegm(time.strptime(remote["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
        except (KeyError, ValueError):
            return 0.0
        return expires - time.time()


def run(module: AnsibleModule) -> Dict[str, Any]:
    reg = Registration(module)
    p = module.params
    if p["state"] == "present":
        svc = reg.ensure_present()
        sid = svc["service"]["service_id"] if svc["service"] else None
    else:
        svc = reg.ensure_absent()
        sid = None
    result: Dict[str, Any] = {
        "mnemonic": p["name"],
        "service_id": sid or "",
        "service": svc["service"] or {},
    }
    if "certificate_hash" in svc:
        result["certificate_hash"] = svc["certificate_hash"]
    before_tok = "present" if os.path.exists(p["token_path"]) else "absent"
    wanted_tokens = p["token_state"]
    if wanted_tokens != "ignore":
        if p["state"] == "present" and sid is None:  # check mode before the first registration
            result["token"] = {"status": "would_issue_token", "path": p["token_path"]}
            if wanted_tokens != "absent":
                reg.actions.append("issue_token")
        else:
            result["token"] = reg.ensure_token(
                sid if wanted_tokens != "absent" or p["state"] == "present" else None
            )
    after_tok = "absent" if p["state"] == "absent" or wanted_tokens == "absent" else "present"
    token_changed = any(a.endswith("_token") for a in reg.actions)
    result["actions"] = reg.actions
    result["changed"] = bool(reg.actions)
    result["retries"] = reg.client.retries
    if module._diff:
        before = dict(svc["before"] or {})
        after = dict(svc["after"] or {})
        if wanted_tokens != "ignore":
            before["token"] = before_tok
            after["token"] = "new" if token_changed and after_tok == "present" else after_tok
        result["diff"] = {
            "before": json.dumps(before, indent=2, sort_keys=True) + "\n" if svc["before"] or before else "",
            "after": json.dumps(after, indent=2, sort_keys=True) + "\n" if svc["after"] or after else "",
            "before_header": "provider cabinet: %s" % p["name"],
            "after_header": "provider cabinet: %s" % p["name"],
        }
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            name=dict(type="str", required=True),
            api_url=dict(type="str"),
            certificate=dict(type="str"),
            certificate_path=dict(type="path"),
            base_url=dict(type="str", required=True),
            environment=dict(type="str", choices=["test", "prod"], default="test"),
            ca_file=dict(type="path"),
            access_code=dict(type="str", required=True, no_log=True),
            token_state=dict(
                type="str", choices=["present", "rotated", "absent", "ignore"], default="present"
            ),
            token_path=dict(type="path", default="/etc/schoolgate/provider-token", no_log=False),
            token_owner=dict(type="str", default="root"),
            token_group=dict(type="str", default="root"),
            token_lifetime_s=dict(type="int", default=2592000, no_log=False),
            token_rotate_before_s=dict(type="int", default=604800, no_log=False),
            attempts=dict(type="int", default=5),
            backoff_s=dict(type="float", default=1.0),
            backoff_max_s=dict(type="float", default=30.0),
            timeout_s=dict(type="float", default=30.0),
        ),
        required_if=[
            ("state", "present", ("api_url",)),
            ("state", "present", ("certificate", "certificate_path"), True),
        ],
        mutually_exclusive=[("certificate", "certificate_path")],
        supports_check_mode=True,
    )
    if module.params["attempts"] < 1:
        module.fail_json(msg="attempts: нужно не меньше 1 попытки")
    try:
        result = run(module)
    except Failure as exc:
        module.fail_json(msg=exc.msg, mnemonic=module.params["name"], **exc.details)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
