"""`lookalike group`: landmark groups from unlabelled photos, near-duplicates, outputs, errors.

One run of the command (fast preset, private cache) on 11 dev photos of three landmarks, a
distractor, a smaller Pillow re-save of one photo and a corrupt file feeds most tests; the
graph rules are tested on hand-made links.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import tempfile
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from landmark_gallery import LANDMARKS
from PIL import Image, ImageFilter

from lookalike.cli import main
from lookalike.grouping.groups import (
    PairLink,
    confirmed_links,
    group_photos,
    is_near_duplicate,
    photo_groups,
    photo_to_keep,
)
from lookalike.matching.geometry import no_match

PHOTOS = {
    "chateau_de_sceaux": [f"chateau_de_sceaux/imagedataset_sceauxcastle__images_100_{n}.jpg"
                          for n in (7100, 7101, 7102, 7103)],
    "strecha_castle": [f"strecha_castle/sfm_quality_evaluation__images_{n:04d}.jpg"
                       for n in (0, 4, 8, 12)],
    "st_pauls_cathedral": ["st_pauls_cathedral/cotr__imgs_cathedral_1.jpg",
                           "st_pauls_cathedral/cotr__imgs_cathedral_2.jpg",
                           "st_pauls_cathedral/aliked__st_pauls_cathedral_1.jpg"],
}
DISTRACTOR = "distractors/image-matching-webui__kn-church_02.jpg"
ORIGINAL = "strecha_castle/sfm_quality_evaluation__images_0008.jpg"


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """The command's run: (photos folder, output folder, gallery folder, exit code, stderr)."""
    root = tmp_path_factory.mktemp("group")
    photos = root / "photos"
    photos.mkdir()
    for relative in [*(p for group in PHOTOS.values() for p in group), DISTRACTOR]:
        os.symlink(LANDMARKS / relative, photos / Path(relative).name)
    with Image.open(LANDMARKS / ORIGINAL) as image:
        smaller = image.resize((image.width * 3 // 4, image.height * 3 // 4))
        smaller.save(photos / "resaved.jpg", quality=80)
    (photos / "broken.jpg").write_bytes(b"<html>not a photo</html>")
    out, gallery = root / "out", root / "gallery"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["group", str(photos), "-o", str(out), "--into-gallery", str(gallery),
                     "--preset", "fast", "--cache", str(root / "cache.sqlite"), "-q", "-j", "1",
                     "--xmp"])
    return photos, out, gallery, code, stderr.getvalue()


def rows_of(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "groups.csv", newline="", encoding="utf-8") as handle:
        return {os.path.basename(row["photo"]): row for row in csv.DictReader(handle)}


def test_groups_recover_the_landmarks(grouped):
    _, out, _, _, _ = grouped
    rows = rows_of(out)
    for landmark, photos in PHOTOS.items():
        groups = {rows[Path(p).name]["group"] for p in photos}
        assert len(groups) == 1 and "" not in groups, (landmark, groups)
    found = [rows[Path(photos[0]).name]["group"] for photos in PHOTOS.values()]
    assert len(set(found)) == 3 and all(re.fullmatch(r"group-\d{3}", g) for g in found)
    assert rows[Path(DISTRACTOR).name]["group"] == ""
    assert rows["resaved.jpg"]["group"] == rows[Path(ORIGINAL).name]["group"]


def test_near_duplicate_resave_keeps_the_larger_original(grouped):
    _, out, _, _, _ = grouped
    rows = rows_of(out)
    original, resaved = rows[Path(ORIGINAL).name], rows["resaved.jpg"]
    assert original["near_duplicate_set"] and \
        original["near_duplicate_set"] == resaved["near_duplicate_set"]
    assert (original["keep"], resaved["keep"]) == ("1", "0")
    others = [row for name, row in rows.items() if name not in ("resaved.jpg", Path(ORIGINAL).name)]
    assert all(row["near_duplicate_set"] == "" and row["keep"] == "1" for row in others)


def test_corrupt_file_is_reported_and_skipped_with_exit_2(grouped):
    _, out, _, code, stderr = grouped
    assert code == 2
    assert "broken.jpg" in stderr and "broken.jpg" not in rows_of(out)
    with open(out / "errors.csv", newline="", encoding="utf-8") as handle:
        errors = list(csv.DictReader(handle))
    assert [os.path.basename(row["path"]) for row in errors] == ["broken.jpg"]
    assert len(rows_of(out)) == 13  # 11 landmark photos, the distractor, the re-save


def test_xmp_sidecars_name_each_photos_group_for_exiftool(grouped):
    import json
    import shutil
    import subprocess

    photos, out, _, _, _ = grouped
    rows = rows_of(out)
    sidecars = sorted(photos.glob("*.xmp"))
    grouped_photos = sorted(name for name, row in rows.items() if row["group"])
    assert [p.name[:-len(".xmp")] for p in sidecars] == grouped_photos  # none for the rest
    assert not (photos / f"{Path(DISTRACTOR).name}.xmp").exists()
    if shutil.which("exiftool") is None:
        pytest.skip("exiftool is not installed (Debian: libimage-exiftool-perl)")
    result = subprocess.run(["exiftool", "-j", "-G1", *map(str, sidecars)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for meta in json.loads(result.stdout):
        name = Path(meta["SourceFile"]).name[:-len(".xmp")]
        keywords = meta["XMP-dc:Subject"]
        keywords = keywords if isinstance(keywords, list) else [keywords]
        assert keywords[0] == f"lookalike {rows[name]['group']}"
        assert meta["XMP-lookalike:Group"] == rows[name]["group"]
        repeat = rows[name]["keep"] == "0"
        assert ("lookalike near-duplicate" in keywords) == repeat, name
        if repeat:
            assert meta["XMP-lookalike:NearDuplicateOf"] == Path(ORIGINAL).name


def test_contact_sheets_are_offline_html_with_thumbnails(grouped):
    _, out, _, _, _ = grouped
    index = (out / "index.html").read_text(encoding="utf-8")
    group_pages = sorted(out.glob("group-*.html"))
    assert len(group_pages) == 3 and (out / "ungrouped.html").is_file()
    for page in [out / "index.html", *group_pages]:
        text = page.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text
        for source in re.findall(r'src="([^"]+)"', text):
            assert (out / source).is_file(), source
        for target in re.findall(r'href="([^"]+)"', text):  # pages, and the photos themselves
            assert (out / urllib.parse.unquote(target)).exists(), target
    assert all(page.name in index for page in group_pages)
    keeper = next(page for page in group_pages if "keep (" in page.read_text(encoding="utf-8"))
    assert "near-duplicate (" in keeper.read_text(encoding="utf-8")


def test_gallery_folders_are_links_and_build_an_index(grouped, tmp_path):
    photos, _, gallery, _, _ = grouped
    folders = sorted(p.name for p in gallery.iterdir())
    assert folders == ["group-001", "group-002", "group-003"]
    files = sorted(gallery.glob("group-*/*"))
    assert len(files) == 11  # the re-save is a near-duplicate left out, the distractor ungrouped
    assert not any(f.name == "resaved.jpg" for f in files)
    for file in files:
        assert file.stat().st_ino == (photos / file.name).stat().st_ino or \
            file.read_bytes() == (photos / file.name).read_bytes()
    assert all((photos / name).exists() for name in ("resaved.jpg", Path(ORIGINAL).name))
    index = tmp_path / "groups.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(index), "--preset", "fast", "-q",
                 "-j", "1", "--cache", str(tmp_path / "cache.sqlite")]) == 0
    assert index.is_file()


def test_usage_errors_exit_1(tmp_path, capsys):
    photo = str(LANDMARKS / DISTRACTOR)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("x")
    assert main(["group", photo, "-o", str(tmp_path / "o"), "--into-gallery", str(busy)]) == 1
    assert main(["group", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 1
    assert main(["group", photo, "-o", str(tmp_path / "o"), "--threshold", "1.5"]) == 1
    assert main(["group", photo, "-o", str(tmp_path / "o"), "--preset", "nope"]) == 1
    err = capsys.readouterr().err
    assert "needs a new or empty folder" in err and "unknown preset 'nope'" in err


# -- the graph rules, on hand-made links ---------------------------------------------------------
def link(a: int, b: int, probability: float, similarity: float = 0.05) -> PairLink:
    return PairLink(a, b, probability, similarity, no_match())


def test_a_link_needs_both_photos_to_confirm_it():
    probabilities = {(0, 1): 0.9, (1, 0): 0.7, (0, 2): 0.95, (2, 0): 0.3, (1, 3): 0.99}
    matches = {pair: no_match() for pair in probabilities}
    similarities = dict.fromkeys(probabilities, 0.1)
    links = confirmed_links(probabilities, matches, similarities, 0.5)
    assert [(x.a, x.b, x.probability) for x in links] == [(0, 1, 0.7)]


def test_a_weak_lone_bridge_between_two_parts_is_cut_a_sure_one_is_not():
    triangles = [link(0, 1, 0.9), link(1, 2, 0.9), link(0, 2, 0.9),
                 link(3, 4, 0.9), link(4, 5, 0.9), link(3, 5, 0.9)]
    assert photo_groups(7, [*triangles, link(2, 3, 0.6)]) == [[0, 1, 2], [3, 4, 5], [6]]
    assert photo_groups(7, [*triangles, link(2, 3, 0.95)]) == [[0, 1, 2, 3, 4, 5], [6]]
    # a lone photo hanging on one link keeps it: that link is all the evidence it has
    assert photo_groups(7, [*triangles, link(2, 6, 0.6)])[0] == [0, 1, 2, 6]


def test_near_duplicate_needs_near_identical_description_and_covering_inliers():
    match = no_match()
    match.verified, match.inliers_h, match.cells_a, match.cells_b = True, 300, 40, 38
    assert is_near_duplicate(PairLink(0, 1, 0.99, 0.8, match))
    assert not is_near_duplicate(PairLink(0, 1, 0.99, 0.2, match))  # another shot
    match.cells_b = 10  # a crop: inliers cover little of one photo
    assert not is_near_duplicate(PairLink(0, 1, 0.99, 0.8, match))


def test_photo_to_keep_prefers_pixels_then_sharpness(tmp_path):
    rng = np.random.default_rng(0)
    sharp = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    sharp.save(tmp_path / "sharp.png")
    sharp.filter(ImageFilter.GaussianBlur(3)).save(tmp_path / "blurred.png")
    sharp.resize((800, 600)).filter(ImageFilter.GaussianBlur(3)).save(tmp_path / "large.png")
    same_size = [str(tmp_path / "blurred.png"), str(tmp_path / "sharp.png")]
    assert photo_to_keep(same_size) == str(tmp_path / "sharp.png")
    assert photo_to_keep([*same_size, str(tmp_path / "large.png")]) == str(tmp_path / "large.png")


def test_group_photos_without_a_cache_leaves_no_scratch_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    photos = [str(LANDMARKS / p) for p in PHOTOS["strecha_castle"][:3]]
    grouping = group_photos(photos, preset="fast", cache=None)
    assert [group.photos for group in grouping.groups] == [photos]
    assert grouping.ungrouped == [] and grouping.errors == {}
    assert list(tmp_path.iterdir()) == []
