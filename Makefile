# schoolgate developer entry points. Run as root on Debian 12 from the project root.
#   make test      install everything, run every check, end with "N passed, N failed"
#   make lab       lab images -> lab hosts -> site.yml against the lab; prints what it did
SHELL := /bin/bash
PROJECT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(PROJECT)/.venv
PYTHON ?= python3

# Host packages the kit and its tests need (one list; other areas add theirs here).
#   iptables: netavark 1.4 needs it to set up container networking.
#   python3-venv/pip: the dev venv.  libengine-gost-openssl: GOST crypto for ESIA signing.
#   nginx-light: tls_probe unit tests run a real nginx.  prometheus*, zabbix-agent2: promtool, amtool, blackbox
#   --config.check and zabbix_agent2 -t in the monitoring tests.  restic: backup script tests.
#   postgresql, wrk: backup and agent benchmarks.
#   chromium, chromium-driver: the simulator's end-to-end test drives the ESIA login page in a real browser.
#   libnss3-tools: certutil, so the acceptance test's browser trusts the lab CA (own throw-away NSS database).
DEBIAN_PACKAGES := podman runc debootstrap uidmap netavark aardvark-dns iptables slirp4netns \
	libengine-gost-openssl openssl python3 python3-venv python3-pip git make tar ca-certificates \
	nginx-light prometheus prometheus-alertmanager prometheus-blackbox-exporter zabbix-agent2 restic \
	postgresql wrk chromium chromium-driver libnss3-tools

export PATH := $(VENV)/bin:$(PATH)
export CONTAINERS_CONF := $(PROJECT)/lab/containers.conf
export ANSIBLE_CONFIG := $(PROJECT)/ansible.cfg
export PIP_DISABLE_PIP_VERSION_CHECK := 1

SCENARIO ?= base
MOLECULE_JOBS ?= 2
SCHOOLS ?= 1

.PHONY: help deps venv test lint unit molecule lab lab-up lab-down lab-status images clean-reports

help:
	@sed -n '1,4p' Makefile; echo "targets: deps venv test lint unit molecule SCENARIO=x lab lab-down lab-status images"

# Install missing Debian packages only (fast no-op when all are present).
deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		if [ "$$(id -u)" != 0 ]; then echo "ERROR: run as root (apt-get install needs it)" >&2; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: requirements-dev.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	$(VENV)/bin/pip install -q -e .
	touch $@

venv: $(VENV)/.installed

images: deps venv
	schoolgate lab images

test: deps venv
	schoolgate lab test --jobs $(MOLECULE_JOBS)

lint: venv
	schoolgate lab test --stage ruff --stage yamllint --stage ansible-lint --stage syntax

unit: venv
	schoolgate lab test --stage unit

molecule: deps venv
	molecule test -s $(SCENARIO)

lab: deps venv
	schoolgate lab run --schools $(SCHOOLS)

lab-up: deps venv
	schoolgate lab up --schools $(SCHOOLS)

lab-down: venv
	schoolgate lab down

lab-status: venv
	schoolgate lab status

clean-reports:
	rm -rf reports
