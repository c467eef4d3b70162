"""Faults a batch must survive: odd copies of real photos, and a kill in the middle of a run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from landmark_gallery import LANDMARKS, QUERIES, REPO, make_gallery, photo
from PIL import Image

sys.path.insert(0, str(REPO / "benchmarks"))
from faults import copies  # the same odd copies as the full benchmark

from lookalike.cli import main
from lookalike.features.contract import LOCAL_MATCHER
from lookalike.features.registry import get_method, method_names
from lookalike.imaging.loading import load_image

DOZEN = sorted(LANDMARKS.glob("*/*.jpg"))[::11][:12]
# CI checks half of them with the fast local methods; LOOKALIKE_FULL_FAULTS=1 runs all twelve
# with every local method (DISK included), as the benchmark of docs/benchmarks.md does.
FULL = bool(os.environ.get("LOOKALIKE_FULL_FAULTS"))


def variants(image: Image.Image) -> dict[str, Image.Image]:
    """The benchmark's odd copies (benchmarks/faults.py runs them over every dev photo)."""
    return copies(image)


@pytest.fixture(scope="module")
def photos():
    assert len(DOZEN) == 12
    return [load_image(path) for path in DOZEN]


@pytest.mark.parametrize("name", [n for n in method_names(LOCAL_MATCHER)
                                  if FULL or n != "disk"])
def test_every_local_method_matches_odd_copies_without_an_exception(name, photos):
    small = {"max_side": 480, "max_keypoints": 256} if name != "verified" else {}
    method = get_method(name, **small)
    for image in (photos if FULL else photos[::2]):
        base = method.extract(image)
        for label, variant in variants(image).items():
            match = method.match(base, method.extract(variant))
            assert match.inliers >= 0, (name, label)
        assert method.match(base, base).verified


def test_identify_and_explain_survive_the_re_saves(tmp_path, photos):
    gallery = make_gallery(tmp_path / "gallery", ["chateau_de_sceaux", "strecha_castle"])
    index = tmp_path / "fast.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(index), "--preset", "fast", "-q"]) == 0
    resaved = []
    for number, image in enumerate(photos):
        target = tmp_path / f"resaved{number}.jpg"
        variants(image)["resaved"].save(target, quality=90)
        resaved.append(str(target))
    assert main(["identify", "--index", str(index), *resaved, "-q", "-j", "1"]) == 0
    assert main(["explain", resaved[0], str(DOZEN[0]), "-o", str(tmp_path / "x.png"),
                 "--preset", "fast", "-q"]) == 0


def test_a_kill_in_the_middle_of_identify_csv_loses_no_row_and_resumes(tmp_path):
    """The process dies (os._exit, as kill -9 would end it) after two answers: the CSV holds
    those two complete rows, and the next run answers only the rest."""
    gallery = make_gallery(tmp_path / "gallery", ["chateau_de_sceaux", "strecha_castle"])
    index = tmp_path / "g.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(index), "--preset", "fast", "-q"]) == 0
    queries = [str(photo(QUERIES[name])) for name in ("chateau_de_sceaux", "strecha_castle")]
    queries += [str(path) for path in DOZEN[:3]]
    out = tmp_path / "answers.csv"
    script = (
        "import os\n"
        "from lookalike.gallery.identify import Identifier\n"
        "original = Identifier.identify_features\n"
        "calls = []\n"
        "def dying(self, *args, **kwargs):\n"
        "    if len(calls) == 2:\n"
        "        os._exit(9)\n"
        "    calls.append(1)\n"
        "    return original(self, *args, **kwargs)\n"
        "Identifier.identify_features = dying\n"
        "from lookalike.cli import main\n"
        f"main(['identify', '--index', {str(index)!r}, *{queries!r}, '--csv', {str(out)!r},"
        " '-q', '-j', '1'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            timeout=300)
    assert result.returncode == 9, result.stderr.decode()
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [row["photo"] for row in rows] == queries[:2] and all(row["landmark"] for row in rows)
    assert main(["identify", "--index", str(index), *queries, "--csv", str(out), "-q"]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert sorted(row["photo"] for row in rows) == sorted(queries)


def test_a_pair_that_fails_to_score_costs_that_pair_not_the_run(monkeypatch):
    """Issue 15: a failure inside one pair's scoring ended the whole run."""
    from lookalike.evaluation.compare import compare
    from lookalike.methods.hashes import PerceptualHash

    real = PerceptualHash.score
    calls = []

    def third_pair_fails(self, a, b):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(self, a, b)

    def matrix_fails(self, queries, gallery):
        raise RuntimeError("a pair in this block failed")

    monkeypatch.setattr(PerceptualHash, "score", third_pair_fails)
    monkeypatch.setattr(PerceptualHash, "score_matrix", matrix_fails)
    paths = [str(path) for path in DOZEN[:3]]
    result = compare(paths, methods="phash", cache=False)
    scores = result.matrices["phash"].scores
    assert scores.shape == (3, 3) and np.isinf(scores).sum() == 1
    assert np.isfinite(scores).sum() == 8
    (pair, reason), = result.errors.items()
    assert pair == f"{paths[0]} vs {paths[2]}" and "boom" in reason
