"""The gallery a running server answers from, and its edits over HTTP.

Why a lock and a fresh identifier per edit: queries run on worker threads while an admin adds
or removes photos. Every edit is one SQLite transaction of the index (`GalleryIndex.add` /
`remove`), taken while no query is in flight (a readers-writer lock), and the identifier is
rebuilt afterwards, so a query sees the gallery wholly before or wholly after an edit. Photos
added over HTTP are checked and their features extracted *before* anything is written to the
index, so a bad file leaves the index as it was. Their files are kept under the server's data
directory (`references/`), the only folder it writes to besides the index itself.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from lookalike.gallery.answers import UNKNOWN
from lookalike.gallery.folders import NEGATIVES, GalleryEntry, Landmark
from lookalike.gallery.identify import Identifier, Settings
from lookalike.gallery.index import GalleryIndex, photo_digest
from lookalike.imaging.loading import (
    IMAGE_EXTENSIONS,
    ImageLoadError,
    LoadOptions,
    decode_image,
    read_bytes,
)

THUMBNAILS_KEPT = 512  # encoded thumbnails kept in memory (~15 kB each)
RESERVED_IDS = frozenset({UNKNOWN, NEGATIVES})


class EditError(Exception):
    """An edit that cannot be made; `code` and `status` say how the API answers it."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ReadWriteLock:
    """Many readers (queries) or one writer (an edit); a waiting writer goes first."""

    def __init__(self):
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            self._condition.wait_for(lambda: not self._writing and self._readers == 0)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


@dataclasses.dataclass
class Upload:
    name: str
    data: bytes


