// lookalike web page: upload or drop a photo, ask /identify or /verify, show the answer,
// its confidence and the verified points on the photo. English and Japanese.
"use strict";

const TEXT = {
  en: {
    title: "Which landmark is this?", mode: "Question", mode_identify: "Which landmark is it?",
    mode_verify: "Is it this landmark?", drop: "Drop a photo here, or click to choose one",
    legend: "Green points: features verified against a reference photo; the box encloses them.",
    candidates: "Candidates", api: "API documentation", working: "Looking…",
    unknown: "Not a known landmark", confidence: "Confidence", yes: "Yes: ", no: "No: ",
    inliers: "verified points", away: "km from the landmark", error: "Error",
    busy: "The server is busy; trying again in", seconds: "s",
  },
  ja: {
    title: "これはどのランドマーク？", mode: "質問", mode_identify: "どのランドマークですか？",
    mode_verify: "このランドマークですか？",
    drop: "ここに写真をドロップ、またはクリックして選択",
    legend: "緑の点：参照写真と幾何的に一致した特徴点。枠はその範囲です。",
    candidates: "候補", api: "API ドキュメント", working: "照合中…",
    unknown: "登録されたランドマークではありません", confidence: "確信度", yes: "はい：",
    no: "いいえ：", inliers: "一致点", away: "km（ランドマークからの距離）", error: "エラー",
    busy: "サーバーが混雑しています。再試行まで", seconds: "秒",
  },
};

let language = (navigator.language || "en").startsWith("ja") ? "ja" : "en";
let landmarks = {};
let last = null; // {answer, file}

const $ = (id) => document.getElementById(id);
const t = (key) => TEXT[language][key] || TEXT.en[key] || key;

function nameOf(id) {
  const names = (landmarks[id] && landmarks[id].names) || {};
  return names[language] || names.en || id;
}

function applyLanguage() {
  document.documentElement.lang = language;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll(".languages button").forEach((b) => {
    b.setAttribute("aria-pressed", String(b.dataset.lang === language));
  });
  const select = $("landmark");
  const chosen = select.value;
  select.innerHTML = "";
  Object.keys(landmarks).forEach((id) => {
    const option = document.createElement("option");
    option.value = id;
    option.textContent = nameOf(id);
    select.appendChild(option);
  });
  if (chosen) select.value = chosen;
  if (last) render(last.answer, last.file);
}

async function loadLandmarks() {
  const response = await fetch("/landmarks");
  const data = await response.json();
  landmarks = Object.fromEntries(data.landmarks.map((l) => [l.id, l]));
  applyLanguage();
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

const BUSY_RETRIES = 3; // a 503 (busy) is retried after its Retry-After, this many times

async function ask(file, attempt = 0) {
  const mode = $("mode").value;
  const form = new FormData();
  form.append("file", file);
  if (mode === "verify") form.append("landmark", $("landmark").value);
  setStatus(t("working"));
  $("result").hidden = true;
  try {
    const response = await fetch("/" + mode, { method: "POST", body: form });
    const data = await response.json();
    if (response.status === 503 && attempt < BUSY_RETRIES) {
      const wait = Math.min(30, Math.max(1, Number(response.headers.get("Retry-After")) || 2));
      setStatus(`${t("busy")} ${wait} ${t("seconds")}`);
      setTimeout(() => ask(file, attempt + 1), wait * 1000);
      return;
    }
    if (!response.ok) {
      setStatus(`${t("error")}: ${data.message || response.statusText}`, true);
      return;
    }
    setStatus("");
    last = { answer: data, file };
    render(data, file);
  } catch (error) {
    setStatus(`${t("error")}: ${error}`, true);
  }
}

function render(answer, file) {
  const heading = $("answer");
  const percent = (p) => `${Math.round(p * 100)}%`;
  if (answer.verified !== undefined) {
    heading.textContent = (answer.verified ? t("yes") : t("no")) + nameOf(answer.landmark);
    heading.className = answer.verified ? "" : "unknown";
  } else if (answer.landmark === "unknown") {
    heading.textContent = t("unknown");
    heading.className = "unknown";
  } else {
    heading.textContent = nameOf(answer.landmark);
    heading.className = "";
  }
  heading.dataset.landmark = answer.landmark;
  $("confidence").textContent = `${t("confidence")}: ${percent(answer.probability)}`;
  const best = answer.candidates[0];
  $("distance").textContent = best && best.distance_km !== undefined
    ? `${best.distance_km.toFixed(1)} ${t("away")}` : "";
  const list = $("candidates");
  list.innerHTML = "";
  answer.candidates.forEach((c) => {
    const item = document.createElement("li");
    item.textContent = `${nameOf(c.landmark)} — ${percent(c.probability)} (${c.inliers} ${t("inliers")})`;
    list.appendChild(item);
  });
  $("result").hidden = false;
  draw(file, answer.evidence);
}

function draw(file, evidence) {
  const image = new Image();
  image.onload = () => {
    const canvas = $("canvas");
    const scale = Math.min(1, 640 / image.naturalWidth);
    canvas.width = Math.round(image.naturalWidth * scale);
    canvas.height = Math.round(image.naturalHeight * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    if (evidence && evidence.size) {
      const k = canvas.width / evidence.size[0];
      ctx.fillStyle = "rgba(0, 220, 90, 0.9)";
      evidence.points.forEach(([x, y]) => { ctx.fillRect(x * k - 2, y * k - 2, 4, 4); });
      const [x0, y0, x1, y1] = evidence.box;
      ctx.strokeStyle = "rgba(255, 200, 0, 0.95)";
      ctx.lineWidth = 3;
      ctx.strokeRect(x0 * k, y0 * k, (x1 - x0) * k, (y1 - y0) * k);
    }
    canvas.dataset.points = evidence ? String(evidence.points.length) : "0";
    URL.revokeObjectURL(image.src);
  };
  image.src = URL.createObjectURL(file);
}

function setup() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = ""; // choosing the same file again must ask again
    if (file) ask(file);
  });
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, (e) => {
    e.preventDefault(); drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => {
    const file = e.dataTransfer.files[0];
    if (file) ask(file);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
  });
  $("mode").addEventListener("change", () => { $("landmark").hidden = $("mode").value !== "verify"; });
  document.querySelectorAll(".languages button").forEach((b) => b.addEventListener("click", () => {
    language = b.dataset.lang;
    applyLanguage();
  }));
  loadLandmarks().catch((error) => setStatus(`${t("error")}: ${error}`, true));
}

setup();
