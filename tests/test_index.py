"""Gallery index: build, add, remove, info, atomic updates, bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from landmark_gallery import GALLERY, REPO, SCEAUX, make_gallery, photo

from lookalike.cli import main
from lookalike.engines.local import local_extractor
from lookalike.gallery.folders import GalleryError, read_gallery
from lookalike.gallery.index import GalleryIndex, build_index


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An index of two landmarks, built once per module (features are cached per session)."""
    root = tmp_path_factory.mktemp("index")
    gallery = make_gallery(root / "gallery", ["chateau_de_sceaux", "strecha_castle"])
    output = root / "base.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(output), "-q", "-j", "1"]) == 0
    return gallery, output


def copy_of(path: Path, tmp_path: Path) -> Path:
    target = tmp_path / path.name
    target.write_bytes(path.read_bytes())
    return target


def test_build_records_landmarks_names_location_and_features(built):
    _, output = built
    with GalleryIndex(output) as index:
        assert set(index.landmarks) == {"chateau_de_sceaux", "strecha_castle"}
        sceaux = index.landmarks["chateau_de_sceaux"]
        assert sceaux.names["ja"] == SCEAUX["ja"] and sceaux.names["en"] == SCEAUX["en"]
        assert sceaux.location == (SCEAUX["location"]["lat"], SCEAUX["location"]["lon"])
        assert index.landmarks["strecha_castle"].location is None
        assert len(index.references) == 6 and index.search_index.size == 6
        assert index.preset == "default" and index.info()["global_method"]["name"] == "asmk"
        # Every reference finds itself first in the global search, with similarity 1.
        for position, ref in enumerate(index.references.values()):
            ids, sims = index.search(index.global_features[position], 3)
            assert ids[0] == ref.id and sims[0] == pytest.approx(1.0, abs=1e-4)
            local = index.local_features(ref.id)
            assert len(local["keypoints"]) == len(local["descriptors"]) > 50
            # stored as the method encodes them: signed unit descriptors, not clipped to [0, 1]
            assert np.allclose(np.linalg.norm(local["descriptors"], axis=1), 1, atol=1e-2)
            assert (local["descriptors"] < 0).any()


