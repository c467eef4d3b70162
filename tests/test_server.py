"""HTTP API and web page: TestClient, a real uvicorn under bounded concurrent load (the web
app in Chromium is tests/test_webapp.py)."""

from __future__ import annotations

import concurrent.futures as futures
import io
import subprocess
import time

import httpx
import pytest
from landmark_gallery import DISTRACTOR, QUERIES, SCEAUX, make_gallery, photo
from live_server import free_port, serving
from PIL import Image

from lookalike.engines.local import local_extractor
from lookalike.gallery.index import build_index
from lookalike.server.app import ServerSettings, create_app


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    gallery = make_gallery(root / "gallery", ["chateau_de_sceaux", "strecha_castle"])
    output = root / "gallery.lkidx"
    build_index(gallery, output, local_extractor())
    return output


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("serve-data")


@pytest.fixture(scope="module")
def client(index_path, data_dir):
    from fastapi.testclient import TestClient

    app = create_app(ServerSettings(index_path, data_dir, max_bytes=3_000_000,
                                    max_pixels=30_000_000))
    with TestClient(app) as test_client:
        yield test_client


def upload(path, name=None, content_type="image/jpeg"):
    return {"file": (name or path.name, path.read_bytes(), content_type)}


def test_health_landmarks_docs_and_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["landmarks"] == 2 and health["references"] == 6
    landmarks = {item["id"]: item for item in client.get("/landmarks").json()["landmarks"]}
    assert landmarks["chateau_de_sceaux"]["names"]["ja"] == SCEAUX["ja"]
    assert landmarks["chateau_de_sceaux"]["references"] == 3
    schema = client.get("/openapi.json").json()
    assert {"/identify", "/verify", "/landmarks", "/health"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_their_assets_from_this_server(client, page):
    """No CDN: every script, stylesheet and icon of the docs pages is served here."""
    import re

    html = client.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    urls = re.findall(r'(?:src|href)="([^"]+)"', html.text) + re.findall(r"url: '([^']+)'",
                                                                           html.text)
    assert len(urls) >= 2
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "http://" not in html.text and "https://" not in html.text
    kinds = set()
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        kind = asset.headers["content-type"]
        kinds.add("js" if "javascript" in kind else "css" if "css" in kind else kind.split(";")[0])
        if url.endswith(".js"):
            assert len(asset.content) > 100_000  # the real bundle, not a stub
    assert "js" in kinds and (page == "/redoc" or "css" in kinds)


def test_identify_and_verify_answers(client):
    query = photo(QUERIES["strecha_castle"])
    answer = client.post("/identify", files=upload(query)).json()
    assert answer["landmark"] == "strecha_castle" and answer["photo"] == query.name
    assert answer["candidates"][0]["landmark"] == "strecha_castle"
    assert answer["evidence"]["size"] == list(Image.open(query).size)
    unknown = client.post("/identify", files=upload(photo(DISTRACTOR))).json()
    assert unknown["landmark"] == "unknown"
    verdict = client.post("/verify", files=upload(query),
                          data={"landmark": "strecha_castle", "picture": "true"}).json()
    assert verdict["verified"] is True
    assert verdict["match_picture"].startswith("data:image/png;base64,")
    refused = client.post("/verify", files=upload(query), data={"landmark": "chateau_de_sceaux"})
    assert refused.status_code == 200 and refused.json()["verified"] is False


def test_content_is_sniffed_not_trusted(client, tmp_path):
    # A PNG named .txt with a text/plain header is still a photo...
    png = tmp_path / "photo.txt"
    Image.open(photo(QUERIES["strecha_castle"])).reduce(4).save(png, "PNG")
    ok = client.post("/identify", files=upload(png, content_type="text/plain"))
    assert ok.status_code == 200 and ok.json()["landmark"] in ("strecha_castle", "unknown")
    # ...and text named .jpg with an image/jpeg header is not.
    fake = tmp_path / "fake.jpg"
    fake.write_text("<html>hello</html>")
    refused = client.post("/identify", files=upload(fake))
    assert refused.status_code == 400
    assert refused.json()["error"] == "not_an_image" and "not an image" in refused.json()["message"]


def test_limits_and_errors_are_clear_json(client, data_dir):
    big = b"\xff\xd8" + b"0" * 3_100_000
    response = client.post("/identify", files={"file": ("big.jpg", big, "image/jpeg")})
    assert response.status_code == 413 and response.json()["error"] == "too_large"
    huge = io.BytesIO()
    Image.new("L", (6000, 6000)).save(huge, "PNG")  # 36 Mpx in a small file
    response = client.post("/identify", files={"file": ("huge.png", huge.getvalue(), "image/png")})
    assert response.status_code == 413 and response.json()["error"] == "too_many_pixels"
    response = client.post("/identify", files={"file": ("empty.jpg", b"", "image/jpeg")})
    assert response.status_code == 400 and response.json()["error"] == "empty"
    response = client.post("/identify")
    assert response.status_code == 422 and response.json()["error"] == "invalid_request"
    assert "file" in response.json()["message"]
    response = client.post("/verify", files=upload(photo(DISTRACTOR)), data={"landmark": "x"})
    assert response.status_code == 404 and response.json()["error"] == "unknown_landmark"
    # Nothing was written anywhere but the data directory (and nothing there either).
    assert list(data_dir.rglob("*.*")) == []


@pytest.fixture(scope="module")
def live_server(index_path, data_dir):
    """A real uvicorn on 127.0.0.1 in a thread (a queue long enough for every test client:
    shedding load is tested in test_server_load.py)."""
    app = create_app(ServerSettings(index_path, data_dir, queue=16, max_wait=600))
    with serving(app) as base:
        yield base


def test_concurrent_clients_bounded_loop(live_server):
    """6 clients x 3 requests each, mixed identify/verify/health: every answer is right."""
    queries = [(photo(QUERIES["strecha_castle"]), "strecha_castle"),
               (photo(QUERIES["chateau_de_sceaux"]), "chateau_de_sceaux")]

    def client_loop(number: int) -> list[str]:
        problems = []
        with httpx.Client(base_url=live_server, timeout=120) as http:
            for round_ in range(3):
                path, expected = queries[(number + round_) % 2]
                if round_ == 1:
                    r = http.post("/verify", files=upload(path), data={"landmark": expected})
                    if r.status_code != 200 or r.json()["verified"] is not True:
                        problems.append(f"verify {r.status_code} {r.text[:200]}")
                else:
                    r = http.post("/identify", files=upload(path))
                    if r.status_code != 200 or r.json()["landmark"] != expected:
                        problems.append(f"identify {r.status_code} {r.text[:200]}")
                if http.get("/health").status_code != 200:
                    problems.append("health")
        return problems

    with futures.ThreadPoolExecutor(6) as pool:
        problems = [p for result in pool.map(client_loop, range(6)) for p in result]
    assert problems == []


def test_serve_command_starts(index_path, data_dir, tmp_path):
    """`lookalike serve` as a user runs it, with keys from a file and from the environment:
    answers /health, asks for a key where one is configured, then stops cleanly."""
    import os
    import sys

    keys = tmp_path / "keys.txt"
    keys.write_text("admin-key-from-the-file admin\n")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "serve", "--index", str(index_path),
         "--port", str(port), "--data-dir", str(data_dir), "--api-keys", str(keys),
         "--cors-origin", "https://photos.example.org"],
        env={**os.environ, "LOOKALIKE_API_KEYS": "read-key-from-the-environment:read"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                health = httpx.get(base + "/health", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("server did not start: " + process.stderr.read1().decode())
        assert health.json()["access"] == {"read": "key", "admin": "key"}
        assert httpx.get(base + "/landmarks").status_code == 401
        assert httpx.get(base + "/landmarks", headers={
            "X-API-Key": "read-key-from-the-environment"}).status_code == 200
        assert httpx.get(base + "/auth", headers={
            "Authorization": "Bearer admin-key-from-the-file"}).json()["scope"] == "admin"
        cors = httpx.get(base + "/health", headers={"Origin": "https://photos.example.org"})
        assert cors.headers["access-control-allow-origin"] == "https://photos.example.org"
    finally:
        process.terminate()
        process.wait(timeout=30)
