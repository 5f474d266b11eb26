"""A scan split into parts finds what one part finds, whatever the model's fingerprint key."""
from __future__ import annotations

import pytest

from monitor.detection.calibration import calibrate_model
from monitor.detection.scanning import rewind_scanner, scan_model
from monitor.models import DetectorFinding, DetectorState
from monitor.platform.crypto import data_fernet
from tests.detection.helpers import flagged, model_with_attacks

pytestmark = pytest.mark.django_db


# Keys under which two parts once found more than one part: a client's fingerprints and member matches were
# computed on the first row of its repeat cell in the whole batch, which could be another client's near-copy.
@pytest.mark.parametrize("key_byte", [32, 37])
def test_two_parts_find_what_one_part_finds(key_byte):
    model = model_with_attacks()
    state = DetectorState.objects.get(model=model)
    state.fingerprint_key = data_fernet().encrypt(bytes([key_byte] * 32))
    state.save(update_fields=["fingerprint_key"])
    # The new key is calibrated on the same benign day as the old one. Calibrated on the whole log instead, the window
    # held 9 attacking accounts among 39 clients, over the share trimming leaves out (a fifth), so the candidate tester
    # was learnt as normal and then caught by volume alone, by how the ten-minute windows cut its burst: in CI, not here.
    calibrate_model(model, to_id=state.calibration_window["to_id"])
    rewind_scanner(model, 0)
    scan_model(model, count=1)
    one = flagged(model)
    assert set(model.live.attackers) <= {client for _, client in one}
    rewind_scanner(model, 0)
    DetectorFinding.objects.filter(model=model).delete()
    scan_model(model, count=2)
    assert flagged(model) == one
