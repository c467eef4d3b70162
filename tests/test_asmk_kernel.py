"""The compiled ASMK kernel (lookalike.matching.asmk_kernel) gives the numpy path's scores, on
dev photos' ASMK features in a gallery large enough for both threads, also over a stored
(memory-mapped) postings file, and the numpy path is used, with a log line, without numba."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from conftest import photos_of
from lookalike.features.registry import get_method
from lookalike.gallery.postings_file import read_sidecar, write_sidecar
from lookalike.imaging.loading import load_image
from lookalike.matching import asmk, asmk_kernel


@pytest.fixture(autouse=True)
def numba_cache(tmp_path_factory, monkeypatch):
    """The jitted code is cached in the session's temporary folder, not the user's cache."""
    monkeypatch.setenv("LOOKALIKE_NUMBA_CACHE", str(tmp_path_factory.getbasetemp() / "numba"))


@pytest.fixture(scope="module")
def features():
    method = get_method("asmk", max_keypoints=512)
    paths = [*photos_of("chateau_de_sceaux")[:2], photos_of("hertford_bridge")[0]]
    return method, [method.extract(load_image(p)) for p in paths]


def variants(features, count: int, seed: int = 0) -> list[dict]:
    """Feature-space variants (85 % of a photo's words, 3 % of their bits flipped), as
    benchmarks/index_scale.py makes a large gallery."""
    rng = np.random.default_rng(seed)
    made = []
    for source in rng.integers(0, len(features), count).tolist():
        feature = features[source]
        keep = rng.random(len(feature["words"])) < 0.85
        flips = np.packbits(rng.random(feature["bits"].shape[0] * 8 * feature["bits"].shape[1])
                            .reshape(len(feature["words"]), -1) < 0.03, axis=1)
        made.append({"words": feature["words"][keep], "bits": (feature["bits"] ^ flips)[keep]})
    return made


def both_kernels(inverted: asmk.InvertedFile, query: dict) -> tuple[np.ndarray, np.ndarray]:
    inverted.kernel = "numpy"
    plain = inverted.scores(query)
    inverted.kernel = "compiled"
    return plain, inverted.scores(query)


def test_the_compiled_kernel_scores_bit_for_bit_as_numpy_on_dev_photos(features, monkeypatch):
    method, real = features
    gallery = [*real, *variants(real, 1500)]
    inverted = asmk.InvertedFile(gallery, method.alpha, method.threshold)
    offsets = inverted.postings.offsets
    for query in real:
        met = int((offsets[query["words"] + 1] - offsets[query["words"]]).sum())
        assert met > 2 * (1 << 16)  # enough postings for two threads' ranges
        plain, compiled = both_kernels(inverted, query)
        assert np.array_equal(plain, compiled)  # bit for bit
        assert compiled[:3].max() == pytest.approx(1.0) and (compiled > 0).sum() > 1000
        words = query["words"]
        raw = [asmk_kernel.scores(inverted._offsets[words], inverted._offsets[words + 1],
                                  asmk._as_words64(query["bits"]), inverted.postings.bits,
                                  inverted.postings.positions, inverted.selectivity_of_hamming,
                                  inverted.size, threads=threads) for threads in (1, 2, 3)]
        with monkeypatch.context() as patch:
            patch.setattr(asmk_kernel, "BLOCK", 257)  # many small blocks of positions
            raw.append(asmk_kernel.scores(
                inverted._offsets[words], inverted._offsets[words + 1],
                asmk._as_words64(query["bits"]), inverted.postings.bits,
                inverted.postings.positions, inverted.selectivity_of_hamming, inverted.size))
        assert all(np.array_equal(raw[0], other) for other in raw[1:])
    # another selectivity, whose table values are not dyadic: the same sums in the same order
    other = asmk.InvertedFile(gallery, 2.5, 0.1)
    plain, compiled = both_kernels(other, real[0])
    assert np.array_equal(plain, compiled) and plain.max() > 0
    # words past the vocabulary (a query aggregated with a larger codebook) meet nothing
    query = {"words": np.array([3, 5, 10**6], np.int32), "bits": real[0]["bits"][:3]}
    assert np.array_equal(*both_kernels(inverted, query))


def test_multiple_assignment_queries_score_alike(features):
    _, real = features
    multiple = get_method("asmk", max_keypoints=512, multiple_assignment=3)
    local = multiple.local_method()
    query = multiple.aggregate(local.extract(load_image(photos_of("chateau_de_sceaux")[2])))
    inverted = asmk.InvertedFile([*real, *variants(real, 800, seed=1)])
    plain, compiled = both_kernels(inverted, query)
    assert np.array_equal(plain, compiled) and plain[:2].max() > plain[2]


def test_the_compiled_kernel_reads_the_stored_postings_file(features, tmp_path):
    method, real = features
    gallery = [*real, *variants(real, 1200, seed=2)]
    postings = asmk.postings_of(gallery, method.visual_words(), 0, 128)
    path = tmp_path / "gallery.lkidx.ivf"
    ids = np.arange(len(gallery), dtype=np.int64)
    write_sidecar(path, {"instance": "test"}, ids, np.zeros(len(gallery), np.int32),
                  postings.counts, [(postings, None)], method.visual_words(), 128)
    stored = read_sidecar(path)
    assert isinstance(stored.postings.bits, np.memmap)
    mapped = asmk.InvertedFile(postings=stored.postings)
    in_memory = asmk.InvertedFile(gallery)
    for query in real:
        plain, compiled = both_kernels(mapped, query)
        in_memory.kernel = "numpy"
        assert np.array_equal(compiled, plain) and np.array_equal(compiled,
                                                                  in_memory.scores(query))
        mapped.kernel = "auto"  # past COMPILED_FROM postings: the compiled kernel
        assert mapped._compiled(asmk.COMPILED_FROM) and not mapped._compiled(10)
        assert np.array_equal(mapped.scores(query), compiled)


def test_without_numba_the_numpy_path_answers_and_says_so(features, monkeypatch, caplog):
    _, real = features
    monkeypatch.setattr(asmk_kernel, "_STATE", {})
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    monkeypatch.setattr(asmk, "COMPILED_FROM", 0)  # "auto" would take the compiled kernel
    inverted = asmk.InvertedFile([*real, *variants(real, 900, seed=3)])
    inverted.kernel = "numpy"
    expected = inverted.scores(real[0])
    inverted.kernel = "auto"
    with caplog.at_level(logging.INFO, logger="lookalike.matching.asmk_kernel"):
        assert np.array_equal(inverted.scores(real[0]), expected)
    assert not asmk_kernel.available()
    assert "numba is not installed" in caplog.text
    with pytest.raises(RuntimeError, match="needs numba"):
        asmk_kernel.scores(np.zeros(1, np.int64), np.ones(1, np.int64),
                           np.zeros((1, 2), np.uint64), np.zeros((1, 2), np.uint64),
                           np.zeros(1, np.int32), np.ones(129), 1)


def test_a_65536_word_codebook_works_end_to_end(tmp_path):
    """An index with a 65,536-word codebook: built from the CLI, its postings file holds the
    whole vocabulary, a query scores alike with both kernels and the in-memory inverted file,
    and the search ranks its landmark's references first. (Fitting 65,536 words for real needs millions of descriptors: here
    1,024 words fitted on two dev photos are each split into 64 nearby words.)"""
    from landmark_gallery import QUERIES, make_gallery, photo

    from lookalike.cli import main
    from lookalike.engines.local import local_extractor
    from lookalike.gallery.index import GalleryIndex

    local = get_method("aliked")
    descriptors = [local.extract(load_image(p))["descriptors"]
                   for p in photos_of("strecha_castle")[:2]]
    base = asmk.fit_codebook(descriptors, words=1024)
    rng = np.random.default_rng(0)
    offsets = rng.normal(size=(64, base.shape[1])).astype(np.float32)
    offsets *= 0.05 / np.linalg.norm(offsets, axis=1, keepdims=True)
    codebook = asmk.save_codebook((base[:, None, :] + offsets).reshape(-1, base.shape[1]),
                                  tmp_path / "words-65536.npy")
    assert codebook.size == 65_536
    gallery = make_gallery(tmp_path / "gallery", ["chateau_de_sceaux", "strecha_castle"])
    output = tmp_path / "big.lkidx"
    assert main(["index", "build", str(gallery), "-o", str(output), "--codebook",
                 codebook.path, "-q", "-j", "1"]) == 0
    with GalleryIndex(output) as index:
        postings = index.sidecar.postings
        assert index.global_method.visual_words() == 65_536 == postings.vocabulary
        used = np.flatnonzero(np.diff(np.asarray(postings.offsets)))
        assert len(used) > 1024 and used.max() >= 1024  # words past the 1,024 base ones
        globals_, _, _ = local_extractor()([str(photo(QUERIES["strecha_castle"]))],
                                           index.global_method, index.local_method)
        query = index.global_method.decode(next(iter(globals_.values())))
        inverted = index.search_index.inverted
        plain, compiled = both_kernels(inverted, query)
        assert np.array_equal(plain, compiled)
        memory = asmk.InvertedFile(list(index.global_features), inverted.alpha,
                                   inverted.threshold)
        memory.kernel = "numpy"
        assert np.array_equal(memory.scores(query), plain)
        positions, scores = index.search_index.search(query, 3)
        assert [index.references.landmark_at(p) for p in positions] == ["strecha_castle"] * 3
        assert scores[0] > 2 * plain[[index.references.landmark_at(p) != "strecha_castle"
                                      for p in range(index.search_index.size)]].max()
