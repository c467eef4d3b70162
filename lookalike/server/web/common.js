// lookalike web app, shared by both pages: the English and Japanese texts, the API key kept
// in sessionStorage (sent as a header, never in a URL), API calls, and errors told fully in
// the chosen language from the server's error codes.
"use strict";

const TEXT = {
  en: {
    title: "Which landmark is this?", gallery_title: "Gallery", nav_identify: "Identify",
    nav_gallery: "Gallery", api: "API documentation", mode: "Question",
    mode_identify: "Which landmark is it?", mode_verify: "Is it this landmark?",
    drop: "Drop photos here, or click to choose (several at once)",
    legend: "Yellow outline: the region that matched a reference photo (verified points in green).",
    candidates: "Candidates", working: "Looking at {done} of {total} photos…", done: "{total} photos answered.",
    done_failed: "{answered} of {total} photos answered; {failed} failed (see the table).",
    unknown: "Not a known landmark", confidence: "Probability", yes: "Yes: ", no: "No: ",
    closest: "No landmark matches with confidence. Closest: {name} ({p}).",
    inliers: "verified points", away: "km from the landmark", results: "Results",
    col_photo: "Photo", col_file: "File", col_answer: "Answer", col_probability: "Probability",
    download_csv: "Download CSV", show_matches: "Show matches", hide_matches: "Hide matches",
    match_caption: "Left: your photo. Right: the best reference photo of {name}. Lines join {count} of the {total} verified matches.",
    row_hint: "Click a row to see that photo's answer, its candidates and their matches.",
    no_matches: "No verified matches with this landmark's reference photos.",
    busy_wait: "The server is busy; trying again in {seconds} s…",
    key_label: "API key", key_save: "Use key", key_forget: "Forget key",
    key_none: "No key entered: you can look, not change.",
    key_admin: "Admin key accepted: you can change the gallery.",
    key_read: "This key can read only: changing the gallery needs an admin key.",
    key_editing_off: "Gallery editing is turned off on this server (it has no admin key).",
    map: "Map", photos: "{count} photos", no_location: "no location",
    name_en: "Name (English)", name_ja: "Name (Japanese)", lat: "Latitude", lon: "Longitude",
    save: "Save", remove_landmark: "Remove landmark", remove_photo: "Remove this photo",
    add_photos: "Add photos", new_landmark: "New landmark", landmark_id: "Id (a-z, 0-9, _)",
    create: "Create", working_edit: "Saving…", saved: "Saved.", added: "{count} photos added.", removed: "Removed.",
    confirm_remove: "Remove {name} and all its photos from the gallery?",
    negatives: "{count} photos of no landmark (negatives) help answer \"unknown\".",
    empty_gallery: "The gallery has no landmarks yet.",
  },
  ja: {
    title: "これはどのランドマーク？", gallery_title: "ギャラリー", nav_identify: "判定",
    nav_gallery: "ギャラリー", api: "API ドキュメント", mode: "質問",
    mode_identify: "どのランドマークですか？", mode_verify: "このランドマークですか？",
    drop: "ここに写真をドロップ、またはクリックして選択（複数可）",
    legend: "黄色の線：参照写真と一致した領域（緑の点は幾何的に検証された特徴点）。",
    candidates: "候補", working: "{total} 枚中 {done} 枚を照合中…", done: "{total} 枚の写真を判定しました。",
    done_failed: "{total} 枚中 {answered} 枚を判定しました。{failed} 枚は失敗しました（表を参照）。",
    unknown: "登録されたランドマークではありません", confidence: "確率", yes: "はい：", no: "いいえ：",
    closest: "確信をもって一致するランドマークはありません。最も近いもの：{name}（{p}）。",
    inliers: "一致点", away: "km（ランドマークからの距離）", results: "結果",
    col_photo: "写真", col_file: "ファイル", col_answer: "判定", col_probability: "確率",
    download_csv: "CSV をダウンロード", show_matches: "一致を表示", hide_matches: "一致を隠す",
    match_caption: "左：あなたの写真。右：{name} の最も一致した参照写真。線は検証された一致点 {total} 組のうち {count} 組を結びます。",
    row_hint: "行をクリックすると、その写真の判定・候補・一致点を表示します。",
    no_matches: "このランドマークの参照写真とは検証された一致がありません。",
    busy_wait: "サーバーが混雑しています。{seconds} 秒後に再試行します…",
    key_label: "API キー", key_save: "キーを使う", key_forget: "キーを消す",
    key_none: "キーが入力されていません。閲覧のみできます。",
    key_admin: "管理者キーが確認されました。ギャラリーを編集できます。",
    key_read: "このキーは閲覧用です。ギャラリーの編集には管理者キーが必要です。",
    key_editing_off: "このサーバーではギャラリーの編集が無効です（管理者キーが設定されていません）。",
    map: "地図", photos: "写真 {count} 枚", no_location: "位置情報なし",
    name_en: "名前（英語）", name_ja: "名前（日本語）", lat: "緯度", lon: "経度",
    save: "保存", remove_landmark: "ランドマークを削除", remove_photo: "この写真を削除",
    add_photos: "写真を追加", new_landmark: "新しいランドマーク", landmark_id: "ID（a-z, 0-9, _）",
    create: "作成", working_edit: "保存中…", saved: "保存しました。", added: "{count} 枚の写真を追加しました。", removed: "削除しました。",
    confirm_remove: "{name} とそのすべての写真をギャラリーから削除しますか？",
    negatives: "ランドマークを含まない写真（ネガティブ）{count} 枚が「該当なし」の判定に使われます。",
    empty_gallery: "ギャラリーにはまだランドマークがありません。",
  },
};

