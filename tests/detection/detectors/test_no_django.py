"""The pure cores import and run with Django unavailable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
sys.modules["django"] = None  # any `import django...` now raises ImportError
import numpy as np
import monitor.detection.detectors as detectors
import monitor.demo.traffic as traffic
rng = np.random.default_rng(0)
pool = rng.normal(size=(500, 4)) * 10 + 50
day = traffic.benign_traffic(pool, n_clients=20, seed=1)
batch = detectors.QueryBatch(query_ids=np.arange(len(day)), client_ids=day.client_ids, timestamps=day.timestamps,
                             features=day.features, outputs=rng.dirichlet([1, 1], len(day)))
context = detectors.ModelContext.from_reference(day.features, n_classes=2, fingerprint_key=b"x" * 32, members=pool[:100])
context.calibration = detectors.calibrate(batch, context)
detectors.scan(batch, context)
assert not any(name == "django" or name.startswith("django.") for name, module in sys.modules.items() if module)
print("ok")
"""


def test_detectors_and_traffic_import_and_run_without_django():
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
