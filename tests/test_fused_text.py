"""Signboard text as optional evidence inside `fused`: it raises, never lowers, and only when read."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import photos_of
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method
from lookalike.imaging.loading import load_image
from lookalike.ocr.evidence import text_log_odds, text_pair_evidence
from lookalike.ocr.signboards import Sign, paste_sign
from lookalike.retrieval.fused import with_text_evidence


def test_text_evidence_only_raises_on_matching_legible_text():
    assert with_text_evidence(0.2, "", "伊能忠敬旧宅") == 0.2
    assert with_text_evidence(0.2, "伊能忠敬旧宅", "") == 0.2
    assert with_text_evidence(0.2, "伊能忠敬旧宅", "tower bridge") == 0.2
    raised = with_text_evidence(0.2, "伊能忠敬旧宅", "伊能忠敬旧宅 入口")
    assert 0.8 < raised < 1.0


@pytest.fixture(scope="module")
def signed_photos(tmp_path_factory):
    """Two photos of different places whose plaques read the same name in different layouts
    (so the plaques themselves do not match geometrically), and one plain photo."""
    folder = tmp_path_factory.mktemp("signs")
    paths = []
    signs = [Sign("伊能忠敬旧宅", area=0.05),
             Sign("伊能忠敬旧宅", vertical=True, area=0.04, palette=1, position=(0.3, 0.5))]
    sources = [photos_of("tower_bridge")[0], photos_of("berlin_cathedral")[2]]
    for index, (source, sign) in enumerate(zip(sources, signs)):
        photo, _ = paste_sign(load_image(source), sign)
        path = folder / f"signed{index}.jpg"
        photo.save(path, quality=92)
        paths.append(str(path))
    return [*paths, str(photos_of("distractor")[0])]


def test_fused_with_text_raises_pairs_that_share_a_plaque(signed_photos):
    plain = get_method("fused", device="cpu")
    reading = get_method("fused", device="cpu", use_text=True)
    assert plain.cache_key() != reading.cache_key()
    with_text = extract_features(reading, signed_photos, quiet=True)
    assert "伊能忠敬" in with_text.features[0].text.replace(" ", "")
    # The same items on both sides (`plain` ignores their text), so that only the text differs:
    # two extractions of a photo may differ in the last float bits under load, and the 1,024
    # strongest keypoints with them.
    base = plain.score_matrix(with_text.features, with_text.features)
    boosted = reading.score_matrix(with_text.features, with_text.features)
    assert base[0, 1] < 0.5  # the photos themselves do not match
    # The shared name is evidence: it adds TEXT_LOG_ODDS to the pair's log-odds, whatever the
    # photos' own probability was.
    log_odds = np.log(boosted[0, 1] / (1 - boosted[0, 1])) - np.log(base[0, 1] / (1 - base[0, 1]))
    expected = text_log_odds(text_pair_evidence(with_text.features[0].text,
                                                with_text.features[1].text))
    assert expected > 1.0 and log_odds == pytest.approx(expected, abs=1e-6)
    assert np.isclose(boosted[0, 2], base[0, 2])  # nothing shared to read: unchanged
    assert np.isclose(boosted[2, 1], base[2, 1])
