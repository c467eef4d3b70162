"""identify / verify: the two stages, calibrated answers, JSON shape, GPS, CSV resume, jobs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from landmark_gallery import DISTRACTOR, QUERIES, SCEAUX, make_gallery, photo
from PIL import Image

from lookalike.cli import main
from lookalike.engines.local import local_extractor
from lookalike.gallery.gps import gps_penalty, haversine_km, read_gps
from lookalike.gallery.identify import Identifier, Settings
from lookalike.gallery.index import build_index
from lookalike.retrieval.calibration import Calibration


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("identify")
    gallery = make_gallery(root / "gallery")
    output = root / "gallery.lkidx"
    report = build_index(gallery, output, local_extractor())
    assert report.added == 9 and not report.errors
    return output


@pytest.fixture(scope="module")
def identifier(index_path):
    return Identifier(index_path)


def with_gps(source: Path, target: Path, lat: float, lon: float) -> Path:
    """A copy of a photo carrying EXIF GPS coordinates."""
    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        d = int(value)
        m = int((value - d) * 60)
        return float(d), float(m), round((value - d - m / 60) * 3600, 3)

    image = Image.open(source)
    exif = image.getexif()
    exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W",
                    4: dms(lon)}
    image.save(target, exif=exif, quality=92)
    return target


@pytest.mark.parametrize("landmark", sorted(QUERIES))
def test_held_out_photo_is_identified(identifier, landmark):
    answer = identifier.identify(photo(QUERIES[landmark]))
    assert answer.landmark == landmark, answer.to_json()
    assert answer.probability >= identifier.threshold
    best = answer.candidates[0]
    assert best.landmark == landmark and best.inliers >= 12
    # Probabilities are sorted and the other landmarks are far less likely.
    probabilities = [c.probability for c in answer.candidates]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(c.probability < 0.5 for c in answer.candidates[1:])


def test_distractor_is_unknown(identifier):
    answer = identifier.identify(photo(DISTRACTOR))
    assert answer.landmark == "unknown"
    assert all(c.probability < identifier.threshold for c in answer.candidates)
    assert answer.probability == pytest.approx(1 - answer.candidates[0].probability, abs=1e-9)


def test_verify_yes_and_no_with_evidence(identifier):
    query = photo(QUERIES["strecha_castle"])
    yes = identifier.verify(query, "strecha_castle")
    assert yes.verified is True and yes.landmark == "strecha_castle"
    evidence = yes.to_json()["evidence"]
    width, height = Image.open(query).size
    assert evidence["size"] == [width, height]
    x0, y0, x1, y1 = evidence["box"]
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert len(evidence["points"]) >= 12
    no = identifier.verify(query, "st_pauls_cathedral")
    assert no.verified is False and no.probability < yes.probability
    with pytest.raises(KeyError):
        identifier.verify(query, "nowhere")


def test_json_lines_shape(index_path, capsys):
    query = photo(QUERIES["chateau_de_sceaux"])
    assert main(["identify", "--index", str(index_path), str(query), str(photo(DISTRACTOR)),
                 "--json", "-q"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["photo"] for line in lines] == [str(query), str(photo(DISTRACTOR))]
    assert [line["landmark"] for line in lines] == ["chateau_de_sceaux", "unknown"]
    for line in lines:
        assert 0.0 <= line["probability"] <= 1.0
        assert {"landmark", "probability"} <= set(line["candidates"][0])
        assert "verified" not in line
    assert main(["verify", "--index", str(index_path), "--landmark", "chateau_de_sceaux",
                 str(query), "--json", "-q"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["verified"] is True and verdict["landmark"] == "chateau_de_sceaux"
    assert main(["verify", "--index", str(index_path), "--landmark", "nowhere", str(query)]) == 1


def test_match_picture(index_path, tmp_path):
    query = photo(QUERIES["chateau_de_sceaux"])
    assert main(["verify", "--index", str(index_path), "--landmark", "chateau_de_sceaux",
                 str(query), "--match-picture", str(tmp_path), "-q"]) == 0
    pictures = list(tmp_path.glob("*.png"))
    assert len(pictures) == 1
    picture = Image.open(pictures[0])
    assert picture.height == 480 and picture.width > 480


def test_gps_distance_and_prior(identifier, tmp_path):
    assert haversine_km((51.5074, -0.1278), (48.8566, 2.3522)) == pytest.approx(343.5, abs=1)
    query = photo(QUERIES["chateau_de_sceaux"])
    near = with_gps(query, tmp_path / "near.jpg", 48.7790, 2.3000)
    far = with_gps(query, tmp_path / "far.jpg", 35.6812, 139.7671)  # Tokyo
    assert read_gps(near.read_bytes()) == pytest.approx((48.7790, 2.3000), abs=1e-4)
    assert read_gps(query.read_bytes()) is None
    plain = identifier.identify(near)
    best = plain.candidates[0]
    assert best.landmark == "chateau_de_sceaux" and best.distance_km < 0.2
    assert plain.to_json()["candidates"][0]["distance_km"] < 0.2
    gps = Identifier(identifier.index, Settings(use_gps=True))
    assert gps.identify(near).probability == pytest.approx(plain.probability, abs=1e-6)
    far_answer = gps.identify(far)
    sceaux = next(c for c in far_answer.candidates if c.landmark == "chateau_de_sceaux")
    assert sceaux.distance_km > 9000 and sceaux.probability < 0.01
    assert far_answer.landmark == "unknown"  # 9,700 km away: the photo cannot show it
    assert gps_penalty(0.5, 1.0, 3.0) == 0 < gps_penalty(2, 1.0, 3.0) < gps_penalty(20, 1.0, 3.0)


def test_folder_to_csv_resumes_and_reports_bad_files(index_path, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for landmark in ("strecha_castle", "st_pauls_cathedral"):
        (folder / Path(QUERIES[landmark]).name).symlink_to(photo(QUERIES[landmark]))
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    out = tmp_path / "answers.csv"
    args = ["identify", "--index", str(index_path), str(folder), "--csv", str(out), "-q"]
    assert main(args) == 2
    assert "broken.jpg" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 3
    by_name = {Path(r["photo"]).name: r for r in rows}
    assert by_name["broken.jpg"]["error"]
    assert by_name[Path(QUERIES["strecha_castle"]).name]["landmark"] == "strecha_castle"
    # Interrupted run: drop the last answer; a rerun only does the missing photo.
    lines = out.read_text(encoding="utf-8").splitlines()
    out.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    assert main(args) in (0, 2)
    rows_again = list(csv.DictReader(out.open(encoding="utf-8")))
    assert sorted(r["photo"] for r in rows_again) == sorted(r["photo"] for r in rows)
    assert main(args) == 0  # nothing left to do
    assert len(list(csv.DictReader(out.open(encoding="utf-8")))) == 3


def test_jobs_give_the_same_answers(index_path, capsys):
    queries = [str(photo(QUERIES[k])) for k in sorted(QUERIES)] + [str(photo(DISTRACTOR))]
    answers = {}
    for jobs in ("1", "2"):
        assert main(["identify", "--index", str(index_path), *queries, "--json", "-q",
                     "-j", jobs]) == 0
        answers[jobs] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [a["landmark"] for a in answers["1"]] == [a["landmark"] for a in answers["2"]]
    for a, b in zip(answers["1"], answers["2"]):
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-3)


def test_calibration_file_round_trip(tmp_path, identifier):
    from lookalike.retrieval.pipeline import IDENTIFY_EVIDENCE

    calibration = Calibration(list(IDENTIFY_EVIDENCE), [1.0] * 6, -5.0, [0.0] * 6, [1.0] * 6,
                              0.3, {}, {"fitted_on": "test"})
    calibration.save(tmp_path / "c.json")
    loaded = Calibration.load(tmp_path / "c.json", IDENTIFY_EVIDENCE)
    assert loaded == calibration
    shipped = identifier.calibration
    assert len(shipped.coef) == len(IDENTIFY_EVIDENCE) and 0 < shipped.threshold < 1
    assert shipped.methods["local"]["name"] == identifier.local_method.name


def test_a_calibration_chooses_its_evidence(tmp_path, identifier):
    """An identify calibration names the evidence it was fit on (any of IDENTIFY_FEATURES):
    the answers' probabilities follow its features; an unknown one is refused by name."""
    from lookalike.gallery.folders import GalleryError
    from lookalike.retrieval.pipeline import IDENTIFY_FEATURES

    assert set(identifier.calibration.features) <= set(IDENTIFY_FEATURES)
    methods = identifier.calibration.methods
    margin_only = Calibration(["log_margin"], [3.0], 0.0, [0.0], [1.0], 0.5, methods, {})
    answer = Identifier(identifier.index, calibration=margin_only).identify(
        photo(QUERIES["chateau_de_sceaux"]))
    best = answer.candidates[0]
    assert len(best.evidence()) == 1 and best.evidence()[0] > 0
    assert best.probability == pytest.approx(1 / (1 + math.exp(-3.0 * best.evidence()[0])),
                                             abs=1e-3)
    unknown = Calibration(["log_sparkle"], [1.0], 0.0, [0.0], [1.0], 0.5, methods, {})
    unknown.save(tmp_path / "unknown.json")
    with pytest.raises(GalleryError, match="log_sparkle"):
        Identifier(identifier.index, calibration=tmp_path / "unknown.json")


