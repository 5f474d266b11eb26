"""Tests of audits/: audit runs, policies, evidence bundles and their verifier, exposure, remediation (attacks/ holds the
pure attack core's tests, which need no database)."""
