"""Tests of monitor/detection: scanning, calibration, incidents, the carried state (detectors/ holds the pure detector
core's tests, which need no database)."""
