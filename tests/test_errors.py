"""One error contract over HTTP: every status the server answers is {"error", "message"}."""

from __future__ import annotations

import io
import logging

import pytest
from landmark_gallery import DISTRACTOR, make_gallery, photo
from PIL import Image

from lookalike.engines.local import local_extractor
from lookalike.gallery.identify import Identifier
from lookalike.gallery.index import build_index
from lookalike.server.app import ServerSettings, create_app
from lookalike.server.settings import DEFAULT_MAX_BYTES

LIMIT = 3_000_000


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    gallery = make_gallery(root / "gallery", ["strecha_castle"])
    build_index(gallery, root / "gallery.lkidx", local_extractor())
    return create_app(ServerSettings(root / "gallery.lkidx", root / "data", max_bytes=LIMIT,
                                     max_pixels=30_000_000))


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def assert_shape(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    if code is not None:
        assert body["error"] == code, body
    return body


def multipart(data: bytes, name: str = "photo.jpg") -> tuple[bytes, str]:
    boundary = "lookalike-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


def test_bad_images_answer_400(client):
    assert_shape(client.post("/identify", files={"file": ("a.jpg", b"<html>", "image/jpeg")}),
                 400, "not_an_image")
    damaged = photo(DISTRACTOR).read_bytes()[:5000]  # a JPEG cut short
    body = assert_shape(client.post("/identify", files={"file": ("cut.jpg", damaged)}), 400,
                        "bad_image")
    assert "truncated" in body["message"]
    assert_shape(client.post("/identify", files={"file": ("e.jpg", b"")}), 400, "empty")


def test_framework_errors_have_the_shape(client):
    assert_shape(client.get("/no/such/page"), 404, "not_found")
    assert_shape(client.get("/static/nothing.js"), 404, "not_found")
    response = client.get("/identify")
    assert_shape(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]
    assert_shape(client.post("/identify"), 422, "invalid_request")
    assert_shape(client.post("/verify", files={"file": ("a.jpg", b"x")}), 422)  # no landmark
    assert_shape(client.post("/verify", files={"file": ("a.jpg", b"x")},
                             data={"landmark": "nowhere"}), 404, "unknown_landmark")


def test_too_large_by_header_and_while_streaming(client):
    body, boundary = multipart(b"\xff\xd8" + b"0" * (LIMIT + 100_000))
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    message = assert_shape(client.post("/identify", content=body, headers=headers), 413,
                           "too_large")["message"]
    assert "3 MB (3,000,000 bytes)" in message

    def chunks():  # no Content-Length: 30 MB sent chunked, as a streaming client does
        yield body[:200]
        block = b"0" * 1_000_000
        for _ in range(30):
            yield block

    response = client.post("/identify", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert "3 MB (3,000,000 bytes)" in assert_shape(response, 413, "too_large")["message"]


def test_too_many_pixels_states_the_limit_not_a_flag(client):
    huge = io.BytesIO()
    Image.new("L", (6000, 6000)).save(huge, "PNG")
    message = assert_shape(client.post("/identify", files={"file": ("h.png", huge.getvalue())}),
                           413, "too_many_pixels")["message"]
    assert "6000x6000 = 36 Mpx" in message and "limit of 30 Mpx" in message
    assert "--max-pixels" not in message


def test_unexpected_exception_answers_500_and_logs(client, monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Identifier, "identify_features", fail)
    with caplog.at_level(logging.ERROR, logger="lookalike.server.guards"):
        response = client.post("/identify", files={"file": ("d.jpg",
                                                            photo(DISTRACTOR).read_bytes())})
    assert_shape(response, 500, "internal_error")
    assert "a bug" not in response.text  # the traceback goes to the log, not to the client
    assert any("RuntimeError: a bug" in (r.exc_text or "") for r in caplog.records)


def test_busy_answers_503_with_retry_after(app, client):
    gate = app.state.gate
    saved = gate.admitted
    gate.admitted = gate.workers + gate.queue  # as if that many photos were in the server
    try:
        response = client.post("/identify", files={"file": ("d.jpg", b"x")})
    finally:
        gate.admitted = saved
    assert_shape(response, 503, "busy")
    assert int(response.headers["retry-after"]) >= 1
    assert client.get("/health").status_code == 200  # only photo requests are refused


def test_default_byte_limit_is_the_documented_20_mb():
    assert DEFAULT_MAX_BYTES == 20_000_000
