"""From an uploaded file to the photo's features, or the HTTP error its bytes deserve.

Why here: every route that takes photos (identify, batch, verify, adding reference photos)
reads its uploads the same way: the bytes are capped (413), an empty part is refused (400),
and the content is decoded by the same loader as the command line, which sniffs the bytes
and ignores the file name and the Content-Type; a photo over the pixel limit answers 413.
"""

import base64
import dataclasses
import io
import os

from lookalike.gallery.identify import Identifier, Settings
from lookalike.imaging.loading import ImageLoadError
from lookalike.server.errors import api_error, pixel_limit_message, too_large_message
from lookalike.server.settings import ServerSettings


async def read_upload(file, max_bytes: int) -> bytes:
    """The uploaded file's bytes, or the 413 / 400 a client gets for it."""
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise api_error(413, "too_large", too_large_message(max_bytes))
    if not data:
        raise api_error(400, "empty", "the uploaded file is empty")
    return data


async def read_upload_or_error(file, max_bytes: int) -> bytes | dict[str, str]:
    """A batch file's bytes, or its error entry (one bad file must not fail the batch)."""
    from fastapi import HTTPException

    try:
        return await read_upload(file, max_bytes)
    except HTTPException as error:
        return error.detail


def photo_name(file) -> str:
    """The upload's file name without any folder (a client's path is not ours to keep)."""
    return os.path.basename(file.filename or "upload")[:200]


def query_features(identifier: Identifier, data: bytes, name: str, settings: Settings,
                   keep_image: bool = False):
    """The photo's features, or the 400 / 413 its decoding failure answers."""
    try:
        return identifier.features_from_bytes(data, name, keep_image, settings)
    except ImageLoadError as error:
        if error.reason.startswith("too large"):
            raise api_error(413, "too_many_pixels",
                            pixel_limit_message(error.reason, settings.max_pixels)) from None
        code = "not_an_image" if error.reason.startswith("not an image") else "bad_image"
        raise api_error(400, code, error.reason) from None


def request_settings(settings: ServerSettings, use_gps: bool, use_text: bool) -> Settings:
    """The identify settings of one request: the server's, with the request's switches."""
    return dataclasses.replace(settings.identify_settings(), use_gps=use_gps or settings.use_gps,
                               use_text=use_text)


def match_picture_url(identifier: Identifier, answer, image) -> str | None:
    """The side-by-side match picture as a PNG data URL (verify with picture=true)."""
    picture = identifier.match_picture(answer, image)
    if picture is None:
        return None
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
