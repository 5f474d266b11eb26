"""The demo: a RandomForest on UCI Adult, registered with its reference data, a day of benign
traffic from ~200 clients and one attacker sweeping noise around member records."""
from __future__ import annotations

import io
import secrets
from datetime import timedelta

import numpy as np
import pandas as pd
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from monitor.access.roles import ROLES, role_groups
from monitor.demo.datasets import TabularDataset, load_adult
from monitor.ingestion.rollups import fold_rollups
from monitor.ingestion.store import store_queries
from monitor.ingestion.validate import QueryBatch
from monitor.models import RegisteredModel
from monitor.registry.registration import Upload, register_model

DEMO_SLUG = "adult-income"
ATTACKER = "client-attacker-7f3a"
N_MEMBERS_SAMPLE = 4000
N_NONMEMBERS = 4000


def dataset_csv(data: TabularDataset, rows: np.ndarray, *, label_column: str = "income") -> bytes:
    frame = pd.DataFrame(data.X[rows], columns=data.feature_names)
    frame[label_column] = np.asarray(data.class_labels)[data.y[rows]]
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def train_demo_model(data: TabularDataset, members: np.ndarray):
    from sklearn.ensemble import RandomForestClassifier

    labels = np.asarray(data.class_labels)[data.y[members]]
    return RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=2).fit(data.X[members], labels)


def ensure_users(stdout) -> list[tuple[str, str, str]]:
    """The four demo users, one per role; passwords generated once and kept under data/local-secrets/."""
    store = settings.DATA_DIR / "local-secrets" / "demo-logins"
    known = dict(line.split(":", 1) for line in store.read_text().splitlines()) if store.exists() else {}
    logins = []
    User = get_user_model()
    for role in ROLES:
        username = f"demo-{role}"
        user, created = User.objects.get_or_create(username=username)
        if created or username not in known:
            known[username] = secrets.token_urlsafe(12)
            user.set_password(known[username])
            user.is_staff = role == "admin"
            user.save()
        user.groups.add(*role_groups([role]))
        logins.append((role, username, known[username]))
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text("\n".join(f"{u}:{p}" for u, p in known.items()) + "\n")
    store.chmod(0o600)
    return logins


def _benign_traffic(rng: np.random.Generator, pool: np.ndarray, *, clients: int, start, hours: float):
    """Clients with Poisson daily volumes and a diurnal rhythm, asking about real held-out records."""
    client_ids, times, rows = [], [], []
    for c in range(clients):
        n = max(1, rng.poisson(rng.choice([15, 40, 120], p=[0.5, 0.4, 0.1])))
        # Diurnal: busier in the working day (peak around 14:00 UTC).
        offsets = np.sort((rng.normal(14, 3.5, size=n) % 24) / 24 * hours)
        client_ids += [f"client-{c:04d}"] * n
        times += [start + timedelta(hours=float(o)) for o in offsets]
        rows.append(rng.choice(pool, size=n))
    return client_ids, times, np.concatenate(rows)


def _noise_sweep(rng: np.random.Generator, data: TabularDataset, targets: np.ndarray, *, copies: int, start):
    """A label-only attacker (Choquette-Choo et al. 2021): many noisy copies of each target record."""
    scale = data.X.std(axis=0) * 0.05
    X = np.repeat(data.X[targets], copies, axis=0) + rng.normal(0, 1, size=(len(targets) * copies, data.X.shape[1])) * scale
    times = [start + timedelta(seconds=2.0 * i) for i in range(len(X))]
    return [ATTACKER] * len(X), times, X


