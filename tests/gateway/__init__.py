"""Tests of monitor/gateway: predict with the output policy, per-client restrictions."""