def test_evaluate_identify_small(tmp_path, capsys):
    manifest = tmp_path / "manifest.csv"
    rows = ["path,label"]
    for landmark in ("chateau_de_sceaux", "strecha_castle"):
        rows += [f"{photo(p)},{landmark}" for p in make_gallery_paths(landmark)]
    rows.append(f"{photo(DISTRACTOR)},distractor")
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "eval"
    assert main(["evaluate", "--identify", str(manifest), "-o", str(out), "-q",
                 "--fit-calibration", str(tmp_path / "cal.json")]) == 0
    summary = json.loads((out / "identify_summary.json").read_text())
    assert summary["landmark_queries"] == 8 and summary["distractor_queries"] == 1
    point = summary["at_far_0.05"]
    assert point["false_accept_rate"] <= 0.05 and 0 <= point["top1_accuracy"] <= 1
    assert (out / "identify_curve.png").stat().st_size > 1000
    assert Calibration.load(tmp_path / "cal.json").info["fitted_on"].endswith("9 queries")
    assert "top-1 accuracy" in capsys.readouterr().out


def make_gallery_paths(landmark: str) -> list[str]:
    from landmark_gallery import GALLERY

    return [*GALLERY[landmark], QUERIES[landmark]]


def test_signboard_text_counts_as_evidence(identifier, tmp_path):
    from lookalike.ocr.reader import OcrUnavailable, check_available
    from lookalike.ocr.signboards import Sign, paste_sign

    try:
        check_available()
    except OcrUnavailable as error:
        pytest.skip(str(error))
    query = photo(QUERIES["chateau_de_sceaux"])
    signed, _ = paste_sign(Image.open(query), Sign(SCEAUX["en"], area=0.04,
                                                   position=(0.5, 0.8)))
    signed.save(tmp_path / "signed.jpg", quality=92)
    plain = Identifier(identifier.index, Settings()).identify(tmp_path / "signed.jpg")
    reading = Identifier(identifier.index, Settings(use_text=True))
    with_text = reading.identify(tmp_path / "signed.jpg")
    sceaux = next(c for c in with_text.candidates if c.landmark == "chateau_de_sceaux")
    before = next(c for c in plain.candidates if c.landmark == "chateau_de_sceaux")
    assert sceaux.text >= 0.75 and before.text is None
    from lookalike.ocr.evidence import text_log_odds

    assert text_log_odds(sceaux.text) > 1.0
    assert sceaux.logit == pytest.approx(before.logit + text_log_odds(sceaux.text), abs=1e-6)
    assert with_text.to_json()["candidates"][0]["text"] >= 0.75
    # Without a sign nothing is read for the other landmarks: their odds do not move.
    others = [c for c in with_text.candidates if c.landmark != "chateau_de_sceaux"]
    assert all(c.text is None or c.text < 0.75 for c in others)


