"""`evaluate --identify --use-text`: what signboard text adds to open-set recognition.

A small labelled set of dev photos, each landmark photo with a plaque of its landmark's name
drawn on it and a landmark.json of names, evaluated leave-one-out with and without the text.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from landmark_gallery import DISTRACTOR, GALLERY, QUERIES, photo
from PIL import Image

from lookalike.evaluation.identification import evaluate_identify, markdown_summary
from lookalike.ocr.signboards import Sign, paste_sign

NAMES = {"chateau_de_sceaux": {"en": "Château de Sceaux", "ja": "ソー城"},
         "strecha_castle": {"en": "Střekov Castle", "ja": "ストシェコフ城"}}


def plaque_set(root: Path, with_names: bool = True) -> Path:
    """Each landmark photo with a clear plaque of its name; a distractor as it is."""
    rows = []
    for landmark, names in NAMES.items():
        folder = root / landmark
        folder.mkdir(parents=True)
        if with_names:
            (folder / "landmark.json").write_text(json.dumps(names, ensure_ascii=False),
                                                  encoding="utf-8")
        for relative in [*GALLERY[landmark], QUERIES[landmark]]:
            signed, _ = paste_sign(Image.open(photo(relative)),
                                   Sign(names["en"], area=0.04, position=(0.5, 0.8)))
            target = folder / Path(relative).name
            signed.convert("RGB").save(target, quality=92)
            rows.append((f"{landmark}/{target.name}", landmark))
    (root / "distractors").mkdir()
    shutil.copyfile(photo(DISTRACTOR), root / "distractors" / "church.jpg")
    rows.append(("distractors/church.jpg", "distractor"))
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("path", "label"), *rows])
    return root / "manifest.csv"


@pytest.fixture
def ocr_available():
    from lookalike.ocr.reader import OcrUnavailable, check_available

    try:
        check_available()
    except OcrUnavailable as error:
        pytest.skip(str(error))


def test_text_raises_the_named_landmark_and_is_reported_beside_the_image(tmp_path,
                                                                           ocr_available):
    summary = evaluate_identify(plaque_set(tmp_path / "set"), tmp_path / "out", preset="fast",
                                use_text=True)
    assert summary["use_text"] and summary["landmark_queries"] == 8
    assert summary["text_names_own_landmark"] >= 0.75  # the plaques are read
    with_text, image = summary["at_far_0.05"], summary["image_only"]["at_far_0.05"]
    assert with_text["false_accept_rate"] <= 0.05
    assert with_text["top1_accuracy"] >= image["top1_accuracy"]
    table = markdown_summary(summary)
    assert "| image |" in table and "| image + text |" in table
    saved = json.loads((tmp_path / "out" / "identify_summary.json").read_text())
    assert saved["image_only"] == summary["image_only"]


def test_without_names_the_text_learned_from_the_other_photos_still_counts(tmp_path,
                                                                           ocr_available):
    """No landmark.json: the names raise nothing, but each landmark's other photos show the
    same plaque, which is learned (leave-one-out) and read on the query."""
    summary = evaluate_identify(plaque_set(tmp_path / "set", with_names=False), preset="fast",
                                use_text=True)
    sources = summary["text_sources"]
    assert sources["names_only"]["raised_own_landmark"] == 0.0
    assert sources["learned_only"]["raised_own_landmark"] >= 0.75
    assert summary["text_names_own_landmark"] == sources["learned_only"]["raised_own_landmark"]
    assert summary["raised_a_wrong_landmark"] <= 0.2
    assert "| image + learned text and inscriptions |" in markdown_summary(summary)
