"""Issue 13's violation matrix on a CONVERGED lab school (the shared `converged_lab`, namespace `t`).

A clean converged school passes every check (full mode: OpenSCAP included). Then each violation is injected
for real (nginx config, certificates, key modes, the backup status file, stopped units, journald, logrotate,
apt lists, a package file, /etc/shadow), the audit runs, and exactly the injected checks fail, each with its
measure codes and a detail that names its violation. Everything is undone in `finally` (other tests use the
same lab).

Budget: one audit run costs ~10-30 s here, so independent violations are batched: every check in a batch
reads different evidence, and the test asserts the failing set equals the injected set exactly - a violation
that leaked into another check would show up as an extra failure. One coupling is real and asserted as such:
TLS 1.0 can only be offered with CBC suites, which TLS 1.2 then accepts too, so the TLS 1.0 violation fails
TLS-PROTO and TLS-CIPHER.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from schoolgate.audit.catalogue import load_catalogue
from schoolgate.audit.evaluate import evaluate_host

SCHOOL = "school-001"
NGINX = "/etc/nginx/nginx.conf"
LIVE = "/etc/nginx/schoolgate-tls"
STATUS = "/var/lib/schoolgate/backup/status.json"
BAK = "/root/.audit-matrix"


class Lab:
    def __init__(self, lab) -> None:
        self.lab = lab

    def sh(self, script: str) -> str:
        rc, out = self.lab.exec(SCHOOL, "sh", "-ec", script)
        assert rc == 0, f"{script}\n{out}"
        return out

    def audit(self, tmp: Path, mode: str = "quick") -> dict:
        out = tmp / f"evidence-{mode}-{len(list(tmp.glob('evidence-*')))}"
        res = self.lab.playbook(
            "playbooks/audit.yml",
            "-l",
            SCHOOL,
            "-e",
            f"audit_evidence_dir={out}",
            "-e",
            f"audit_mode={mode}",
            timeout=900,
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        recap = next(line for line in res.stdout.splitlines() if line.startswith(SCHOOL) and "ok=" in line)
        assert "changed=0" in recap, recap
        (evidence,) = out.glob(f"{SCHOOL}-*.json")
        return json.loads(evidence.read_text(encoding="utf-8"))


def results(evidence: dict) -> dict:
    return {r.check.id: r for r in evaluate_host(evidence, load_catalogue(), [])}


def failing(evidence: dict) -> dict:
    return {cid: r for cid, r in results(evidence).items() if r.failing}


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    # SCHOOLGATE_AUDIT_LAB=<ns>: an already converged lab namespace of your own (development runs); default:
    # the shared `converged_lab` (namespace t), which make test converges once per session.
    ns = os.environ.get("SCHOOLGATE_AUDIT_LAB")
    if ns:
        from schoolgate.lab import cli as lab_cli

        from .conftest import ConvergedLab

        lab = Lab(ConvergedLab(ns, lab_cli.inventory_path(ns), Path()))
    else:
        lab = Lab(request.getfixturevalue("converged_lab"))
    lab.sh(f"mkdir -p {BAK}")
    # A clean school has had its scheduled jobs run once: the nightly backup (dump, restic backup, check) and
    # the weekly restore drill; a freshly converged lab school has not reached either timer yet.
    lab.sh(
        "if systemctl cat schoolgate-backup.service >/dev/null 2>&1; then"
        " systemctl start schoolgate-backup.service && systemctl start schoolgate-backup-drill.service; fi"
    )
    yield lab
    lab.sh(f"rm -rf {BAK}")


@pytest.fixture(scope="module")
def scanner(lab: Lab) -> None:
    """The OpenSCAP scanner is installed by its own playbook (a change), never by audit.yml."""
    res = lab.lab.playbook("playbooks/audit_scanner.yml", "-l", SCHOOL, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "OpenSCAP ready" in res.stdout, res.stdout[-2000:]


# --- injections: each is a context manager that undoes itself ------------------------------------------


@contextmanager
def saved(lab: Lab, path: str, after_restore: str = "true") -> Iterator[None]:
    """Back up a file (content, mode, owner), restore it afterwards."""
    name = path.strip("/").replace("/", "_")
    lab.sh(f"cp -a {path} {BAK}/{name}")
    try:
        yield
    finally:
        lab.sh(f"cp -a {BAK}/{name} {path} && {after_restore}")


RELOAD = "nginx -t -q && systemctl reload nginx"


@contextmanager
def nginx_edit(lab: Lab, sed: str) -> Iterator[None]:
    with saved(lab, NGINX, RELOAD):
        lab.sh(f"sed -i {shlex.quote(sed)} {NGINX} && {RELOAD}")
        yield


@contextmanager
def stopped(lab: Lab, unit: str) -> Iterator[None]:
    lab.sh(f"systemctl stop {unit}")
    try:
        yield
    finally:
        lab.sh(f"systemctl start {unit}")
        if unit == "schoolgate-agent":
            lab.sh(
                'for i in $(seq 60); do python3 -c "import urllib.request as u;'
                " u.urlopen('http://127.0.0.1:8700/healthz', timeout=2)\" 2>/dev/null && break; sleep 1; done"
            )
        # The collectors relay the agent's queue metrics once a minute; refresh them now so a later audit
        # does not see the gap the stop left (the timer would catch up within a minute).
        lab.sh(
            "for c in schoolgate-monitoring-agent schoolgate-monitoring-expiry; do"
            " if systemctl cat $c.service >/dev/null 2>&1; then systemctl start $c.service; fi; done"
        )


@contextmanager
def status_edit(lab: Lab, python: str) -> Iterator[None]:
    with saved(lab, STATUS):
        lab.sh(
            "python3 -c "
            + shlex.quote(
                f"import json,time; p={STATUS!r}; d=json.load(open(p)); {python}; json.dump(d, open(p, 'w'))"
            )
        )
        yield


def weak_cipher(lab: Lab):
    return nginx_edit(lab, r"s/^\(\s*ssl_ciphers [^;]*\);/\1:ECDHE-RSA-AES128-SHA;/")


def tls10(lab: Lab):
    # OpenSSL 3 offers TLS 1.0 only at security level 0, and only with CBC suites
    return nginx_edit(
        lab,
        r"s/^\(\s*ssl_protocols\) [^;]*;/\1 TLSv1 TLSv1.2 TLSv1.3;/;"
        r"s/^\(\s*ssl_ciphers [^;]*\);/\1:ECDHE-RSA-AES128-SHA:@SECLEVEL=0;/",
    )


def no_hsts(lab: Lab):
    return nginx_edit(lab, "/Strict-Transport-Security/d")


@contextmanager
def short_portal_cert(lab: Lab) -> Iterator[None]:
    """A self-signed portal certificate valid for 5 days: untrusted and expiring."""
    with saved(lab, f"{LIVE}/fullchain.pem", RELOAD), saved(lab, f"{LIVE}/privkey.pem", RELOAD):
        lab.sh(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 5"
            f" -subj /CN={SCHOOL}.lab.schoolgate.test -addext subjectAltName=DNS:{SCHOOL}.lab.schoolgate.test"
            f" -keyout {BAK}/k.pem -out {BAK}/c.pem 2>/dev/null"
            f" && cat {BAK}/k.pem > {LIVE}/privkey.pem && cat {BAK}/c.pem > {LIVE}/fullchain.pem && {RELOAD}"
        )
        yield


@contextmanager
def short_signing_cert(lab: Lab) -> Iterator[None]:
    path = "/etc/schoolgate/signing/cert.pem"
    with saved(lab, path):
        lab.sh(
            f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 10 -subj /CN=sig"
            f" -keyout {BAK}/sk.pem -out {BAK}/sc.pem 2>/dev/null && cat {BAK}/sc.pem > {path}"
        )
        yield


@contextmanager
def token_expiring(lab: Lab) -> Iterator[None]:
    path = "/etc/schoolgate/provider-token.json"
    with saved(lab, path):
        code = (
            f"import json,time; p={path!r}; d=json.load(open(p));"
            " d['expires_at']=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(time.time()+2*86400));"
            " json.dump(d, open(p,'w'))"
        )
        lab.sh(f"python3 -c {shlex.quote(code)}")
        yield


@contextmanager
def mode(lab: Lab, path: str, new: str) -> Iterator[None]:
    old = lab.sh(f"stat -c %a {path}").strip()
    lab.sh(f"chmod {new} {path}")
    try:
        yield
    finally:
        lab.sh(f"chmod {old} {path}")


@contextmanager
def moved_away(lab: Lab, path: str) -> Iterator[None]:
    lab.sh(f"mv {path} {BAK}/moved")
    try:
        yield
    finally:
        lab.sh(f"mv {BAK}/moved {path}")


@contextmanager
def journald_volatile(lab: Lab) -> Iterator[None]:
    path = "/etc/systemd/journald.conf.d/zz-audit-matrix.conf"
    lab.sh(f"mkdir -p /etc/systemd/journald.conf.d && printf '[Journal]\\nStorage=volatile\\n' > {path}")
    try:
        yield
    finally:
        lab.sh(f"rm -f {path}")


@contextmanager
def stale_apt_lists(lab: Lab) -> Iterator[None]:
    """Lists not refreshed for 3 days: pending security updates are unknown (unattended-upgrades broken)."""
    lab.sh(
        f'cd /var/lib/apt/lists && for f in *Packages*; do echo "$(stat -c %Y $f) $f"; done > {BAK}/mtimes'
        " && touch -d '3 days ago' *Packages*"
    )
    try:
        yield
    finally:
        lab.sh(f'cd /var/lib/apt/lists && while read t f; do touch -d "@$t" "$f"; done < {BAK}/mtimes')


@contextmanager
def modified_package_file(lab: Lab) -> Iterator[None]:
    path = "/usr/share/doc/sudo/copyright"
    with saved(lab, path):
        lab.sh(f"echo tampered >> {path}")
        yield


@contextmanager
def renewal_failed(lab: Lab) -> Iterator[None]:
    """The textfile metrics a failed signing-certificate renewal leaves (modules/renewal.py writes them)."""
    prom = "/var/lib/prometheus/node-exporter/schoolgate_renewal.prom"
    lab.sh(f"if [ -e {prom} ]; then cp -a {prom} {BAK}/renewal.prom; fi")
    text = (
        'schoolgate_renewal_last_outcome_ok{kind="signing_cert"} 0\n'
        f'schoolgate_renewal_last_failure_timestamp_seconds{{kind="signing_cert"}} {int(time.time())}\n'
    )
    lab.sh(f"printf %s {shlex.quote(text)} > {prom}")
    try:
        yield
    finally:
        lab.sh(f"if [ -e {BAK}/renewal.prom ]; then mv {BAK}/renewal.prom {prom}; else rm -f {prom}; fi")


# (check id, injection, text its detail must contain)
Injection = tuple[str, Callable[[Lab], object], str]
BATCHES: list[list[Injection]] = [
    [
        ("TLS-CIPHER", weak_cipher, "ECDHE-RSA-AES128-SHA"),
        ("SIGN-CERT", short_signing_cert, "signing certificate expires"),
        (
            "SECRET-PERMS",
            lambda lab: mode(lab, f"{LIVE}/privkey.pem", "0644"),
            "privkey.pem mode 0644",
        ),
        (
            "BACKUP-FRESH",
            lambda lab: status_edit(lab, "d['backup']['finished']=time.time()-3*86400"),
            "h ago",
        ),
        ("MON-ALIVE", lambda lab: stopped(lab, "prometheus-node-exporter"), "inactive"),
        ("LOG-ROTATE", lambda lab: moved_away(lab, "/etc/logrotate.d/nginx"), "/etc/logrotate.d/nginx"),
        ("INTEGRITY", modified_package_file, "1 package files modified"),
    ],
    [
        ("TLS-HSTS", no_hsts, "no Strict-Transport-Security"),
        ("TOKEN-EXPIRY", token_expiring, "provider token expires"),
        (
            "BACKUP-CHECK",
            lambda lab: status_edit(lab, "d['check'].update(ok=False, error='pack damaged')"),
            "pack damaged",
        ),
        ("TIME-SYNC", lambda lab: stopped(lab, "chrony"), "chrony not answering"),
        ("LOG-JOURNALD", journald_volatile, "Storage=volatile"),
        ("SEC-UPDATES", stale_apt_lists, "package lists stale"),
    ],
    [
        ("TLS-CERT", short_portal_cert, "expires in"),
        (
            "RESTORE-DRILL",
            lambda lab: status_edit(lab, "d['drill'].update(ok=False, error='row count differs')"),
            "row count differs",
        ),
        ("AGENT-HEALTH", lambda lab: stopped(lab, "schoolgate-agent"), "/healthz"),
        ("RENEWAL", renewal_failed, "signing_cert failed"),
    ],
]


@pytest.fixture(scope="module")
def baseline(lab: Lab, scanner: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The clean school's verdicts (full mode). The batches compare against it, so a school that is not
    fully converged (SCHOOLGATE_AUDIT_LAB) still proves what it can; `converged_lab` must be clean."""
    return results(lab.audit(tmp_path_factory.mktemp("baseline"), "full"))