// Every error code the server answers, as a full sentence in each language.
const ERRORS = {
  en: {
    not_an_image: "This file is not a photo.", bad_image: "This photo is damaged or cannot be read.",
    empty: "This file is empty.", too_large: "This file is larger than the server accepts ({limit}).",
    too_many_pixels: "This photo has more pixels than the server accepts.",
    too_many_files: "Too many files in one request.",
    busy: "The server is busy. Please try again in a moment.",
    unauthorized: "This needs a valid API key. Enter it on the Gallery page.",
    too_many_failed_keys: "Too many wrong API keys were sent from here. Try again in {seconds} s.",
    forbidden: "This API key may only read. Changing the gallery needs an admin key.",
    editing_disabled: "Gallery editing is turned off on this server.",
    unknown_landmark: "This landmark is not in the gallery.",
    unknown_reference: "This reference photo is not in the gallery.",
    landmark_exists: "A landmark with this id already exists.",
    no_references: "This landmark has no reference photos yet.",
    no_data_dir: "The server has no folder to keep photos in.",
    invalid_request: "Some fields are missing or not valid.",
    internal_error: "The server failed on this request.",
    network: "The server cannot be reached.", unexpected: "Something went wrong (HTTP {status}).",
  },
  ja: {
    not_an_image: "このファイルは写真ではありません。", bad_image: "この写真は壊れているか、読み込めません。",
    empty: "このファイルは空です。", too_large: "このファイルはサーバーの上限（{limit}）を超えています。",
    too_many_pixels: "この写真の画素数はサーバーの上限を超えています。",
    too_many_files: "1 回のリクエストのファイル数が多すぎます。",
    busy: "サーバーが混雑しています。しばらくしてから再試行してください。",
    unauthorized: "有効な API キーが必要です。ギャラリーのページで入力してください。",
    too_many_failed_keys: "ここから誤った API キーが多数送信されました。{seconds} 秒後に再試行してください。",
    forbidden: "この API キーは閲覧用です。ギャラリーの編集には管理者キーが必要です。",
    editing_disabled: "このサーバーではギャラリーの編集が無効になっています。",
    unknown_landmark: "このランドマークはギャラリーにありません。",
    unknown_reference: "この参照写真はギャラリーにありません。",
    landmark_exists: "この ID のランドマークはすでに存在します。",
    no_references: "このランドマークにはまだ参照写真がありません。",
    no_data_dir: "サーバーに写真を保存するフォルダーがありません。",
    invalid_request: "入力項目が不足しているか、正しくありません。",
    internal_error: "サーバーでこのリクエストの処理に失敗しました。",
    network: "サーバーに接続できません。", unexpected: "問題が発生しました（HTTP {status}）。",
  },
};

