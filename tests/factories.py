"""Small keyword-only factories for tests: real artifacts, real registration, real tokens."""
from __future__ import annotations

import functools
import secrets
from typing import Any

import numpy as np
import pandas as pd
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from monitor.models import ApiToken, RegisteredModel
from monitor.registry.registration import Upload, register_model

FEATURES = ["age", "income", "tenure", "score"]
CLASSES = ["no", "yes"]


def make_data(*, n: int = 200, seed: int = 0, features: list[str] = FEATURES) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(features))) * [10, 1000, 3, 1] + [40, 5000, 5, 0]
    y = np.asarray(CLASSES)[(X[:, 0] + rng.normal(scale=5, size=n) > 40).astype(int)]
    return X, y


def csv_bytes(X: np.ndarray, y: np.ndarray, *, features: list[str] = FEATURES, label: str = "label") -> bytes:
    frame = pd.DataFrame(X, columns=features)
    frame[label] = y
    return frame.to_csv(index=False).encode()


@functools.cache  # the same bytes each time: training and saving cost more than many tests' own work
def skops_bytes(*, seed: int = 0, kind: str = "logistic") -> bytes:
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = make_data(seed=seed)
    estimator = LogisticRegression(max_iter=500) if kind == "logistic" else RandomForestClassifier(10, random_state=seed)
    return sio.dumps(estimator.fit(X, y))


def make_model(*, slug: str = "credit", output_policy: str = "full", kind: str = "logistic") -> RegisteredModel:
    members = make_data(seed=1)
    nonmembers = make_data(seed=2)
    return register_model(
        slug=slug, name=f"Model {slug}", team="risk", label_column="label", output_policy=output_policy,
        artifact=Upload(skops_bytes(kind=kind), "model.skops"),
        members=Upload(csv_bytes(*members), "members.csv"),
        nonmembers=Upload(csv_bytes(*nonmembers), "nonmembers.csv"),
    )


def make_user(*, role: str | None, username: str | None = None, password: str | None = None):
    user = get_user_model().objects.create_user(
        username=username or f"{role or 'norole'}-{secrets.token_hex(3)}", password=password or secrets.token_urlsafe(16)
    )
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])  # transactional tests flush the migration's groups
    return user


def ingest_token(*, model: RegisteredModel) -> str:
    return ApiToken.issue(kind=ApiToken.INGEST, model=model)[1]


def user_token(*, role: str | None) -> str:
    return ApiToken.issue(kind=ApiToken.USER, user=make_user(role=role))[1]


def query(*, client_id: str = "client-1", n_features: int = 4, **extra) -> dict:
    row = {"client_id": client_id, "features": [40.0, 5000.0, 5.0, 0.1][:n_features], "output": [0.3, 0.7]}
    row.update(extra)
    return row


def signal(*, model: RegisteredModel, client_id: str = "client-9", severity: str = "warning", kind: str = "near_duplicate_sweep",
           source: str = "detector", incident: bool = False, evidence: dict | None = None, quiet_period=None):
    from monitor.alerts.lifecycle import Signal

    return Signal(source=source, kind=kind, model=model, severity=severity, client_id=client_id, incident=incident,
                  title=f"{kind} by {client_id}" if client_id else kind, evidence=evidence or {"queries": 120, "query_ids": [1, 2, 3]},
                  quiet_period=quiet_period)


def make_channel(*, kind: str, target: str, min_severity: str = "info", models: list[str] | None = None,
                 rate_limit_per_hour: int = 30, name: str | None = None):
    from monitor.alerts.channels import create_channel

    return create_channel(name=name or f"{kind} channel", kind=kind, target=target, min_severity=min_severity,
                          models=models, rate_limit_per_hour=rate_limit_per_hour)


