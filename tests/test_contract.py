"""Every registered method through the same checks: the contract the rest is written against."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.features.contract import GLOBAL, LOCAL_MATCHER, PAIRWISE
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method, method_names
from lookalike.imaging.loading import ImageLoadError, load_image

PHOTO = "chateau_de_sceaux/imagedataset_sceauxcastle__images_100_7102.jpg"
OTHER = "distractors/image-matching-webui__kn-church_01.jpg"
SLOW = {"text"}  # OCR: covered by tests/test_ocr.py


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if hasattr(a, "local_feature"):  # fused's Item
        return same(a.local_feature, b.local_feature) and same(a.global_feature,
                                                               b.global_feature)
    return np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=1e-3)


@pytest.mark.parametrize("name", [n for n in method_names() if n not in SLOW])
def test_method_follows_the_contract(name, landmarks_dir, tmp_path):
    method = get_method(name)
    assert method.role in (GLOBAL, LOCAL_MATCHER, PAIRWISE) and method.description
    paths = [str(landmarks_dir / PHOTO), str(landmarks_dir / OTHER)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a photo")
    found = extract_features(method, [*paths, str(bad)], quiet=True)
    # a bad image is reported by name, and the others are extracted
    assert list(found.errors) == [str(bad)] and found.paths == paths
    photo, other = found.features
    # features survive the cache round trip
    assert same(method.decode(method.encode(photo)), photo)
    # a photo is at least as similar to itself as to an unrelated one
    assert method.score(photo, photo) >= method.score(photo, other)
    with pytest.raises(ImageLoadError, match=r"bad\.jpg"):
        load_image(bad, method.load_options())
    if method.role == GLOBAL:
        index = method.search_index([photo, other])
        positions, _ = index.search(photo, 1)
        assert positions[0] == 0
    if method.role == LOCAL_MATCHER:
        match = method.match(photo, photo)
        assert match.verified and match.inliers > 0
        assert not method.match(photo, other).verified


def test_every_preset_ships_calibrations_fitted_on_its_own_methods():
    """A preset is only usable with a calibration fitted on exactly its methods and settings;
    one that ships none (or a stale one) fails here, not in a user's first `identify`."""
    from lookalike.retrieval.pipeline import IDENTIFY_FEATURES, PAIR_FEATURES
    from lookalike.retrieval.presets import PRESETS

    for name, preset in PRESETS.items():
        global_method, local_method = preset.methods()
        for kind, known in (("pairs", PAIR_FEATURES), ("identify", IDENTIFY_FEATURES)):
            calibration = preset.calibration(kind)
            # a calibration chooses among the known features of its kind
            assert calibration.features and set(calibration.features) <= set(known)
            calibration.check_methods(**{"global": global_method, "local": local_method})
            assert calibration.info.get("preset") == name, (name, kind)


def test_get_method_refuses_a_setting_the_method_does_not_have():
    from lookalike.features.registry import UnknownSettingError

    with pytest.raises(UnknownSettingError, match=r"no setting hash_sise.*hash_size"):
        get_method("dhash", hash_sise=16)
    # shared options (the CLI's --device, a preset's common settings) apply where they fit
    assert get_method("dhash", {"device": "cpu", "gray": True}).gray is True
    assert get_method("augnet", {"device": "cpu"}).device == "cpu"


def test_the_optional_hooks_are_declared_on_the_contract():
    """Nothing probes a method for attributes: every hook has a default that says "no"."""
    plain = get_method("phash")
    assert plain.local_method() is None and plain.gallery_ranker() is None
    assert plain.visual_words() is None and not plain.composed
    asmk = get_method("asmk")
    assert asmk.composed and asmk.local_method().name == "aliked" and asmk.visual_words() == 1024
    assert get_method("aliked").gallery_ranker().name == "asmk"
    assert plain.inverted_file_shape() == (0, 0) and asmk.inverted_file_shape() == (1024, 128)
    with pytest.raises(NotImplementedError):
        plain.stored_search_index(None)
