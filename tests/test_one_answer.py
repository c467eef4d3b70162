"""One photo, one answer, whichever door it comes in by (issue 27).

The command line (`identify/verify --json`, features through the extractor and the cache),
the Python API (`open_index(...).identify`), HTTP (the upload's bytes) and `explain --json`
must give the same landmark, verdict, probabilities, inliers and region for the same bytes
and index; and "verified" needs geometric evidence, never similarity alone.
"""

from __future__ import annotations

import json
import os

import pytest
from landmark_gallery import DISTRACTOR, GALLERY, QUERIES, photo

import lookalike
from lookalike.cli import main
from lookalike.engines.local import local_extractor
from lookalike.gallery.answers import geometric
from lookalike.gallery.identify import Identifier, Settings
from lookalike.gallery.index import build_index
from lookalike.server.app import ServerSettings, create_app

PHOTOS = [QUERIES["chateau_de_sceaux"], QUERIES["strecha_castle"],
          QUERIES["st_pauls_cathedral"], DISTRACTOR]
COMPARED = ("landmark", "probability", "verified", "size", "bounding_poly")


@pytest.fixture(scope="module")
def index(two_landmark_index):
    return two_landmark_index


def essentials(answer: dict) -> dict:
    """What must agree: the answer, its numbers per candidate and the region."""
    found = {key: answer.get(key) for key in COMPARED}
    if found["bounding_poly"] is not None:
        found["bounding_poly"] = [list(point) for point in found["bounding_poly"]]
    if found["size"] is not None:
        found["size"] = list(found["size"])
    found["candidates"] = [(c["landmark"], c["probability"], c["similarity"], c["inliers"])
                           for c in answer["candidates"]]
    return found


def cli_answers(capsys, command: list[str]) -> list[dict]:
    capsys.readouterr()
    assert main(command) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_cli_api_and_http_give_one_answer(index, tmp_path, capsys):
    from fastapi.testclient import TestClient

    paths = [str(photo(p)) for p in PHOTOS]
    cli = cli_answers(capsys, ["identify", *paths, "--index", str(index), "--json", "-q",
                               "--cache", str(tmp_path / "cache.sqlite")])
    with lookalike.open_index(index) as opened:
        api = [opened.identify(path).to_json() for path in paths]
    with TestClient(create_app(ServerSettings(index, tmp_path / "data"))) as client:
        http = [client.post("/identify", files={"file": (os.path.basename(path),
                                                          open(path, "rb").read())}).json()
                for path in paths]
        verdict = client.post("/verify", data={"landmark": "strecha_castle"}, files={
            "file": ("q.jpg", photo(QUERIES["strecha_castle"]).read_bytes())}).json()
    assert [a["landmark"] for a in cli[:2]] == ["chateau_de_sceaux", "strecha_castle"]
    for by_cli, by_api, by_http in zip(cli, api, http):
        assert essentials(by_cli) == essentials(by_api) == essentials(by_http), by_cli["photo"]
    assert len(cli[0]["bounding_poly"]) >= 3
    assert all(a["bounding_poly"] is None for a in cli if a["landmark"] == "unknown")

    verified = cli_answers(capsys, ["verify", paths[1], "--index", str(index), "--landmark",
                                    "strecha_castle", "--json", "-q", "--no-cache"])[0]
    assert verified["verified"] is True
    assert essentials(verified) == essentials(verdict)


def test_explain_gives_verify_answer_for_the_pair(tmp_path, capsys):
    """`explain A B` is `verify A` against a landmark whose only photo is B."""
    query = photo(QUERIES["strecha_castle"])
    pairs = [(query, photo(GALLERY["strecha_castle"][2])),
             (photo(DISTRACTOR), photo(GALLERY["chateau_de_sceaux"][0]))]
    for a, b in pairs:
        folder = tmp_path / b.stem / "b"
        folder.mkdir(parents=True)
        os.symlink(b, folder / b.name)
        index = tmp_path / f"{b.stem}.lkidx"
        build_index(folder.parent, index, local_extractor(), preset="fast")
        verified = cli_answers(capsys, ["verify", str(a), "--index", str(index), "--landmark",
                                        "b", "--json", "-q", "--no-cache"])[0]
        explained = cli_answers(capsys, ["explain", str(a), str(b), "-o",
                                         str(tmp_path / "m.png"), "--json", "-q",
                                         "--preset", "fast", "--no-cache"])[0]
        assert essentials(explained) == essentials(verified), (a.name, b.name)
    assert verified["verified"] is False  # the distractor is not the castle


def test_verified_needs_geometric_evidence(index):
    """With a threshold of 0, similarity alone would verify anything; inliers must pass."""
    identifier = Identifier(index, Settings(threshold=0.0))
    answers = [identifier.verify(photo(p), "strecha_castle") for p in PHOTOS]
    for answer in answers:
        assert answer.verified == geometric(answer.candidates[0]), answer.photo
    assert answers[1].verified is True and not all(a.verified for a in answers)
