"""`fused` and `lookalike calibrate` on a small subset of the dev photos."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from lookalike.cli import main
from lookalike.features.cache import open_cache
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method
from lookalike.matching.geometry import Match
from lookalike.retrieval.calibration import Calibration, CalibrationError
from lookalike.retrieval.pipeline import PAIR_EVIDENCE, Pipeline, ReferenceSet, pair_evidence

LANDMARKS = {"chateau_de_sceaux": 3, "sacre_coeur": 3}
DISTRACTORS = 2
PHOTOS = 8


@pytest.fixture(scope="module")
def subset(manifest, landmarks_dir, tmp_path_factory):
    """A manifest of 6 landmark photos and 2 distractors."""
    rows, taken = [], {}
    for row in manifest:
        label = row["label"]
        wanted = LANDMARKS.get(label, DISTRACTORS if label == "distractor" else 0)
        if taken.get(label, 0) < wanted:
            taken[label] = taken.get(label, 0) + 1
            rows.append({"path": str(landmarks_dir / row["path"]), "label": label})
    path = tmp_path_factory.mktemp("subset") / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path, rows


@pytest.fixture(scope="module")
def model_path(subset, tmp_path_factory):
    output = tmp_path_factory.mktemp("model") / "model.json"
    assert main(["calibrate", str(subset[0]), "-o", str(output), "-q", "--jobs", "1"]) == 0
    return output


def test_calibrate_writes_a_model_with_its_evidence(model_path):
    data = json.loads(model_path.read_text())
    assert data["features"] == PAIR_EVIDENCE
    assert len(data["coef"]) == len(PAIR_EVIDENCE)
    assert data["info"]["photos"] == PHOTOS and data["info"]["landmarks"] == 2
    assert "cross_validated" in data["info"] and "fitted" in data["info"]
    assert data["methods"]["global"]["name"] == "asmk"
    assert data["methods"]["local"]["name"] == "aliked"
    model = Calibration.load(model_path, PAIR_EVIDENCE)
    shipped = get_method("fused").pipeline().calibration
    assert model.probability(np.zeros((3, len(PAIR_EVIDENCE)))).shape == (3,)
    # The shipped calibration is monotone: more of any evidence never lowers the probability,
    # and a pair with more matches and a higher similarity gets more.
    assert shipped.info.get("monotone") and all(c >= 0 for c in shipped.coef)
    match = Match(0.0, 5, 40, 5, 5, 2, 2, *([np.zeros(0)] * 4), area_a=0.01)
    more = dataclasses.replace(match, inliers=90, matches=300, inliers_h=80, inliers_f=120,
                               cells_a=20, cells_b=20, verified=True, area_a=0.4)
    rows = [pair_evidence(s, s, m, shipped.features)
            for s, m in ((0.001, None), (0.001, match), (0.001, more), (0.05, more))]
    p_none, p_base, p_more, p_similar = shipped.probability(np.array(rows))
    assert p_none <= p_base <= p_more <= p_similar
    assert p_none < p_more < p_similar


def test_fused_ranks_the_same_landmark_first(subset, model_path):
    _, rows = subset
    method = get_method("fused", calibration=str(model_path))
    paths = [row["path"] for row in rows]
    features = extract_features(method, paths, open_cache(None), quiet=True)
    assert not features.errors
    matrix = method.score_matrix(features.features, features.features)
    assert matrix.shape == (PHOTOS, PHOTOS)
    assert np.all((matrix >= 0) & (matrix <= 1))
    labels = [row["label"] for row in rows]
    hits = 0
    for i, label in enumerate(labels):
        if label == "distractor":
            continue
        order = [j for j in np.argsort(-matrix[i]) if j != i]
        hits += labels[order[0]] == label
    assert hits >= 5  # of 6 queries
    pair = method.score(features.features[0], features.features[1])
    assert 0.0 <= pair <= 1.0


def test_shortlist_limits_verification(subset, model_path):
    _, rows = subset
    method = get_method("fused", calibration=str(model_path))
    features = extract_features(method, [row["path"] for row in rows], open_cache(None),
                                quiet=True).features
    global_part, local_part = method.parts()
    pipeline = Pipeline(global_part, local_part, Calibration.load(model_path), shortlist=5)
    ranking = pipeline.rank(features[0], ReferenceSet(features, global_part))
    assert len(ranking.matches) == 5
    assert ranking.probabilities.shape == (PHOTOS,)


def test_a_calibration_of_other_methods_is_refused(model_path):
    method = get_method("fused", preset="fast", calibration=str(model_path))
    with pytest.raises(CalibrationError, match="fitted on"):
        method.pipeline()


def test_calibrate_rejects_an_unlabelled_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["calibrate", str(tmp_path / "empty"), "-o", str(tmp_path / "m.json")]) == 1
    assert "calibrate" in capsys.readouterr().err


def test_a_rerun_reads_verifications_from_the_cache(subset, tmp_path, monkeypatch):
    """The second ranking of the same photos verifies nothing and gives the same matrix."""
    import lookalike.methods.learned_local as local_module

    paths = [row["path"] for row in subset[1]][:5]
    cache = open_cache(tmp_path / "cache.sqlite")
    first_method = get_method("fused")
    first = first_method.score_matrix(
        *[extract_features(first_method, paths, cache, quiet=True).features] * 2)
    calls = []
    real_verify = local_module.verify_matches
    monkeypatch.setattr(local_module, "verify_matches",
                        lambda *args, **kwargs: calls.append(1) or real_verify(*args, **kwargs))
    again = get_method("fused")  # a new instance: nothing remembered in memory
    features = extract_features(again, paths, cache, quiet=True).features
    assert np.array_equal(again.score_matrix(features, features), first)
    assert calls == []
    without_cache = get_method("fused")
    plain = extract_features(without_cache, paths, open_cache(False), quiet=True).features
    np.testing.assert_allclose(without_cache.score_matrix(plain, plain), first)
    assert len(calls) > 0  # with no cache it verifies again


def test_scores_do_not_depend_on_how_the_work_is_split(subset):
    """Each pair is verified in one direction fixed by content, so --jobs changes nothing."""
    from lookalike.evaluation.compare import compare

    paths = [row["path"] for row in subset[1]]
    one = compare(paths, methods="fused", cache=False, jobs=1).matrices["fused"].scores
    two = compare(paths, methods="fused", cache=False, jobs=2).matrices["fused"].scores
    assert np.array_equal(one, two)
