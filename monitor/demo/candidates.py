"""The demo's privacy gate: two candidates gated for real against the hardened forest (leaf size 50) — a retrain
identical up to its seed, which passes, and the unregularised forest (leaf size 1), which fails: the day-18 retrain
of the demo's story, stopped before deployment."""
from __future__ import annotations

from typing import Any

import numpy as np

from audits.candidates import Upload, execute, submit
from monitor.demo.datasets import TabularDataset
from monitor.models import RegisteredModel


def seed_candidates(model: RegisteredModel, *, data: TabularDataset, members: np.ndarray, unregularised: Any,
                    stdout) -> list:
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    labels = np.asarray(data.class_labels)[data.y[members]]
    retrain = RandomForestClassifier(n_estimators=100, min_samples_leaf=50, random_state=1, n_jobs=2).fit(
        data.X[members], labels)
    gated = []
    for name, artifact in (("hardened-retrain-seed1.skops", retrain), ("unregularised-retrain.skops", unregularised)):
        stdout.write(f"gating the candidate {name} against {model.slug} v{model.version} …")
        candidate = submit(model, artifact=Upload(sio.dumps(artifact, compression=8), name))
        candidate = execute(candidate.pk) or candidate
        rates = {c["fpr"]: c for c in (candidate.report or {}).get("comparisons", [])}
        at_1 = rates.get(0.01) or {}
        stdout.write(f"{name}: {candidate.verdict or candidate.status}"
                     + (f"; TPR@1%FPR {at_1['candidate']:.1%} vs production {at_1['production']:.1%}" if at_1 else "")
                     + (f" ({candidate.error})" if candidate.error else ""))
        gated.append(candidate)
    return gated
