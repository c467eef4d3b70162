"""Reference photos: added to a landmark (all or none), removed one by one, shown as
thumbnails.

Why apart from the landmarks: adding photos decodes and extracts them, so it is admitted to
the work gate like a query (and checked before anything is written); a thumbnail is served
with an ETag of the photo's content, because ids can be reused after a removal.
"""

from lookalike.server.auth import ADMIN, READ
from lookalike.server.context import Context
from lookalike.server.errors import api_error, error_responses
from lookalike.server.guards import arrival
from lookalike.server.schema import BINARY, PHOTO
from lookalike.server.uploads import photo_name, read_upload


def add_reference_routes(app, context: Context) -> None:
    """POST /landmarks/{id}/photos, DELETE /references/{id}, GET /references/{id}/thumbnail."""
    from typing import Annotated

    from fastapi import File, Query, Request, Response, UploadFile

    from lookalike.server.live_gallery import Upload
    from lookalike.server.models import PhotosAdded, Removed, reference_model

    gallery, gate, settings = context.gallery, context.gate, context.settings
    read = {"dependencies": [context.needs(READ)], "openapi_extra": context.open_reading()}
    admin = [context.needs(ADMIN)]

    @app.post("/landmarks/{landmark_id}/photos", status_code=201, dependencies=admin,
              summary="Add reference photos to a landmark, all or none (admin)",
              responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429, 500, 503))
    async def add_photos(request: Request, landmark_id: str,
                         files: Annotated[list[UploadFile], File(
                             description="the photos", min_length=1,
                             json_schema_extra={"maxItems": settings.max_files,
                                                "items": PHOTO})]
                         ) -> PhotosAdded:
        if len(files) > settings.max_files:
            raise api_error(422, "too_many_files", f"{len(files)} files in one request; this "
                            f"server takes at most {settings.max_files}")
        uploads = [Upload(photo_name(file), await read_upload(file, settings.max_bytes))
                   for file in files]
        added, skipped = await gate.run(arrival(request),
                                        lambda: gallery.add_photos(landmark_id, uploads))
        return PhotosAdded(landmark=landmark_id, skipped=skipped,
                           added=[reference_model(gallery.index, rid) for rid in added])

    @app.delete("/references/{reference_id}", summary="Remove one reference photo (admin)",
                dependencies=admin, responses=error_responses(401, 403, 404, 422, 429))
    def delete_reference(reference_id: int) -> Removed:
        gallery.remove_reference(reference_id)
        return Removed(landmarks=[], references=[reference_id])

    @app.get("/references/{reference_id}/thumbnail", **read,
             summary="A reference photo, scaled down (JPEG)", response_class=Response,
             responses={200: {"content": {"image/jpeg": {"schema": BINARY}},
                              "description": "a JPEG"},
                        304: {"description": "not modified: the If-None-Match ETag is current"},
                        **error_responses(401, 404, 422, 429)})
    def get_thumbnail(request: Request, reference_id: int,
                  size: Annotated[int, Query(ge=32, le=1600, description="long side")] = 256):
        data, digest = gallery.thumbnail(reference_id, size)
        # Ids can be reused after a removal: the browser revalidates by the photo's content.
        headers = {"Cache-Control": "private, no-cache", "ETag": f'"{digest}-{size}"'}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="image/jpeg", headers=headers)
