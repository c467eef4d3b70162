"""A gallery photo described in several views (whole + 2 x 2 tiles), one photo to the pipeline
(issue 24: small and distant landmarks), on oxford_hard's real photos."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from lookalike.cli import main
from lookalike.evaluation.query_sets import keypoints_inside, load_query_sets, polygons_of
from lookalike.features.contract import shares_local
from lookalike.features.registry import get_method
from lookalike.imaging.loading import decode_image, read_bytes
from lookalike.matching.geometry import mutual_nearest
from lookalike.methods.learned_local import split_view, tile_boxes

OXFORD = REPO.parent / "shared" / "data" / "oxford_hard"


def describe(method, path):
    return method.extract(decode_image(read_bytes(path), path, method.load_options()))


@pytest.fixture(scope="module")
def o15():
    """o15's query (whole), and its first positive whole and in tiles."""
    chosen = load_query_sets(OXFORD, ["o15"])[0]
    whole, tiles = get_method("aliked"), get_method("aliked", views="tiles")
    photo = chosen.positives[0]
    return {"set": chosen, "photo": photo, "query": describe(whole, chosen.query),
            "whole": describe(whole, photo), "tiles": describe(tiles, photo)}


def test_tiles_cover_the_photo_with_overlap():
    boxes = tile_boxes((1000, 600))
    assert len(boxes) == 4
    assert boxes[0] == (0, 0, 600, 360) and boxes[3] == (400, 240, 1000, 600)
    covered = np.zeros((600, 1000), bool)
    for left, top, right, bottom in boxes:
        covered[top:bottom, left:right] = True
    assert covered.all()


def test_views_are_one_photo_in_the_whole_views_frame(o15):
    whole, tiles = o15["whole"], o15["tiles"]
    assert len(tiles["keypoints"]) == 5 * 1024 and tiles["view_frames"].shape == (5, 5)
    assert np.bincount(tiles["view"]).tolist() == [1024] * 5
    np.testing.assert_array_equal(tiles["size"], whole["size"])
    np.testing.assert_array_equal(tiles["scale"], whole["scale"])
    # the whole view is today's feature; the tiles' keypoints lie in the whole frame
    first, at = split_view(tiles, 0)
    np.testing.assert_allclose(first["keypoints"], whole["keypoints"], atol=1e-4)
    assert at.tolist() == list(range(1024))
    assert (tiles["keypoints"] >= -1).all() and (tiles["keypoints"] <= whole["size"] + 1).all()
    for view in range(1, 5):  # back in a tile's own pixels: inside that tile, at 800 px
        part, _ = split_view(tiles, view)
        assert max(part["size"]) == 800
        assert (part["keypoints"] >= -1).all() and (part["keypoints"] <= part["size"] + 1).all()
        factor = tiles["view_frames"][view][2]
        assert factor == pytest.approx(800 / (0.6 * whole["size"][0]), rel=0.02)
    # a tiled feature round-trips through the cache's encoding
    method = get_method("aliked", views="tiles")
    back = method.decode(method.encode(tiles))
    np.testing.assert_array_equal(back["view"], tiles["view"])
    # searching the whole view only aggregates exactly the whole feature's descriptors
    searched = get_method("asmk", views="tiles", search_views="whole").aggregate(tiles)
    plain = get_method("asmk").aggregate(whole)
    for name in plain:
        np.testing.assert_array_equal(searched[name], plain[name])


def test_tiles_put_more_keypoints_on_a_small_object_and_match_it(o15):
    """The object covers a small part of this positive: the tiles describe it with more
    keypoints, and MNN + MAGSAC++ against the query find at least as many inliers."""
    polygons = polygons_of(o15["photo"])
    scale = float(o15["whole"]["scale"][0])
    inside = {name: keypoints_inside(o15[name]["keypoints"] / scale, polygons)
              for name in ("whole", "tiles")}
    assert inside["tiles"] > 2.5 * inside["whole"]
    method = get_method("aliked")
    whole, tiles = method.match(o15["query"], o15["whole"]), method.match(o15["query"], o15["tiles"])
    assert tiles.inliers > whole.inliers
    # either side of the pair gives one answer, the region in the photo's frame
    swapped = method.match(o15["tiles"], o15["query"])
    assert swapped.inliers == tiles.inliers
    assert (tiles.points_b <= o15["tiles"]["size"] + 1).all()


