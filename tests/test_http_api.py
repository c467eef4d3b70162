"""The typed HTTP API: every endpoint driven once, every answer checked against /openapi.json.

The schema check is the client's view: each JSON answer is validated (jsonschema, draft
2020-12, as OpenAPI 3.1 uses) against the response schema the server publishes for that path,
method and status, so a client generated from the schema parses what the server sends.
"""

from __future__ import annotations

import io
import shutil

import jsonschema
import pytest
from landmark_gallery import DISTRACTOR, QUERIES, SCEAUX, photo
from PIL import Image

from lookalike.gallery.index import GalleryIndex
from lookalike.server.app import ServerSettings, create_app
from lookalike.server.auth import ApiKeyError, keys_from_environment, read_key_file

ADMIN_KEY = "admin-key-for-tests-0123"
READ_KEY = "read-key-for-tests-01234"
ADMIN = {"X-API-Key": ADMIN_KEY}
READER = {"Authorization": f"Bearer {READ_KEY}"}


@pytest.fixture(scope="module")
def built_index(two_landmark_index):
    return two_landmark_index


@pytest.fixture
def index_copy(built_index, tmp_path):
    """Each test edits its own copy of the index."""
    target = tmp_path / "gallery.lkidx"
    shutil.copy(built_index, target)
    return target


