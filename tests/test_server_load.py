"""Shedding load: past `workers` + `queue` photos, or past `max_wait`, the answer is 503 at once."""

from __future__ import annotations

import concurrent.futures as futures
import io
import threading
import time

import httpx
import pytest
from landmark_gallery import QUERIES, make_gallery, photo
from live_server import serving
from PIL import Image

from lookalike.engines.local import local_extractor
from lookalike.gallery.index import build_index
from lookalike.server.app import ServerSettings, create_app


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    gallery = make_gallery(root / "gallery", ["strecha_castle"])
    build_index(gallery, root / "gallery.lkidx", local_extractor())
    return root / "gallery.lkidx"


@pytest.fixture(scope="module")
def small_photo() -> bytes:
    """A 640 px copy of a dev photo: real work for a worker, cheap to send."""
    image = Image.open(photo(QUERIES["strecha_castle"]))
    image.thumbnail((640, 640))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def post_at_once(base: str, data: bytes, count: int) -> list[tuple[int, dict, dict, float]]:
    """`count` clients post the photo at the same moment: (status, headers, body, seconds)."""
    barrier = threading.Barrier(count)

    def one(_):
        with httpx.Client(base_url=base, timeout=120) as http:
            barrier.wait()
            began = time.perf_counter()
            r = http.post("/identify", files={"file": ("q.jpg", data, "image/jpeg")})
            return r.status_code, dict(r.headers), r.json(), time.perf_counter() - began

    with futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_full_queue_answers_503_with_retry_after_at_once(index_path, small_photo, tmp_path):
    app = create_app(ServerSettings(index_path, tmp_path, workers=1, queue=1, max_wait=60))
    with serving(app) as base:
        httpx.post(base + "/identify", files={"file": ("w.jpg", small_photo)}, timeout=120)
        results = post_at_once(base, small_photo, 6)
    statuses = sorted(status for status, *_ in results)
    assert statuses.count(200) >= 1 and statuses.count(503) >= 3, statuses
    assert set(statuses) <= {200, 503}
    slowest_ok = max(seconds for status, _, _, seconds in results if status == 200)
    for status, headers, body, seconds in results:
        if status == 503:
            assert body["error"] == "busy" and set(body) == {"error", "message"}
            assert int(headers["retry-after"]) >= 1
            assert seconds < slowest_ok  # refused before the work of others was done
    assert app.state.gate.admitted == 0  # every admitted request left the gate


def test_waiting_past_max_wait_answers_503_not_late(index_path, small_photo, tmp_path):
    app = create_app(ServerSettings(index_path, tmp_path, workers=1, queue=8, max_wait=0.2))
    with serving(app) as base:
        httpx.post(base + "/identify", files={"file": ("w.jpg", small_photo)}, timeout=120)
        results = post_at_once(base, small_photo, 5)
    statuses = [status for status, *_ in results]
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    for status, headers, body, _ in results:
        if status == 503:
            assert "waited" in body["message"] and int(headers["retry-after"]) >= 1
