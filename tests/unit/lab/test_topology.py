import pytest

from schoolgate.lab import topology


def test_default_topology_has_infra_and_one_school():
    hosts = topology.build_topology()
    assert [h.name for h in hosts] == ["provider", "monitor", "backup", "school-001"]
    school = hosts[-1]
    assert school.group == "schools"
    assert school.vars == {
        "school_id": "school-001",
        "school_portal_fqdn": "school-001.lab.schoolgate.test",
        "school_environment": "test",
    }


def test_many_schools_are_numbered_with_three_digits():
    hosts = topology.build_topology(12, infra=())
    assert [h.name for h in hosts][:2] == ["school-001", "school-002"]
    assert hosts[-1].name == "school-012"
    assert len({h.name for h in hosts}) == 12


@pytest.mark.parametrize("n", [-1, 1000])
def test_school_count_is_bounded(n):
    with pytest.raises(ValueError, match="--schools"):
        topology.build_topology(n)


def test_unknown_infra_host_rejected():
    with pytest.raises(ValueError, match="unknown lab hosts"):
        topology.build_topology(1, infra=("provider", "ldap"))


def test_inventory_groups_and_vars():
    text = topology.render_inventory(topology.build_topology(3, suite="trixie"))
    lines = text.splitlines()
    section = None
    members: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("["):
            section = line.strip("[]")
            members[section] = []
        elif line and not line.startswith("#") and section:
            members[section].append(line)
    assert [m.split()[0] for m in members["schools"]] == ["school-001", "school-002", "school-003"]
    assert [m.split()[0] for m in members["provider"]] == ["provider"]
    assert members["monitor"][0].split()[0] == "monitor"
    assert members["backup"][0].split()[0] == "backup"
    assert members["lab:children"] == ["provider", "monitor", "backup", "schools"]
    # with a backup host, lab schools get the stand-in portal database the backups copy
    assert members["portal_db:children"] == ["schools"]
    assert "ansible_connection=podman_nsenter" in members["lab:vars"]
    s2 = dict(kv.split("=", 1) for kv in members["schools"][1].split()[1:])
    assert s2 == {
        "ansible_host": "school-002",
        "school_id": "school-002",
        "school_portal_fqdn": "school-002.lab.schoolgate.test",
        "school_environment": "test",
    }


def test_inventory_parses_with_ansible(tmp_path):
    ansible_inventory = pytest.importorskip("ansible.inventory.manager")
    from ansible.parsing.dataloader import DataLoader

    path = tmp_path / "inventory.lab.ini"
    path.write_text(topology.render_inventory(topology.build_topology(2)))
    inv = ansible_inventory.InventoryManager(loader=DataLoader(), sources=[str(path)])
    assert sorted(h.name for h in inv.groups["schools"].get_hosts()) == ["school-001", "school-002"]
    assert [h.name for h in inv.groups["provider"].get_hosts()] == ["provider"]
    school = inv.get_host("school-002")
    assert school.get_vars()["school_portal_fqdn"] == "school-002.lab.schoolgate.test"
    assert "lab" in [g.name for g in school.get_groups()]
    # lab time: schools sync from the provider, which serves its clock to the lab network
    from ansible.vars.manager import VariableManager

    vm = VariableManager(loader=DataLoader(), inventory=inv)
    assert vm.get_vars(host=school)["base_chrony_servers"] == ["provider"]
    provider = vm.get_vars(host=inv.get_host("provider"))
    assert provider["base_chrony_servers"] == []
    assert provider["base_chrony_local_stratum"] == 10
    assert provider["base_chrony_allow"] == ["0.0.0.0/0"]  # a list, not the string '[0.0.0.0/0]'


def test_empty_groups_still_render():
    text = topology.render_inventory(topology.build_topology(0, infra=("provider",)))
    assert "[schools]\n\n" in text


def test_namespaced_hosts_keep_their_names_but_get_prefixed_containers():
    hosts = topology.build_topology(2, ns="t")
    assert [h.name for h in hosts] == ["provider", "monitor", "backup", "school-001", "school-002"]
    assert [h.container for h in hosts][-1] == "t-school-002"
    text = topology.render_inventory(hosts)
    assert "school-002 ansible_host=t-school-002 " in text
    assert "provider ansible_host=t-provider " in text
    assert "namespace 't'" in text
    assert "\nschoolgate_lab_namespace=t\n" in text  # roles keep per-namespace controller files apart


def test_default_lab_containers_are_named_like_hosts():
    hosts = topology.build_topology(1)
    assert all(h.container == h.name for h in hosts)
    assert "school-001 ansible_host=school-001 " in topology.render_inventory(hosts)
    assert "schoolgate_lab_namespace" not in topology.render_inventory(hosts)
