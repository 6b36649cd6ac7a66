"""Acceptance: the integration test of a deployed school (functional cases + load), go-live promotion
support and the staff runbook. See docs/acceptance.md."""
