"""Tests of monitor/access: roles on every page and endpoint, rate limits, single sign-on."""