def test_the_ratio_test_looks_within_the_neighbours_view():
    rng = np.random.default_rng(0)
    corners = rng.normal(size=(50, 16)).astype(np.float32)

    def seen(noise):
        found = corners + noise * rng.normal(size=corners.shape).astype(np.float32)
        return found / np.linalg.norm(found, axis=1, keepdims=True)

    a = seen(0.1)
    b = np.concatenate([seen(0.01), seen(0.01)])  # each corner described twice (two views)
    groups = np.repeat([0, 1], 50)
    assert len(mutual_nearest(a, b, 0.9)) < 5  # the second-nearest is its copy
    found = mutual_nearest(a, b, 0.9, groups)
    assert len(found) == 50 and (found[:, 1] % 50 == np.arange(50)).all()


def test_queries_are_described_whole():
    local = get_method("aliked", views="tiles")
    assert local.query_method().views == "whole" and local.query_method() is not local
    assert get_method("aliked").query_method().views == "whole"
    assert local.cache_key() != get_method("aliked").cache_key()
    assert "views" not in get_method("aliked").cache_settings()  # old cache keys still hold
    assert local.calibration_settings() == get_method("aliked").calibration_settings()
    ranker = get_method("asmk", views="tiles")
    assert ranker.local_method().views == "tiles"
    assert shares_local(ranker.query_method(), local.query_method())
    fused = get_method("fused", views="tiles")
    assert [p.local_method().views if p.name == "asmk" else p.views
            for p in fused.parts()] == ["tiles", "tiles"]
    asked = fused.query_method()
    assert [p.query_method() is p for p in asked.parts()] == [True, True]
    with pytest.raises(ValueError):
        dataclasses.replace(local, views="mosaic")
    # ASMK may search the whole views alone, the tiles then serving verification only
    whole_search = get_method("fused", views="tiles", search_views="whole").parts()[0]
    assert whole_search.search_views == "whole"
    assert whole_search.cache_key() != ranker.cache_key()
    assert whole_search.calibration_settings() == get_method("asmk").calibration_settings()


def test_index_build_with_tiles_identifies_and_verifies(tmp_path, capsys):
    """`index build --views tiles`: each reference (a photo where the landmark is small) in
    tiles, the query whole; verify finds the landmark's inliers and its region lies in the
    query photo."""
    sets = {s.name: s for s in load_query_sets(OXFORD, ["o15", "o25"])}
    gallery = tmp_path / "gallery"
    for name, chosen in sets.items():
        (gallery / name).mkdir(parents=True)
        (gallery / name / "reference.jpg").symlink_to(chosen.positives[0])
    index = tmp_path / "tiles.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(index), "--views", "tiles",
                 "-q", "-j", "1"]) == 0
    assert main(["index", "info", str(index), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["local_method"]["settings"]["views"] == "tiles"
    assert info["preset"] == "default"  # the preset's pipeline, its calibration
    query = sets["o15"].query
    main(["verify", "--index", str(index), "--landmark", "o15", query, "--json", "-q"])
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["landmark"] == "o15"
    best = verdict["candidates"][0]
    assert best["landmark"] == "o15" and best["inliers"] >= 8
    width, height = Image.open(query).size
    points = np.array(verdict["evidence"]["points"], float)
    assert 0 < len(points) <= best["inliers"]
    assert (points >= -1).all() and (points[:, 0] <= width + 1).all() \
        and (points[:, 1] <= height + 1).all()


def test_lightglue_matches_the_best_views(o15):
    """LightGlue (`accurate`) against a tiled photo: the whole view and its best tile, each
    in its own frame, the matches back in the whole frame for MAGSAC++."""
    method = get_method("aliked", matcher="lightglue")
    pairs = method._glue_view_pairs(o15["query"], o15["tiles"])
    assert pairs[0] == (0, 0) and len(pairs) == 2 and pairs[1][0] == 0 and pairs[1][1] >= 1
    whole = method.match_many(o15["query"], [o15["whole"]])[0]
    tiles = method.match_many(o15["query"], [o15["tiles"]])[0]
    assert tiles.inliers > whole.inliers and tiles.verified
    assert (tiles.points_b >= -1).all() and (tiles.points_b <= o15["tiles"]["size"] + 1).all()
    assert method.match(o15["tiles"], o15["query"]).inliers == tiles.inliers


def test_explain_describes_photo_b_in_tiles(o15, tmp_path, capsys):
    """`explain A B --views tiles`: B (where the landmark is small) in tiles; the inliers
    found are those of the pipeline's matcher against the tiled photo."""
    query, photo = o15["set"].query, o15["photo"]
    output = tmp_path / "match.png"
    assert main(["explain", query, photo, "-o", str(output), "--views", "tiles", "-q",
                 "--json"]) in (0, 1)
    found = json.loads(capsys.readouterr().out)
    expected = get_method("aliked").match(o15["query"], o15["tiles"])
    assert found["candidates"][0]["inliers"] == expected.inliers > 0
    assert output.is_file()
