// lookalike gallery page: the landmarks with a thumbnail, photo count, names and location on
// a small offline map (an SVG, no tile server); with an admin key (kept in sessionStorage,
// sent as a header) names, location and photos can be edited and landmarks added or removed.
"use strict";

let access = { scope: "none", read_open: true, admin_enabled: false };
let gallery = { landmarks: [], negatives: 0 };

const isAdmin = () => access.scope === "admin";

function renderKeyStatus() {
  let key = "key_none";
  if (access.scope === "admin") key = "key_admin";
  else if (access.scope === "read") key = "key_read";
  else if (!access.admin_enabled) key = "key_editing_off";
  $("key-status").textContent = t(key);
  $("key-status").dataset.scope = access.scope;
  document.querySelectorAll(".admin-only").forEach((el) => { el.hidden = !isAdmin(); });
}

// -- the map: an equirectangular projection of the landmarks' bounding box -----------------------
// The drawing's units are the screen's pixels (the viewBox follows the element's width), so
// 12 px labels stay 12 px on a phone instead of shrinking with the picture.
const MAP = { width: 640, height: 300, margin: 28 };

function fitMapToScreen(map) {
  const width = Math.round(map.getBoundingClientRect().width) || 640;
  MAP.width = Math.max(240, width);
  MAP.height = Math.round(Math.max(220, Math.min(300, MAP.width * 0.47)));
  map.setAttribute("viewBox", `0 0 ${MAP.width} ${MAP.height}`);
}

function mapProjection(points) {
  const lats = points.map((p) => p.lat);
  const lons = points.map((p) => p.lon);
  const middle = (Math.min(...lats) + Math.max(...lats)) / 2;
  const stretch = Math.max(0.2, Math.cos((middle * Math.PI) / 180)); // a degree of longitude is shorter
  let spanLat = Math.max(Math.max(...lats) - Math.min(...lats), 0.02);
  let spanLon = Math.max((Math.max(...lons) - Math.min(...lons)) * stretch, 0.02);
  const inner = { width: MAP.width - 2 * MAP.margin, height: MAP.height - 2 * MAP.margin };
  const scale = Math.min(inner.width / spanLon, inner.height / spanLat) * 0.9;
  spanLat = inner.height / scale;
  spanLon = inner.width / scale;
  const centre = { lat: (Math.min(...lats) + Math.max(...lats)) / 2, lon: (Math.min(...lons) + Math.max(...lons)) / 2 };
  return {
    kmPerPixel: 111.32 / scale, // a degree of latitude is 111.32 km
    x: (lon) => MAP.width / 2 + (lon - centre.lon) * stretch * scale,
    y: (lat) => MAP.height / 2 - (lat - centre.lat) * scale,
    bounds: { south: centre.lat - spanLat / 2, north: centre.lat + spanLat / 2,
      west: centre.lon - spanLon / stretch / 2, east: centre.lon + spanLon / stretch / 2 },
  };
}

function gridStep(span) {
  const steps = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 45];
  return steps.find((step) => span / step <= 6) || 90;
}

