"""Signals in logit space: stable near p = 1, clipped at half a vote for forests, ties kept as ties."""
import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audits.attacks.scores import DEFAULT_CLIP, default_clip, lexicographic_scores, logit_confidence


def test_forest_clip_is_half_a_vote():
    assert default_clip(RandomForestClassifier(n_estimators=200)) == pytest.approx(0.5 / 200)
    assert default_clip(make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=50))) == 0.01


def test_models_without_votes_keep_the_tiny_clip():
    assert default_clip(LogisticRegression()) == DEFAULT_CLIP
    assert default_clip(GradientBoostingClassifier(n_estimators=100)) == DEFAULT_CLIP  # a sigmoid, not a vote
    assert default_clip(None) == DEFAULT_CLIP


def test_logit_near_one_uses_the_other_classes_directly():
    others = np.array([1e-12, 2e-12])
    proba = np.array([[1 - others.sum(), others[0], others[1]]])
    phi = logit_confidence(proba, np.array([0]), clip=1e-15)
    # 1 - p_y in floating point would lose most digits of 3e-12
    assert phi[0] == pytest.approx(np.log(1 - 3e-12) - np.log(3e-12), rel=1e-9)


def test_logit_is_clipped_symmetrically():
    proba = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    phi = logit_confidence(proba, np.array([0, 0, 0]), clip=0.005)
    assert phi.tolist() == pytest.approx([np.log(0.995 / 0.005), -np.log(0.995 / 0.005), 0.0])


def test_lexicographic_scores_break_ties_by_the_second_key_only():
    primary = np.array([1.0, 1.0, 0.0, 1.0])
    secondary = np.array([0.2, 0.7, 9.0, 0.2])
    scores = lexicographic_scores(primary, secondary)
    assert scores[1] > scores[0] == scores[3] > scores[2]
