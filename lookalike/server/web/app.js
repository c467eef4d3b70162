// lookalike identify page: upload or drop many photos, ask /identify/batch (or /verify for
// each), list the answers in a table (CSV download), and show one photo's card: the answer,
// its probability, the matched region, and the candidates with their reference photos and a
// side-by-side view of the verified matches.
"use strict";

const BUSY_RETRIES = 3; // a 503 (busy) is retried after its Retry-After, this many times
const MULTIPART_MARGIN = 64 * 1024; // room for the form around the files in a request

let landmarks = {}; // id -> landmark as /landmarks lists it
let rows = []; // {file, url, answer, error}
let shown = -1; // the row whose card is shown

const percent = (p) => `${Math.round(p * 100)}%`;

function nameOf(id) {
  const landmark = landmarks[id];
  return landmark ? displayName(landmark.display_name, id) : id;
}

function answerName(answer) {
  return answer.display_name ? displayName(answer.display_name, answer.landmark) : nameOf(answer.landmark);
}

function isPositive(answer) {
  return answer.verified !== undefined && answer.verified !== null ? answer.verified
    : answer.landmark !== "unknown";
}

function answerText(answer) {
  if (answer.verified !== undefined && answer.verified !== null) {
    return (answer.verified ? t("yes") : t("no")) + answerName(answer);
  }
  return answer.landmark === "unknown" ? t("unknown") : answerName(answer);
}


// Requests of several files each, within the server's byte and file-count limits.
function chunksOf(files) {
  const chunks = [];
  let current = [];
  let bytes = 0;
  const room = limits.max_bytes;
  files.forEach((file) => {
    if (current.length && (current.length >= limits.max_files || bytes + file.size > room)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(file);
    bytes += file.size;
  });
  if (current.length) chunks.push(current);
  return chunks;
}

async function withRetries(request) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await request();
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "busy" || attempt >= BUSY_RETRIES) throw error;
      const wait = Math.min(30, Math.max(1, error.retryAfter || 2));
      setStatus("busy_wait", { seconds: wait });
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    }
  }
}

async function askBatch(files) {
  const form = new FormData();
  files.forEach((file) => form.append("files", file));
  const batch = await withRetries(() => api("/identify/batch", { method: "POST", body: form }));
  return batch.results.map((item) => ({ answer: item.answer, error: item.error && item.error.error }));
}

async function askVerify(file, landmark) {
  const form = new FormData();
  form.append("file", file);
  form.append("landmark", landmark);
  try {
    return { answer: await withRetries(() => api("/verify", { method: "POST", body: form })) };
  } catch (error) {
    if (error instanceof ApiError && error.status && !["unauthorized", "too_many_failed_keys", "busy"].includes(error.code)) {
      return { error: error.code };
    }
    throw error;
  }
}

function clearResults() {
  rows.forEach((row) => URL.revokeObjectURL(row.url));
  rows = [];
  shown = -1;
  $("table").tBodies[0].innerHTML = "";
  $("results").hidden = true;
  $("card").hidden = true;
}

async function askAll(files) {
  clearResults();
  const tooLarge = (file) => file.size + MULTIPART_MARGIN > limits.max_bytes;
  rows = files.map((file) => ({ file, url: URL.createObjectURL(file), answer: null,
    error: tooLarge(file) ? "too_large" : null }));
  const todo = rows.filter((row) => !row.error);
  const mode = $("mode").value;
  let done = 0;
  setStatus("working", { done, total: rows.length });
  try {
    for (const chunk of mode === "verify" ? todo.map((row) => [row]) : chunksOf(todo.map((r) => r.file))) {
      const results = mode === "verify" ? [await askVerify(chunk[0].file, $("landmark").value)]
        : await askBatch(chunk);
      results.forEach((result, i) => {
        const row = todo[done + i];
        row.answer = result.answer || null;
        row.error = result.error || null;
      });
      done += results.length;
      setStatus("working", { done, total: rows.length });
      renderTable();
    }
  } catch (error) {
    clearResults(); // the request as a whole failed: no stale answers stay on the page
    showError(error);
    return;
  }
  const failed = rows.filter((row) => row.error).length; // a failed photo is not an answer
  setStatus(failed ? "done_failed" : "done", { total: rows.length, answered: rows.length - failed, failed });
  renderTable();
  const first = rows.findIndex((row) => row.answer);
  if (first >= 0) showCard(first);
}

