"""`lookalike evaluate` end to end on a few real landmarks and distractors."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lookalike.cli import main
from lookalike.evaluation.compare_report import read_matrix_csv
from lookalike.evaluation.evaluate import DatasetError, evaluate, load_dataset
from lookalike.evaluation.metrics import DISTRACTOR, retrieval_metrics

LANDMARKS = ("all_souls_college", "tower_bridge", "united_states_capitol")


def subset(manifest, distractors: int = 3) -> list[dict[str, str]]:
    rows = [row for row in manifest if row["label"] in LANDMARKS]
    return rows + [row for row in manifest if row["label"] == DISTRACTOR][:distractors]


@pytest.fixture
def subset_manifest(tmp_path, manifest, landmarks_dir) -> Path:
    """A manifest CSV of the subset; absolute paths stay valid relative to any folder."""
    path = tmp_path / "subset.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for row in subset(manifest):
            writer.writerow([landmarks_dir / row["path"], row["label"]])
    return path


@pytest.fixture
def subset_folder(tmp_path, manifest, landmarks_dir) -> Path:
    """The subset as one folder per landmark plus distractors/, by symbolic links."""
    root = tmp_path / "photos"
    for row in subset(manifest):
        folder = root / ("distractors" if row["label"] == DISTRACTOR else row["label"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / Path(row["path"]).name).symlink_to(landmarks_dir / row["path"])
    return root


def test_load_dataset_from_manifest_keeps_its_order(landmarks_dir, manifest):
    paths, labels = load_dataset(landmarks_dir / "manifest.csv")
    assert paths == [str(landmarks_dir / row["path"]) for row in manifest]
    assert labels == [row["label"] for row in manifest]


def test_load_dataset_from_folders_names_labels_by_folder(landmarks_dir, manifest):
    paths, labels = load_dataset(landmarks_dir)
    by_path = dict(zip(paths, labels))
    assert by_path == {str(landmarks_dir / row["path"]): row["label"] for row in manifest}


def test_load_dataset_adds_negatives(subset_folder, tmp_path, manifest, landmarks_dir):
    extra = tmp_path / "negatives"
    extra.mkdir()
    last = [row for row in manifest if row["label"] == DISTRACTOR][-1]
    (extra / "other.jpg").symlink_to(landmarks_dir / last["path"])
    paths, labels = load_dataset(subset_folder, negatives=extra)
    assert paths[-1] == str(extra / "other.jpg") and labels[-1] == DISTRACTOR
    assert labels.count(DISTRACTOR) == 4
    with pytest.raises(DatasetError):
        load_dataset(tmp_path / "missing")


def test_evaluate_writes_every_output_with_sane_numbers(subset_manifest, tmp_path, manifest,
                                                      landmarks_dir):
    out = tmp_path / "out"
    result = evaluate(subset_manifest, methods="phash,akaze", outdir=out,
                      method_settings={"max_side": 480})
    rows = {row["method"]: row for row in result}
    assert list(rows) == ["phash", "akaze"]
    expected = subset(manifest)
    for name in ("results.md", "results.csv", "results.json", "roc.png", "pr.png",
                 "hist-phash.png", "hist-akaze.png", "index.html", "phash.csv", "akaze.csv"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "errors.csv").exists()
    for row in rows.values():
        assert row["photos"] == len(expected)
        assert row["queries"] == len(expected) - 3
        for key in ("map", "p_at_1", "roc_auc", "pair_ap", "tpr_at_fpr1", "best_f1"):
            assert 0.0 <= row[key] <= 1.0, (row["method"], key)
        assert set(row["ap_per_landmark"]) == set(LANDMARKS)
        assert row["extract_s"] > 0 and row["score_s"] >= 0
    # keypoint matching finds the same building far better than a global hash
    assert rows["akaze"]["map"] > rows["phash"]["map"]
    assert rows["akaze"]["map"] > 0.4
    # the CSV matrix is in manifest order and reproduces the reported numbers
    queries, gallery, scores = read_matrix_csv(out / "akaze.csv")
    assert queries == gallery == [str(landmarks_dir / row["path"]) for row in expected]
    again = retrieval_metrics(scores, [row["label"] for row in expected])
    assert again["map"] == pytest.approx(rows["akaze"]["map"], abs=1e-6)
    saved = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in saved["results"]] == ["phash", "akaze"]
    assert saved["results"][1]["map"] == pytest.approx(rows["akaze"]["map"])
    page = (out / "index.html").read_text()
    thumbs = set(re.findall(r'src="(thumbs/[^"]+)"', page))
    assert len(thumbs) == len(expected) and all((out / t).is_file() for t in thumbs)
    assert page.count('class="right"') + page.count('class="wrong"') == 2 * 5 * (len(expected) - 3)


def test_cli_reports_a_broken_file_and_evaluates_the_rest(subset_folder, tmp_path, capsys):
    (subset_folder / "tower_bridge" / "broken.jpg").write_bytes(b"not a photo at all")
    out = tmp_path / "cli"
    code = main(["evaluate", str(subset_folder), "--methods", "phash,dhash", "--gray", "both",
                 "-o", str(out), "-q"])
    assert code == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert "broken.jpg" in (out / "errors.csv").read_text()
    with open(out / "results.csv", newline="") as handle:
        methods = [row["method"] for row in csv.DictReader(handle)]
    assert methods == ["phash", "phash-gray", "dhash", "dhash-gray"]
    queries, _, scores = read_matrix_csv(out / "dhash-gray.csv")
    assert queries[0].startswith("all_souls_college/")  # named relative to the dataset folder
    assert not any("broken" in name for name in queries)
    assert scores.shape == (len(queries), len(queries))
    assert np.allclose(np.diag(scores), 1.0)  # a photo's hash equals itself


def test_cli_usage_errors(tmp_path):
    assert main(["evaluate", str(tmp_path / "nothing"), "-o", str(tmp_path / "out"), "-q"]) == 1
    assert main(["evaluate", str(tmp_path), "--methods", "nosuch", "-o", str(tmp_path / "o"),
                 "-q"]) == 1
