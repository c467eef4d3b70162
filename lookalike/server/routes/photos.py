"""POST /identify, /identify/batch and /verify: the questions about photos.

Why together: the three share one path from upload to answer (read the bytes, decode them as
the command line does, extract, score under the gallery's read lock on a gate worker), and
differ only in what they ask of the `Identifier`. A batch answers every file, in order; one
bad file costs that file's answer, never the batch.
"""

import logging
from collections.abc import Callable
from typing import Any

from lookalike.gallery.identify import Settings
from lookalike.server.auth import READ
from lookalike.server.context import Context
from lookalike.server.errors import api_error, error_responses
from lookalike.server.guards import arrival
from lookalike.server.schema import PHOTO
from lookalike.server.uploads import (
    match_picture_url,
    photo_name,
    query_features,
    read_upload,
    read_upload_or_error,
    request_settings,
)

log = logging.getLogger(__name__)


def add_photo_routes(app, context: Context) -> None:
    """POST /identify, /identify/batch and /verify."""
    from typing import Annotated

    from fastapi import File, Form, Request, UploadFile

    from lookalike.server.models import BatchAnswer, FormFlag, IdentifyAnswer, answer_model

    gallery, gate, settings = context.gallery, context.gate, context.settings

    def identify_one(data: bytes, name: str, asked: Settings):
        with gallery.reading() as identifier:
            query = query_features(identifier, data, name, asked)
            answer = identifier.identify_features(name, query, asked)
            return answer_model(answer, identifier.index)

    read = {"dependencies": [context.needs(READ)], "openapi_extra": context.open_reading()}

    @app.post("/identify", summary="Which landmark is this photo?", **read,
              responses=error_responses(400, 401, 413, 422, 429, 500, 503))
    async def identify(request: Request,
                       file: Annotated[UploadFile, File(description="the photo",
                                                        json_schema_extra=PHOTO)],
                       use_gps: Annotated[FormFlag, Form()] = False,
                       use_text: Annotated[FormFlag, Form(description="read signboards")] = False,
                       ) -> IdentifyAnswer:
        data = await read_upload(file, settings.max_bytes)
        asked = request_settings(settings, use_gps, use_text)
        return await gate.run(arrival(request), lambda: identify_one(data, photo_name(file),
                                                                     asked))

    @app.post("/identify/batch", summary="Which landmark is each of these photos?", **read,
              responses=error_responses(401, 413, 422, 429, 500, 503))
    async def identify_batch(request: Request,
                             files: Annotated[list[UploadFile], File(
                                 description="the photos", min_length=1,
                                 json_schema_extra={"maxItems": settings.max_files})],
                             use_gps: Annotated[FormFlag, Form()] = False,
                             use_text: Annotated[FormFlag, Form(description="read signboards")
                                                 ] = False) -> BatchAnswer:
        if len(files) > settings.max_files:
            raise api_error(422, "too_many_files", f"{len(files)} files in one request; this "
                            f"server takes at most {settings.max_files}")
        uploads = [(photo_name(file), await read_upload_or_error(file, settings.max_bytes))
                   for file in files]
        asked = request_settings(settings, use_gps, use_text)

        def answer_one(data: bytes, name: str):
            return identify_one(data, name, asked)

        return await gate.run(arrival(request), lambda: batch_answer(uploads, answer_one))

    @app.post("/verify", summary="Does this photo show this landmark?", **read,
              responses=error_responses(400, 401, 404, 409, 413, 422, 429, 500, 503))
    async def verify(request: Request,
                     file: Annotated[UploadFile, File(description="the photo",
                                                      json_schema_extra=PHOTO)],
                     landmark: Annotated[str, Form(description="landmark id (see /landmarks)",
                                                   min_length=1)],
                     picture: Annotated[FormFlag, Form(description="include a match picture")
                                        ] = False,
                     use_gps: Annotated[FormFlag, Form()] = False,
                     use_text: Annotated[FormFlag, Form(description="read signboards")] = False,
                     ) -> IdentifyAnswer:
        gallery.require_landmark(landmark)
        if not gallery.index.references_of(landmark):
            raise api_error(409, "no_references", f"landmark {landmark!r} has no reference "
                            "photos yet; add some with POST /landmarks/{id}/photos")
        data = await read_upload(file, settings.max_bytes)
        name = photo_name(file)
        asked = request_settings(settings, use_gps, use_text)

        def work():
            with gallery.reading() as identifier:
                query = query_features(identifier, data, name, asked, keep_image=picture)
                answer = identifier.verify_features(name, query, landmark, asked)
                result = answer_model(answer, identifier.index)
                if picture and query.image is not None:
                    result.match_picture = match_picture_url(identifier, answer, query.image)
                return result

        return await gate.run(arrival(request), work)


def batch_answer(uploads: list[tuple[str, bytes | dict[str, str]]],
                 answer_one: Callable[[bytes, str], Any]):
    """One `BatchItem` per upload, in order: its answer, or its error in the one shape."""
    from fastapi import HTTPException

    from lookalike.server.models import BatchAnswer, BatchItem, ErrorBody

    results = []
    for name, data in uploads:
        if isinstance(data, dict):
            results.append(BatchItem(photo=name, error=ErrorBody(**data)))
            continue
        try:
            results.append(BatchItem(photo=name, answer=answer_one(data, name)))
        except HTTPException as error:
            results.append(BatchItem(photo=name, error=ErrorBody(**error.detail)))
        except Exception:  # a failure in one photo's scoring costs that photo's answer only
            log.exception("batch photo %s failed", name)
            results.append(BatchItem(photo=name, error=ErrorBody(
                error="internal_error",
                message="the server failed on this photo; the error is in its log")))
    failed = sum(item.error is not None for item in results)
    return BatchAnswer(results=results, answered=len(results) - failed, failed=failed)
