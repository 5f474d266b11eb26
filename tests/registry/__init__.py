"""Tests of monitor/registry: registration, model files and data files (uploads/ drives the upload form)."""
