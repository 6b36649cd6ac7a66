"""Go-live in the converged lab (namespace t): the provider host gets a second simulator playing production
(playbooks/lab_prod_provider.yml, which also registers the school there with the real roles); a smoke test
that fails (production intake refusing every batch) rolls the school back to the exact previous
configuration; then the promotion succeeds, records reach the production simulator, and a rerun changes
nothing. The school is put back to its test configuration afterwards (the lab is shared by the session's
tests)."""

from __future__ import annotations

import json

from .acceptance_helpers import recap, report, sim_faults

CONFIG = "/etc/schoolgate/agent.yaml"
PROMOTE = ("playbooks/promote.yml",)
# The failing smoke test waits its whole timeout for deliveries the fault blocks: keep that short. The healthy
# one keeps the role's default (90 s): a справка took over 30 s on a loaded CI machine.
PROMOTE_FAILING = ("playbooks/promote.yml", "-e", "promote_smoke_timeout_s=30")


def _config(lab) -> str:
    rc, out = lab.exec("school-001", "cat", CONFIG)
    assert rc == 0, out
    return out


def _restore_test_config(lab, original: str) -> None:
    """Put back the bytes site.yml wrote, forget the promotion, restart the agent."""
    script = (
        "import pathlib, subprocess, sys; p = pathlib.Path(sys.argv[1]); p.write_text(sys.argv[2]); "
        "[pathlib.Path(f).unlink(missing_ok=True) for f in ('/etc/schoolgate/environment.json',"
        " '/etc/ansible/facts.d/schoolgate_environment.fact')]; "
        "subprocess.run(['systemctl', 'restart', 'schoolgate-agent'], check=True)"
    )
    rc, out = lab.exec("school-001", "python3", "-c", script, CONFIG, original)
    assert rc == 0, out


def test_promotion_rolls_back_on_smoke_failure_then_succeeds_and_reruns_clean(converged_lab):
    lab = converged_lab
    prep = lab.playbook("playbooks/lab_prod_provider.yml")
    assert prep.returncode == 0, prep.stdout[-4000:] + prep.stderr[-2000:]
    original = _config(lab)
    assert "https://provider:8443" not in original
    try:
        # 1. Production accepts the token (preflight passes) but refuses every batch: the smoke test fails.
        sim_faults(lab, {"rate_5xx": 1.0, "paths": ["/edu/v1/batches/"]}, port=8081)
        try:
            failed = lab.playbook(*PROMOTE_FAILING)
        finally:
            sim_faults(lab, None, port=8081)
        out = failed.stdout + failed.stderr
        assert failed.returncode != 0, out[-3000:]
        assert "восстановлена предыдущая" in out and "smoke test" in out, out[-3000:]
        assert _config(lab) == original  # the exact previous configuration
        rc, state = lab.exec("school-001", "cat", "/etc/schoolgate/environment.json")
        assert rc == 0 and json.loads(state)["active"] == "test"
        rc, ready = lab.exec(
            "school-001",
            "python3",
            "-c",
            "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:8700/readyz').status)",
        )
        assert rc == 0 and ready.strip() == "200"
        smoke = report(lab, suffix="-promote")
        assert smoke["passed"] is False

        # 2. Production healthy: switched, smoke test green, records delivered to the production simulator.
        ok = lab.playbook(*PROMOTE)
        assert ok.returncode == 0, ok.stdout[-4000:] + ok.stderr[-2000:]
        assert "https://provider:8443" in _config(lab)
        smoke = report(lab, suffix="-promote")
        assert smoke["passed"] is True and smoke["target"]["provider"].startswith("https://provider:8443")
        assert {c["case_id"] for c in smoke["cases"]} == {"push_json", "spravka"}

        # 3. Rerun: nothing to do.
        again = lab.playbook(*PROMOTE)
        assert again.returncode == 0, again.stdout[-3000:]
        assert recap(again.stdout, "school-001")["changed"] == 0

        # 4. The stage playbook with the inventory still saying "test" refuses to switch the live school back.
        stale = lab.playbook("playbooks/agent.yml", "-l", "school-001")
        assert stale.returncode != 0 and "работает в среде prod" in stale.stdout, stale.stdout[-3000:]
        assert recap(stale.stdout, "school-001")["changed"] == 0
        assert "https://provider:8443" in _config(lab)
    finally:
        _restore_test_config(lab, original)
