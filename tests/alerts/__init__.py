"""Tests of monitor/alerts: the alert lifecycle, the outbox and its transports, integrations, the SIEM export."""