def seed_demo(*, stdout, seed: int = 0) -> RegisteredModel:
    import skops.io as sio

    existing = RegisteredModel.objects.filter(slug=DEMO_SLUG).first()
    if existing is not None:
        return existing
    data = load_adult()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.y))
    half = len(order) // 2
    members, held_out = order[:half], order[half:]
    stdout.write(f"training a RandomForest on {len(members):,} UCI Adult records …")
    estimator = train_demo_model(data, members)
    artifact = sio.dumps(estimator, compression=8)
    nonmembers, population = held_out[:N_NONMEMBERS], held_out[N_NONMEMBERS:]
    with transaction.atomic():
        model = register_model(
            slug=DEMO_SLUG, name="Adult income (demo RandomForest)", team="credit-risk",
            artifact=Upload(artifact, "adult-rf.skops"), label_column="income",
            members=Upload(dataset_csv(data, members[:N_MEMBERS_SAMPLE]), "members.csv"),
            nonmembers=Upload(dataset_csv(data, nonmembers), "nonmembers.csv"),
            population=Upload(dataset_csv(data, population), "population.csv"),
        )
        now = timezone.now().replace(microsecond=0)
        start = now - timedelta(hours=24)
        clients, times, rows = _benign_traffic(rng, population, clients=200, start=start, hours=23.5)
        X = data.X[rows]
        attacker = _noise_sweep(rng, data, members[:25], copies=60, start=now - timedelta(hours=3))
        clients += attacker[0]
        times += attacker[1]
        X = np.vstack([X, attacker[2]])
        proba = estimator.predict_proba(X)
        outputs = model.policy.apply(proba, rng=rng)
        for lo in range(0, len(X), 5000):
            hi = min(lo + 5000, len(X))
            store_queries(model, QueryBatch(
                client_ids=clients[lo:hi], timestamps=times[lo:hi], request_ids=[None] * (hi - lo),
                features=X[lo:hi].astype(np.float32), outputs=outputs[lo:hi].astype(np.float32),
            ))
    fold_rollups(model)  # the dashboards' rollups, before beat's first fold
    stdout.write(f"registered {DEMO_SLUG}: {len(X):,} queries logged ({len(attacker[0]):,} from {ATTACKER})")
    # Detectors calibrate on the whole day, attacker included, as a team would on its first day (the calibration
    # trims the clients it flags in its own window); the first audit and the first scan run now so the dashboards
    # have something to show before the worker's first tick.
    from audits import runner
    from audits.scheduling import request_audit
    from monitor.detection.calibration import calibrate_model
    from monitor.detection.scanning import scan_model

    stdout.write("running the first audit (threshold, RMIA offline and online, LiRA offline; 4 reference models "
                 "of each kind) …")
    run = runner.execute(request_audit(model, enqueue=False).pk)
    rate = run.tpr_at()
    stdout.write(f"first audit: {run.status}; TPR@1%FPR {rate.get('value', 0):.1%} by {rate.get('attack')}")
    calibrate_model(model)  # no --exclude: the calibration leaves out the clients it flags in its own window
    summary = scan_model(model)
    stdout.write(f"first scan: {summary.scanned:,} queries, {summary.findings} finding(s) ({', '.join(sorted(summary.by_detector))})")
    others = seed_companions(data, members=members, nonmembers=nonmembers, population=population,
                             estimator=estimator, stdout=stdout)
    from monitor.demo.history import write_history

    counts = write_history(forest=model, forest_run=run, others=others)
    stdout.write(f"demo history: 30 days of rollups ({counts['queries']:,} queries), {counts['audits']} daily audits, "
                 "the day-18 retrain's regression alert and a low-and-slow attacker in week 2 (written, not measured)")
    from monitor.demo.candidates import seed_candidates

    seed_candidates(others[0][0], data=data, members=members, unregularised=estimator, stdout=stdout)
    model.refresh_from_db()
    return model


def seed_companions(data: TabularDataset, *, members: np.ndarray, nonmembers: np.ndarray, population: np.ndarray,
                    estimator, stdout) -> list:
    """The hardened forest (regularised: at least 50 records a leaf) and the same forest behind a labels-only
    output policy, each registered with the same reference data and audited for real."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    from audits import runner
    from audits.models import AuditPolicy
    from audits.scheduling import request_audit

    labels = np.asarray(data.class_labels)[data.y[members]]
    hardened = RandomForestClassifier(n_estimators=100, min_samples_leaf=50, random_state=0, n_jobs=2).fit(
        data.X[members], labels)
    uploads = {"members": dataset_csv(data, members[:N_MEMBERS_SAMPLE]), "nonmembers": dataset_csv(data, nonmembers),
               "population": dataset_csv(data, population)}
    companions = []
    for slug, name, artifact, policy in (
            ("adult-income-hardened", "Adult income (hardened: min_samples_leaf=50)", hardened, "full"),
            ("adult-income-labels", "Adult income (labels only)", estimator, "label")):
        model = register_model(
            slug=slug, name=name, team="credit-risk", artifact=Upload(sio.dumps(artifact, compression=8), f"{slug}.skops"),
            label_column="income", output_policy=policy,
            members=Upload(uploads["members"], "members.csv"), nonmembers=Upload(uploads["nonmembers"], "nonmembers.csv"),
            population=Upload(uploads["population"], "population.csv"))
        if policy == "label":
            # The label-only attack asks the model about noisy neighbours of every record: 1,000 a side keeps the
            # demo's audit under half a minute (the figure is wider, and says so).
            AuditPolicy.objects.ensure(model)
            AuditPolicy.objects.filter(model=model).update(max_eval_records=1000, what_if=False)
        run = runner.execute(request_audit(model, enqueue=False).pk)
        rate = run.tpr_at()
        stdout.write(f"{slug}: first audit {run.status}; TPR@1%FPR {rate.get('value', 0):.1%} by {rate.get('attack')}")
        companions.append((model, run))
    return companions
