"""XMP sidecars: lookalike's answer written beside each photo, where photo libraries read it.

`IMG_1.jpg` gets `IMG_1.jpg.xmp`, the name darktable and digiKam write and Immich and
PhotoPrism read (exiftool's `-o %d%f.%e.xmp`); the other common form, `IMG_1.xmp`
(Lightroom's, for RAW files), would give a RAW file and its JPEG twin one sidecar. The photo
itself is never opened for writing.

What is written (exiftool's tag names in brackets):
- the landmark's names as keywords, dc:subject [XMP-dc:Subject], and under `Landmarks|` in
  lr:hierarchicalSubject [XMP-lr:HierarchicalSubject], which digiKam, Lightroom and Immich
  show as a tag tree;
- its location as exif:GPSLatitude / exif:GPSLongitude [XMP-exif:GPSLatitude ...], only when
  neither the photo (EXIF GPS: where it was taken, more precise than the landmark's position)
  nor the sidecar has a position already;
- in lookalike's own namespace [XMP-lookalike:...]: the landmark id, the probability,
  lookalike's version, and what it added (so that a later run replaces its own keywords and
  position, never the user's).

An existing sidecar is parsed and updated: every other field stays as it was, and the file is
replaced atomically (written beside it, then renamed). A photo answered `unknown` gets no new
sidecar; from an existing one, what lookalike wrote earlier is taken out (a stale landmark
would be wrong), the rest kept. A sidecar that is not XML is left alone and reported.
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

LOOKALIKE_NS = "https://lookalike.invalid/xmp/1.0/"  # .invalid: a name, never fetched
NAMESPACES = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "exif": "http://ns.adobe.com/exif/1.0/",
    "lookalike": LOOKALIKE_NS,
    # Common in sidecars that other tools wrote, so that their prefixes survive a rewrite.
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "xmpMM": "http://ns.adobe.com/xap/1.0/mm/",
    "tiff": "http://ns.adobe.com/tiff/1.0/",
    "exifEX": "http://cipa.jp/exif/1.0/",
    "aux": "http://ns.adobe.com/exif/1.0/aux/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "crs": "http://ns.adobe.com/camera-raw-settings/1.0/",
    "digiKam": "http://www.digikam.org/ns/1.0/",
    "darktable": "http://darktable.sf.net/",
    "Iptc4xmpCore": "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "mwg-rs": "http://www.metadataworkinggroup.com/schemas/regions/",
    "stEvt": "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#",
    "stArea": "http://ns.adobe.com/xmp/sType/Area#",
    "stDim": "http://ns.adobe.com/xap/1.0/sType/Dimensions#",
}
PACKET_START = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
PACKET_END = '\n<?xpacket end="w"?>\n'
HIERARCHY_ROOT = "Landmarks"

for _prefix, _uri in NAMESPACES.items():
    ET.register_namespace(_prefix, _uri)


def _q(prefix: str, name: str) -> str:
    return f"{{{NAMESPACES[prefix]}}}{name}"


SUBJECT, HIERARCHY = _q("dc", "subject"), _q("lr", "hierarchicalSubject")
LATITUDE, LONGITUDE = _q("exif", "GPSLatitude"), _q("exif", "GPSLongitude")
GPS_VERSION = _q("exif", "GPSVersionID")
OWN = {name: _q("lookalike", name) for name in
       ("landmark", "group", "nearDuplicateOf", "probability", "version", "keywords",
        "hierarchicalSubjects", "gps")}


class SidecarError(Exception):
    """A sidecar that could not be read or written; `str()` names the file and the reason."""


@dataclass
class SidecarFields:
    """What lookalike writes about one photo."""

    keywords: list[str]
    hierarchical: list[str] = field(default_factory=list)
    gps: tuple[float, float] | None = None
    properties: dict[str, str] = field(default_factory=dict)  # lookalike:NAME -> value


def sidecar_path(photo: str | os.PathLike) -> Path:
    """`IMG_1.jpg` -> `IMG_1.jpg.xmp` (see the module's docstring for why this form)."""
    return Path(f"{os.fspath(photo)}.xmp")


def landmark_fields(landmark_id: str, names: dict[str, str], location: tuple[float, float] | None,
                    probability: float, version: str, photo_has_gps: bool) -> SidecarFields:
    """The fields for a photo identified as a landmark: its names in every language as
    keywords (its id when it has none), the first (English if any) name in the hierarchy."""
    keywords = list(dict.fromkeys(name.strip() for name in names.values() if name.strip()))
    primary = (names.get("en") or "").strip() or (keywords[0] if keywords else landmark_id)
    return SidecarFields(keywords or [landmark_id], [f"{HIERARCHY_ROOT}|{primary}"],
                         None if photo_has_gps else location,
                         {"landmark": landmark_id, "probability": f"{probability:.4f}",
                          "version": version})


def group_fields(group: str, near_duplicate_of: str | None, version: str) -> SidecarFields:
    """The fields for a photo of a `lookalike group` group: `lookalike group-001` as keyword
    (`lookalike|group-001` in the hierarchy), and `lookalike near-duplicate` for a photo that
    repeats `near_duplicate_of`, the one to keep of its shot."""
    keywords, hierarchical = [f"lookalike {group}"], [f"lookalike|{group}"]
    properties = {"group": group, "version": version}
    if near_duplicate_of is not None:
        keywords.append("lookalike near-duplicate")
        hierarchical.append("lookalike|near-duplicate")
        properties["nearDuplicateOf"] = os.path.basename(near_duplicate_of)
    return SidecarFields(keywords, hierarchical, None, properties)


def write_sidecar(photo: str | os.PathLike, fields: SidecarFields | None) -> Path | None:
    """Write or update PHOTO.xmp with `fields`; with None (no answer to record) only take
    lookalike's earlier fields out of an existing sidecar. Returns the sidecar's path when
    it was written, None when nothing was to be done; raises `SidecarError`."""
    path = sidecar_path(photo)
    if path.exists():
        root = _read(path)
    elif fields is None:
        return None
    else:
        root = ET.Element(_q("x", "xmpmeta"), {_q("x", "xmptk"): "lookalike"})
    packet = _Packet(root)
    changed = packet.take_out_own()
    if fields is not None:
        packet.put(fields)
    elif not changed:
        return None
    _write_atomically(path, root)
    return path


def _read(path: Path) -> ET.Element:
    try:
        for _, (prefix, uri) in ET.iterparse(path, events=("start-ns",)):
            if prefix and not re.fullmatch(r"ns\d+", prefix) and uri not in NAMESPACES.values():
                ET.register_namespace(prefix, uri)  # keep the writer's prefix on rewrite
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError, UnicodeError) as error:
        raise SidecarError(f"{path}: not a readable XMP sidecar ({error}); left as it is") \
            from None
    if root.tag == _q("rdf", "RDF"):  # a bare rdf:RDF packet: wrap it as tools write it
        meta = ET.Element(_q("x", "xmpmeta"))
        meta.append(root)
        return meta
    if root.tag != _q("x", "xmpmeta"):
        raise SidecarError(f"{path}: not an XMP sidecar (root element {root.tag}); "
                           f"left as it is")
    return root


