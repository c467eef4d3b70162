"""LightGlue on ONNX Runtime gives eager LightGlue's matches: adaptive and full depth.

The adaptive path (lookalike.nets.runtime.run_adaptive: the layers step one by one, with
kornia's early exit and point pruning) is compared with kornia's LightGlue at its default settings.
Tolerance: at least 95% of eager's matches found, and no more than 5% others (measured on
these pairs: identical sets, the same layer of exit and the same points pruned).

The one-graph export runs every layer (no early exit, no point pruning: the pairs of a batch
share their shapes), so it is compared with kornia's LightGlue set to do the same
(depth_confidence = width_confidence = -1). Tolerance: at least 98% of eager's matches found,
and no more than 2% others (measured on these pairs: identical sets).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lookalike.features.contract import Method
from lookalike.features.registry import get_method
from lookalike.imaging.loading import load_image
from lookalike.matching.geometry import no_match
from lookalike.nets import runtime
from lookalike.nets.learned import matcher
from lookalike.retrieval.pipeline import Item, Pipeline, ReferenceSet
from tests.conftest import LANDMARKS, manifest_rows

PHOTOS = (0, 1, 2, 40)  # three of one landmark, one of another


@pytest.fixture(scope="module")
def features(landmarks_dir, tmp_path_factory):
    method = get_method("aliked", max_keypoints=512)
    rows = manifest_rows()
    with pytest.MonkeyPatch.context() as patch:  # exported models go to the tests' folder
        patch.setenv("LOOKALIKE_MODELS", str(tmp_path_factory.getbasetemp() / "models"))
        found = [method.extract(load_image(LANDMARKS / rows[i]["path"])) for i in PHOTOS]
    return [dict(feature, descriptors=feature["descriptors"].astype(np.float32))
            for feature in found]


def eager_full_depth(a: dict, b: dict) -> set[tuple[int, int]]:
    model = copy.deepcopy(matcher("lightglue-aliked"))
    model.conf.depth_confidence = model.conf.width_confidence = -1
    return eager(model, a, b)[0]


def eager(model, a: dict, b: dict) -> tuple[set[tuple[int, int]], int]:
    """kornia's matches of the pair and the number of layers it ran."""

    def side(feature):
        return {"keypoints": torch.from_numpy(feature["keypoints"])[None],
                "descriptors": torch.from_numpy(feature["descriptors"])[None],
                "image_size": torch.from_numpy(feature["size"].astype(np.float32))[None]}

    with torch.inference_mode():
        out = model({"image0": side(a), "image1": side(b)})
    return {tuple(pair) for pair in out["matches"][0].tolist()}, int(out["stop"])


def test_adaptive_onnx_lightglue_matches_eager_adaptive_lightglue(features):
    model = matcher("lightglue-aliked")
    config = runtime.glue_config("lightglue-aliked")
    assert (config["n_layers"], config["depth_confidence"], config["width_confidence"]) == (
        model.conf.n_layers, model.conf.depth_confidence, model.conf.width_confidence)
    assert np.array_equal(runtime.confidence_thresholds(config["n_layers"]),
                          model.confidence_thresholds.numpy())
    pairs = [(features[0], features[1]), (features[0], features[2]), (features[1], features[2]),
             (features[0], features[3]), (features[3], features[2])]
    alone = [runtime.run_adaptive("lightglue-aliked", [pair])[0] for pair in pairs]
    together = runtime.run_adaptive("lightglue-aliked", pairs, batch=3)  # padded, exits
    stops = set()
    for ours_alone, ours_together, (a, b) in zip(alone, together, pairs):
        theirs, stop = eager(model, a, b)
        stops.add(stop)
        for found in (ours_alone, ours_together):
            ours = {tuple(pair) for pair in found.tolist()}
            assert len(ours & theirs) >= 0.95 * len(theirs), (len(ours), len(theirs), stop)
            assert len(ours - theirs) <= 0.05 * max(1, len(theirs))
    assert min(stops) < model.conf.n_layers  # some pair exits early: the adaptive path ran
    assert len(alone[0]) > 50 and len(alone[3]) < len(alone[0])  # same landmark vs not
    assert runtime.run_adaptive("lightglue-aliked", [(features[0], features[1])],
                                   depth_confidence=-1, width_confidence=-1)[0].shape == \
        runtime.run_lightglue("lightglue-aliked", [(features[0], features[1])])[0].shape


