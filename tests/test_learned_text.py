"""Text the gallery itself teaches (`lookalike.ocr.learned`, `gallery.learned_text`): what
recurs on a landmark's references and its landmark.json inscriptions, kept in the index through
build, add and remove, and matched with a query's text by a fuzzy, calibrated score."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from landmark_gallery import GALLERY, QUERIES, REPO, photo
from PIL import Image

from lookalike.cli import main
from lookalike.gallery.identify import Identifier, Settings
from lookalike.gallery.index import GalleryIndex
from lookalike.ocr import learned
from lookalike.ocr import reader as ocr
from lookalike.ocr.evidence import text_evidence_among, text_log_odds
from lookalike.ocr.learned import (
    distinctive,
    fragment_match,
    gallery_learned_log_odds,
    learn_phrases,
    learned_evidence_among,
    learned_log_odds,
)
from lookalike.ocr.signboards import Sign, paste_sign

c = ocr.compact
PANTHEON = c("AUX GRANDS HOMMES LA PATRIE RECONNAISSANTE")
MOULIN = c("MOULIN ROUGE")
SHOP = "MUSEE DU DOMAINE"  # drawn on two of Sceaux's references: not one of its names
INSCRIPTION = "HRAD STREKOV NAD LABEM"  # Střekov's landmark.json lists it


# -- the fuzzy score ---------------------------------------------------------------------------------
def test_fragments_of_a_sign_match_its_phrase_and_not_another():
    share, matched = fragment_match(c("randshommes lapatriereconna"), PANTHEON)
    assert matched == 26 and 0.65 < share < 0.75  # a long fragment: most characters agree
    assert fragment_match(c("veor rouge"), MOULIN)[1] >= 5
    assert fragment_match(c("frouge"), MOULIN)[1] >= 5
    assert fragment_match(c("tower bridge"), PANTHEON)[1] <= 3  # unrelated: a few at most
    gallery = {"pantheon": [PANTHEON], "moulin_rouge": [MOULIN],
               "tower_bridge": [c("TOWER BRIDGE")]}
    read = [("randshommes lapatriereconna", 0.92)]
    odds = gallery_learned_log_odds(read, gallery)
    assert odds["pantheon"] > 2.0  # a likelihood ratio above e^2
    assert odds["moulin_rouge"] == odds["tower_bridge"] == 0.0
    for fragment in ("veor rouge", "frouge"):
        odds = gallery_learned_log_odds([(fragment, 0.9)], gallery)
        assert odds["moulin_rouge"] > 0 and odds["pantheon"] == odds["tower_bridge"] == 0.0
    # A surer, longer reading is better evidence than a short fragment.
    whole = learned_evidence_among([("MOULIN ROUGE", 0.95)], gallery)["moulin_rouge"]
    piece = learned_evidence_among([("frouge", 0.95)], gallery)["moulin_rouge"]
    assert whole.score > piece.score and learned_log_odds(whole) > learned_log_odds(piece)
    assert learned_log_odds(None) == 0.0


def test_a_reading_counts_for_the_landmark_it_matches_best():
    gallery = {"a": [c("SAINT PAUL CATHEDRAL")], "b": [c("BERLIN CATHEDRAL")]}
    found = learned_evidence_among([("berlin cathedral", 0.95)], gallery)
    assert found["b"] is not None and found["a"] is None


# -- the rule: what recurs ------------------------------------------------------------------------
def test_phrases_are_what_recurs_on_two_references():
    refs = [[c("MOULIN ROUGE")], [c("veor rouge"), c("open 9-17")], [c("moulinrouqe bal")], []]
    assert learn_phrases(refs) == ["moulinrouge"]  # seen on refs 1 and 3; "open917" on one
    assert learn_phrases([[c("MOULIN ROUGE")], [c("TOWER BRIDGE")]]) == []
    # One reference: its specific lines, not a railing read as iaiaiaia nor a house number.
    assert learn_phrases([[c("AUX GRANDS HOMMES"), "iaiaiaiaia", "12"]]) == ["auxgrandshommes"]
    # A window grid read beside a word on both photos is trimmed off the phrase.
    assert learn_phrases([["sanmarco十十十十十"], ["sanmarco十十十十"]]) == ["sanmarco"]
    assert learn_phrases([["十十十十pi"], ["十十十十pi"]]) == []
    # A phrase that two landmarks learn (a watermark) is nobody's.
    assert distinctive({"a": ["flickrcom", "moulinrouge"], "b": ["flickrcom"]}) == \
        {"a": ["moulinrouge"], "b": []}


# -- the index -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ocr_ready():
    try:
        ocr.check_available()
    except ocr.OcrUnavailable as error:
        pytest.skip(str(error))


def signed(source: Path, target: Path, text: str, seed: int = 0) -> Path:
    image, _ = paste_sign(Image.open(source), Sign(text, area=0.05, position=(0.5, 0.75)))
    image.convert("RGB").save(target, quality=92)
    return target


@pytest.fixture(scope="module")
def text_gallery(tmp_path_factory, ocr_ready):
    """Sceaux: two of three references show the same plaque (not one of its names); Střekov:
    no text, an inscription in its landmark.json. Built once with --read-text."""
    os.environ.setdefault("XDG_CACHE_HOME", "/tmp/text-cache")
    root = tmp_path_factory.mktemp("learned")
    gallery = root / "gallery"
    for landmark in ("chateau_de_sceaux", "strecha_castle"):
        (gallery / landmark).mkdir(parents=True)
    sceaux = GALLERY["chateau_de_sceaux"]
    for i, relative in enumerate(sceaux):
        target = gallery / "chateau_de_sceaux" / Path(relative).name
        if i < 2:
            signed(photo(relative), target, SHOP)
        else:
            os.symlink(photo(relative), target)
    (gallery / "chateau_de_sceaux" / "landmark.json").write_text(
        json.dumps({"en": "Château de Sceaux"}), encoding="utf-8")
    for relative in GALLERY["strecha_castle"]:
        os.symlink(photo(relative), gallery / "strecha_castle" / Path(relative).name)
    (gallery / "strecha_castle" / "landmark.json").write_text(
        json.dumps({"en": "Střekov Castle", "inscriptions": [INSCRIPTION]}), encoding="utf-8")
    output = root / "text.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(output), "--preset", "fast",
                 "--read-text", "-q", "-j", "1"]) == 0
    return gallery, output


def phrases_of(index: GalleryIndex, landmark: str) -> list[str]:
    return index.landmark_text.get(landmark, ([], []))[1]


def test_build_learns_what_recurs_and_keeps_inscriptions(text_gallery):
    _, output = text_gallery
    with GalleryIndex(output) as index:
        assert index.text_engine == "scene"
        learned_sceaux = phrases_of(index, "chateau_de_sceaux")
        assert any(learned.fragment_match(p, c(SHOP))[1] >= 10 for p in learned_sceaux)
        assert index.landmarks["strecha_castle"].inscriptions == [INSCRIPTION]
        assert index.text_phrases()["strecha_castle"][0] == c(INSCRIPTION)
        info = index.info()
    assert info["text_engine"] == "scene"
    sceaux = next(lm for lm in info["per_landmark"] if lm["id"] == "chateau_de_sceaux")
    assert sceaux["learned_text"] == learned_sceaux


def test_remove_and_add_keep_the_learned_text_consistent(text_gallery, tmp_path):
    gallery, built = text_gallery
    output = Path(shutil.copy(built, tmp_path / "copy.lkidx"))
    first = sorted((gallery / "chateau_de_sceaux").glob("*.jpg"))[0]
    assert main(["index", "remove", str(output), "--photo", str(first), "-q"]) == 0
    with GalleryIndex(output) as index:  # one plaque left: nothing recurs
        assert phrases_of(index, "chateau_de_sceaux") == []
        assert index.connection.execute("SELECT COUNT(*) FROM ref_text").fetchone()[0] == 5
    assert main(["index", "add", str(output), str(first), "--landmark", "chateau_de_sceaux",
                 "-q", "-j", "1"]) == 0
    with GalleryIndex(built) as before, GalleryIndex(output) as index:
        assert phrases_of(index, "chateau_de_sceaux") == phrases_of(before, "chateau_de_sceaux")
        assert index.landmarks["strecha_castle"].inscriptions == [INSCRIPTION]


def test_a_failed_update_leaves_text_and_photos_as_they_were(text_gallery, tmp_path,
                                                             monkeypatch):
    gallery, built = text_gallery
    output = Path(shutil.copy(built, tmp_path / "copy.lkidx"))
    import lookalike.gallery.learned_text as learned_text

    def crash(_references):
        raise RuntimeError("killed while learning")
    monkeypatch.setattr(learned_text, "learn_phrases", crash)
    first = sorted((gallery / "chateau_de_sceaux").glob("*.jpg"))[0]
    with GalleryIndex(output) as index, pytest.raises(RuntimeError):
        index.remove(photos=[str(first)])
    with GalleryIndex(output) as index, GalleryIndex(built) as before:
        assert len(index.references) == len(before.references) == 6
        assert phrases_of(index, "chateau_de_sceaux") == phrases_of(before, "chateau_de_sceaux")


def test_identify_counts_an_inscription_read_in_part(text_gallery, tmp_path):
    _, output = text_gallery
    # Part of the inscription, none of the names (Střekov Castle): only the inscription can
    # raise it.
    query = signed(photo(QUERIES["strecha_castle"]), tmp_path / "query.jpg", "HRAD NAD LABEM")
    with GalleryIndex(output) as index:
        identifier = Identifier(index)
        plain = identifier.identify(query)
        features = identifier.features_from_bytes(query.read_bytes(), str(query),
                                                  settings=Settings(use_text=True))
        read = identifier.identify_features(str(query), features, Settings(use_text=True))
    read_text = features.text["text"]
    by_landmark = {cand.landmark: cand for cand in read.candidates}
    before = {cand.landmark: cand for cand in plain.candidates}
    strecha = by_landmark["strecha_castle"]
    assert strecha.text is not None and strecha.logit > before["strecha_castle"].logit + 1.0
    names_only = text_evidence_among(str(read_text), {"strecha_castle": ["Střekov Castle"]})
    assert text_log_odds(names_only["strecha_castle"]) == 0.0
    if "chateau_de_sceaux" in by_landmark:  # its learned plaque is not on this photo
        assert by_landmark["chateau_de_sceaux"].logit == \
            pytest.approx(before["chateau_de_sceaux"].logit)


def test_an_index_from_before_learned_text_opens_and_gains_inscriptions(tmp_path):
    path = Path(shutil.copy(REPO / "tests" / "data" / "pre_layout" / "old.lkidx",
                            tmp_path / "old.lkidx"))
    with GalleryIndex(path) as index:
        assert index.text_engine is None and index.text_phrases() == {}
        landmark = index.landmarks["tower_bridge"]
        landmark.inscriptions = ["TOWER BRIDGE 1894"]
        from lookalike.gallery.folders import GalleryEntry

        index.add([GalleryEntry(landmark, [])], lambda *_: ({}, {}, {}))
        assert index.text_phrases()["tower_bridge"] == [c("TOWER BRIDGE 1894")]
    tables = {name for (name,) in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"ref_text", "landmark_text"} <= tables


def test_a_real_sign_taught_by_one_reference_is_read_on_another_photo(ocr_ready):
    """oxford_hard: o25's query photo shows the Ship Street / Nokia corner; a photo filed as
    o30's look-alike shows the same building and signs. With one reference a landmark, o25
    learns that photo's lines, and the look-alike's text raises o25 (the building it shows),
    not o15 (no shared text)."""
    from lookalike.evaluation.query_sets import QuerySet, learned_text_log_odds

    oxford = REPO.parent / "shared" / "data" / "oxford_hard"
    corner = str(oxford / "o30" / "negatives" / "3751_oxford_001228.jpg")
    sets = [QuerySet("o25", str(oxford / "o25" / "query.jpg"), [], [corner]),
            QuerySet("o15", str(oxford / "o15" / "query.jpg"), [], [])]
    text, phrases = learned_text_log_odds(sets)
    assert any("shipstreet" in phrase for phrase in phrases["o25"])
    assert text[corner]["o25"] > 2.0 and text[corner].get("o15", 0.0) == 0.0


def test_the_ocr_pass_says_what_it_reads_in_logs(ocr_ready, monkeypatch, capsys):
    from lookalike.features import progress
    from lookalike.gallery.learned_text import local_text_reader

    monkeypatch.setenv("LOOKALIKE_PROGRESS_SECONDS", "0")
    monkeypatch.setattr(progress, "FORCE_PROGRESS", False)  # a log, not a terminal bar
    photos = [str(photo(GALLERY["strecha_castle"][0]))]
    found, errors = local_text_reader(quiet=False)(photos, "scene")
    assert set(found) == set(photos) and not errors
    log = capsys.readouterr().err
    assert "reading the text of 1 reference photos (OCR: scene" in log
    assert "text 1/1 img" in log
