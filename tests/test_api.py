"""The Python verbs beyond the README's tour: an index grown with `add`, a caller's mistake
as an `InputError`, and `serve_app` answering over HTTP."""

from __future__ import annotations

import pytest
from landmark_gallery import GALLERY, QUERIES, make_gallery, photo

import lookalike


def test_an_index_built_added_to_and_served(tmp_path):
    gallery = make_gallery(tmp_path / "gallery", ["chateau_de_sceaux", "strecha_castle"])
    index = lookalike.build_index(gallery, tmp_path / "town.lkidx", preset="fast")
    assert sorted(index.landmarks) == ["chateau_de_sceaux", "strecha_castle"]
    assert index.landmarks["chateau_de_sceaux"].name("ja") == "ソー城"  # its landmark.json
    report = index.add({"st_pauls_cathedral": [photo(p) for p in GALLERY["st_pauls_cathedral"]]})
    assert report.added == 3 and report.errors == {}
    assert "st_pauls_cathedral" in index.landmarks and index.info()["references"] == 9
    answer = index.identify(photo(QUERIES["st_pauls_cathedral"]))
    assert isinstance(answer, lookalike.Identification)
    assert answer.landmark == "st_pauls_cathedral" and answer.to_json()["landmark"] == answer.landmark
    with pytest.raises(lookalike.InputError, match=r"no landmark 'eiffel_tower'.*choose from"):
        index.verify(photo(QUERIES["strecha_castle"]), "eiffel_tower")
    index.close()

    from fastapi.testclient import TestClient

    app = lookalike.serve_app(tmp_path / "town.lkidx", data_dir=tmp_path / "serve")
    with TestClient(app) as client:
        assert client.get("/health").json()["landmarks"] == 3


def test_a_missing_index_is_an_input_error_that_names_it(tmp_path):
    with pytest.raises(lookalike.InputError, match=r"nothing\.lkidx: no such index"):
        lookalike.open_index(tmp_path / "nothing.lkidx")
