"""Tests of monitor/platform: encryption at rest, the outbound (SSRF) guard."""