def _write_atomically(path: Path, root: ET.Element) -> None:
    ET.indent(root, space=" ")
    text = PACKET_START + ET.tostring(root, encoding="unicode") + PACKET_END
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            if path.exists():
                os.chmod(temporary, path.stat().st_mode & 0o7777)
            else:
                os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise SidecarError(f"{path}: cannot write ({error.strerror or error})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Packet:
    """The properties of one XMP packet, wherever they sit: as attributes or as elements of
    any of its rdf:Description nodes (both forms are XMP)."""

    def __init__(self, root: ET.Element):
        self.rdf = root.find(_q("rdf", "RDF"))
        if self.rdf is None:
            self.rdf = ET.SubElement(root, _q("rdf", "RDF"))
        self.descriptions = self.rdf.findall(_q("rdf", "Description"))
        if not self.descriptions:
            self.descriptions = [ET.SubElement(self.rdf, _q("rdf", "Description"),
                                               {_q("rdf", "about"): ""})]

    def _holder(self, name: str) -> ET.Element | None:
        return next((d for d in self.descriptions
                     if name in d.attrib or d.find(name) is not None), None)

    def get(self, name: str) -> str | None:
        holder = self._holder(name)
        if holder is None:
            return None
        if name in holder.attrib:
            return holder.attrib[name]
        return (holder.find(name).text or "").strip()  # type: ignore[union-attr]

    def set(self, name: str, value: str) -> None:
        holder = self._holder(name)
        if holder is not None and holder.find(name) is not None:
            holder.find(name).text = value  # type: ignore[union-attr]
        else:
            (holder if holder is not None else self.descriptions[0]).set(name, value)

    def remove(self, name: str) -> bool:
        holder = self._holder(name)
        if holder is None:
            return False
        holder.attrib.pop(name, None)
        for element in holder.findall(name):
            holder.remove(element)
        return True

    def bag(self, name: str) -> list[str]:
        holder = self._holder(name)
        if holder is None:
            return []
        element = holder.find(name)
        if element is None:  # a one-item array may be written as an attribute
            return [holder.attrib[name]]
        return [(item.text or "").strip() for item in element.iter(_q("rdf", "li"))]

    def set_bag(self, name: str, values: list[str]) -> None:
        holder = self._holder(name)
        holder = holder if holder is not None else self.descriptions[0]
        self.remove(name)
        if values:
            container = ET.SubElement(ET.SubElement(holder, name), _q("rdf", "Bag"))
            for value in values:
                ET.SubElement(container, _q("rdf", "li")).text = value

    def take_out_own(self) -> bool:
        """Remove what lookalike wrote before (its keywords, its position, its properties);
        True if there was any."""
        keywords, hierarchical = self.bag(OWN["keywords"]), self.bag(OWN["hierarchicalSubjects"])
        if keywords:
            self.set_bag(SUBJECT, [k for k in self.bag(SUBJECT) if k not in keywords])
        if hierarchical:
            self.set_bag(HIERARCHY, [k for k in self.bag(HIERARCHY) if k not in hierarchical])
        if self.get(OWN["gps"]) == "True":
            for name in (LATITUDE, LONGITUDE, GPS_VERSION):
                self.remove(name)
        return any([self.remove(name) for name in OWN.values()])

    def put(self, fields: SidecarFields) -> None:
        subjects, hierarchy = self.bag(SUBJECT), self.bag(HIERARCHY)
        added = [k for k in dict.fromkeys(fields.keywords) if k not in subjects]
        added_hierarchy = [k for k in dict.fromkeys(fields.hierarchical) if k not in hierarchy]
        self.set_bag(SUBJECT, subjects + added)
        self.set_bag(HIERARCHY, hierarchy + added_hierarchy)
        for name, value in fields.properties.items():
            self.set(OWN[name], value)
        if added:
            self.set_bag(OWN["keywords"], added)
        if added_hierarchy:
            self.set_bag(OWN["hierarchicalSubjects"], added_hierarchy)
        if fields.gps is not None and self.get(LATITUDE) is None:
            lat, lon = fields.gps
            self.set(GPS_VERSION, "2.2.0.0")
            self.set(LATITUDE, xmp_coordinate(lat, "NS"))
            self.set(LONGITUDE, xmp_coordinate(lon, "EW"))
            self.set(OWN["gps"], "True")


def xmp_coordinate(degrees: float, hemispheres: str) -> str:
    """A GPS coordinate as XMP writes it: "DDD,MM.mmmmmmK" (degrees, decimal minutes and
    N/S or E/W), e.g. 48.7784 -> "48,46.704000N"."""
    hemisphere = hemispheres[0] if degrees >= 0 else hemispheres[1]
    value = abs(degrees)
    whole = int(value)
    minutes = (value - whole) * 60.0
    if round(minutes, 6) >= 60.0:
        whole, minutes = whole + 1, 0.0
    return f"{whole},{minutes:.6f}{hemisphere}"
