"""An uploaded artifact is loaded and asked a first prediction in a child process with memory and CPU limits before
the web worker loads it (issue 27, finding 6): what gets past the checks and then crashes or runs away kills the
child, and the upload is refused."""
from __future__ import annotations

import pytest

from monitor.registry.artifacts import ArtifactError
from monitor.registry.registration import RegistrationError, Upload, register_model
from monitor.registry.sandbox import check_in_sandbox
from tests.factories import csv_bytes, make_data, skops_bytes

pytestmark = pytest.mark.django_db


def test_a_sound_artifact_passes_the_sandbox():
    check_in_sandbox(skops_bytes(kind="forest"), "skops", max_unpacked=50 * 2**20, n_features=4)


def test_the_childs_memory_limit_holds_and_an_upload_past_it_is_refused_saying_so():
    """A forest of some 20 MB loaded in a child allowed 300 MB of address space (less than the libraries it starts
    with): the load fails inside the child, and the upload is refused naming memory, while the same file passes
    under the default limit."""
    import numpy as np
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4000, 8)), rng.integers(0, 2, 4000)
    big = sio.dumps(RandomForestClassifier(n_estimators=150, random_state=0).fit(X, y))
    assert len(big) > 20 * 2**20
    with pytest.raises(ArtifactError, match="memory|killed"):
        check_in_sandbox(big, "skops", max_unpacked=200 * 2**20, memory=300 * 2**20)
    check_in_sandbox(big, "skops", max_unpacked=200 * 2**20)


def test_a_refusal_inside_the_child_reaches_the_uploader_and_nothing_is_registered(settings):
    import io
    import zipfile

    damaged = io.BytesIO()
    with zipfile.ZipFile(damaged, "w") as archive:
        archive.writestr("schema.json", "{not json")
    with pytest.raises(RegistrationError) as caught:
        register_model(slug="broken", name="Broken", label_column="label", artifact=Upload(damaged.getvalue(), "m.skops"),
                       members=Upload(csv_bytes(*make_data(seed=1))), nonmembers=Upload(csv_bytes(*make_data(seed=2))))
    assert caught.value.field == "artifact" and "cannot be" in caught.value.message


def test_a_file_that_passed_is_not_checked_again_and_a_refusal_is_always_checked_again(monkeypatch):
    from monitor.registry import sandbox

    sound = skops_bytes(kind="forest", seed=7)
    check_in_sandbox(sound, "skops", max_unpacked=50 * 2**20, n_features=4)
    children: list[bytes] = []
    real_child = sandbox._check_in_child
    monkeypatch.setattr(sandbox, "_check_in_child", lambda data, *args, **kwargs: (
        children.append(data), real_child(data, *args, **kwargs)))
    check_in_sandbox(sound, "skops", max_unpacked=50 * 2**20, n_features=4)
    assert children == []  # the same bytes under the same limits passed already
    check_in_sandbox(sound, "skops", max_unpacked=50 * 2**20, n_features=5)
    assert children == [sound]  # other limits: checked
    damaged = sound[: len(sound) // 2]
    for attempt in (1, 2):
        with pytest.raises(ArtifactError):
            check_in_sandbox(damaged, "skops", max_unpacked=50 * 2**20, n_features=4)
        assert children.count(damaged) == attempt  # a refusal is never remembered
