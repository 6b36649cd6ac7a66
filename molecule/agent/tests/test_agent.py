"""The agent role on a real systemd host: service, hardening, secrets, and a signed push that is stored."""

import json
import shlex

VENV = "/opt/schoolgate-agent/venv"


def test_service_running_and_enabled(host):
    svc = host.service("schoolgate-agent")
    assert svc.is_running and svc.is_enabled


def test_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:8700").is_listening
    assert not host.socket("tcp://0.0.0.0:8700").is_listening


def test_runs_as_its_own_user_with_hardening(host):
    show = host.check_output(
        "systemctl show schoolgate-agent -p User -p ProtectSystem -p NoNewPrivileges"
        " -p ReadWritePaths -p Restart"
    )
    assert "User=schoolgate" in show.splitlines()
    assert "ProtectSystem=strict" in show
    assert "NoNewPrivileges=yes" in show
    assert "ReadWritePaths=/var/lib/schoolgate-agent" in show
    assert "Restart=on-failure" in show


def test_secret_and_config_permissions(host):
    secret = host.file("/etc/schoolgate/agent-hmac.key")
    assert secret.mode == 0o640 and secret.user == "root" and secret.group == "schoolgate"
    cfg = host.file("/etc/schoolgate/agent.yaml")
    assert cfg.mode == 0o640 and cfg.group == "schoolgate"
    assert "managed" in cfg.content_string.lower()


def test_installed_without_an_index(host):
    assert host.run(f"{VENV}/bin/python -c 'import schoolgate.agent, uvloop, orjson'").rc == 0


def test_signed_push_is_stored_and_unsigned_is_refused(host):
    script = (
        "import json, uuid, urllib.request, urllib.error\n"
        "from schoolgate.agent.auth import sign\n"
        "secret = open('/etc/schoolgate/agent-hmac.key','rb').read().strip()\n"
        "rec = {'record_id': str(uuid.uuid4()), 'school_id': 'school-001', 'pupil_id': 'p-1',"
        " 'subject': 'Math', 'grade': 5, 'date': '2026-11-20', 'teacher_id': 't-1'}\n"
        "body = json.dumps(rec).encode()\n"
        "out = {}\n"
        "signed = sign(secret, 'POST', '/v1/records/grade', body)\n"
        "for name, headers in (('signed', signed), ('unsigned', {})):\n"
        "    req = urllib.request.Request('http://127.0.0.1:8700/v1/records/grade', data=body,"
        " headers={**headers, 'Content-Type': 'application/json'}, method='POST')\n"
        "    try:\n"
        "        out[name] = urllib.request.urlopen(req).status\n"
        "    except urllib.error.HTTPError as exc:\n"
        "        out[name] = exc.code\n"
        "print(json.dumps(out))\n"
    )
    result = json.loads(host.check_output(f"{VENV}/bin/python -c {shlex.quote(script)}"))
    assert result == {"signed": 202, "unsigned": 401}
    status = json.loads(
        host.check_output(f"{VENV}/bin/schoolgate agent -c /etc/schoolgate/agent.yaml status --json")
    )
    assert status["queued"] >= 1


def test_metrics_exposed(host):
    out = host.check_output(
        'curl -fsS http://127.0.0.1:8700/metrics || python3 -c "import urllib.request;'
        "print(urllib.request.urlopen('http://127.0.0.1:8700/metrics').read().decode())\""
    )
    assert "schoolgate_agent_queue_depth" in out


def test_parse_workers_follow_the_cpus_and_parse_big_batches(host):
    # agent_parse_workers=-1 (auto): one worker process on 2+ CPUs, none on one CPU.
    cpus = int(host.check_output("nproc"))
    expected = 1 if cpus >= 2 else 0
    assert f"parse_workers: {expected}" in host.file("/etc/schoolgate/agent.yaml").content_string
    main_pid = host.check_output("systemctl show -p MainPID --value schoolgate-agent").strip()
    children = host.run(f"pgrep -P {main_pid}").stdout.split()
    assert len(children) >= expected
    # ~300 records (> 32 KiB) go to the worker when there is one; the hardened unit must not break that.
    script = (
        "import json, uuid, urllib.request\n"
        "from schoolgate.agent.auth import sign\n"
        "secret = open('/etc/schoolgate/agent-hmac.key','rb').read().strip()\n"
        "recs = [{'record_id': str(uuid.uuid4()), 'school_id': 'school-001', 'pupil_id': f'p-{i}',"
        " 'subject': 'Math', 'grade': 4, 'date': '2026-11-20', 'teacher_id': 't-1'} for i in range(300)]\n"
        "body = json.dumps({'records': recs}).encode()\n"
        "assert len(body) > 32 * 1024, len(body)\n"
        "req = urllib.request.Request('http://127.0.0.1:8700/v1/batches/grade', data=body,"
        " headers={**sign(secret, 'POST', '/v1/batches/grade', body), 'Content-Type': 'application/json'},"
        " method='POST')\n"
        "print(urllib.request.urlopen(req).read().decode())\n"
    )
    result = json.loads(host.check_output(f"{VENV}/bin/python -c {shlex.quote(script)}"))
    assert result["accepted"] == 300
    journal = host.run("journalctl -u schoolgate-agent --no-pager -o cat").stdout
    assert "parsing.workers_unavailable" not in journal and "parsing.worker_died" not in journal


def test_reload_is_sighup_and_keeps_the_process(host):
    before = host.check_output("systemctl show -p MainPID --value schoolgate-agent").strip()
    assert host.run("systemctl reload schoolgate-agent").rc == 0
    after = host.check_output("systemctl show -p MainPID --value schoolgate-agent").strip()
    assert before == after and host.service("schoolgate-agent").is_running
