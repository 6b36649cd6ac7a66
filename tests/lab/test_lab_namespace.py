"""A namespaced lab is a complete, separate lab: own containers and network, same host names inside."""

from __future__ import annotations

from schoolgate.lab import hosts, podman


def test_namespaced_lab_resolves_hosts_by_their_lab_names(converged_lab):
    names = hosts.lab_containers(converged_lab.ns)
    assert {"t-provider", "t-monitor", "t-backup", "t-school-001"} <= set(names)
    assert not set(names) & set(hosts.lab_containers("")), "namespaces must not share containers"
    rc, out = converged_lab.exec("school-001", "getent", "hosts", "provider.lab.schoolgate.test")
    assert rc == 0, out
    rc, own = converged_lab.exec("provider", "hostname", "-I")
    assert rc == 0 and out.split()[0] in own.split(), (out, own)
    rc, out = converged_lab.exec("school-001", "hostname")
    assert out.strip() == "school-001"
    proc = podman.run(
        [
            "container",
            "inspect",
            "--format",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            converged_lab.container("school-001"),
        ],
        subject="t-school-001",
        action="inspect",
    )
    assert proc.stdout.split() == ["schoolgate-t"]