let language = sessionStorage.getItem("lookalike-language") ||
  ((navigator.language || "en").startsWith("ja") ? "ja" : "en");
const languageListeners = [];

const $ = (id) => document.getElementById(id);

function fill(text, values) {
  return text.replace(/\{(\w+)\}/g, (_, key) => (values && key in values ? values[key] : `{${key}}`));
}

function t(key, values) {
  return fill(TEXT[language][key] || TEXT.en[key] || key, values);
}

// An error the page shows: a code from the server (or our own), told in the chosen language.
class ApiError extends Error {
  constructor(code, status, retryAfter) {
    super(code);
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

let limits = { max_bytes: 20000000, max_files: 16 };

function megabytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toPrecision(3).replace(/\.?0+$/, "")} MB`
    : `${Math.round(bytes / 1e3)} kB`;
}

function errorText(error) {
  const code = error instanceof ApiError ? error.code : "network";
  const table = ERRORS[language];
  const text = table[code] || table.unexpected;
  return fill(text, { status: error.status || "?", limit: megabytes(limits.max_bytes),
    seconds: (error instanceof ApiError && error.retryAfter) || "?" });
}

// The page's status line (element #status): a text key or an error, kept so that it can be
// told again when the language changes.
let status = { key: "", values: {}, error: null }; // kept to be told again in another language

function renderStatus() {
  $("status").textContent = status.error ? errorText(status.error) : status.key ? t(status.key, status.values) : "";
  $("status").className = status.error ? "error" : "";
}

function setStatus(key, values) {
  status = { key, values, error: null };
  renderStatus();
}

function showError(error) {
  status = { key: "", values: {}, error };
  renderStatus();
}

function apiKey() {
  return sessionStorage.getItem("lookalike-api-key") || "";
}

function keyHeaders() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

// fetch() with the key header; resolves to the parsed JSON, or throws an ApiError.
async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...keyHeaders(), ...(options.headers || {}) } });
  } catch (_) {
    throw new ApiError("network", 0);
  }
  const isJson = (response.headers.get("content-type") || "").includes("application/json");
  const body = isJson ? await response.json() : null;
  if (!response.ok) {
    const code = body && body.error ? body.error : "unexpected";
    throw new ApiError(code, response.status, Number(response.headers.get("Retry-After")) || 0);
  }
  return body;
}

const imageCache = new Map();

// A reference image by its API URL, fetched with the key header (an <img src> cannot send
// one); resolves to an object URL.
function referenceImage(url) {
  if (!imageCache.has(url)) {
    imageCache.set(url, fetch(url, { headers: keyHeaders() }).then((response) => {
      if (!response.ok) throw new ApiError("unknown_reference", response.status);
      return response.blob();
    }).then((blob) => URL.createObjectURL(blob)));
  }
  return imageCache.get(url);
}

function setReferenceImage(img, url) {
  referenceImage(url).then((src) => { img.src = src; }).catch(() => { img.classList.add("missing"); });
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new ApiError("bad_image", 0));
    image.src = src;
  });
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  Object.entries(attributes).forEach(([name, value]) => {
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  });
  children.forEach((child) => node.append(child));
  return node;
}

function displayName(names, id) {
  if (names && names[language]) return names[language];
  return (names && names.en) || id;
}

function applyLanguage() {
  document.documentElement.lang = language;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll(".languages button").forEach((b) => {
    b.setAttribute("aria-pressed", String(b.dataset.lang === language));
  });
  languageListeners.forEach((listener) => listener());
}

function setupLanguages(onChange) {
  if (onChange) languageListeners.push(onChange);
  document.querySelectorAll(".languages button").forEach((b) => b.addEventListener("click", () => {
    language = b.dataset.lang;
    sessionStorage.setItem("lookalike-language", language);
    applyLanguage();
  }));
  applyLanguage();
}

async function loadLimits() {
  const health = await api("/health");
  limits = health.limits;
  return health;
}