def make_audited_model(*, slug: str = "leaky", leaky: bool = True, n: int = 600, seed: int = 0,
                       output_policy: str = "full", estimator: Any = None) -> RegisteredModel:
    """A RandomForest (or the unfitted `estimator`) on noisy labels with members, non-members and a population.

    leaky=True trains it on the declared members (it memorises them); leaky=False trains it on other
    records from the same distribution (a placebo: the declared members were never seen).
    """
    artifact, members, nonmembers, population = (_default_audited_files(n=n, seed=seed, leaky=leaky) if estimator is None
                                                  else _audited_files(n=n, seed=seed, leaky=leaky, estimator=estimator))
    return register_model(
        slug=slug, name=f"Audited {slug}", label_column="label", output_policy=output_policy,
        artifact=Upload(artifact, "rf.skops"), members=Upload(members), nonmembers=Upload(nonmembers),
        population=Upload(population),
    )


@functools.cache  # the default forest's files are the same each time: trained and saved once per process
def _default_audited_files(*, n: int, seed: int, leaky: bool) -> tuple[bytes, bytes, bytes, bytes]:
    return _audited_files(n=n, seed=seed, leaky=leaky, estimator=None)


def _audited_files(*, n: int, seed: int, leaky: bool, estimator: Any) -> tuple[bytes, bytes, bytes, bytes]:
    """(artifact, members, nonmembers, population) of `make_audited_model`."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n * 5, 4)) * [10, 1000, 3, 1] + [40, 5000, 5, 0]
    signal_ = X[:, 0] - 40 + rng.normal(scale=15, size=len(X))
    y = np.asarray(CLASSES)[(signal_ > 0).astype(int)]
    members, nonmembers, population, unseen = (slice(0, n), slice(n, 2 * n), slice(2 * n, 4 * n), slice(4 * n, 5 * n))
    train = members if leaky else unseen
    estimator = (estimator if estimator is not None else RandomForestClassifier(n_estimators=50, random_state=seed)
                 ).fit(X[train], y[train])
    return (sio.dumps(estimator), csv_bytes(X[members], y[members]), csv_bytes(X[nonmembers], y[nonmembers]),
            csv_bytes(X[population], y[population]))


def sample_run_bundle(*, slug: str) -> bytes:
    """A real signed evidence bundle of one audit run with an acknowledged alert, built inside the caller's
    transaction (roll it back after)."""
    from audits import runner
    from audits.evidence.build import build_run_bundle
    from audits.scheduling import request_audit
    from monitor.alerts.lifecycle import acknowledge, raise_signal

    model = make_audited_model(n=200, slug=slug)
    run = runner.execute(request_audit(model, enqueue=False).pk)
    alert, _ = raise_signal(signal(model=model, client_id="client-7"))
    acknowledge(alert, user=make_user(role="security"), note="on it")
    return build_run_bundle(run)


def adult_sample(*, n: int, seed: int, skip: int = 0) -> pd.DataFrame:
    """n rows of raw UCI Adult (category strings, missing cells), drawn with `seed` after leaving out `skip` draws,
    so two calls with the same seed and different skips never share a row."""
    from monitor.demo.datasets import load_adult_raw

    frame = load_adult_raw()
    order = np.random.default_rng(seed).permutation(len(frame))
    return frame.iloc[order[skip:skip + n]].reset_index(drop=True)


def register_credit_pipeline(*, slug: str = "credit-raw", n: int = 300, seed: int = 0,
                             min_samples_leaf: int = 1) -> tuple[RegisteredModel, Any, pd.DataFrame]:
    """The issue's credit model: a skops pipeline over raw Adult rows, registered from CSVs with strings and empty
    cells. Returns (model, the fitted pipeline, its members)."""
    import skops.io as sio

    from monitor.demo.datasets import credit_pipeline

    members, nonmembers = adult_sample(n=n, seed=seed), adult_sample(n=n, seed=seed, skip=n)
    population = adult_sample(n=2 * n, seed=seed, skip=2 * n)
    pipeline = credit_pipeline(seed=seed, min_samples_leaf=min_samples_leaf, n_estimators=30).fit(
        members.drop(columns="income"), members["income"])
    model = register_model(
        slug=slug, name="Credit (raw rows)", label_column="income",
        artifact=Upload(sio.dumps(pipeline), "credit.skops"),
        members=Upload(members.to_csv(index=False).encode(), "members.csv"),
        nonmembers=Upload(nonmembers.to_csv(index=False).encode(), "nonmembers.csv"),
        population=Upload(population.to_csv(index=False).encode(), "population.csv"),
    )
    return model, pipeline, members
