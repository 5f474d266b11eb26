"""Tests of monitor/dashboards: the pages and roles, /metrics."""
