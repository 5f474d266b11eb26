"""Tests of monitor/trail: the hash-chained security trail."""