def test_batched_onnx_lightglue_matches_eager_lightglue(features):
    pairs = [(features[0], features[1]), (features[0], features[2]), (features[1], features[2]),
             (features[0], features[3])]
    # Uneven keypoint counts, so that the batch pads: the padding must change nothing.
    pairs[1] = (pairs[1][0], {key: (value[:300] if key in ("keypoints", "descriptors",
                                                             "scores") else value)
                              for key, value in pairs[1][1].items()})
    batched = runtime.run_lightglue("lightglue-aliked", pairs)
    one_by_one = [runtime.run_lightglue("lightglue-aliked", [pair])[0] for pair in pairs]
    for together, alone, (a, b) in zip(batched, one_by_one, pairs):
        assert np.array_equal(together, alone)
        ours = {tuple(pair) for pair in together.tolist()}
        theirs = eager_full_depth(a, b)
        assert len(ours & theirs) >= 0.98 * len(theirs), (len(ours), len(theirs))
        assert len(ours - theirs) <= 0.02 * max(1, len(theirs))
    assert len(batched[0]) > 50 and len(batched[3]) < len(batched[0])  # same landmark vs not


@pytest.mark.parametrize("adaptive", [True, False])
def test_match_many_is_match_pair_by_pair(features, adaptive):
    method = get_method("aliked", max_keypoints=512, matcher="lightglue",
                        glue_adaptive=adaptive)
    query, candidates = features[1], [features[0], features[2], features[3]]
    together = method.match_many(query, candidates)
    for match, candidate in zip(together, candidates):
        alone = method.match(query, candidate)
        assert (match.inliers_h, match.inliers_f, match.verified) == \
            (alone.inliers_h, alone.inliers_f, alone.verified)
    assert together[0].verified and not together[2].verified
    tiny = dict(features[0], keypoints=features[0]["keypoints"][:1],
                descriptors=features[0]["descriptors"][:1])
    assert method.match_many(query, [tiny])[0].inliers == 0


class Counting(Method):
    """A local matcher that records how it is called."""

    def __init__(self):
        self.calls = []

    def match_many(self, query, candidates):
        self.calls.append(len(candidates))
        return [no_match() for _ in candidates]

    def score_key(self):
        return "counting"


def test_the_pipeline_verifies_a_shortlist_in_one_call():
    class Global(Method):
        def search_index(self, features):
            from lookalike.features.contract import VectorIndex

            return VectorIndex(features)

    vectors = np.eye(6, dtype=np.float32) + 0.1
    items = [Item(vector, {"keypoints": np.zeros((0, 2))}) for vector in vectors]
    local = Counting()
    pipeline = Pipeline(Global(), local, shortlist=4)
    pipeline.evidence(items[0], ReferenceSet(items, Global()))
    assert local.calls == [4]
    pipeline.verify(items[0], ReferenceSet(items, Global()), [0, 1, 5])  # two met before, one new
    assert local.calls == [4, 1]


def test_step_graphs_are_keyed_by_step_and_versions(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_MODELS", str(tmp_path))
    path = runtime.step_path("lightglue-aliked", "layer", 0)
    assert path.parent == tmp_path and "lightglue-aliked" in path.name
    others = {runtime.step_path("lightglue-aliked", "layer", 1),
              runtime.step_path("lightglue-aliked", "assign", 0),
              runtime.step_path("lightglue-disk", "layer", 0)}
    monkeypatch.setattr(runtime, "STEPS_VERSION", runtime.STEPS_VERSION + 1)
    others.add(runtime.step_path("lightglue-aliked", "layer", 0))
    monkeypatch.setattr(runtime, "EXPORT_VERSION", runtime.EXPORT_VERSION + 1)
    others.add(runtime.step_path("lightglue-aliked", "layer", 0))
    assert len(others) == 5 and path not in others
