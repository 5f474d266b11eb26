"""Tests of monitor/demo: the demo a new user starts with."""