def test_info_json(built, capsys):
    _, output = built
    assert main(["index", "info", str(output), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["references"] == 6 and info["landmarks"] == 2
    assert info["bytes_per_reference"] == round(output.stat().st_size / 6)
    per = {item["id"]: item for item in info["per_landmark"]}
    assert per["chateau_de_sceaux"]["references"] == 3


def test_add_remove_and_skip_duplicates(built, tmp_path):
    gallery, output = built
    target = copy_of(output, tmp_path)
    extra = make_gallery(tmp_path / "more", ["st_pauls_cathedral"])
    assert main(["index", "add", str(target), str(extra), "-q", "-j", "1"]) == 0
    with GalleryIndex(target) as index:
        assert len(index.references) == 9 and "st_pauls_cathedral" in index.landmarks
    # The same photos again are skipped, not duplicated.
    with GalleryIndex(target) as index:
        report = index.add(read_gallery(extra), local_extractor())
        assert report.added == 0 and report.skipped == 3 and len(index.references) == 9
    # One more photo for an existing landmark, by id.
    new = photo(GALLERY["strecha_castle"][0]).with_name("sfm_quality_evaluation__images_0012.jpg")
    assert main(["index", "add", str(target), str(new), "--landmark", "strecha_castle", "-q"]) == 0
    assert main(["index", "remove", str(target), "--landmark", "chateau_de_sceaux", "-q"]) == 0
    removed = gallery / "strecha_castle" / Path(GALLERY["strecha_castle"][1]).name
    assert main(["index", "remove", str(target), "--photo", str(removed), "-q"]) == 0
    with GalleryIndex(target) as index:
        assert set(index.landmarks) == {"strecha_castle", "st_pauls_cathedral"}
        assert len(index.references) == 3 + 3 and index.search_index.size == 6
        paths = {Path(r.path).name for r in index.references.values()}
        assert Path(removed).name not in paths and new.name in paths
    assert main(["index", "remove", str(target), "--landmark", "nowhere"]) == 1


def test_crash_in_the_middle_of_add_leaves_the_index_as_it_was(built, tmp_path):
    """Kill the process inside the write transaction (after the rows went in): no change."""
    _, output = built
    target = copy_of(output, tmp_path)
    before = GalleryIndex(target).info()
    extra = make_gallery(tmp_path / "more", ["st_pauls_cathedral"])
    script = (
        "import os, sys\n"
        "import lookalike.gallery.index as ix\n"
        "def crash(*args, **kwargs):\n"
        "    os._exit(3)\n"
        "import time, types\n"
        "# the last statement of the write transaction stamps the time: die there\n"
        "ix.time = types.SimpleNamespace(perf_counter=time.perf_counter, gmtime=time.gmtime,\n"
        "                                strftime=crash)\n"
        "from lookalike.cli import main\n"
        f"main(['index', 'add', {str(target)!r}, {str(extra)!r}, '-q', '-j', '1'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            timeout=300)
    assert result.returncode == 3, result.stderr.decode()
    with GalleryIndex(target) as index:
        after = index.info()
        assert after["references"] == before["references"] == 6
        assert [x["id"] for x in after["per_landmark"]] == [x["id"] for x in before["per_landmark"]]
        assert index.search_index.size == 6


def test_failed_build_keeps_the_old_file(built, tmp_path):
    _, output = built
    target = copy_of(output, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GalleryError):
        build_index(empty, target, local_extractor())
    assert GalleryIndex(target).info()["references"] == 6
    assert not list(tmp_path.glob(".*tmp-*"))


def test_bad_photo_is_reported_and_skipped(tmp_path, capsys):
    gallery = make_gallery(tmp_path / "gallery", ["strecha_castle"])
    (gallery / "strecha_castle" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    output = tmp_path / "x.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(output), "-q"]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert GalleryIndex(output).info()["references"] == 3


def test_manifest_as_gallery_and_bad_inputs(tmp_path):
    manifest = tmp_path / "manifest.csv"
    rows = ["path,label"] + [f"{photo(p)},strecha_castle" for p in GALLERY["strecha_castle"]]
    rows.append(f"{photo('distractors/image-matching-webui__kn-church_02.jpg')},distractor")
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    entries = read_gallery(manifest)
    # the distractor row is a negative (a photo of no landmark), not a landmark
    assert [e.landmark.id for e in entries] == ["strecha_castle", "_negatives"]
    assert len(entries[0].photos) == 3 and len(entries[1].photos) == 1
    with pytest.raises(GalleryError):
        read_gallery(tmp_path / "missing")
    not_index = tmp_path / "not.lkidx"
    not_index.write_text("hello")
    assert main(["index", "info", str(not_index)]) == 1
    assert main(["index", "info", str(tmp_path / "none.lkidx")]) == 1


def test_index_records_its_methods_and_refuses_a_calibration_of_another_preset(built, tmp_path):
    from lookalike.gallery.identify import Identifier
    from lookalike.retrieval.presets import get_preset

    _, output = built
    Identifier(output)  # the default preset's calibration fits the default methods
    with pytest.raises(GalleryError, match="fitted on"):
        Identifier(output, calibration=get_preset("fast").calibration_path("identify"))
    gallery = make_gallery(tmp_path / "gallery", ["strecha_castle"])
    fast = tmp_path / "fast.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(fast), "--preset", "fast", "-q"]) == 0
    with GalleryIndex(fast) as index:
        assert index.preset == "fast" and index.local_method.name == "xfeat"
    assert main(["index", "build", str(gallery), "-o", str(fast), "--global", "aliked"]) == 1


def test_photo_digest_is_part_of_the_file_format():
    """Indexes store this digest to skip duplicates and remove moved photos: it must never
    change, even when the feature cache's key does."""
    from lookalike.features.cache import content_hash
    from lookalike.gallery.index import photo_digest

    assert photo_digest(b"lookalike") == "a47cc7f521bfe9ec68e2e41a630b35ac"
    assert content_hash(b"lookalike") == "3a6a4818aab088a575cd9fde98be28d1"


def test_build_refuses_to_replace_an_index_unless_forced(built, tmp_path, capsys):
    """An index may have gained photos since it was built (`index add`, HTTP): `index build
    -o` over it is refused, and the file is left byte for byte as it was."""
    gallery, output = built
    target = copy_of(output, tmp_path)
    before = target.read_bytes()
    argv = ["index", "build", str(gallery), "-o", str(target), "-q", "-j", "1"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{target} exists (2 landmarks, 6 photos" in err and "--force" in err
    assert "index add" in err
    assert target.read_bytes() == before
    not_index = tmp_path / "notes.lkidx"
    not_index.write_text("mine")
    assert main(["index", "build", str(gallery), "-o", str(not_index), "-q"]) == 1
    assert "not a readable index" in capsys.readouterr().err and not_index.read_text() == "mine"
    with GalleryIndex(target) as index:  # a landmark removed: --force rebuilds it from gallery
        index.remove(["strecha_castle"], ())
    assert main([*argv, "--force"]) == 0
    assert GalleryIndex(target).info()["references"] == 6


def test_gallery_folders_skip_nas_and_excluded_folders(tmp_path):
    gallery = make_gallery(tmp_path / "gallery", ["strecha_castle"])
    for junk in ["@eaDir", "#recycle", "strecha_castle/@eaDir"]:
        (gallery / junk).mkdir()
        (gallery / junk / "thumb.jpg").symlink_to(photo(GALLERY["strecha_castle"][0]))
    (gallery / "drafts").mkdir()
    (gallery / "drafts" / "a.jpg").symlink_to(photo(GALLERY["strecha_castle"][1]))
    entries = read_gallery(gallery)
    assert [e.landmark.id for e in entries] == ["drafts", "strecha_castle"]
    assert len(entries[1].photos) == 3  # not the NAS thumbnail inside the landmark
    assert [e.landmark.id for e in read_gallery(gallery, exclude=["drafts"])] == \
        ["strecha_castle"]


# -- the stored inverted file (NAME.lkidx.ivf) ---------------------------------------------------
def in_memory_scores(index: GalleryIndex, queries) -> list[np.ndarray]:
    """Scores of today's in-memory inverted file, built from every stored global feature."""
    from lookalike.matching.asmk import InvertedFile

    method = index.global_method
    inverted = InvertedFile(list(index.global_features), method.alpha, method.threshold)
    return [inverted.scores(q) for q in queries]


def assert_stored_equals_in_memory(path: Path, extra_queries=()) -> None:
    from lookalike.gallery.postings_file import read_sidecar, sidecar_path

    with GalleryIndex(path) as index:
        sidecar = read_sidecar(sidecar_path(path))
        assert sidecar is not None and sidecar.matches(*index.generation(),
                                                       index.meta["global_method"])
        assert list(sidecar.ids) == list(index.references) == sorted(index.references)
        queries = [*index.global_features, *extra_queries]
        for stored, memory in zip([index.search_index.scores(q) for q in queries],
                                  in_memory_scores(index, queries), strict=True):
            assert np.array_equal(stored, memory)  # bit for bit, not approximately
        assert {index.references.landmark_at(i) for i in range(len(index.ids))} == \
            {r.landmark for r in index.references.values()}


def query_feature(index: GalleryIndex, relative: str):
    from lookalike.engines.local import local_extractor

    globals_, _, _ = local_extractor()([str(photo(relative))], index.global_method,
                                       index.local_method)
    return index.global_method.decode(next(iter(globals_.values())))


def test_the_stored_inverted_file_scores_exactly_as_the_one_built_in_memory(built, tmp_path):
    from lookalike.gallery.postings_file import sidecar_path

    _, output = built
    assert sidecar_path(output).is_file()  # written by the build, renamed with the index
    with GalleryIndex(output) as index:
        query = query_feature(index, "strecha_castle/sfm_quality_evaluation__images_0012.jpg")
    assert_stored_equals_in_memory(output, [query])
    # A copy without its sidecar (or with a stale one) gets it rebuilt from SQLite at open.
    target = copy_of(output, tmp_path)
    assert not sidecar_path(target).exists()
    assert_stored_equals_in_memory(target, [query])
    sidecar_path(target).write_bytes(sidecar_path(output).read_bytes()[:1000])  # damaged
    assert_stored_equals_in_memory(target, [query])


def test_add_and_remove_update_the_stored_inverted_file(built, tmp_path):
    from lookalike.gallery.postings_file import read_sidecar, sidecar_path

    _, output = built
    target = copy_of(output, tmp_path)
    extra = make_gallery(tmp_path / "more", ["st_pauls_cathedral"])
    with GalleryIndex(target) as index:
        generation = index.generation()[1]
        index.add(read_gallery(extra), local_extractor())
        assert read_sidecar(sidecar_path(target)).header["generation"] == generation + 1
        assert index.search_index.size == len(index.references) == 9
        first = min(index.references)
        index.remove(["chateau_de_sceaux"], reference_ids=[first] if index.references[
            first].landmark != "chateau_de_sceaux" else [])
        assert read_sidecar(sidecar_path(target)).header["generation"] == generation + 2
    assert_stored_equals_in_memory(target)
    with GalleryIndex(target) as index:
        assert "chateau_de_sceaux" not in {index.references[r].landmark for r in index.references}
        assert len(index.references_of("st_pauls_cathedral")) == 3


@pytest.mark.parametrize("where", ["before_rename", "mid_merge"])
def test_kill_9_while_the_inverted_file_is_written_loses_nothing(built, tmp_path, where):
    """SIGKILL after the SQLite commit, while the sidecar is written: the next open sees a
    stale sidecar (or none), rebuilds it from SQLite, and every added photo is there."""
    from lookalike.gallery.postings_file import sidecar_path

    _, output = built
    target = copy_of(output, tmp_path)
    GalleryIndex(target).close()  # its sidecar, at the current generation
    extra = make_gallery(tmp_path / "more", ["st_pauls_cathedral"])
    hook = {"before_rename": "pf.os = types.SimpleNamespace(**{**vars(os), 'replace': die})",
            "mid_merge": "pf.merge_postings = lambda *a, **k: die()"}[where]
    script = (
        "import os, signal, types\n"
        "import lookalike.gallery.postings_file as pf\n"
        "def die(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"{hook}\n"
        "from lookalike.cli import main\n"
        f"main(['index', 'add', {str(target)!r}, {str(extra)!r}, '-q', '-j', '1'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            timeout=300)
    assert result.returncode == -9, result.stderr.decode()
    assert list(tmp_path.glob(f".{sidecar_path(target).name}.tmp-*"))  # left by the kill
    with GalleryIndex(target) as index:
        assert len(index.references) == index.search_index.size == 9
    assert_stored_equals_in_memory(target)
    assert not list(tmp_path.glob(f".{sidecar_path(target).name}.tmp-*"))