function svg(tag, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  Object.entries(attributes).forEach(([name, value]) => node.setAttribute(name, value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderMap() {
  const map = $("map");
  map.innerHTML = "";
  fitMapToScreen(map);
  map.append(svg("rect", { x: 0, y: 0, width: MAP.width, height: MAP.height, class: "sea" }));
  const located = gallery.landmarks.filter((l) => l.location);
  if (!located.length) {
    map.append(svg("text", { x: MAP.width / 2, y: MAP.height / 2, class: "note" }, t("no_location")));
    return;
  }
  const projection = mapProjection(located.map((l) => l.location));
  const { south, north, west, east } = projection.bounds;
  const step = gridStep(Math.max(north - south, east - west));
  for (let lat = Math.ceil(south / step) * step; lat <= north; lat += step) {
    const y = projection.y(lat);
    map.append(svg("line", { x1: 0, x2: MAP.width, y1: y, y2: y, class: "grid" }));
    map.append(svg("text", { x: 4, y: y - 3, class: "grid-label" }, `${+lat.toFixed(2)}°`));
  }
  for (let lon = Math.ceil(west / step) * step; lon <= east; lon += step) {
    const x = projection.x(lon);
    map.append(svg("line", { x1: x, x2: x, y1: 0, y2: MAP.height, class: "grid" }));
    map.append(svg("text", { x: x + 3, y: MAP.height - 4, class: "grid-label" }, `${+lon.toFixed(2)}°`));
  }
  drawScaleBar(map, projection.kmPerPixel);
  const places = located.map((landmark) => {
    const x = projection.x(landmark.location.lon);
    const y = projection.y(landmark.location.lat);
    const group = svg("g", { class: "place", "data-landmark": landmark.id });
    group.append(svg("circle", { cx: x, cy: y, r: 6 }));
    map.append(group);
    return { landmark, group, x, y };
  });
  const taken = places.map(({ x, y }) => ({ left: x - 7, right: x + 7, top: y - 7, bottom: y + 7 }));
  places.forEach((place) => placeLabel(place, taken));
}

// Label positions tried in turn: beside the dot, then above or below it, further out each
// time; the first that overlaps no dot or label drawn so far (and stays on the map) wins, with
// a thin line to its dot when it had to move away. Landmarks a few km apart keep readable names.
const LABEL_SPOTS = [[10, 0], [-10, 0], [10, -16], [10, 16], [-10, -16], [-10, 16],
  [10, -32], [10, 32], [-10, -32], [-10, 32], [10, -48], [10, 48], [-10, -48], [-10, 48]];

function placeLabel({ landmark, group, x, y }, taken) {
  const text = svg("text", { x, y, "text-anchor": "start" }, displayName(landmark.display_name, landmark.id));
  group.append(text);
  const { width, height } = text.getBBox();
  const boxAt = ([dx, dy]) => {
    const left = dx > 0 ? x + dx : x + dx - width;
    return { left, right: left + width, top: y + dy - height / 2, bottom: y + dy + height / 2, dx, dy };
  };
  const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const inside = (box) => box.left >= 0 && box.right <= MAP.width && box.top >= 0 && box.bottom <= MAP.height;
  const boxes = LABEL_SPOTS.map(boxAt);
  const chosen = boxes.find((box) => inside(box) && !taken.some((other) => overlaps(box, other)))
    || boxes.find(inside) || boxes[0];
  text.setAttribute("x", chosen.dx > 0 ? chosen.left : chosen.right);
  text.setAttribute("text-anchor", chosen.dx > 0 ? "start" : "end");
  text.setAttribute("y", y + chosen.dy + height * 0.3);
  if (chosen.dy !== 0) {
    group.insertBefore(svg("line", { x1: x, y1: y, x2: chosen.dx > 0 ? chosen.left - 2 : chosen.right + 2,
      y2: y + chosen.dy, class: "leader" }), group.firstChild);
  }
  taken.push(chosen);
}

function drawScaleBar(map, kmPerPixel) {
  const wanted = kmPerPixel * 100;
  const km = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000].find((k) => k >= wanted / 2) || 5000;
  const length = km / kmPerPixel;
  const x = MAP.width - MAP.margin - length;
  const y = MAP.height - 14;
  map.append(svg("line", { x1: x, x2: x + length, y1: y, y2: y, class: "scale" }));
  map.append(svg("text", { x: x + length / 2, y: y - 5, class: "scale-label" }, `${km} km`));
}

// -- the landmark cards ----------------------------------------------------------------------------
function locationText(location) {
  return location ? `${location.lat.toFixed(4)}, ${location.lon.toFixed(4)}` : t("no_location");
}

function field(name, labelKey, value, type = "text") {
  const attributes = { name, value: value === null || value === undefined ? "" : String(value), type };
  if (type === "number") attributes.step = "any";
  return element("label", {}, element("span", { text: t(labelKey) }), " ", element("input", attributes));
}

function photoStrip(landmark) {
  const strip = element("div", { className: "photos" });
  landmark.photos.forEach((photo) => {
    const img = element("img", { alt: photo.name, title: photo.name, className: "thumb" });
    setReferenceImage(img, photo.thumbnail);
    const figure = element("figure", { "data-reference": String(photo.id) }, img);
    if (isAdmin()) {
      const remove = element("button", { type: "button", text: "×", title: t("remove_photo"),
        className: "remove-photo", "aria-label": t("remove_photo") });
      remove.addEventListener("click", () => edit(() => api(`/references/${photo.id}`, { method: "DELETE" }), "removed"));
      figure.append(remove);
    }
    strip.append(figure);
  });
  return strip;
}

function editForm(landmark) {
  const form = element("form", { className: "landmark-form" },
    field("en", "name_en", landmark.names.en), field("ja", "name_ja", landmark.names.ja),
    field("lat", "lat", landmark.location && landmark.location.lat, "number"),
    field("lon", "lon", landmark.location && landmark.location.lon, "number"),
    element("button", { type: "submit", text: t("save") }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    const names = {};
    if (values.en.trim()) names.en = values.en.trim();
    if (values.ja.trim()) names.ja = values.ja.trim();
    const location = values.lat !== "" && values.lon !== "" ? { lat: Number(values.lat), lon: Number(values.lon) } : null;
    edit(() => api(`/landmarks/${encodeURIComponent(landmark.id)}`, { method: "PATCH", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ names, location }) }), "saved");
  });
  return form;
}

