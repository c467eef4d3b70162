"""The landmarks of the gallery: listed with a read key, created, edited and removed with an
admin key.

Why apart from the reference photos: these endpoints take JSON and touch only the index's
landmark table (an edit is one transaction in `LiveIndex`); no photo is decoded here, so none
of them takes a worker from the gate.
"""

from lookalike.gallery.folders import NEGATIVES
from lookalike.server.auth import ADMIN, READ
from lookalike.server.context import Context
from lookalike.server.errors import error_responses


def add_landmark_routes(app, context: Context) -> None:
    """GET, POST /landmarks; GET, PATCH, DELETE /landmarks/{id}."""
    from lookalike.gallery.folders import Landmark
    from lookalike.server.models import (
        LandmarkChanges,
        LandmarkInfo,
        LandmarkList,
        NewLandmark,
        Removed,
        landmark_model,
    )

    gallery = context.gallery
    read = {"dependencies": [context.needs(READ)], "openapi_extra": context.open_reading()}
    admin = [context.needs(ADMIN)]

    @app.get("/landmarks", summary="The landmarks this index knows, with their photos", **read,
             responses=error_responses(401, 429))
    def list_landmarks() -> LandmarkList:
        with gallery.reading():
            return LandmarkList(landmarks=[landmark_model(gallery.index, lid)
                                           for lid in gallery.landmark_ids()],
                                negatives=len(gallery.index.references_of(NEGATIVES)))

    @app.get("/landmarks/{landmark_id}", summary="One landmark", **read,
             responses=error_responses(401, 404, 429))
    def get_landmark(landmark_id: str) -> LandmarkInfo:
        with gallery.reading():
            gallery.require_landmark(landmark_id)
            return landmark_model(gallery.index, landmark_id)

    @app.post("/landmarks", summary="Add a landmark (admin)", status_code=201,
              dependencies=admin, responses=error_responses(401, 403, 409, 413, 422, 429))
    def create_landmark(new: NewLandmark) -> LandmarkInfo:
        location = (new.location.lat, new.location.lon) if new.location else None
        gallery.create_landmark(Landmark(new.id, dict(new.names), location))
        return landmark_model(gallery.index, new.id)

    @app.patch("/landmarks/{landmark_id}", summary="Edit a landmark's names or location (admin)",
               dependencies=admin, responses=error_responses(401, 403, 404, 413, 422, 429))
    def update_landmark(landmark_id: str, changes: LandmarkChanges) -> LandmarkInfo:
        location = (changes.location.lat, changes.location.lon) if changes.location else None
        gallery.edit_landmark(landmark_id, dict(changes.names) if changes.names is not None
                              else None, location, "location" in changes.model_fields_set)
        return landmark_model(gallery.index, landmark_id)

    @app.delete("/landmarks/{landmark_id}", summary="Remove a landmark and its photos (admin)",
                dependencies=admin, responses=error_responses(401, 403, 404, 429))
    def delete_landmark(landmark_id: str) -> Removed:
        return Removed(landmarks=[landmark_id],
                       references=gallery.remove_landmark(landmark_id))
