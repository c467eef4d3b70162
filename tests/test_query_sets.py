"""`lookalike evaluate` on a query-set dataset (oxford_hard: queries, positives, negatives)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import REPO
from lookalike.cli import main
from lookalike.evaluation.query_sets import (
    hull,
    load_query_sets,
    manifest_of,
    polygons_of,
    query_metrics,
    region_iou,
)

OXFORD = REPO.parent / "shared" / "data" / "oxford_hard"
ROLE_LIMIT = {"query": 1, "positive": 2, "negative": 3}


@pytest.fixture(scope="module")
def oxford():
    if not (OXFORD / "manifest.csv").is_file():
        pytest.fail(f"oxford_hard missing at {OXFORD}")
    return OXFORD


def test_the_manifest_is_read_as_query_sets(oxford, landmarks_dir):
    assert manifest_of(oxford) is not None
    assert manifest_of(landmarks_dir) is None  # path,label: the dev protocol
    sets = load_query_sets(oxford)
    assert len(sets) == 8
    for found in sets:
        assert found.query.endswith("query.jpg")
        assert len(found.positives) == 5 and len(found.negatives) == 15
        assert all(polygons_of(p) for p in found.positives)
    assert [s.name for s in load_query_sets(oxford, ["o25", "o15"])] == ["o25", "o15"]


def test_region_iou_on_an_annotated_positive(oxford):
    photo = load_query_sets(oxford, ["o15"])[0].positives[0]
    polygons = polygons_of(photo)
    from PIL import Image

    size = Image.open(photo).size
    assert region_iou(polygons[0], polygons, size) == pytest.approx(1.0, abs=0.02)
    whole = np.array([[0, 0], [size[0], 0], [size[0], size[1]], [0, size[1]]], float)
    share = region_iou(whole, polygons, size)
    assert 0.0 < share < 0.5  # the object is a small part of the photo
    assert region_iou(None, polygons, size) == 0.0
    assert hull(np.array([[0, 0], [1, 1]])) is None


def test_query_metrics_split_ties_against_the_method():
    relevant = np.array([True, False, False, True])
    found = query_metrics(np.array([0.9, 0.5, 0.1, 0.8]), relevant)
    assert found["ap"] == pytest.approx(1.0) and found["p_at_1"] == 1.0
    assert found["p_at_5"] == pytest.approx(0.5)
    tied = query_metrics(np.zeros(4), relevant)
    assert tied["p_at_1"] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def small(oxford, tmp_path_factory):
    """Two queries with their first 2 positives and 3 negatives (real photos, absolute paths
    in a manifest of the same columns), so that extraction takes seconds."""
    rows, kept = [], {}
    with open(oxford / "manifest.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = (row["query"], row["role"])
            if row["query"] in ("o15", "o25") and kept.get(key, 0) < ROLE_LIMIT[row["role"]]:
                kept[key] = kept.get(key, 0) + 1
                rows.append({**row, "path": str(oxford / row["path"])})
    folder = tmp_path_factory.mktemp("hard")
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_evaluate_reports_ranking_localisation_and_open_set(small, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", str(small), "--methods", "asmk,fused", "-o", str(out),
                 "-q"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["queries"] == ["o15", "o25"]
    for name in ("asmk", "fused"):
        entry = result["methods"][name]
        assert set(entry["per_query"]) == {"o15", "o25"}
        assert 0.0 < entry["map"] <= 1.0 and 0.0 <= entry["p_at_5"] <= 1.0
    fused = result["methods"]["fused"]
    localisation = fused["localisation"]
    assert localisation["positives"] == 4
    assert len(localisation["rows"]) == 4
    assert all(r["keypoints_inside"] >= 0 for r in localisation["rows"])
    assert all(r["iou"] == 0.0 for r in localisation["rows"] if not r["verified"])
    open_set = fused["open_set"]
    assert len(open_set["rows"]) == 10  # 4 positives and 6 negatives against 2 references
    assert {r["role"] for r in open_set["rows"]} == {"positive", "negative"}
    assert all(r["named"] in ("", "o15", "o25") for r in open_set["rows"])
    assert (out / "results.md").read_text().startswith("| method | mAP")
    assert (out / "per_query.csv").is_file()
