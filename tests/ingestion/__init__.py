"""Tests of monitor/ingestion: validation, COPY storage, retries, rollups, retention."""
