"""Signboard OCR: normalisation, name matching, reading signboards drawn onto real dev photos,
no false match on photos without text, the `text` method and `lookalike ocr`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import photos_of
from lookalike import ocr
from lookalike.cli import main
from lookalike.loading import LoadOptions, load_image
from lookalike.methods import get_method, parse_methods
from lookalike.methods.text import (
    TEXT_MATCH_THRESHOLD,
    landmark_names,
    make_feature,
    match_names,
    name_similarity,
    text_evidence,
)
from lookalike.signboards import Sign, paste_sign

INO_STATUE = {"ja": "伊能忠敬像", "en": "Statue of Inō Tadataka", "aliases": ["伊能忠敬"]}
INO_HOUSE = {"ja": "伊能忠敬旧宅", "en": "Former Residence of Ino Tadataka"}
OTHER = {"ja": "東京タワー", "en": "Tokyo Tower"}


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return load_image(photos_of("sacre_coeur")[0], LoadOptions())


@pytest.fixture(scope="module")
def wide_photo() -> Image.Image:
    return load_image(photos_of("hertford_bridge")[0], LoadOptions())


# -- normalisation and matching (no OCR) -----------------------------------------------------------
def test_normalise_folds_width_kana_case_and_accents():
    assert ocr.normalise_text("ＳＴＡＴＵＥ of Inō") == "statue of ino"
    assert ocr.normalise_text("イノウ タダタカ") == ocr.normalise_text("いのう ただたか")
    assert ocr.normalise_text("ｲﾉｳ") == "いのう"  # half-width kana
    assert ocr.normalise_text("伊能 忠敬 像") == "伊能忠敬像"  # OCR's spaces between kanji
    assert ocr.normalise_text("が") == "が"  # dakuten are kept, only Latin accents go
    assert ocr.normalise_text("«Tokyo — Tower»") == "tokyo tower"


def test_name_similarity_tolerates_ocr_errors_and_surrounding_text():
    assert name_similarity("史跡 伊能忠敬旧宅 佐原", "伊能忠敬旧宅") == 1.0
    assert name_similarity("伊能忠散旧宅", "伊能忠敬旧宅") == pytest.approx(5 / 6)
    assert name_similarity("statue of ino tadatak", "Statue of Inō Tadataka") >= TEXT_MATCH_THRESHOLD
    assert name_similarity("東京たわー", "東京タワー") == 1.0  # katakana read as hiragana
    assert name_similarity("伊能", "伊能忠敬旧宅") < TEXT_MATCH_THRESHOLD
    assert name_similarity("", "伊能忠敬") == 0.0
    assert name_similarity("abc tower", "UN") == 0.0  # too short to be evidence


def test_landmark_names_reads_languages_and_aliases_only():
    meta = {"ja": "伊能忠敬像", "en": "Statue of Inō Tadataka", "aliases": ["伊能忠敬", "Ino"],
            "location": {"lat": 35.89, "lon": 140.5}, "regions": [[0, 0, 1, 1]]}
    assert landmark_names(meta) == ["伊能忠敬像", "Statue of Inō Tadataka", "伊能忠敬", "Ino"]
    assert landmark_names({"names": {"ja": "雷門", "en": "Kaminarimon"}}) == ["雷門", "Kaminarimon"]


def test_text_evidence_is_none_without_text():
    empty = make_feature([])
    assert text_evidence(empty, landmark_names(INO_STATUE)) is None
    line = ocr.TextLine("伊能忠敬像", "伊能 忠敬 像", (0, 0, 10, 50), 0.9, True)
    assert text_evidence(make_feature([line]), landmark_names(INO_STATUE)) == 1.0
    assert text_evidence(make_feature([line]), []) is None
    # A doubtful reading (too unsure to show) is still searched for names.
    doubtful = make_feature([], ["伊能思敬像"])
    assert str(doubtful["text"]) == ""
    assert text_evidence(doubtful, landmark_names(INO_STATUE)) == pytest.approx(0.8)


# -- reading generated signboards on real photos --------------------------------------------------
SIGNS = [
    (Sign("伊能忠敬旧宅", area=0.04, angle=0, contrast="high"), INO_HOUSE),
    (Sign("伊能忠敬旧宅", area=0.03, angle=-6, contrast="medium", palette=1,
          position=(0.5, 0.75)), INO_HOUSE),
    (Sign("伊能忠敬像", vertical=True, area=0.03, angle=-4, contrast="high", palette=1,
          position=(0.8, 0.4)), INO_STATUE),
    (Sign("Statue of Ino Tadataka", area=0.025, angle=4, contrast="medium", position=(0.5, 0.7)),
     INO_STATUE),
    (Sign("Tokyo Tower", area=0.02, angle=-8, contrast="low", palette=2, style="serif",
          position=(0.3, 0.6)), OTHER),
]


@pytest.mark.parametrize("sign,landmark", SIGNS, ids=lambda v: getattr(v, "text", ""))
def test_signboard_on_a_real_photo_is_read(photo, wide_photo, sign, landmark):
    base = wide_photo if sign.text.isascii() else photo
    image, plate = paste_sign(base, sign)
    lines = ocr.read_text(image)
    feature = make_feature(lines)
    score = text_evidence(feature, landmark_names(landmark))
    assert score is not None and score >= TEXT_MATCH_THRESHOLD, (sign, feature["text"])
    # The line that carries the name lies on the plate, and points the right way.
    best = max(lines, key=lambda ln: max(name_similarity(ln.text, n) for n in landmark_names(landmark)))
    x0, y0, x1, y1 = best.box
    assert x0 < plate[2] and x1 > plate[0] and y0 < plate[3] and y1 > plate[1]
    assert best.vertical == sign.vertical
    # ... and the other landmarks are not read into it.
    others = [m for m in (INO_STATUE, INO_HOUSE, OTHER) if m is not landmark and
              not any(name_similarity(sign.text, n) == 1.0 for n in landmark_names(m))]
    assert all((text_evidence(feature, landmark_names(m)) or 0) < TEXT_MATCH_THRESHOLD for m in others)


def test_real_street_sign_in_a_dev_photo_is_read(landmarks_dir):
    """A Hertford Bridge photo shows the street sign NEW COLLEGE LANE."""
    path = landmarks_dir / "hertford_bridge/pixel-retrieval-system__tp_519_hertford_000035.jpg"
    feature = make_feature(ocr.read_text(load_image(path, LoadOptions())))
    match = match_names(feature, ["New College Lane", "ニューカレッジ・レーン"])
    assert match is not None and match.matched and match.name == "New College Lane"
    assert (text_evidence(feature, landmark_names(INO_STATUE)) or 0) < TEXT_MATCH_THRESHOLD


def test_photos_without_text_match_no_landmark(manifest, landmarks_dir):
    paths = [landmarks_dir / row["path"] for row in manifest][::29]  # 5 photos across folders
    for path in paths:
        feature = make_feature(ocr.read_text(load_image(path, LoadOptions())))
        for landmark in (INO_STATUE, INO_HOUSE, OTHER):
            score = text_evidence(feature, landmark_names(landmark))
            assert score is None or score < TEXT_MATCH_THRESHOLD, (path, feature["text"])


def test_draw_text_boxes_marks_the_lines(photo):
    line = ocr.TextLine("伊能忠敬", "伊能忠敬", (50, 60, 250, 120), 0.9)
    drawn = draw = ocr.draw_text_boxes(photo, [line, line.to_json()])
    assert draw.size == photo.size and drawn is not photo
    changed = np.any(np.asarray(drawn) != np.asarray(photo.convert("RGB")), axis=2)
    assert changed[60, 50:250].any() and not changed[300:, :].any()


# -- the method and the command --------------------------------------------------------------------
def test_text_method_contract(photo):
    method = get_method("text")
    assert "text" not in parse_methods("all")  # too slow for --methods all; asked for by name
    image, _ = paste_sign(photo, SIGNS[0][0])
    feature = method.extract(image)
    again = method.decode(method.encode(feature))
    assert str(again["text"]) == str(feature["text"]) and len(again["lines"]) == len(feature["lines"])
    other, _ = paste_sign(photo, Sign("Tokyo Tower", area=0.04))
    assert method.score(feature, again) == 1.0
    assert method.score(feature, method.extract(other)) < 0.3
    assert method.score(feature, make_feature([])) == 0.0


def test_ocr_command_prints_json_lines(photo, tmp_path, capsys):
    image, _ = paste_sign(photo, SIGNS[0][0])
    image.save(tmp_path / "sign.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "landmark.json").write_text(json.dumps(INO_HOUSE, ensure_ascii=False), "utf-8")
    code = main(["ocr", str(tmp_path / "sign.png"), str(tmp_path / "broken.jpg"), "-j", "1", "-q",
                 "--landmark", str(tmp_path / "landmark.json"), "--draw", str(tmp_path / "drawn")])
    out, err = capsys.readouterr()
    assert code == 2 and "broken.jpg" in err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 1
    record = records[0]
    assert record["photo"].endswith("sign.png") and "伊能忠敬旧宅" in record["text"]
    assert all(set(line) >= {"text", "box", "confidence"} and len(line["box"]) == 4
               for line in record["lines"])
    assert record["match"]["matched"] is True
    assert Image.open(tmp_path / "drawn" / "sign.png").size == image.size