def client_for(index, data_dir, **settings):
    from fastapi.testclient import TestClient

    app = create_app(ServerSettings(index, data_dir, max_bytes=4_000_000, **settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(index_copy, tmp_path):
    with client_for(index_copy, tmp_path / "data",
                    api_keys={ADMIN_KEY: "admin", READ_KEY: "read"}) as test_client:
        yield test_client


class SchemaChecker:
    """Validates answers against the published schema; remembers which operations it saw."""

    def __init__(self, document: dict):
        self.document = document
        self.seen: set[tuple[str, str]] = set()

    def check(self, response, path: str, method: str) -> dict | bytes:
        operation = self.document["paths"][path][method]
        declared = operation["responses"].get(str(response.status_code))
        assert declared is not None, f"{method} {path}: {response.status_code} not in the schema"
        self.seen.add((path, method))
        content = declared.get("content", {})
        if "image/jpeg" in content:
            assert response.headers["content-type"] == "image/jpeg"
            return response.content
        schema = {**content["application/json"]["schema"],
                  "components": self.document["components"]}
        body = response.json()
        jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
        return body


def upload(relative: str, field: str = "file", name: str | None = None):
    path = photo(relative)
    return (field, (name or path.name, path.read_bytes(), "image/jpeg"))


def test_every_endpoint_answers_what_its_schema_says(client):
    api = SchemaChecker(client.get("/openapi.json").json())
    health = api.check(client.get("/health"), "/health", "get")
    assert health["access"] == {"read": "key", "admin": "key"}
    assert api.check(client.get("/auth", headers=READER), "/auth", "get")["scope"] == "read"

    listed = api.check(client.get("/landmarks", headers=READER), "/landmarks", "get")
    sceaux = next(item for item in listed["landmarks"] if item["id"] == "chateau_de_sceaux")
    assert sceaux["display_name"] == {"en": SCEAUX["en"], "ja": SCEAUX["ja"]}
    assert sceaux["location"] == SCEAUX["location"] and sceaux["references"] == 3
    strecha = api.check(client.get("/landmarks/strecha_castle", headers=READER),
                        "/landmarks/{landmark_id}", "get")
    assert strecha["display_name"] == {"en": "Strecha Castle", "ja": "Strecha Castle"}

    answer = api.check(client.post("/identify", headers=READER,
                                   files=[upload(QUERIES["chateau_de_sceaux"])]),
                       "/identify", "post")
    assert answer["landmark"] == "chateau_de_sceaux"
    assert answer["display_name"]["ja"] == SCEAUX["ja"] and answer["location"]["lat"] > 48
    assert len(answer["bounding_poly"]) >= 3
    width, height = answer["size"]
    assert all(0 <= x <= width and 0 <= y <= height for x, y in answer["bounding_poly"])
    best = answer["candidates"][0]
    assert best["match"]["reference"] == best["reference"]
    assert len(best["match"]["query_points"]) == len(best["match"]["reference_points"]) > 10
    thumbnail = api.check(client.get(best["thumbnail"], headers=READER),
                          "/references/{reference_id}/thumbnail", "get")
    assert max(Image.open(io.BytesIO(thumbnail)).size) == 256
    etag = client.get(best["thumbnail"], headers=READER).headers["etag"]
    assert client.get(best["thumbnail"], headers={**READER, "If-None-Match": etag}
                      ).status_code == 304  # revalidated by content: ids may be reused
    assert best["match"]["reference_size"][0] > 256

    verdict = api.check(client.post("/verify", headers=READER, data={"landmark": "strecha_castle"},
                                    files=[upload(QUERIES["chateau_de_sceaux"])]),
                        "/verify", "post")
    assert verdict["verified"] is False and verdict["bounding_poly"] is None

    batch = api.check(client.post("/identify/batch", headers=READER, files=[
        upload(QUERIES["strecha_castle"], "files"), upload(DISTRACTOR, "files"),
        ("files", ("notes.jpg", b"<html>not a photo</html>", "image/jpeg")),
        ("files", ("empty.jpg", b"", "image/jpeg"))]), "/identify/batch", "post")
    assert [item["photo"] for item in batch["results"]] == [
        photo(QUERIES["strecha_castle"]).name, photo(DISTRACTOR).name, "notes.jpg", "empty.jpg"]
    first, street, notes, empty = batch["results"]
    assert first["answer"]["landmark"] == "strecha_castle" and first["error"] is None
    assert street["answer"]["landmark"] == "unknown"
    assert street["answer"]["bounding_poly"] is None and street["answer"]["evidence"] is None
    assert street["answer"]["display_name"] is None
    assert notes["error"]["error"] == "not_an_image" and empty["error"]["error"] == "empty"
    assert (batch["answered"], batch["failed"]) == (2, 2)

    created = api.check(client.post("/landmarks", headers=ADMIN, json={
        "id": "st_pauls_cathedral", "names": {"en": "St Paul's Cathedral", "ja": "セント・ポール大聖堂"},
        "location": {"lat": 51.5138, "lon": -0.0984}}), "/landmarks", "post")
    assert created["references"] == 0 and created["thumbnail"] is None
    added = api.check(client.post("/landmarks/st_pauls_cathedral/photos", headers=ADMIN, files=[
        upload("st_pauls_cathedral/cotr__imgs_cathedral_1.jpg", "files"),
        upload("st_pauls_cathedral/cotr__imgs_cathedral_2.jpg", "files")]),
        "/landmarks/{landmark_id}/photos", "post")
    assert len(added["added"]) == 2 and added["skipped"] == 0
    assert added["added"][0]["name"].endswith("-cotr__imgs_cathedral_1.jpg")
    again = client.post("/identify", headers=READER,
                        files=[upload(QUERIES["st_pauls_cathedral"])]).json()
    assert again["landmark"] == "st_pauls_cathedral"  # the new photos answer at once

    edited = api.check(client.patch("/landmarks/strecha_castle", headers=ADMIN, json={
        "names": {"en": "Střekov Castle", "ja": "ストシェコフ城"},
        "location": {"lat": 50.6401, "lon": 14.0466}}), "/landmarks/{landmark_id}", "patch")
    assert edited["display_name"]["ja"] == "ストシェコフ城" and edited["location"]["lon"] == 14.0466
    kept = client.patch("/landmarks/strecha_castle", headers=ADMIN, json={"location": None}).json()
    assert kept["location"] is None and kept["names"]["en"] == "Střekov Castle"

    gone = api.check(client.delete(f"/references/{added['added'][0]['id']}", headers=ADMIN),
                     "/references/{reference_id}", "delete")
    assert gone["references"] == [added["added"][0]["id"]]
    removed = api.check(client.delete("/landmarks/st_pauls_cathedral", headers=ADMIN),
                        "/landmarks/{landmark_id}", "delete")
    assert removed["references"] == [added["added"][1]["id"]]
    assert api.check(client.get("/health"), "/health", "get")["landmarks"] == 2

    # Errors are answers too: each one in the schema, in the one shape.
    api.check(client.get("/landmarks/nowhere", headers=READER), "/landmarks/{landmark_id}", "get")
    api.check(client.post("/landmarks", headers=ADMIN, json={"id": "strecha_castle"}),
              "/landmarks", "post")
    documented = {(path, method) for path, item in api.document["paths"].items()
                  for method in item}
    assert documented - api.seen == set()  # every endpoint of the schema was driven


def test_keys_scopes_and_the_default_without_keys(client, index_copy, tmp_path):
    assert client.get("/landmarks").status_code == 401  # a read key exists: reading needs one
    assert client.get(f"/landmarks?api_key={READ_KEY}").status_code == 401  # never from a URL
    wrong = client.get("/landmarks", headers={"X-API-Key": "x" * 24})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    assert client.get("/landmarks", headers=ADMIN).status_code == 200  # admin also reads
    refused = client.delete("/landmarks/strecha_castle", headers=READER)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    with client_for(index_copy, tmp_path / "open") as open_client:
        assert open_client.get("/landmarks").status_code == 200  # no keys: reading is open...
        off = open_client.post("/landmarks", json={"id": "new_place"})
        assert off.status_code == 403 and off.json()["error"] == "editing_disabled"
        assert "--api-keys" in off.json()["message"]  # ...and editing is off, saying how
        assert open_client.get("/health").json()["access"] == {"read": "open",
                                                               "admin": "disabled"}


def test_a_bad_photo_leaves_the_index_unchanged(client, index_copy, tmp_path):
    before = GalleryIndex(index_copy).info()
    response = client.post("/landmarks/strecha_castle/photos", headers=ADMIN, files=[
        upload(QUERIES["strecha_castle"], "files"),
        ("files", ("broken.jpg", photo(DISTRACTOR).read_bytes()[:4000], "image/jpeg"))])
    assert response.status_code == 400 and response.json()["error"] == "bad_image"
    assert response.json()["message"].startswith("broken.jpg: ")
    after = GalleryIndex(index_copy).info()
    assert after["per_landmark"] == before["per_landmark"]
    assert list((tmp_path / "data" / "references").rglob("*.*")) == []  # no file left behind
    missing = client.post("/landmarks/nowhere/photos", headers=ADMIN,
                          files=[upload(QUERIES["strecha_castle"], "files")])
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_landmark"


def test_batch_limits_and_thumbnails_by_id_only(client):
    many = [upload(DISTRACTOR, "files")] * 17
    response = client.post("/identify/batch", headers=READER, files=many)
    assert response.status_code == 422 and response.json()["error"] == "too_many_files"
    assert client.get("/references/999/thumbnail", headers=READER).json()["error"] == \
        "unknown_reference"
    for attempt in ("/references/..%2F..%2Fetc%2Fpasswd/thumbnail",
                    "/references/1/thumbnail?size=100000"):
        assert client.get(attempt, headers=READER).status_code in (404, 422)


def test_batches_and_photo_uploads_are_shed_like_single_photos(client):
    gate = client.app.state.gate
    saved = gate.admitted
    gate.admitted = gate.workers + gate.queue  # as if that many photos were in the server
    try:
        batch = client.post("/identify/batch", headers=READER, files=[upload(DISTRACTOR, "files")])
        adding = client.post("/landmarks/strecha_castle/photos", headers=ADMIN,
                             files=[upload(DISTRACTOR, "files")])
    finally:
        gate.admitted = saved
    for response in (batch, adding):
        assert response.status_code == 503 and response.json()["error"] == "busy"
        assert int(response.headers["retry-after"]) >= 1
    assert client.get("/landmarks", headers=READER).status_code == 200  # reading is not shed


def test_cors_is_off_by_default_and_on_when_asked(client, index_copy, tmp_path):
    origin = {"Origin": "https://photos.example.org"}
    assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    with client_for(index_copy, tmp_path / "cors",
                    cors_origins=("https://photos.example.org",)) as cors_client:
        allowed = cors_client.get("/health", headers=origin)
        assert allowed.headers["access-control-allow-origin"] == "https://photos.example.org"
        other = cors_client.get("/health", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers


def test_key_file_and_environment(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# who may do what\n{ADMIN_KEY} admin\n{READ_KEY}  read  # the page\n")
    assert read_key_file(keys) == {ADMIN_KEY: "admin", READ_KEY: "read"}
    assert keys_from_environment({"LOOKALIKE_API_KEYS": f"{ADMIN_KEY}:admin, {READ_KEY}:read"}) \
        == {ADMIN_KEY: "admin", READ_KEY: "read"}
    keys.write_text("short admin\n")
    with pytest.raises(ApiKeyError, match="at least 16 characters"):
        read_key_file(keys)
    keys.write_text(f"{ADMIN_KEY} root\n")
    with pytest.raises(ApiKeyError, match=r"keys.txt:1: .*read or admin"):
        read_key_file(keys)


def test_stored_file_names_are_safe():
    from lookalike.server.live_gallery import safe_file_name, safe_stem

    assert safe_file_name("../../etc/passwd") == "passwd.jpg"
    assert safe_file_name("Mon château 2.JPEG") == "Mon_ch_teau_2.jpeg"
    assert safe_file_name("東京タワー.heic") == "photo.heic"
    assert safe_stem("tokyo tower/..") == "tokyo_tower"


def test_an_address_sending_wrong_keys_is_refused_for_a_while(index_copy, tmp_path):
    with client_for(index_copy, tmp_path / "data", api_keys={ADMIN_KEY: "admin"},
                    failed_key_limit=3) as throttled:
        for attempt in range(3):
            wrong = throttled.get("/landmarks", headers={"X-API-Key": f"wrong-key-{attempt:014d}"})
            assert wrong.status_code == 401
        refused = throttled.get("/auth", headers={"X-API-Key": "wrong-key-again-0000"})
        assert refused.status_code == 429
        assert set(refused.json()) == {"error", "message"}
        assert refused.json()["error"] == "too_many_failed_keys"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Even the right key waits (guesses must not go on), but open reading is not throttled.
        assert throttled.get("/landmarks", headers=ADMIN).status_code == 429
        assert throttled.get("/landmarks").status_code == 200
        declared = throttled.get("/openapi.json").json()["paths"]["/landmarks"]["get"]
        assert "429" in declared["responses"]


def test_failed_key_throttle_forgets_old_failures_and_bounds_its_memory():
    from lookalike.server.auth import FailedKeyThrottle

    now = [1000.0]
    throttle = FailedKeyThrottle(limit=2, window_s=60, max_clients=3, clock=lambda: now[0])
    throttle.failed("10.0.0.1")
    now[0] += 30
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 30  # until the first failure leaves the window
    assert throttle.retry_after("10.0.0.2") is None  # addresses are counted apart
    now[0] += 30
    assert throttle.retry_after("10.0.0.1") is None  # one failure left in the window
    for address in ("a", "b", "c", "d"):
        throttle.failed(address)
    assert len(throttle._failures) == 3  # the oldest address was forgotten
