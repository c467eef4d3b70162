"""`--engine ray`: a local Ray instance (2 CPUs) builds an index and identifies photos."""

from __future__ import annotations

import csv
import json

import pytest
from landmark_gallery import DISTRACTOR, QUERIES, make_gallery, photo

from lookalike.cli import main
from lookalike.gallery.index import GalleryIndex

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_build_and_identify_match_the_local_engine(local_ray, tmp_path, capsys):
    gallery = make_gallery(tmp_path / "gallery", ["strecha_castle"])
    (gallery / "strecha_castle" / "broken.jpg").write_bytes(b"nope")
    by_ray, local = tmp_path / "ray.lkidx", tmp_path / "local.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(by_ray), "--engine", "ray", "-q"]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert main(["index", "build", str(gallery), "-o", str(local), "-q", "-j", "1"]) == 2
    with GalleryIndex(by_ray) as a, GalleryIndex(local) as b:
        assert len(a.references) == len(b.references) == 3
        # The same global features (ASMK) whichever engine extracted them.
        va = dict(zip((r.content_hash for r in a.references.values()), a.global_features))
        vb = dict(zip((r.content_hash for r in b.references.values()), b.global_features))
        assert va.keys() == vb.keys()
        for key in va:
            assert a.global_method.score(va[key], vb[key]) > 0.99
    queries = [str(photo(QUERIES["strecha_castle"])), str(photo(DISTRACTOR))]
    out = tmp_path / "ray.csv"
    assert main(["identify", "--index", str(by_ray), *queries, "--engine", "ray", "--csv",
                 str(out), "--json", "-q"]) == 0
    answers = {json.loads(line)["photo"]: json.loads(line)["landmark"]
               for line in capsys.readouterr().out.splitlines()}
    assert answers == {queries[0]: "strecha_castle", queries[1]: "unknown"}
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert {r["photo"]: r["landmark"] for r in rows} == answers
