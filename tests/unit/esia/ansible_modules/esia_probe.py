#!/usr/bin/python
# Test-only module: proves AnsiballZ packs module_utils/schoolgate_esia and that it runs with the stdlib only.
# ruff: noqa: E402
from __future__ import annotations

DOCUMENTATION = r"""
module: esia_probe
short_description: Test probe for the schoolgate ESIA module_utils (tests only)
description: Computes the certificate hash, certificate facts and a v2 client_secret on the target.
options:
  cert: {description: Certificate path on the target., type: path, required: true}
  key: {description: GOST private key path on the target., type: path, required: true}
  client_id: {description: ESIA client_id., type: str, required: true}
  state: {description: UUIDv4 state., type: str, required: true}
  timestamp: {description: ESIA timestamp., type: str, required: true}
author: schoolgate
"""
EXAMPLES = r"""
- esia_probe:
    {cert: /etc/schoolgate/esia.crt, key: /etc/schoolgate/esia.key, client_id: S, state: x, timestamp: y}
"""
RETURN = r"""
hash: {description: client_certificate_hash, type: str, returned: always}
"""

import importlib.util
import sys

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.schoolgate_esia import certhash
from ansible.module_utils.schoolgate_esia.secret import client_secret_v2
from ansible.module_utils.schoolgate_esia.signing import make_signer


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cert=dict(type="path", required=True),
            key=dict(type="path", required=True, no_log=True),
            client_id=dict(type="str", required=True),
            state=dict(type="str", required=True),
            timestamp=dict(type="str", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    with open(p["cert"], "rb") as handle:
        cert = handle.read()
    signer = make_signer({"type": "openssl-gost", "key": p["key"], "cert": p["cert"]})
    secret = client_secret_v2(
        signer,
        client_id=p["client_id"],
        scope="openid",
        timestamp=p["timestamp"],
        state=p["state"],
        redirect_uri="https://school.example/cb",
    )
    module.exit_json(
        changed=False,
        hash=certhash.client_certificate_hash(cert),
        info=certhash.certificate_info(cert),
        client_secret=secret,
        module_utils_file=certhash.__file__,
        cryptography_importable=importlib.util.find_spec("cryptography") is not None,
        jsonschema_importable=importlib.util.find_spec("jsonschema") is not None,
        loaded=sorted(m for m in sys.modules if "schoolgate" in m),
    )


if __name__ == "__main__":
    main()
