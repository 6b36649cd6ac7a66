"""Compliance audit: check catalogue, waivers, evaluation of per-host evidence and reports."""
