"""Camera RAW decoding: the embedded preview against demosaicing, side by side in one run.

A 24-megapixel DNG (the Bayer mosaic of a dev photo scaled up, written by tests/dng.py) is
decoded three ways, each `--repeat` times, and the median reported:

- `preview`: the DNG carries the full-size JPEG preview, decoded as a method asks for it
  (`min_long_side=1024`, so the JPEG is decoded at reduced size);
- `demosaic-half`: no preview; LibRaw demosaics at half size (enough for 1024 pixels);
- `demosaic-full`: no preview; the full photo is asked for.

And, as the reference, the same photo as a plain JPEG file. Run:

    python benchmarks/raw_decode.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from dng import make_dng, mosaic  # noqa: E402

from lookalike.imaging.loading import LoadOptions, load_image  # noqa: E402

PHOTO = REPO.parent / "shared" / "data" / "landmarks" / "chateau_de_sceaux" / \
    "imagedataset_sceauxcastle__images_100_7104.jpg"
SIZE = (6000, 4000)  # 24 Mpx, a common sensor


def median_seconds(path: Path, options: LoadOptions, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        load_image(path, options)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    photo = Image.open(PHOTO).convert("RGB").resize(SIZE, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=92)
    jpeg = buffer.getvalue()
    cfa = mosaic(np.asarray(photo))
    with tempfile.TemporaryDirectory() as folder:
        paths = {"jpeg": Path(folder) / "photo.jpg", "preview": Path(folder) / "preview.dng",
                 "demosaic": Path(folder) / "mosaic.dng"}
        paths["jpeg"].write_bytes(jpeg)
        paths["preview"].write_bytes(make_dng(cfa, (jpeg, *SIZE)))
        paths["demosaic"].write_bytes(make_dng(cfa))
        small, full = LoadOptions(min_long_side=1024), LoadOptions()
        rows = [
            ("plain JPEG, 1024 px", median_seconds(paths["jpeg"], small, args.repeat)),
            ("DNG preview, 1024 px", median_seconds(paths["preview"], small, args.repeat)),
            ("DNG demosaic half, 1024 px", median_seconds(paths["demosaic"], small, args.repeat)),
            ("DNG demosaic full", median_seconds(paths["demosaic"], full, args.repeat)),
        ]
    base = rows[0][1]
    print(f"| decode of a {SIZE[0]}x{SIZE[1]} photo | median s | x plain JPEG |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / base:.1f} |")


if __name__ == "__main__":
    main()