class LiveIndex:
    """One open index, its identifier, and the edits an admin makes while it serves."""

    def __init__(self, index_path: str | os.PathLike, settings: Settings,
                 calibration: str | None, data_dir: Path | None, max_pixels: int):
        self.index = GalleryIndex(index_path)
        self.settings = settings
        self.identifier = Identifier(self.index, settings, calibration)
        self.photo_dir = data_dir / "references" if data_dir is not None else None
        self.max_pixels = max_pixels
        self.lock = ReadWriteLock()
        self._thumbnails: OrderedDict[tuple[int, str, int], bytes] = OrderedDict()
        self._thumbnail_lock = threading.Lock()

    @contextmanager
    def reading(self) -> Iterator[Identifier]:
        """The identifier, held so that no edit changes the gallery under a query."""
        with self.lock.reading():
            yield self.identifier

    @contextmanager
    def _editing(self) -> Iterator[GalleryIndex]:
        with self.lock.writing():
            yield self.index
            # A fresh identifier: its gallery and landmark table are read from the new index.
            self.identifier = Identifier(self.index, self.settings, self.identifier.calibration)

    # -- reading ---------------------------------------------------------------------------
    def landmark_ids(self) -> list[str]:
        return [lid for lid in self.index.landmarks if lid != NEGATIVES]

    def require_landmark(self, landmark_id: str) -> Landmark:
        landmark = self.index.landmarks.get(landmark_id)
        if landmark is None or landmark_id == NEGATIVES:
            raise EditError(404, "unknown_landmark", f"no landmark {landmark_id!r} in this index")
        return landmark

    def thumbnail(self, reference_id: int, size: int) -> tuple[bytes, str]:
        """A JPEG of a reference photo, at most `size` pixels on its long side, and the
        photo's content hash (its identity, for caching)."""
        reference = self.index.references.get(reference_id)
        if reference is None:
            raise EditError(404, "unknown_reference", f"no reference photo {reference_id} "
                                                      "in this index")
        key = (reference_id, reference.content_hash, size)
        with self._thumbnail_lock:
            if key in self._thumbnails:
                self._thumbnails.move_to_end(key)
                return self._thumbnails[key], reference.content_hash
        try:
            image = decode_image(read_bytes(reference.path), reference.path,
                                 LoadOptions(min_long_side=size))
        except ImageLoadError as error:
            raise EditError(404, "reference_unreadable", f"reference photo {reference_id} "
                            f"cannot be read on the server ({error.reason})") from None
        image = image.convert("RGB")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        with self._thumbnail_lock:
            self._thumbnails[key] = buffer.getvalue()
            while len(self._thumbnails) > THUMBNAILS_KEPT:
                self._thumbnails.popitem(last=False)
        return buffer.getvalue(), reference.content_hash

    # -- landmarks -------------------------------------------------------------------------
    def create_landmark(self, landmark: Landmark) -> None:
        if landmark.id in RESERVED_IDS:
            raise EditError(422, "invalid_request", f"{landmark.id!r} is a reserved id")
        with self._editing() as index:
            if landmark.id in index.landmarks:
                raise EditError(409, "landmark_exists", f"landmark {landmark.id!r} already "
                                "exists; edit it with PATCH /landmarks/{id}")
            index.add([GalleryEntry(landmark, [])], nothing_to_extract)

    def edit_landmark(self, landmark_id: str, names: dict[str, str] | None,
                      location: tuple[float, float] | None, change_location: bool) -> None:
        with self._editing() as index:
            landmark = dataclasses.replace(self.require_landmark(landmark_id))
            if names is not None:
                landmark.names = {k: v for k, v in names.items() if v.strip()}
            if change_location:
                landmark.location = location
            index.add([GalleryEntry(landmark, [])], nothing_to_extract)

    def remove_landmark(self, landmark_id: str) -> list[int]:
        with self._editing() as index:
            self.require_landmark(landmark_id)
            removed = index.references_of(landmark_id)
            paths = [index.references[rid].path for rid in removed]
            index.remove(landmarks=[landmark_id])
        self._forget_files(paths)
        return removed

    # -- photos ----------------------------------------------------------------------------
    def remove_reference(self, reference_id: int) -> str:
        """Remove one reference photo; returns its landmark."""
        with self._editing() as index:
            reference = index.references.get(reference_id)
            if reference is None or reference.landmark == NEGATIVES:
                raise EditError(404, "unknown_reference",
                                f"no reference photo {reference_id} in this index")
            index.remove(reference_ids=[reference_id])
        self._forget_files([reference.path])
        return reference.landmark

    def add_photos(self, landmark_id: str, uploads: Sequence[Upload]) -> tuple[list[int], int]:
        """Add photos to a landmark, all or none: (new reference ids, photos already there)."""
        if self.photo_dir is None:
            raise EditError(409, "no_data_dir", "this server has no data directory to keep "
                            "photos in; start it with --data-dir")
        landmark = self.require_landmark(landmark_id)
        for upload in uploads:
            self._check_pixels(upload)
        paths, written = self._store(landmark_id, uploads)
        try:
            found = self._extract(paths, {path: u.name for path, u in zip(paths, uploads)})
        except EditError:
            self._delete(written)
            raise
        try:
            with self._editing() as index:
                before = set(index.references)
                report = index.add([GalleryEntry(landmark, paths)], extract=lambda *_: found)
                added = sorted(set(index.references) - before)
        except Exception:
            self._delete(written)  # the transaction rolled back: nothing refers to them
            raise
        return added, report.skipped

    def _check_pixels(self, upload: Upload) -> None:
        try:  # a small draft decode: the content is sniffed and the pixel limit checked
            decode_image(upload.data, upload.name,
                         LoadOptions(min_long_side=64, max_pixels=self.max_pixels))
        except ImageLoadError as error:
            code = "too_many_pixels" if error.reason.startswith("too large") else "bad_image"
            raise EditError(413 if code == "too_many_pixels" else 400, code,
                            f"{upload.name}: {error.reason}") from None

    def _store(self, landmark_id: str, uploads: Sequence[Upload]) -> tuple[list[str], list[Path]]:
        """Each upload's file under references/LANDMARK/, named by its content and its name."""
        folder = self.photo_dir / safe_stem(landmark_id)
        folder.mkdir(parents=True, exist_ok=True)
        paths, written = [], []
        for upload in uploads:
            target = folder / f"{photo_digest(upload.data)[:16]}-{safe_file_name(upload.name)}"
            if not target.exists():
                temporary = target.with_name(target.name + ".part")
                temporary.write_bytes(upload.data)
                os.replace(temporary, target)
                written.append(target)
            paths.append(str(target))
        return paths, written

    def _extract(self, paths: list[str], names: dict[str, str]):
        from lookalike.engines.local import local_extractor

        extract = local_extractor(None, 1, True)
        globals_, locals_, errors = extract(paths, self.index.global_method,
                                            self.index.local_method)
        if errors:
            path, reason = next(iter(errors.items()))
            raise EditError(400, "bad_image", f"{names.get(path, Path(path).name)}: {reason}")
        return globals_, locals_, {}

    def _forget_files(self, paths: Sequence[str]) -> None:
        """Delete this server's own copies of removed photos that no reference still uses."""
        if self.photo_dir is None:
            return
        in_use = {r.path for r in self.index.references.values()}
        root = self.photo_dir.resolve()
        self._delete([Path(p) for p in paths
                      if p not in in_use and Path(p).resolve().is_relative_to(root)])

    @staticmethod
    def _delete(paths: Sequence[Path]) -> None:
        for path in paths:
            Path(path).unlink(missing_ok=True)


def nothing_to_extract(paths, global_method, local_method):
    """The extractor of an edit that adds no photo (a landmark's names or location)."""
    return {}, {}, {}


def safe_stem(text: str) -> str:
    """Letters, digits, '_' and '-' only, at most 80 characters: safe in any file system."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:80] or "photo"


def safe_file_name(name: str) -> str:
    """A client's file name made safe to write, with an image suffix (the content is sniffed
    anyway, the suffix only helps a person browsing the folder)."""
    path = Path(name)
    suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_EXTENSIONS else ".jpg"
    return safe_stem(path.stem) + suffix
