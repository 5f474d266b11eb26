"""A worker keeps a scanned model's context (decrypted members, member index, calibration) between scans, and
builds a new one as soon as the calibration, the key or the member data change."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.detection import context

pytestmark = pytest.mark.django_db


def calibrated(model):
    state = context.state_for(model)
    state.calibration = {"_context": {"feature_means": [0.0] * 4, "feature_stds": [1.0] * 4}}
    state.calibrated_at = timezone.now()
    state.save()
    return state


def test_the_context_is_built_once_per_calibration(model):
    state = calibrated(model)
    first = context.model_context(model, state)
    assert first.members is not None and len(first.members) > 0
    index = first.member_index(radius_fraction=0.1)
    again = context.model_context(model, context.state_for(model))
    assert again is first and again.member_index(radius_fraction=0.1) is index

    state.calibration = {"_context": {"feature_means": [1.0] * 4, "feature_stds": [2.0] * 4}}
    state.calibrated_at += timedelta(seconds=1)
    state.save()
    recalibrated = context.model_context(model, state)
    assert recalibrated is not first and recalibrated.feature_means.tolist() == [1.0] * 4


def test_new_member_data_replaces_the_context(model):
    state = calibrated(model)
    first = context.model_context(model, state)
    members = model.datasets.get(kind="members")
    members.sha256 = "0" * 64
    members.save(update_fields=["sha256"])
    assert context.model_context(model, state) is not first


def test_the_cache_holds_a_bounded_number_of_models(model, settings):
    from tests.factories import make_model

    calibrated(model)
    context.model_context(model, context.state_for(model))
    for i in range(context.CONTEXT_CACHE_SIZE):
        other = make_model(slug=f"other-{i}")
        context.model_context(other, calibrated(other))
    assert len(context._contexts) == context.CONTEXT_CACHE_SIZE and model.pk not in context._contexts
