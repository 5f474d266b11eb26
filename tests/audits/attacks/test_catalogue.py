"""The attack catalogue is the one list of attacks: each carries its own metadata, and a new attack is one
registered class — the audit collects what it declares and reports it like any other."""
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from audits.attacks import (
    ATTACK_LABELS,
    TIER_1,
    TIER_1_NAMES,
    Attack,
    AttackInputs,
    AttackScores,
    attack_label,
    attack_names,
    expand_attacks,
    register,
)
from audits.attacks.base import Family, ReferenceKind
from audits.attacks.catalogue import attack_class, unregister
from audits.attacks.scores import true_class_proba
from tests.audits.attacks.factories import audit, make_split, overfit_forest

SHIPPED = ("loss", "confidence", "modified_entropy", "lira_offline", "lira_bayes", "lira_online", "rmia", "rmia_online",
           "base", "label_only", "quantile")


def test_the_shipped_attacks_are_listed_in_catalogue_order():
    assert attack_names() == SHIPPED
    assert tuple(ATTACK_LABELS) == SHIPPED


def test_every_attack_has_a_label_a_family_and_a_one_line_note():
    for name in attack_names():
        cls = attack_class(name)
        assert cls.label and attack_label(name) == ATTACK_LABELS[name] == cls.label, name
        assert cls.family in ("threshold", "reference", "label_only", "regression"), name
        assert cls.note and "\n" not in cls.note, name
        # The audit collects what the metadata asks for: reference models for the reference family only,
        # noisy neighbours for the label-only family only.
        assert bool(cls.reference_sets) == (cls.family == "reference"), name
        assert set(cls.reference_sets) <= {"offline", "online"}, name
        assert cls.needs_neighbourhood == (cls.family == "label_only"), name
        assert cls.needs_target_pool == (cls.family == "regression"), name


def test_labels_cite_the_papers_the_product_names():
    assert dict(ATTACK_LABELS) == {
        "loss": "Loss threshold (Yeom et al. 2018)", "confidence": "Confidence threshold",
        "modified_entropy": "Modified entropy (Song & Mittal 2021)",
        "lira_offline": "LiRA offline (Carlini et al. 2022)", "lira_online": "LiRA online (Carlini et al. 2022)",
        "lira_bayes": "LiRA offline, Bayesian variance (Brännvall 2026)",
        "rmia": "RMIA (Zarifzadeh et al. 2024)", "rmia_online": "RMIA online (Zarifzadeh et al. 2024)",
        "base": "BASE (Lassila et al. 2025)", "label_only": "Label-only (Choquette-Choo et al. 2021)",
        "quantile": "Quantile regression (Bertran et al. 2023)",
    }


def test_tier_one_expands_to_the_default_attack_list():
    assert expand_attacks(TIER_1) == TIER_1_NAMES == ("loss", "confidence", "modified_entropy", "rmia",
                                                      "lira_offline", "rmia_online")
    assert expand_attacks(["rmia", "threshold", "rmia"]) == ("rmia", "loss", "confidence", "modified_entropy")


@dataclass(frozen=True)
class ReferenceGapAttack(Attack):
    """A test-only attack: how much more the target trusts a record's label than the offline references do."""

    name: ClassVar[str] = "reference_gap"
    label: ClassVar[str] = "Reference gap (test only)"
    family: ClassVar[Family] = "reference"
    note: ClassVar[str] = "Target confidence minus the mean offline reference confidence."
    rank: ClassVar[int] = 1000
    reference_sets: ClassVar[tuple[ReferenceKind, ...]] = ("offline",)

    def score(self, inputs: AttackInputs) -> AttackScores:
        references = np.mean([true_class_proba(p, inputs.y) for p in inputs.offline], axis=0)
        return AttackScores(true_class_proba(inputs.target, inputs.y) - references, {"n_models": len(inputs.offline)})


@pytest.fixture
def toy_attack() -> Iterator[type[Attack]]:
    register(ReferenceGapAttack)
    yield ReferenceGapAttack
    unregister(ReferenceGapAttack.name)
    assert attack_names() == SHIPPED


def test_a_registered_attack_runs_in_an_audit_without_touching_the_audit(toy_attack):
    assert attack_names()[-1] == "reference_gap" and ATTACK_LABELS["reference_gap"] == "Reference gap (test only)"
    split = make_split(n_members=300, n_nonmembers=300, n_population=600, seed=9)
    target = overfit_forest(n_estimators=20).fit(split.members_X, split.members_y)

    result = audit(split=split, target=target, attacks=["loss", "reference_gap"], n_reference=2)

    assert [attack.name for attack in result.attacks] == ["loss", "reference_gap"]
    assert result.config["attacks"] == ["loss", "reference_gap"]
    gap = result.attack("reference_gap")
    # Only the toy asked for reference models: the audit trained them because its metadata said so.
    assert "reference_offline" in result.timings and gap.details == {"n_models": 2}
    assert gap.metrics.auc > 0.6  # a memorising forest trusts its own members more than the references do
    assert len(gap.top_exposed) == 20


def test_a_registered_attack_is_skipped_with_a_note_when_its_references_cannot_be_trained(toy_attack):
    # No population, and too few non-members to hold half of them out as one.
    split = make_split(n_members=100, n_nonmembers=30, n_population=0, seed=9)
    target = overfit_forest(n_estimators=10).fit(split.members_X, split.members_y)

    result = audit(split=split, target=target, attacks=["loss", "reference_gap"])

    assert [attack.name for attack in result.attacks] == ["loss"]
    assert any(note.startswith("skipped reference_gap: too few records for reference models: upload population data")
               for note in result.notes), result.notes
    assert result.config["coverage"]["skipped"]["reference_gap"].startswith("too few records")
    assert result.config["population_source"] == "none"


def test_without_a_population_half_the_nonmembers_become_one_and_reference_attacks_run(toy_attack):
    split = make_split(n_members=100, n_nonmembers=100, n_population=0, seed=9)
    target = overfit_forest(n_estimators=10).fit(split.members_X, split.members_y)

    result = audit(split=split, target=target, attacks=["loss", "reference_gap"], n_reference=2)

    assert [attack.name for attack in result.attacks] == ["loss", "reference_gap"]
    assert result.config["population_source"] == "nonmember_split"
    assert result.config["n_nonmembers"] == 50 and result.config["n_reference_pool"] + result.config["n_population_z"] == 50
    assert any("no population data was uploaded" in note for note in result.notes)


def test_names_are_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register(type("Impostor", (ReferenceGapAttack,), {"name": "rmia"}))
    with pytest.raises(ValueError, match="family"):
        register(type("Threshold", (ReferenceGapAttack,), {"name": "threshold"}))
    assert attack_names() == SHIPPED


def test_an_attack_without_its_metadata_is_refused():
    class Unlabelled(Attack):
        name: ClassVar[str] = "unlabelled"

        def score(self, inputs: AttackInputs) -> AttackScores:
            return AttackScores(np.zeros(len(inputs.y)))

    with pytest.raises(TypeError, match="label, family, note, rank"):
        register(Unlabelled)
    assert attack_names() == SHIPPED
