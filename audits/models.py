"""Audit policies, runs and results arrive with the audit engine (issue: audit engine)."""