def test_a_distractors_folder_holds_negatives_not_a_landmark(tmp_path, capsys):
    """Issue 15: `index build DIR` turned `distractors/` into a landmark that answered street
    photos with p=1.00. Its photos are negatives now: never an answer, listed apart."""
    import os

    from landmark_gallery import LANDMARKS

    gallery = make_gallery(tmp_path / "gallery", ["chateau_de_sceaux", "strecha_castle"])
    negatives = sorted((LANDMARKS / "distractors").glob("*.jpg"))
    (gallery / "distractors").mkdir()
    for path in negatives[:4]:
        os.symlink(path, gallery / "distractors" / path.name)
    output = tmp_path / "with-negatives.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(output), "-q"]) == 0
    assert main(["index", "info", str(output), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["landmarks"] == 2 and info["negatives"] == 4
    assert "_negatives" not in {item["id"] for item in info["per_landmark"]}
    identifier = Identifier(output)
    for path in [*negatives[:2], photo(DISTRACTOR)]:
        answer = identifier.identify(path)
        assert answer.landmark == "unknown", answer.to_json()
        assert all(c.landmark != "_negatives" for c in answer.candidates)
    assert identifier.identify(photo(QUERIES["chateau_de_sceaux"])).landmark == \
        "chateau_de_sceaux"


def exiftool(*paths: Path) -> list[dict]:
    """What exiftool (the reader Immich, PhotoPrism and digiKam rely on) reads in sidecars."""
    import shutil
    import subprocess

    if shutil.which("exiftool") is None:
        pytest.skip("exiftool is not installed (Debian: libimage-exiftool-perl)")
    result = subprocess.run(["exiftool", "-j", "-G1", "-n", *map(str, paths)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


USER_SIDECAR = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmp:Rating="4">
   <digiKam:TagsList><rdf:Seq><rdf:li>People/Anna</rdf:li></rdf:Seq></digiKam:TagsList>
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def test_identify_xmp_sidecars_are_read_back_by_exiftool(index_path, tmp_path, capsys):
    import hashlib

    folder = tmp_path / "library"
    folder.mkdir()
    sceaux, strecha, stranger = (folder / "sceaux.jpg", folder / "strecha.jpg",
                                 folder / "stranger.jpg")
    for target, source in ((sceaux, QUERIES["chateau_de_sceaux"]),
                           (strecha, QUERIES["strecha_castle"]), (stranger, DISTRACTOR)):
        target.write_bytes(photo(source).read_bytes())
    Path(f"{strecha}.xmp").write_text(USER_SIDECAR, encoding="utf-8")
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (sceaux, strecha, stranger)}
    argv = ["identify", "--index", str(index_path), str(folder), "--xmp", "-j", "1"]
    assert main(argv) == 0
    assert "wrote 2 XMP sidecar(s)" in capsys.readouterr().err
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in digests} == digests
    assert not Path(f"{stranger}.xmp").exists()  # unknown: no sidecar of ours
    first, second = exiftool(Path(f"{sceaux}.xmp"), Path(f"{strecha}.xmp"))
    assert as_list(first["XMP-dc:Subject"]) == [SCEAUX["en"], SCEAUX["ja"]]
    assert as_list(first["XMP-lr:HierarchicalSubject"]) == [f"Landmarks|{SCEAUX['en']}"]
    assert first["XMP-exif:GPSLatitude"] == pytest.approx(SCEAUX["location"]["lat"], abs=1e-6)
    assert first["XMP-exif:GPSLongitude"] == pytest.approx(SCEAUX["location"]["lon"], abs=1e-6)
    assert first["XMP-lookalike:Landmark"] == "chateau_de_sceaux"
    assert 0.5 <= first["XMP-lookalike:Probability"] <= 1.0
    from lookalike import __version__
    assert str(first["XMP-lookalike:Version"]) == __version__
    # the user's sidecar: their keyword, rating and tags kept, the landmark added
    assert as_list(second["XMP-dc:Subject"]) == ["holiday", "strecha_castle"]
    assert second["XMP-xmp:Rating"] == 4
    assert as_list(second["XMP-digiKam:TagsList"]) == ["People/Anna"]
    assert "XMP-exif:GPSLatitude" not in second  # the landmark has no location
    # a second run changes nothing (no keyword twice)
    before = Path(f"{strecha}.xmp").read_text(encoding="utf-8")
    assert main([*argv, "-q"]) == 0
    assert Path(f"{strecha}.xmp").read_text(encoding="utf-8") == before
    # a stale answer (an earlier run said strecha_castle) is taken out when the photo turns
    # out unknown; the user's fields stay
    Path(f"{stranger}.xmp").write_text(before, encoding="utf-8")
    assert main(["identify", "--index", str(index_path), str(stranger), "--xmp", "-q"]) == 0
    (third,) = exiftool(Path(f"{stranger}.xmp"))
    assert as_list(third["XMP-dc:Subject"]) == ["holiday"] and third["XMP-xmp:Rating"] == 4
    assert not any(key.startswith("XMP-lookalike:") for key in third)
    capsys.readouterr()
    # a sidecar that is not XML is left alone and reported (exit 2)
    Path(f"{sceaux}.xmp").write_text("not xml <", encoding="utf-8")
    assert main(["identify", "--index", str(index_path), str(sceaux), "--xmp", "-q"]) == 2
    assert "not a readable XMP sidecar" in capsys.readouterr().err
    assert Path(f"{sceaux}.xmp").read_text(encoding="utf-8") == "not xml <"


def test_xmp_keeps_a_photos_own_position_and_a_users_gps(tmp_path):
    from lookalike.gallery.xmp import landmark_fields, write_sidecar, xmp_coordinate

    assert xmp_coordinate(48.7784, "NS") == "48,46.704000N"
    assert xmp_coordinate(-33.85, "NS") == "33,51.000000S"
    assert xmp_coordinate(-0.1275, "EW") == "0,7.650000W"
    photo_path = tmp_path / "IMG_1.CR2"
    photo_path.write_bytes(b"raw")
    fields = landmark_fields("tower_bridge", {"en": "Tower Bridge"}, (51.5055, -0.0754), 0.9,
                             "0.1.0", photo_has_gps=True)
    (meta,) = exiftool(write_sidecar(photo_path, fields))
    assert "XMP-exif:GPSLatitude" not in meta  # the photo's own EXIF GPS is better
    assert Path(f"{photo_path}.xmp").name == "IMG_1.CR2.xmp"
    fields = landmark_fields("tower_bridge", {"en": "Tower Bridge"}, (51.5055, -0.0754), 0.9,
                             "0.1.0", photo_has_gps=False)
    (meta,) = exiftool(write_sidecar(photo_path, fields))
    assert meta["XMP-exif:GPSLatitude"] == pytest.approx(51.5055)
    assert meta["XMP-exif:GPSLongitude"] == pytest.approx(-0.0754)


def test_identify_and_verify_refuse_a_preset_they_would_ignore(index_path, capsys):
    query = str(photo(QUERIES["strecha_castle"]))
    for command in (["identify"], ["verify", "--landmark", "strecha_castle"]):
        argv = [*command, "--index", str(index_path), query, "-q", "-j", "1"]
        assert main([*argv, "--preset", "nosuch"]) == 1
        assert "unknown preset 'nosuch'; choose from: fast, default, accurate" in \
            capsys.readouterr().err
        assert main([*argv, "--preset", "fast"]) == 1
        err = capsys.readouterr().err
        assert f"{index_path} was built with preset 'default', not preset 'fast'" in err
        assert "--preset fast" in err
        assert main([*argv, "--preset", "default"]) == 0  # the index's own: accepted
        capsys.readouterr()


def test_csv_says_whose_probability_an_unknown_row_carries(index_path, tmp_path):
    out = tmp_path / "answers.csv"
    queries = [str(photo(DISTRACTOR)), str(photo(QUERIES["strecha_castle"]))]
    assert main(["identify", "--index", str(index_path), *queries, "--csv", str(out), "-q",
                 "-j", "1"]) == 0
    unknown, known = list(csv.DictReader(out.open(encoding="utf-8")))
    assert unknown["landmark"] == "unknown" and unknown["best_candidate"] in QUERIES
    assert float(unknown["probability"]) == pytest.approx(
        1.0 - float(unknown["best_probability"]), abs=2e-4)
    assert known["landmark"] == known["best_candidate"] == "strecha_castle"
    assert known["probability"] == known["best_probability"]
    old = tmp_path / "old.csv"  # a results file of the columns before best_candidate
    old.write_text("photo,landmark,probability,name_en,name_ja,distance_km,candidates,error\n")
    assert main(["identify", "--index", str(index_path), queries[0], "--csv", str(old),
                 "-q"]) == 1


def test_identify_into_a_csv_logs_that_it_is_alive(index_path, tmp_path, capsys, monkeypatch):
    """No terminal (stderr captured, as in cron): plain progress lines on stderr, the answers
    in the CSV (every LOOKALIKE_PROGRESS_SECONDS; 0 prints one per photo)."""
    monkeypatch.setenv("LOOKALIKE_PROGRESS_SECONDS", "0")
    queries = [str(photo(QUERIES[k])) for k in sorted(QUERIES)]
    out = tmp_path / "answers.csv"
    assert main(["identify", "--index", str(index_path), *queries, "--csv", str(out),
                 "-j", "1"]) == 0
    err = capsys.readouterr().err
    assert "lookalike identify: answered 1/3 photos, " in err
    assert any(line.startswith("lookalike identify: answered 3/3 photos, done in ")
               for line in err.splitlines()), err
    assert main(["identify", "--index", str(index_path), *queries, "--csv",
                 str(tmp_path / "quiet.csv"), "-j", "1", "-q"]) == 0
    assert "answered" not in capsys.readouterr().err
