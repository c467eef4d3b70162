"""`lookalike explain` draws the verified matches and reports bad input by name."""

from __future__ import annotations

import json

from PIL import Image

from lookalike.cli import main

SCEAUX = "chateau_de_sceaux/imagedataset_sceauxcastle__images_100_7102.jpg"
SCEAUX_2 = "chateau_de_sceaux/imagedataset_sceauxcastle__images_100_7103.jpg"
OTHER_CHURCH = "distractors/image-matching-webui__kn-church_01.jpg"


def test_explain_writes_a_picture_of_both_photos(tmp_path, landmarks_dir, capsys):
    output = tmp_path / "out" / "match.png"
    code = main(["explain", str(landmarks_dir / SCEAUX), str(landmarks_dir / SCEAUX_2),
                 "-o", str(output), "-q"])
    assert code == 0
    assert capsys.readouterr().out.startswith("verified:")
    picture = Image.open(output)
    a = Image.open(landmarks_dir / SCEAUX)
    b = Image.open(landmarks_dir / SCEAUX_2)
    expected_width = round(a.width * 640 / a.height) + round(b.width * 640 / b.height)
    assert abs(picture.width - expected_width) <= 2 and picture.height == 680
    # The inlier lines are drawn in green somewhere between the two photos.
    pixels = picture.convert("RGB").load()
    greens = sum(1 for x in range(0, picture.width, 3) for y in range(0, 640, 3)
                 if pixels[x, y] == (40, 220, 60))
    assert greens > 50


def test_explain_says_not_verified_for_another_building(tmp_path, landmarks_dir, capsys):
    code = main(["explain", str(landmarks_dir / SCEAUX), str(landmarks_dir / OTHER_CHURCH),
                 "-o", str(tmp_path / "m.png"), "-q"])
    assert code == 0
    assert capsys.readouterr().out.startswith("not verified")


def test_explain_draws_hand_regions(tmp_path, landmarks_dir):
    sidecar = tmp_path / "roi.json"
    sidecar.write_text(json.dumps({SCEAUX.split("/")[-1]: [{"box": [100, 100, 600, 500]}]}))
    output = tmp_path / "m.png"
    assert main(["explain", str(landmarks_dir / SCEAUX), str(landmarks_dir / SCEAUX_2),
                 "-o", str(output), "--regions", str(sidecar), "-q"]) == 0
    pixels = Image.open(output).convert("RGB")
    hand = sum(1 for x in range(0, pixels.width // 2) for y in range(0, 640, 2)
               if pixels.getpixel((x, y)) == (0, 160, 255))
    assert hand > 20


def test_explain_reports_an_unreadable_photo(tmp_path, landmarks_dir, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    code = main(["explain", str(broken), str(landmarks_dir / SCEAUX), "-o",
                 str(tmp_path / "m.png"), "-q"])
    assert code == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()


def test_explain_and_verify_report_the_same_numbers_for_the_same_pair(tmp_path, landmarks_dir):
    """Issue 15: explain said 44 inliers where verify said 34 for one pair; issue 27: their
    verdicts and probabilities differed too. Explain now asks verify's question (a landmark
    whose only reference is B), so every number agrees."""
    import os

    from lookalike.engines.local import local_extractor
    from lookalike.gallery.identify import Identifier
    from lookalike.gallery.index import build_index
    from lookalike.gallery.pair import verify_pair

    query = landmarks_dir / "chateau_de_sceaux/imagedataset_sceauxcastle__images_100_7104.jpg"
    reference = landmarks_dir / "chateau_de_sceaux/imagedataset_sceauxcastle__images_100_7101.jpg"
    gallery = tmp_path / "gallery" / "chateau_de_sceaux"
    gallery.mkdir(parents=True)
    os.symlink(reference, gallery / reference.name)
    build_index(tmp_path / "gallery", tmp_path / "one.lkidx", local_extractor())
    answer = Identifier(tmp_path / "one.lkidx").verify(query, "chateau_de_sceaux")
    explained = verify_pair(str(query), str(reference), local_extractor())
    assert answer.candidates[0].inliers == explained.candidates[0].inliers > 50
    assert (answer.verified, answer.probability) == (explained.verified, explained.probability)