function adminTools(landmark) {
  const input = element("input", { type: "file", accept: "image/*", multiple: true, className: "add-photos" });
  input.addEventListener("change", () => {
    const form = new FormData();
    Array.from(input.files).forEach((file) => form.append("files", file));
    edit(() => api(`/landmarks/${encodeURIComponent(landmark.id)}/photos`, { method: "POST", body: form }), "added",
      (result) => ({ count: result.added.length }));
  });
  const remove = element("button", { type: "button", text: t("remove_landmark"), className: "danger remove-landmark" });
  remove.addEventListener("click", () => {
    if (!window.confirm(t("confirm_remove", { name: displayName(landmark.display_name, landmark.id) }))) return;
    edit(() => api(`/landmarks/${encodeURIComponent(landmark.id)}`, { method: "DELETE" }), "removed");
  });
  return element("div", { className: "tools" }, editForm(landmark),
    element("div", { className: "buttons" },
      element("label", { className: "button-like" }, element("span", { text: t("add_photos") }), input), remove));
}

function landmarkCard(landmark) {
  const cover = element("img", { alt: "", className: "cover" });
  if (landmark.thumbnail) setReferenceImage(cover, `${landmark.thumbnail}?size=320`);
  const heading = element("div", { className: "card-head" }, cover,
    element("div", {},
      element("h3", { text: displayName(landmark.display_name, landmark.id) }),
      element("p", { className: "legend", text: `${landmark.id} · ${t("photos", { count: landmark.references })} · ${locationText(landmark.location)}` })));
  const card = element("article", { className: "landmark", "data-landmark": landmark.id }, heading, photoStrip(landmark));
  if (isAdmin()) card.append(adminTools(landmark));
  return card;
}

function render() {
  renderKeyStatus();
  renderMap();
  const list = $("landmarks");
  list.innerHTML = "";
  if (!gallery.landmarks.length) list.append(element("p", { text: t("empty_gallery") }));
  gallery.landmarks.forEach((landmark) => list.append(landmarkCard(landmark)));
  $("negatives").textContent = gallery.negatives ? t("negatives", { count: gallery.negatives }) : "";
}

async function reload() {
  imageCache.clear(); // reference ids may be reused after an edit (the server revalidates by content)
  access = await api("/auth");
  try {
    gallery = await api("/landmarks");
  } catch (error) {
    gallery = { landmarks: [], negatives: 0 }; // nothing stale stays on the page
    render();
    throw error;
  }
  render();
}

// One change to the gallery, then the page shows the gallery as the server now has it.
async function edit(request, doneKey, values = () => ({})) {
  setStatus("working_edit");
  try {
    const result = await request();
    await reload();
    setStatus(doneKey, values(result));
  } catch (error) {
    showError(error);
  }
}

function setup() {
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("lookalike-api-key", $("api-key").value.trim());
    $("api-key").value = "";
    reload().then(() => setStatus("", {})).catch(showError);
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem("lookalike-api-key");
    reload().then(() => setStatus("", {})).catch(showError);
  });
  $("new-landmark").addEventListener("submit", (e) => {
    e.preventDefault();
    const values = Object.fromEntries(new FormData(e.target));
    const names = {};
    if (values.en.trim()) names.en = values.en.trim();
    if (values.ja.trim()) names.ja = values.ja.trim();
    const body = { id: values.id.trim(), names };
    if (values.lat !== "" && values.lon !== "") body.location = { lat: Number(values.lat), lon: Number(values.lon) };
    edit(() => api("/landmarks", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) }), "saved").then(() => { if (!status.error) e.target.reset(); });
  });
  setupLanguages(() => { render(); renderStatus(); });
  let resized = null; // a phone turned sideways: the map is drawn again at its new width
  window.addEventListener("resize", () => { clearTimeout(resized); resized = setTimeout(renderMap, 150); });
  loadLimits().then(reload).catch((error) => {
    if (error.code === "unauthorized") sessionStorage.removeItem("lookalike-api-key");
    showError(error);
  });
}

setup();
