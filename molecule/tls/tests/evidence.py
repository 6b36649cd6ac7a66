"""Runs INSIDE a tls-* container (python3 stdlib): gathers every independent check in one go, because each
command through the lab connection costs seconds. Prints one JSON document. Argument: the server name."""

import json
import os
import stat
import subprocess
import sys

NAME = sys.argv[1]
TRUST = "/etc/nginx/schoolgate-tls/trust.pem"
RESOLVE = f"{NAME}:443:127.0.0.1"


def run(cmd, data=None):
    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=60)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def s_client(flag, *extra):
    rc, out, err = run(
        [
            "openssl",
            "s_client",
            "-connect",
            "127.0.0.1:443",
            "-servername",
            NAME,
            flag,
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            *extra,
        ],
        data=b"",
    )
    ok = rc == 0 and "Cipher is (NONE)" not in out and "New, " in out
    return {"accepted": ok, "tail": (out + err)[-400:], "out": out}


evidence = {}
evidence["s_client"] = {}
FLAGS = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}
for version, flag in FLAGS.items():
    result = s_client(flag)
    result.pop("out")
    evidence["s_client"][version] = result
evidence["weak_ciphers"] = {}
for cipher in ("ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES256-SHA384", "DHE-RSA-AES128-SHA"):
    evidence["weak_ciphers"][cipher] = s_client("-tls1_2", "-cipher", cipher + ":@SECLEVEL=0")["accepted"]
chain = s_client("-tls1_3", "-showcerts", "-CAfile", TRUST, "-verify_return_error")
evidence["showcerts"] = {
    "accepted": chain["accepted"],
    "certs": chain["out"].count("-----BEGIN CERTIFICATE-----"),
    "verify_ok": "Verify return code: 0 (ok)" in chain["out"],
    "tail": chain["tail"],
}
curl = ["curl", "-sS", "--cacert", TRUST, "--resolve", RESOLVE]
evidence["https_headers"] = run([*curl, "-D", "-", "-o", "/dev/null", f"https://{NAME}/"])[1]
evidence["redirect"] = run(
    [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        f"Host: {NAME}",
        "http://127.0.0.1/a?b=1",
    ]
)[1]
evidence["agent"] = run([*curl, f"https://{NAME}/api/v1/healthz"])[1]
evidence["big_body"] = run(
    [*curl, "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@-", f"https://{NAME}/"],
    data=b"\0" * 2_000_000,
)[1]
key = os.stat("/etc/nginx/schoolgate-tls/privkey.pem")
evidence["key"] = {"mode": stat.S_IMODE(key.st_mode), "uid": key.st_uid}
evidence["live_dir_mode"] = stat.S_IMODE(os.stat("/etc/nginx/schoolgate-tls").st_mode)
evidence["files_with_private_keys"] = sorted(
    run(["grep", "-rl", "PRIVATE KEY", "/etc/nginx/schoolgate-tls"])[1].split()
)
with open("/etc/nginx/nginx.conf") as handle:
    evidence["nginx_conf"] = handle.read()
evidence["nginx_active"] = run(["systemctl", "is-active", "nginx"])[1].strip()
evidence["nginx_enabled"] = run(["systemctl", "is-enabled", "nginx"])[1].strip()
evidence["listening"] = run(["ss", "-Htln"])[1]
print(json.dumps(evidence))