def test_clean_converged_school_passes_every_check_in_full_mode(baseline: dict) -> None:
    bad = {cid: f"{r.status}: {r.detail}" for cid, r in baseline.items() if r.status != "pass"}
    assert not bad, bad
    assert baseline["OS-BASELINE"].observed["benchmark_version"], baseline["OS-BASELINE"].observed


def new_failures(baseline: dict, evidence: dict) -> dict:
    return {
        cid: r for cid, r in failing(evidence).items() if cid not in baseline or not baseline[cid].failing
    }


@pytest.mark.parametrize("batch", range(len(BATCHES)), ids=[",".join(c for c, _, _ in b) for b in BATCHES])
def test_each_violation_fails_exactly_its_check(lab: Lab, baseline: dict, tmp_path: Path, batch: int) -> None:
    # a check already failing on the clean school cannot prove its injection (only on a partial lab)
    injections = [i for i in BATCHES[batch] if not baseline[i[0]].failing]
    if not injections:
        pytest.skip("every check of this batch already fails on the clean school (not converged)")
    with ExitStack() as stack:
        for _, inject, _ in injections:
            stack.enter_context(inject(lab))
        fails = new_failures(baseline, lab.audit(tmp_path))
    assert set(fails) == {cid for cid, _, _ in injections}, {c: r.detail for c, r in fails.items()}
    catalogue = {c.id: c for c in load_catalogue()}
    for cid, _, expect in injections:
        assert fails[cid].status == "fail", (cid, fails[cid].detail)
        assert expect in fails[cid].detail, (cid, fails[cid].detail)
        assert fails[cid].check.measures == catalogue[cid].measures and fails[cid].check.measures


def test_tls10_and_a_scap_rule_violation_in_full_mode(lab: Lab, baseline: dict, tmp_path: Path) -> None:
    with tls10(lab), mode(lab, "/etc/shadow", "0644"):
        fails = new_failures(baseline, lab.audit(tmp_path, "full"))
    assert set(fails) == {"TLS-PROTO", "TLS-CIPHER", "OS-BASELINE", "SCAP:file_permissions_etc_shadow"}, {
        c: r.detail for c, r in fails.items()
    }
    assert "accepts TLSv1" in fails["TLS-PROTO"].detail and "ЗИС.3" in fails["TLS-PROTO"].check.measures
    assert fails["SCAP:file_permissions_etc_shadow"].check.measures == ("УПД.2", "УПД.5")