function renderTable() {
  const body = $("table").tBodies[0];
  body.innerHTML = "";
  rows.forEach((row, index) => {
    let answer = "…";
    let probability = "";
    let className = "";
    if (row.error) {
      answer = errorText(new ApiError(row.error, 400));
      className = "error";
    } else if (row.answer) {
      answer = answerText(row.answer);
      probability = isPositive(row.answer) ? percent(row.answer.probability) : "—";
      className = isPositive(row.answer) ? "" : "unknown";
    }
    const tr = element("tr", { className: index === shown ? "selected" : "", "data-row": String(index) },
      element("td", {}, element("img", { src: row.url, alt: "", className: "thumb",
        onerror: (e) => e.target.classList.add("no-preview") })),
      element("td", { text: row.file.name, className: "file" }),
      element("td", { text: answer, className }),
      element("td", { text: probability, className: "number" }));
    if (row.answer) {
      tr.tabIndex = 0; // rows open their card from the keyboard too
      tr.addEventListener("click", () => showCard(index));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") showCard(index); });
    }
    body.append(tr);
  });
  $("results").hidden = rows.length === 0;
}

function confidenceText(answer) {
  if (isPositive(answer)) return `${t("confidence")}: ${percent(answer.probability)}`;
  const best = answer.candidates[0];
  if (!best) return "";
  return t("closest", { name: nameOf(best.landmark), p: percent(best.probability) });
}

function showCard(index) {
  shown = index;
  const { answer, url } = rows[index];
  const heading = $("answer");
  heading.textContent = answerText(answer);
  heading.className = isPositive(answer) ? "" : "unknown";
  heading.dataset.landmark = answer.landmark;
  $("confidence").textContent = confidenceText(answer);
  const best = answer.candidates[0];
  $("distance").textContent = best && best.distance_km != null
    ? `${best.distance_km.toFixed(1)} ${t("away")}` : "";
  const list = $("candidates");
  list.innerHTML = "";
  answer.candidates.forEach((candidate) => list.append(candidateItem(candidate, answer, url)));
  $("card").hidden = false;
  $("legend").hidden = !isPositive(answer);
  renderTable();
  drawAnswer(url, answer);
}

function candidateItem(candidate, answer, url) {
  const thumb = element("img", { alt: "", className: "thumb" });
  if (candidate.thumbnail) setReferenceImage(thumb, candidate.thumbnail);
  const text = element("span", {
    text: `${nameOf(candidate.landmark)} — ${percent(candidate.probability)} (${candidate.inliers} ${t("inliers")})`,
  });
  const view = element("div", { className: "match-view", hidden: true });
  const button = element("button", { type: "button", text: t("show_matches"), className: "show-matches" });
  button.addEventListener("click", () => {
    view.hidden = !view.hidden;
    button.textContent = view.hidden ? t("show_matches") : t("hide_matches");
    if (!view.hidden && !view.dataset.drawn) drawMatches(view, url, answer, candidate);
  });
  return element("li", { "data-landmark": candidate.landmark },
    element("div", { className: "candidate" }, thumb, text, button), view);
}

// The photo with the matched region outlined; nothing drawn where no landmark is named.
async function drawAnswer(url, answer) {
  const canvas = $("canvas");
  const image = await loadImage(url);
  const scale = Math.min(1, 640 / image.naturalWidth);
  canvas.width = Math.round(image.naturalWidth * scale);
  canvas.height = Math.round(image.naturalHeight * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  const polygon = isPositive(answer) ? answer.bounding_poly : null;
  canvas.dataset.region = polygon ? "drawn" : "none";
  if (!polygon || !answer.size) return;
  const k = canvas.width / answer.size[0];
  const best = answer.candidates[0];
  if (best && best.match) {
    ctx.fillStyle = "rgba(0, 220, 90, 0.9)";
    best.match.query_points.forEach(([x, y]) => ctx.fillRect(x * k - 2, y * k - 2, 4, 4));
  }
  ctx.strokeStyle = "rgba(255, 200, 0, 0.95)";
  ctx.lineWidth = 3;
  ctx.beginPath();
  polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x * k, y * k) : ctx.moveTo(x * k, y * k)));
  ctx.closePath();
  ctx.stroke();
}

