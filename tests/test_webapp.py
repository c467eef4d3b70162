"""The web app in headless Chromium (Playwright): batch upload, the match view, gallery editing.

A real uvicorn serves a small index of the fast preset. Screenshots go to the test's tmp
folder; with LOOKALIKE_DOCS_SCREENSHOTS=1 they also replace docs/webapp.png and
docs/webapp-gallery.png (the README's pictures).
"""

from __future__ import annotations

import csv
import os

import pytest
from landmark_gallery import DISTRACTOR, QUERIES, SCEAUX, make_gallery, photo
from live_server import serving

from lookalike.engines.local import local_extractor
from lookalike.gallery.index import build_index
from lookalike.server.app import ServerSettings, create_app

CHROMIUM = "/usr/bin/chromium"  # Debian's (make setup); no browser is downloaded
ADMIN_KEY = "admin-key-for-the-browser"
DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium is not installed (make setup)")


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("webapp")
    gallery = make_gallery(root / "gallery", ["chateau_de_sceaux", "strecha_castle"])
    build_index(gallery, root / "gallery.lkidx", local_extractor(), preset="fast")
    app = create_app(ServerSettings(root / "gallery.lkidx", root / "data", queue=16,
                                    max_wait=600, api_keys={ADMIN_KEY: "admin"}))
    with serving(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


DOCS_PICTURES = ("webapp.png", "webapp-gallery.png")


def screenshot(page, tmp_path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("LOOKALIKE_DOCS_SCREENSHOTS") == "1" and name in DOCS_PICTURES:
        from PIL import Image

        # 256 colours keep the README's picture a few hundred kB instead of a megabyte.
        Image.open(tmp_path / name).convert("RGB").quantize(256).save(
            os.path.join(DOCS, name), optimize=True)


def no_outside_requests(page, base: str) -> list[str]:
    """Every URL the page asks for that is not this server (the app must work offline)."""
    outside: list[str] = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith((base, "blob:", "data:")) else None)
    return outside


def test_batch_upload_table_card_and_match_view(live_server, browser, tmp_path):
    page = browser.new_page(locale="en-US", viewport={"width": 1000, "height": 900})
    outside = no_outside_requests(page, live_server)
    page.goto(live_server + "/")
    page.wait_for_function("document.querySelectorAll('#landmark option').length == 2")
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    files = [photo(QUERIES["chateau_de_sceaux"]), photo(QUERIES["strecha_castle"]),
             photo(DISTRACTOR), bad]
    page.set_input_files("#file", [str(path) for path in files])
    # One of the four is not a photo: the page says so instead of "4 photos answered."
    page.wait_for_function("document.querySelector('#status').textContent == "
                           "'3 of 4 photos answered; 1 failed (see the table).'", timeout=120_000)
    cells = [[cell.inner_text() for cell in row.query_selector_all("td")[1:]]
             for row in page.query_selector_all("#table tbody tr")]
    assert [c[0] for c in cells] == [path.name for path in files]
    assert cells[0][1] == SCEAUX["en"] and cells[0][2].endswith("%")
    assert cells[1][1] == "Strecha Castle"  # no names stored: a readable id
    assert cells[2][1] == "Not a known landmark" and cells[2][2] == "—"
    assert cells[3][1] == "This file is not a photo."
    page.wait_for_function("[...document.querySelectorAll('#table img.thumb')].slice(0, 3)"
                           ".every(img => img.naturalWidth > 0)")  # the photos, not the text

    # The first answer's card: name, probability, the region drawn, reference thumbnails.
    assert page.text_content("#answer") == SCEAUX["en"]
    assert page.text_content("#confidence").startswith("Probability: ")
    page.wait_for_function("document.querySelector('#canvas').dataset.region == 'drawn'")
    page.wait_for_function("[...document.querySelectorAll('#candidates img')]"
                           ".every(img => img.naturalWidth > 0)")
    page.click("#candidates li:first-child .show-matches")
    page.wait_for_function("Number(document.querySelector('#candidates li .match-view')"
                           ".dataset.lines) > 10", timeout=30_000)
    assert "verified matches" in page.text_content("#candidates li:first-child .match-view")
    screenshot(page, tmp_path, "webapp.png")

    # The street photo: unknown, no region drawn, no high confidence shown.
    page.click("#table tbody tr:nth-child(3)")
    assert page.text_content("#answer") == "Not a known landmark"
    page.wait_for_function("document.querySelector('#canvas').dataset.region == 'none'")
    confidence = page.text_content("#confidence")
    assert confidence.startswith("No landmark matches with confidence") and "Probability" not in confidence
    assert page.is_hidden("#legend")
    screenshot(page, tmp_path, "webapp-unknown.png")

    # Japanese: the whole page, the answers and the errors.
    page.click("#lang-ja")
    page.click("#table tbody tr:nth-child(1)")
    assert page.text_content("#answer") == SCEAUX["ja"]
    assert page.text_content("h1") == "これはどのランドマーク？"
    assert page.inner_text("#table tbody tr:nth-child(4) td:nth-child(3)") == \
        "このファイルは写真ではありません。"

    with page.expect_download() as download:
        page.click("#download")
    with open(download.value.path(), newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [row["photo"] for row in table] == [path.name for path in files]
    assert table[0]["landmark"] == "chateau_de_sceaux" and table[2]["landmark"] == "unknown"
    assert table[3]["error"] == "not_an_image"

    # Verify mode asks about one landmark per photo.
    page.select_option("#mode", "verify")
    page.select_option("#landmark", "strecha_castle")
    page.set_input_files("#file", [str(files[0]), str(files[1])])
    page.wait_for_function("document.querySelector('#status').textContent == "
                           "'2 枚の写真を判定しました。'", timeout=120_000)
    answers = [cell.inner_text() for cell in
               page.query_selector_all("#table tbody td:nth-child(3)")]
    assert answers == ["いいえ：Strecha Castle", "はい：Strecha Castle"]

    # A failed request clears the previous answers and says so in the chosen language.
    page.select_option("#mode", "identify")
    page.route("**/identify/batch", lambda route: route.fulfill(
        status=401, content_type="application/json",
        body='{"error": "unauthorized", "message": "this needs an API key"}'))
    page.set_input_files("#file", [str(files[0])])
    page.wait_for_selector("#status.error")
    assert page.text_content("#status") == \
        "有効な API キーが必要です。ギャラリーのページで入力してください。"
    assert page.is_hidden("#results") and page.is_hidden("#card")
    screenshot(page, tmp_path, "webapp-error-ja.png")
    assert outside == []
    page.close()


def test_gallery_page_edits_behind_the_admin_key(live_server, browser, tmp_path):
    page = browser.new_page(locale="en-US", viewport={"width": 1000, "height": 900})
    outside = no_outside_requests(page, live_server)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(live_server + "/gallery")
    page.wait_for_selector("article[data-landmark='strecha_castle']")
    assert page.is_hidden("#new-landmark") and not page.query_selector(".tools")  # no key yet
    assert page.query_selector_all("#map .place") and \
        page.get_attribute("#map .place", "data-landmark") == "chateau_de_sceaux"
    card = "article[data-landmark='chateau_de_sceaux']"
    assert page.text_content(f"{card} h3") == SCEAUX["en"]
    assert "3 photos" in page.text_content(f"{card} .legend")

    page.fill("#api-key", "wrong-key-wrong-key-wrong")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#status.error")
    assert page.text_content("#status") == "This needs a valid API key. Enter it on the Gallery page."
    page.fill("#api-key", ADMIN_KEY)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-status[data-scope='admin']")

    strecha = "article[data-landmark='strecha_castle']"
    page.fill(f"{strecha} input[name=en]", "Střekov Castle")
    page.fill(f"{strecha} input[name=ja]", "ストシェコフ城")
    page.fill(f"{strecha} input[name=lat]", "50.6401")
    page.fill(f"{strecha} input[name=lon]", "14.0466")
    page.click(f"{strecha} button[type=submit]")
    page.wait_for_function(f"document.querySelector(\"{strecha} h3\").textContent == 'Střekov Castle'")
    assert len(page.query_selector_all("#map .place")) == 2

    page.fill("#new-landmark input[name=id]", "st_pauls_cathedral")
    page.fill("#new-landmark input[name=en]", "St Paul's Cathedral")
    page.fill("#new-landmark input[name=ja]", "セント・ポール大聖堂")
    page.fill("#new-landmark input[name=lat]", "51.5138")
    page.fill("#new-landmark input[name=lon]", "-0.0984")
    page.click("#new-landmark button[type=submit]")
    pauls = "article[data-landmark='st_pauls_cathedral']"
    page.wait_for_selector(pauls)
    page.set_input_files(f"{pauls} .add-photos", [
        str(photo("st_pauls_cathedral/cotr__imgs_cathedral_1.jpg")),
        str(photo("st_pauls_cathedral/cotr__imgs_cathedral_2.jpg"))])
    page.wait_for_function(f"document.querySelectorAll(\"{pauls} .photos img\").length == 2",
                           timeout=120_000)
    assert page.text_content("#status") == "2 photos added."
    page.wait_for_function("[...document.querySelectorAll('.photos img')].every(i => i.naturalWidth > 0)")
    page.click("#lang-ja")
    assert page.text_content(f"{strecha} h3") == "ストシェコフ城"
    assert "写真 2 枚" in page.text_content(f"{pauls} .legend")
    page.click("#lang-en")
    screenshot(page, tmp_path, "webapp-gallery.png")

    page.click(f"{pauls} figure:first-child .remove-photo")
    page.wait_for_function(f"document.querySelectorAll(\"{pauls} .photos img\").length == 1")
    page.click(f"{pauls} .remove-landmark")
    page.wait_for_function(f"!document.querySelector(\"{pauls}\")")
    assert page.text_content("#status") == "Removed."

    page.click("#key-forget")
    page.wait_for_selector("#key-status[data-scope='none']")
    assert not page.query_selector(".tools") and page.is_hidden("#new-landmark")
    assert outside == []
    page.close()


def test_api_docs_load_nothing_from_outside(live_server, browser):
    """ReDoc's sidebar asks for https://cdn.redoc.ly/redoc/logo-mini.svg; the page's policy
    stops it, and both docs pages still render."""
    for path, rendered in (("/redoc", "text=API docs by Redocly"), ("/docs", ".swagger-ui .info")):
        page = browser.new_page()
        outside = no_outside_requests(page, live_server)
        page.goto(live_server + path)
        page.wait_for_selector(rendered, timeout=60_000)
        page.wait_for_timeout(500)
        assert outside == [], path
        page.close()


def label_boxes(page) -> list[dict]:
    return page.evaluate("[...document.querySelectorAll('#map .place text')].map(t => {"
                         "const r = t.getBoundingClientRect();"
                         "return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};})")


def test_map_labels_stay_apart_and_readable_on_a_phone(live_server, browser):
    """Landmarks 7-18 km apart (and one far away) get labels that do not overlap, at
    desktop and at phone width, and the labels keep a readable size on the phone."""
    import httpx

    headers = {"X-API-Key": ADMIN_KEY}
    near = [("map_a", "Notre-Dame de Paris", 48.8530, 2.3499),
            ("map_b", "Basilique de Saint-Denis", 48.9356, 2.3596),  # 9 km north
            ("map_s", "Château de Sceaux", 48.7784, 2.2995),  # 18 km south of Saint-Denis
            ("map_c", "Château de Vincennes", 48.8427, 2.4359),  # east of both
            ("map_far", "Castle far away", 50.6401, 14.0466)]
    for lid, name, lat, lon in near:
        assert httpx.post(f"{live_server}/landmarks", headers=headers, json={
            "id": lid, "names": {"en": name}, "location": {"lat": lat, "lon": lon}}
        ).status_code == 201
    located = sum(1 for landmark in httpx.get(f"{live_server}/landmarks").json()["landmarks"]
                  if landmark["location"])
    try:
        for width in (1000, 375):
            page = browser.new_page(viewport={"width": width, "height": 800})
            page.goto(live_server + "/gallery")
            page.wait_for_function("document.querySelectorAll('#map .place text').length == "
                                   f"{located}")
            boxes = label_boxes(page)
            for i, a in enumerate(boxes):
                assert a["bottom"] - a["top"] >= 11, (width, a)  # 12 px text, not ~6 px
                for b in boxes[i + 1:]:
                    apart = a["right"] <= b["left"] or b["right"] <= a["left"] or \
                        a["bottom"] <= b["top"] or b["bottom"] <= a["top"]
                    assert apart, (width, a, b)
            page.close()
    finally:
        for lid, *_ in near:
            httpx.delete(f"{live_server}/landmarks/{lid}", headers=headers)
