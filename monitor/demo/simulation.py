"""Benign and attack traffic for a registered model, built from its own reference data, and sent
through the real HTTP API (ingestion or the predict gateway)."""
from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np

from monitor.demo import traffic as gen
from monitor.models import RegisteredModel
from monitor.registry.predictors import predictor_for

ATTACKS = ("noise_sweep", "augmentation_sweep", "boundary_search", "candidate_testing", "shadow_harvest",
           "adaptive_sweep", "low_and_slow", "slow_sweep")


@dataclass(frozen=True)
class Plan:
    benign_clients: int = 50
    hours: float = 24.0
    attacks: tuple[str, ...] = ()
    accounts: int = 1
    seed: int = 0
    targets: int = 20
    queries_per_day: float = 200.0


def build_traffic(model: RegisteredModel, plan: Plan, *, end: float | None = None) -> gen.Traffic:
    """Benign clients drawn from non-member/population records, plus one attacker per attack kind."""
    datasets = {d.kind: d.load() for d in model.datasets.all()}  # decrypted in memory only
    pool = np.vstack([datasets[k].X for k in ("nonmembers", "population") if k in datasets])
    members = datasets["members"]
    end = time.time() if end is None else end
    start = end - plan.hours * 3600
    rng = np.random.default_rng(plan.seed)
    # Categories (codes) never move by noise: an attacker sweeps the numbers around a record and keeps its
    # categories, as a real one must to stay near it. A missing value stays missing.
    categorical = np.zeros(pool.shape[1], dtype=bool)
    categorical[model.schema.categorical] = True
    stds = np.where(categorical, 0.0, np.nan_to_num(np.nanstd(pool, axis=0), nan=0.0))
    parts = [gen.benign_traffic(pool, n_clients=plan.benign_clients, seed=plan.seed, start=start,
                                duration=plan.hours * 3600, queries_per_day=plan.queries_per_day,
                                categorical=categorical)]
    targets_idx = rng.choice(len(members.X), size=min(plan.targets, len(members.X)), replace=False)
    targets = members.X[targets_idx]
    attack_start = end - min(plan.hours, 3.0) * 3600
    for i, kind in enumerate(plan.attacks):
        client = f"attacker-{kind.replace('_', '-')}"
        seed = plan.seed + 100 + i
        if kind == "noise_sweep":
            part = gen.noise_sweep(targets, feature_stds=stds, client_id=client, seed=seed, start=attack_start)
        elif kind == "augmentation_sweep":
            part = gen.augmentation_sweep(targets, feature_steps=stds * 0.05, client_id=client, seed=seed, start=attack_start)
        elif kind == "boundary_search":
            predictor = predictor_for(model)
            part = gen.boundary_search(predictor.predict_proba, targets[:8], pool[:2000], feature_stds=stds,
                                       client_id=client, seed=seed, start=attack_start, categorical=categorical)
        elif kind == "candidate_testing":
            part = gen.candidate_testing(members.X, pool, n_candidates=400, client_id=client, seed=seed, start=attack_start)
        elif kind == "shadow_harvest":
            part = gen.shadow_harvest(pool, n=600, client_id=client, seed=seed, start=attack_start)
        elif kind == "adaptive_sweep":
            part = gen.adaptive_sweep(targets[:5], pool, feature_stds=stds, client_id=client, seed=seed, start=start,
                                      rate_per_second=min(0.05, 5 * 40 * 4 / (plan.hours * 3600)))
        elif kind == "low_and_slow":  # over the whole window, at about a benign client's daily volume
            part = gen.low_and_slow(members.X, pool, n_candidates=max(20, int(plan.queries_per_day * plan.hours / 24)),
                                    client_id=client, seed=seed, start=start, days=plan.hours / 24)
        elif kind == "slow_sweep":  # the targets' noised copies shuffled over the whole window at a benign pace
            part = gen.slow_sweep(targets, feature_stds=stds, client_id=client, seed=seed, start=start,
                                  days=plan.hours / 24, copies=max(2, int(plan.queries_per_day * plan.hours / 24
                                                                          / max(1, len(targets))) - 1))
        else:
            raise ValueError(f"unknown attack {kind!r}; choose from {', '.join(ATTACKS)}")
        if plan.accounts > 1:
            part = gen.split_accounts(part, n_accounts=plan.accounts)
        parts.append(part)
    traffic = gen.combine(*parts)
    keep = traffic.timestamps <= end  # attacks that would run past now are cut there
    return gen.Traffic(features=traffic.features[keep], client_ids=traffic.client_ids[keep],
                       timestamps=traffic.timestamps[keep], origin_ids=traffic.origin_ids[keep],
                       attackers=traffic.attackers, accounts=traffic.accounts)


class ApiClient:
    """A plain HTTP client for our own API (keep-alive, JSON, bearer token)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0) -> None:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        connection = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        self.connection = connection(parsed.hostname, parsed.port, timeout=timeout)
        self.prefix = parsed.path.rstrip("/")
        self.token = token

    def post(self, path: str, payload: dict) -> dict:
        body = json.dumps(payload).encode()
        self.connection.request("POST", self.prefix + path, body=body, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        response = self.connection.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"POST {path} → {response.status}: {data[:500].decode(errors='replace')}")
        return json.loads(data)


def send(model: RegisteredModel, traffic: gen.Traffic, client: ApiClient, *, via: str = "queries",
         batch_size: int = 5000) -> int:
    """Post the traffic in time order; `queries` logs with the simulated times and the model's outputs
    (under its output policy), `predict` asks the gateway (which stamps the current time)."""
    sent = 0
    if via == "queries":
        proba = predictor_for(model).predict_proba(traffic.features.astype(np.float64))
        outputs = model.policy.apply(proba, rng=np.random.default_rng(0))
        for lo in range(0, len(traffic), batch_size):
            hi = min(lo + batch_size, len(traffic))
            rows = [{"client_id": str(traffic.client_ids[i]), "features": traffic.features[i].astype(float).tolist(),
                     "output": outputs[i].astype(float).tolist(), "ts": float(traffic.timestamps[i])} for i in range(lo, hi)]
            sent += client.post(f"/api/v1/models/{model.slug}/queries", {"queries": rows})["accepted"]
        return sent
    if via != "predict":
        raise ValueError("via must be queries or predict")
    clients = traffic.client_ids
    start = 0
    while start < len(traffic):  # consecutive queries of one client go in one request
        stop = start + 1
        while stop < len(traffic) and clients[stop] == clients[start] and stop - start < 1000:
            stop += 1
        client.post(f"/api/v1/models/{model.slug}/predict",
                    {"client_id": str(clients[start]), "features": traffic.features[start:stop].astype(float).tolist()})
        sent += stop - start
        start = stop
    return sent