// Query and best reference side by side at one height, each verified match joined by a line.
async function drawMatches(view, url, answer, candidate) {
  view.dataset.drawn = "1";
  const match = candidate.match;
  if (!match || !match.reference_size) {
    view.append(element("p", { text: t("no_matches"), className: "legend" }));
    view.dataset.lines = "0";
    return;
  }
  const [query, reference] = await Promise.all([
    loadImage(url), referenceImage(`/references/${match.reference}/thumbnail?size=800`).then(loadImage)]);
  const height = 360;
  const qw = Math.round(query.naturalWidth * height / query.naturalHeight);
  const rw = Math.round(reference.naturalWidth * height / reference.naturalHeight);
  const canvas = element("canvas", { width: qw + rw + 8, height });
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, canvas.width, height);
  ctx.drawImage(query, 0, 0, qw, height);
  ctx.drawImage(reference, qw + 8, 0, rw, height);
  const kq = qw / answer.size[0];
  const kr = rw / match.reference_size[0];
  ctx.lineWidth = 1;
  match.query_points.forEach(([x, y], i) => {
    const [u, v] = match.reference_points[i];
    ctx.strokeStyle = `hsla(${(i * 47) % 360}, 90%, 55%, 0.85)`;
    ctx.beginPath();
    ctx.moveTo(x * kq, y * kq);
    ctx.lineTo(qw + 8 + u * kr, v * kr);
    ctx.stroke();
  });
  view.dataset.lines = String(match.query_points.length);
  view.append(canvas, element("p", { className: "legend", text: t("match_caption", {
    name: nameOf(candidate.landmark), count: match.query_points.length, total: candidate.inliers }) }));
}

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function downloadCsv() {
  const header = ["photo", "landmark", "name", "probability", "verified", "closest", "closest_probability", "error"];
  const lines = [header.join(",")];
  rows.forEach(({ file, answer, error }) => {
    const best = answer && answer.candidates[0];
    lines.push([file.name, answer ? answer.landmark : "", answer && isPositive(answer) ? answerName(answer) : "",
      answer ? answer.probability : "", answer && answer.verified != null ? answer.verified : "",
      best ? best.landmark : "", best ? best.probability : "", error || ""].map(csvCell).join(","));
  });
  const link = element("a", {
    href: URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" })),
    download: "lookalike-answers.csv",
  });
  document.body.append(link);
  link.click();
  link.remove();
}

function fillLandmarkChoice() {
  const select = $("landmark");
  const chosen = select.value;
  select.innerHTML = "";
  Object.keys(landmarks).forEach((id) => select.append(element("option", { value: id, text: nameOf(id) })));
  if (chosen) select.value = chosen;
}

async function loadLandmarks() {
  const data = await api("/landmarks");
  landmarks = Object.fromEntries(data.landmarks.map((l) => [l.id, l]));
  fillLandmarkChoice();
}

function setup() {
  const drop = $("drop");
  const take = (files) => { if (files.length) askAll(Array.from(files)); };
  $("file").addEventListener("change", (e) => {
    const files = Array.from(e.target.files);
    e.target.value = ""; // choosing the same files again must ask again
    take(files);
  });
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, (e) => {
    e.preventDefault(); drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => take(e.dataTransfer.files));
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
  });
  $("mode").addEventListener("change", () => { $("landmark").hidden = $("mode").value !== "verify"; });
  $("download").addEventListener("click", downloadCsv);
  setupLanguages(() => {
    fillLandmarkChoice();
    renderTable();
    if (shown >= 0) showCard(shown);
    renderStatus();
  });
  loadLimits().then(loadLandmarks).catch(showError);
}

setup();
