"""The attack core is pure: it imports and runs with Django unconfigured and impossible to import."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import os, pkgutil, importlib, sys
os.environ.pop("DJANGO_SETTINGS_MODULE", None)
sys.modules["django"] = None  # any `import django...` now raises ImportError
import numpy as np
import audits.attacks
for module in pkgutil.iter_modules(audits.attacks.__path__):
    importlib.import_module(f"audits.attacks.{module.name}")
rng = np.random.default_rng(0)
X = rng.normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
proba = lambda X: np.column_stack([X[:, 0] < 0, X[:, 0] >= 0]).astype(float)
data = audits.attacks.AuditData(members_X=X[:100], members_y=y[:100], nonmembers_X=X[100:], nonmembers_y=y[100:])
config = audits.attacks.AuditConfig(attacks=["threshold"], what_if_policies=["full", "label"])
result = audits.attacks.run_attacks(data=data, target_predict_proba=proba, estimator_for_reference=None,
    config=config)
assert not [name for name in sys.modules if name.startswith("django") and sys.modules[name] is not None]
print("ok", len(result.attacks))
"""


def test_attacks_import_and_run_without_django():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok 3"
