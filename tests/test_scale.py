"""`--engine ray`: a local Ray instance (2 CPUs) builds an index and identifies photos."""

from __future__ import annotations

import csv
import json

import numpy as np
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


# -- the shortlist and the shards: exactly the single-machine answers ------------------------------
def answers_of(identifier, queries) -> list[dict]:
    out = []
    for query in queries:
        answer = identifier.identify(query).to_json()
        out.append({key: answer[key] for key in ("landmark", "probability", "candidates")})
    return out


@pytest.fixture(scope="module")
def three_landmarks(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    gallery = make_gallery(root / "gallery")
    index = root / "three.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(index), "-q", "-j", "1"]) == 0
    queries = [str(photo(q)) for q in QUERIES.values()] + [str(photo(DISTRACTOR))]
    return index, queries


def test_the_shortlist_decides_exactly_as_ranking_every_reference(three_landmarks):
    """A gallery shortlisted (as past 2,000 references) answers what ranking all does, with
    a prefix too short to decide at first (k grows until it is exact), and with shards."""
    from lookalike.gallery.identify import Identifier, Settings
    from lookalike.gallery.index import GalleryIndex
    from lookalike.gallery.shortlist import (
        ShardSearcher,
        Shortlist,
        exact_prefix,
        merge_tops,
        write_shards,
    )

    index_path, queries = three_landmarks
    settings = Settings(verify_landmarks=2, verify_per_landmark=2)
    with GalleryIndex(index_path) as index:
        whole = answers_of(Identifier(index, settings), queries)
        shortlisted = Identifier(index, settings)
        shortlisted.shortlist_from = 0
        assert answers_of(shortlisted, queries) == whole
        paths = write_shards(index_path, 3)
        searchers = [ShardSearcher(path, index.global_method) for path in paths]
        asked = []

        def search(query, k):
            asked.append(k)
            tops = [s.top(query, k) for s in searchers]
            positions, scores = merge_tops(tops)
            return positions, scores, all(b == -np.inf for _, _, b in tops)

        names, codes = index.landmark_codes()
        shortlist = Shortlist(codes, names, search)
        shortlist.first_k = 1
        sharded = Identifier(index, settings, shortlist=shortlist)
        assert answers_of(sharded, queries) == whole
        assert len(asked) > len(queries) and 1 in asked  # a top 1 was not enough: k grew
        # The check itself: one landmark's best reference is not a decision.
        scores = index.search_index.scores(index.global_features[0])
        best = int(np.argmax(scores))
        assert not exact_prefix(scores[[best]], codes[[best]], np.bincount(codes), 2, 2, None,
                                complete=False)
        assert exact_prefix(scores, codes, np.bincount(codes), 2, 2, None, complete=True)


@pytest.mark.slow
def test_sharded_identify_on_ray_equals_one_machine(local_ray, three_landmarks, tmp_path,
                                                    capsys):
    from lookalike.gallery.shortlist import shard_path, shards_of

    index_path, queries = three_landmarks
    sharded = tmp_path / "sharded.lkidx"
    gallery = index_path.parent / "gallery"
    assert main(["index", "build", str(gallery), "-o", str(sharded), "--engine", "ray",
                 "--shards", "2", "-q"]) == 0
    assert shards_of(sharded) == 2 and shard_path(sharded, 1, 2).is_file()
    capsys.readouterr()
    # The same index on one machine (features extracted by another engine may differ in the
    # last bits, so the comparison is on the one file).
    assert main(["identify", "--index", str(sharded), *queries, "--json", "-q",
                 "-j", "1"]) == 0
    local = {json.loads(line)["photo"]: json.loads(line)
             for line in capsys.readouterr().out.splitlines()}
    assert main(["identify", "--index", str(sharded), *queries, "--engine", "ray", "--json",
                 "-q"]) == 0
    on_ray = {json.loads(line)["photo"]: json.loads(line)
              for line in capsys.readouterr().out.splitlines()}
    assert on_ray.keys() == local.keys() == set(queries)
    for query in queries:
        for key in ("landmark", "probability", "candidates"):
            assert on_ray[query][key] == local[query][key], (query, key)
    # serve --engine ray: every identifier the server makes gets the shard actors' shortlist,
    # new actors after an edit of the gallery.
    from lookalike.engines.ray import ray_shortlists
    from lookalike.gallery.identify import Identifier
    from lookalike.gallery.index import GalleryIndex

    with GalleryIndex(sharded) as index:
        whole = answers_of(Identifier(index), queries)
        Identifier.shortlists = ray_shortlists(2)
        try:
            served = Identifier(index)
            assert served.shortlist is not None
            assert answers_of(served, queries) == whole
            index.remove(["st_pauls_cathedral"])
            after = Identifier(index)
            Identifier.shortlists = None
            assert answers_of(after, queries) == answers_of(Identifier(index), queries)
        finally:
            Identifier.shortlists = None


@pytest.mark.slow
def test_group_on_ray_equals_the_local_grouping(local_ray):
    from landmark_gallery import GALLERY

    from lookalike.grouping.groups import group_photos

    photos = [str(photo(p)) for landmark in ("chateau_de_sceaux", "strecha_castle")
              for p in GALLERY[landmark]] + [str(photo(DISTRACTOR))]
    local = group_photos(photos, jobs=1)
    on_ray = group_photos(photos, engine="ray")
    assert [sorted(g.photos) for g in on_ray.groups] == [sorted(g.photos) for g in local.groups]
    assert sorted(on_ray.ungrouped) == sorted(local.ungrouped)
    assert len(local.groups) == 2  # the two landmarks, the distractor left out
