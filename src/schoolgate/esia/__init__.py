"""ESIA (Gosuslugi) protocol core: signing, client_secret, certificate hash, tokens, contracts, errors.

This package is imported both as ``schoolgate.esia`` (controller, agent, simulator) and as
``ansible.module_utils.schoolgate_esia`` (inside AnsiballZ payloads on target hosts). Therefore:

* every intra-package import is *relative* (AnsiballZ rewrites nothing, it only packs what it finds);
* the modules Ansible modules use (``errors``, ``encoding``, ``der``, ``openssl``, ``certhash``,
  ``secret``, ``signing``, ``verify``, ``tokens``) import only the standard library at module level;
  ``cryptography``, ``jsonschema``, ``fastjsonschema`` and ``defusedxml`` are imported lazily inside the
  functions that need them;
* this ``__init__`` imports nothing, so packing it drags no optional dependency along.
"""
