"""A small gallery for the index/identify/server tests: symlinks to the dev photos in a tmp dir.

Three landmarks with three reference photos each, one held-out query per landmark, and a
distractor. One landmark carries a landmark.json with English and Japanese names and a location.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LANDMARKS = REPO.parent / "shared" / "data" / "landmarks"

GALLERY = {
    "chateau_de_sceaux": [f"chateau_de_sceaux/imagedataset_sceauxcastle__images_100_{n}.jpg"
                          for n in (7100, 7101, 7102)],
    "strecha_castle": [f"strecha_castle/sfm_quality_evaluation__images_{n:04d}.jpg"
                       for n in (0, 4, 8)],
    "st_pauls_cathedral": ["st_pauls_cathedral/cotr__imgs_cathedral_1.jpg",
                           "st_pauls_cathedral/cotr__imgs_cathedral_2.jpg",
                           "st_pauls_cathedral/aliked__st_pauls_cathedral_1.jpg"],
}
QUERIES = {
    "chateau_de_sceaux": "chateau_de_sceaux/imagedataset_sceauxcastle__images_100_7104.jpg",
    "strecha_castle": "strecha_castle/sfm_quality_evaluation__images_0012.jpg",
    "st_pauls_cathedral": "st_pauls_cathedral/aliked__st_pauls_cathedral_2.jpg",
}
DISTRACTOR = "distractors/image-matching-webui__kn-church_02.jpg"
SCEAUX = {"en": "Château de Sceaux", "ja": "ソー城",
          "location": {"lat": 48.7784, "lon": 2.2995}}


def photo(relative: str) -> Path:
    return LANDMARKS / relative


def make_gallery(root: Path, landmarks: list[str] | None = None) -> Path:
    """Folders of symlinks (the photos stay in the shared data folder)."""
    root.mkdir(parents=True, exist_ok=True)
    for landmark in landmarks or list(GALLERY):
        folder = root / landmark
        folder.mkdir(exist_ok=True)
        for relative in GALLERY[landmark]:
            link = folder / Path(relative).name
            if not link.exists():
                os.symlink(photo(relative), link)
        if landmark == "chateau_de_sceaux":
            (folder / "landmark.json").write_text(json.dumps(SCEAUX, ensure_ascii=False),
                                                  encoding="utf-8")
    return root
