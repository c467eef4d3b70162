"""Where a photo was taken: EXIF GPS, distances to landmarks, and what a far-away photo costs.

Why apart: a photo's position is evidence beside the pixels, read from the file's header
without decoding it, and used by `identify` (distance, penalty) and the batch runner (probe).
"""

from __future__ import annotations

import io
import math

from PIL import Image


def read_gps(data: bytes) -> tuple[float, float] | None:
    """(latitude, longitude) from a photo's EXIF GPS block, or None."""
    try:
        gps = Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):  # no or broken EXIF
        return None
    try:
        def degrees(value) -> float:
            d, m, s = (float(v) for v in value)
            return d + m / 60.0 + s / 3600.0

        lat, lon = degrees(gps[2]), degrees(gps[4])
        if str(gps.get(1, "N")).upper().startswith("S"):
            lat = -lat
        if str(gps.get(3, "E")).upper().startswith("W"):
            lon = -lon
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None
    return lat, lon


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in kilometres between two (lat, lon) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + \
        math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


def gps_penalty(distance_km: float, radius_km: float, weight: float) -> float:
    """Log-odds to subtract for a photo taken `distance_km` from the landmark: none within
    `radius_km`, then `weight` per doubling of the distance."""
    if distance_km <= radius_km:
        return 0.0
    return weight * math.log2(distance_km / radius_km)


def probe(data: bytes) -> tuple[tuple[int, int] | None, tuple[float, float] | None]:
    """Oriented pixel size and GPS position from a file's header, without decoding pixels:
    the size the answer's points are in, and where the photo was taken."""
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if image.getexif().get(0x0112, 1) >= 5:
            width, height = height, width
    except (OSError, ValueError, SyntaxError):
        return None, None
    return (width, height), read_gps(data)
