"""The role's nginx.conf template, rendered by Ansible and run as a real (isolated) nginx on 127.0.0.1:
both Mozilla profiles, probed with tls_probe and openssl s_client."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NGINX, PROJECT, SERVER_NAME, free_port
from test_tls_probe import s_client_accepts

RENDER = """
- hosts: localhost
  gather_facts: false
  vars_files:
    - {project}/roles/tls/defaults/main.yml
    - {project}/roles/tls/vars/main.yml
  tasks:
    - ansible.builtin.template:
        src: {project}/roles/tls/templates/nginx.conf.j2
        dest: "{{{{ out }}}}"
        mode: "0644"
"""


def render(tmp_path, **variables) -> str:
    play = tmp_path / "render.yml"
    play.write_text(RENDER.format(project=PROJECT))
    out = tmp_path / "nginx.conf"
    env = dict(os.environ, PATH=f"{PROJECT / '.venv' / 'bin'}:{os.environ['PATH']}")
    proc = subprocess.run(
        [
            str(PROJECT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            "ansible_python_interpreter=/usr/bin/python3",
            "-e",
            json.dumps({"out": str(out), **variables}),
            str(play),
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    return str(out)


@contextlib.contextmanager
def served(tmp_path: Path, pki, **variables) -> Iterator[tuple[int, int, str]]:
    """The rendered nginx.conf, checked by nginx -t, running on 127.0.0.1: (https port, http port, text)."""
    live = tmp_path / "live"
    live.mkdir()
    (live / "fullchain.pem").write_bytes(pki.fullchain.read_bytes())
    (live / "privkey.pem").write_bytes(pki.key.read_bytes())
    (live / "ffdhe2048.pem").write_bytes((PROJECT / "roles/tls/files/host/ffdhe2048.pem").read_bytes())
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("ok\n")
    https, http = free_port(), free_port()
    conf = render(
        tmp_path,
        **{
            "tls_live_dir": str(live),
            "tls_https_port": https,
            "tls_http_port": http,
            "tls_server_name": SERVER_NAME,
            "tls_nginx_user": "root",
            "tls_nginx_pid_file": str(tmp_path / "nginx.pid"),
            "tls_nginx_log_dir": str(tmp_path),
            "tls_portal_root": str(tmp_path / "www"),
            "_tls_nginx_version": "1.22.1",
            "tls_listen_ipv6": False,
            "tls_cert_source": "provided",
            **variables,
        },
    )
    text = Path(conf).read_text()
    # Run on the loopback only, whatever the template says about the listen address.
    text = text.replace(f"listen {https} ", f"listen 127.0.0.1:{https} ").replace(
        f"listen {http} ", f"listen 127.0.0.1:{http} "
    )
    Path(conf).write_text(text)
    check = subprocess.run([NGINX, "-t", "-c", conf], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([NGINX, "-c", conf, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", https), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield https, http, text
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(timeout=15)


@pytest.fixture(params=["intermediate", "modern"])
def role_nginx(request, pki, tmp_path):
    with served(tmp_path, pki, tls_profile=request.param) as (https, http, text):
        yield request.param, https, http, text


def test_rendered_profile_serves_what_it_promises(tls_probe, role_nginx, pki):
    profile, https, http, text = role_nginx
    assert text.splitlines()[:3] == ["#", "# Ansible managed", "#"]
    facts = tls_probe.probe(
        "127.0.0.1", https, server_name=SERVER_NAME, ca_path=str(pki.root), http_port=http
    )
    expected = ["TLSv1.2", "TLSv1.3"] if profile == "intermediate" else ["TLSv1.3"]
    assert facts["accepted_versions"] == expected
    for version in ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"):
        assert s_client_accepts(https, version) == (version in expected), version
    if profile == "intermediate":
        assert set(facts["tls12_ciphers"]) == {
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-RSA-CHACHA20-POLY1305",
            "DHE-RSA-AES128-GCM-SHA256",
            "DHE-RSA-AES256-GCM-SHA384",
            "DHE-RSA-CHACHA20-POLY1305",
        }
        assert "ssl_dhparam" in text
    else:
        assert facts["tls12_ciphers"] == [] and "ssl_dhparam" not in text and "ssl_ciphers" not in text
    assert facts["chain_trusted"] is True and facts["chain_length"] == 2
    assert facts["hsts"]["max_age"] == 63072000
    assert facts["http_redirect"]["to_https"]
    assert facts["http_redirect"]["location"] == f"https://{SERVER_NAME}:{https}/schoolgate-probe?x=1"


class CountingAgent:
    """Plays the agent behind nginx: answers every request over HTTP/1.1 keep-alive and counts the TCP
    connections it accepts."""

    def __init__(self) -> None:
        self.connections = 0
        counter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                counter.connections += 1
                super().setup()

            def do_GET(self) -> None:
                body = b'{"status": "ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize(("keepalive", "expected"), [(128, "few"), (0, "one per request")])
def test_agent_connections_are_kept_alive(pki, tmp_path, keepalive, expected):
    agent = CountingAgent()
    requests = 30
    try:
        with served(tmp_path, pki, tls_agent_port=agent.port, tls_agent_keepalive=keepalive) as served_nginx:
            https, _, text = served_nginx
            upstream = text.split("upstream schoolgate_agent {")[1].split("}")[0]
            assert ("keepalive" in upstream) == (keepalive > 0), upstream
            # One verified TLS connection from the client, 30 requests in a row on it.
            ctx = ssl.create_default_context(cafile=str(pki.root))
            client = http.client.HTTPSConnection(SERVER_NAME, https, context=ctx, timeout=30)
            client.sock = ctx.wrap_socket(
                socket.create_connection(("127.0.0.1", https), timeout=30), server_hostname=SERVER_NAME
            )
            statuses = []
            for _ in range(requests):
                client.request("GET", "/api/healthz")
                answer = client.getresponse()
                answer.read()
                statuses.append(answer.status)
            client.close()
            assert statuses == [200] * requests
    finally:
        agent.server.shutdown()
    if expected == "few":  # at most one per nginx worker
        assert agent.connections <= os.cpu_count(), agent.connections
    else:
        assert agent.connections == requests
