"""Tests of monitor/models: migrations run forward and back on databases with data in them."""
