"""Remediation: every dead letter of the app, from every entity, decided on by one policy."""
