from schoolgate.lab import site

OUTPUT = """
PLAY [Base] ****

TASK [base : Install baseline packages] ****
ok: [school-001]

PLAY RECAP *********************************************************************
provider                   : ok=20   changed=3    unreachable=0    failed=0    skipped=4
school-001                 : ok=21   changed=0    unreachable=0    failed=1    skipped=5

Friday 04 December 2026  16:00:00 +0000 (0:00:00.1)
"""


def test_parse_recap():
    recaps = site.parse_recap(OUTPUT)
    assert set(recaps) == {"provider", "school-001"}
    assert recaps["provider"].changed == 3
    assert recaps["school-001"].changed == 0
    assert recaps["school-001"].failed == 1
    assert recaps["school-001"].skipped == 5


def test_no_recap():
    assert site.parse_recap("ERROR! the playbook could not be found") == {}


def test_site_stages(tmp_path):
    p = tmp_path / "site.yml"
    p.write_text(
        "---\n- name: Base\n  ansible.builtin.import_playbook: playbooks/base.yml\n"
        "- name: TLS\n  ansible.builtin.import_playbook: playbooks/tls.yml\n"
    )
    assert site.site_stages(p) == ["playbooks/base.yml", "playbooks/tls.yml"]


def test_failures_name_host_task_and_message():
    out = (
        "TASK [base : Install baseline packages] ***\n"
        "fatal: [school-001]: FAILED! => \n"
        "    changed: false\n"
        "    msg: No package matching 'chrony' is available\n"
    )
    assert site.failures(out) == [
        "school-001: base : Install baseline packages: No package matching 'chrony' is available"
    ]
