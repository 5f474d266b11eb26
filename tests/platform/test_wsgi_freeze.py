"""The web process freezes what it imported before its first request out of the garbage collector's full
collections (monitor/wsgi.py): parsing a 5,000-row batch averaged 25 ms in a warm process without it, 7 ms with it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import gc, sys
import monitor.wsgi
print(gc.get_freeze_count(), int("monitor.api.queries" in sys.modules), int("monitor.dashboards.views" in sys.modules))
"""


def test_the_wsgi_entry_point_imports_every_view_and_freezes_what_that_made(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "monitor.settings", "MONITOR_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    frozen, api_loaded, pages_loaded = map(int, out.stdout.split())
    assert api_loaded and pages_loaded  # the URL conf was loaded before the freeze
    assert frozen > 100_000, frozen
