// coloi serve's page: upload photos to the API, show each before/after, download them.
// Plain JavaScript, no build step and nothing from other sites (the server may have no
// internet, and its Content-Security-Policy allows only itself).
"use strict";

const TOKEN_KEY = "coloi-token";
// Steps the page does not offer: "compare" puts grey and colour side by side, which the
// before/after slider already does.
const HIDDEN_STEPS = new Set(["compare"]);
const PARALLEL = 2; // requests in flight at once; the server queues and refuses beyond its own
const SHOWN_BY_BROWSERS = new Set(["image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif"]);

const $ = (selector) => document.querySelector(selector);
const state = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  defaults: { pre: [], post: [] }, // the server's own steps (from /v1/health)
  photos: [],
  running: 0,
  generation: 0, // bumped when the settings change, so that older answers are dropped
};

function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", "Bearer " + state.token);
  return fetch(path, { ...options, headers });
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return body.error;
  } catch (ignored) { /* not JSON: fall back to the status */ }
  return `${response.status} ${response.statusText}`;
}

function fatal(message) {
  const element = $("#fatal");
  element.textContent = message;
  element.hidden = false;
}

// ---- start: the token (asked for once), then the steps the server offers ----

async function start() {
  const fromLink = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (fromLink) { // a link ending in /#token=... (the fragment is never sent to a server)
    state.token = decodeURIComponent(fromLink[1]);
    localStorage.setItem(TOKEN_KEY, state.token);
    history.replaceState(null, "", location.pathname + location.search);
  }
  let health;
  try {
    health = await api("v1/health");
  } catch (error) {
    fatal("The server cannot be reached: " + error.message);
    return;
  }
  if (health.status === 401) {
    askForToken(state.token ? "That token was not accepted." : "");
    return;
  }
  if (!health.ok) {
    fatal(await errorText(health));
    return;
  }
  const info = await health.json();
  state.defaults = { pre: info.pre || [], post: info.post || [] };
  await showSteps();
  $("#token-form").hidden = true;
  $("#app").hidden = false;
  document.body.dataset.ready = "true";
}

function askForToken(message) {
  const form = $("#token-form");
  form.hidden = false;
  $("#token-error").textContent = message;
  form.onsubmit = (event) => {
    event.preventDefault();
    state.token = $("#token").value.trim();
    localStorage.setItem(TOKEN_KEY, state.token);
    start();
  };
}

async function showSteps() {
  const response = await api("v1/plugins");
  if (!response.ok) return; // the page works without the step choices
  const rows = await response.json();
  for (const kind of ["preprocess", "postprocess"]) {
    const key = kind === "preprocess" ? "pre" : "post";
    const fieldset = $(`#${key}-steps`);
    for (const row of rows.filter((r) => r.kind === kind && !HIDDEN_STEPS.has(r.name))) {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = row.name;
      box.dataset.kind = key;
      box.checked = state.defaults[key].includes(row.name);
      box.addEventListener("change", settingsChanged);
      const text = document.createElement("span");
      text.textContent = row.name + " ";
      const note = document.createElement("small");
      note.textContent = row.description || "";
      text.append(note);
      label.append(box, text);
      fieldset.append(label);
      fieldset.hidden = false;
    }
  }
}

// ---- settings: vividness and steps; a change colourises every photo again ----

const vividness = $("#vividness");
vividness.addEventListener("input", () => {
  $("#vividness-value").textContent = Number(vividness.value).toFixed(2);
});
vividness.addEventListener("change", settingsChanged);

function chosenSteps(key) {
  return [...document.querySelectorAll(`input[data-kind="${key}"]:checked`)].map((b) => b.value);
}

function query(photo) {
  const params = new URLSearchParams();
  for (const key of ["pre", "post"]) {
    const chosen = chosenSteps(key);
    const defaults = state.defaults[key];
    if (chosen.join(" ") !== defaults.join(" ")) { // given at all, they replace the server's
      if (chosen.length === 0) params.append(key, "");
      for (const name of chosen) params.append(key, name);
    }
  }
  if (Number(vividness.value) !== 1) params.set("vividness", vividness.value);
  if (!photo.shownByBrowsers) params.set("format", "png"); // TIFF: browsers cannot show it
  return params.toString();
}

let settingsTimer = null;
function settingsChanged() {
  clearTimeout(settingsTimer);
  settingsTimer = setTimeout(() => {
    state.generation += 1;
    for (const photo of state.photos) {
      if (photo.status !== "waiting") queue(photo);
    }
  }, 250);
}

// ---- photos ----

function addFiles(files) {
  for (const file of files) {
    const card = $("#photo-card").content.firstElementChild.cloneNode(true);
    const photo = {
      file, card, status: "waiting", result: null, resultUrl: null, filename: null,
      shownByBrowsers: SHOWN_BY_BROWSERS.has(file.type),
      originalUrl: URL.createObjectURL(file),
    };
    card.querySelector(".name").textContent = file.name;
    const before = card.querySelector(".before");
    before.addEventListener("error", () => { // no preview of the original (TIFF): use the
      if (photo.resultUrl && before.src !== photo.resultUrl) before.src = photo.resultUrl;
    }, { once: false }); // result in grey, which has the same lightness
    if (photo.shownByBrowsers) before.src = photo.originalUrl;
    const compare = card.querySelector(".compare");
    const slider = card.querySelector(".slider");
    slider.addEventListener("input", () => compare.style.setProperty("--pos", slider.value + "%"));
    const link = card.querySelector(".download");
    link.addEventListener("click", (event) => { if (!photo.resultUrl) event.preventDefault(); });
    $("#photos").append(card);
    state.photos.push(photo);
    queue(photo);
  }
  updateSummary();
}

function setStatus(photo, status, text) {
  photo.status = status;
  const card = photo.card;
  card.classList.toggle("busy", status === "waiting" || status === "working");
  card.classList.toggle("failed", status === "failed");
  card.classList.toggle("done", photo.resultUrl !== null);
  card.dataset.status = status;
  card.querySelector(".status").textContent = text;
  updateSummary();
}

const pending = [];
function queue(photo) {
  photo.wanted = state.generation;
  setStatus(photo, "waiting", "waiting…");
  if (!pending.includes(photo)) pending.push(photo);
  pump();
}

function pump() {
  while (state.running < PARALLEL && pending.length > 0) {
    const photo = pending.shift();
    state.running += 1;
    colourise(photo).finally(() => {
      state.running -= 1;
      pump();
    });
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function filenameOf(response, photo) {
  const header = response.headers.get("Content-Disposition") || "";
  const encoded = /filename\*=UTF-8''([^;]+)/i.exec(header);
  if (encoded) return decodeURIComponent(encoded[1]);
  const plain = /filename="([^"]+)"/i.exec(header);
  return plain ? plain[1] : photo.file.name.replace(/\.[^.]*$/, "") + "_colourised";
}

async function colourise(photo) {
  const generation = photo.wanted;
  setStatus(photo, "working", "colourising…");
  const form = new FormData();
  form.append("file", photo.file, photo.file.name);
  for (;;) {
    let response;
    try {
      response = await api("v1/colourise?" + query(photo), { method: "POST", body: form });
    } catch (error) {
      setStatus(photo, "failed", "The server cannot be reached: " + error.message);
      return;
    }
    if (generation !== state.generation) return; // the settings changed meanwhile
    if (response.status === 503) { // busy: wait as long as the server asks, then try again
      const seconds = Number(response.headers.get("Retry-After")) || 2;
      setStatus(photo, "working", `the server is busy, trying again in ${seconds} s…`);
      await sleep(seconds * 1000);
      continue;
    }
    if (response.status === 401) {
      setStatus(photo, "failed", "The token was not accepted: reload the page.");
      localStorage.removeItem(TOKEN_KEY);
      return;
    }
    if (!response.ok) {
      setStatus(photo, "failed", await errorText(response));
      return;
    }
    const blob = await response.blob();
    if (generation !== state.generation) return;
    if (photo.resultUrl) URL.revokeObjectURL(photo.resultUrl);
    photo.result = blob;
    photo.resultUrl = URL.createObjectURL(blob);
    photo.filename = filenameOf(response, photo);
    const after = photo.card.querySelector(".after");
    after.src = photo.resultUrl;
    const before = photo.card.querySelector(".before");
    if (!photo.shownByBrowsers) before.src = photo.resultUrl;
    const link = photo.card.querySelector(".download");
    link.href = photo.resultUrl;
    link.download = photo.filename;
    link.hidden = false;
    setStatus(photo, "done", "done");
    return;
  }
}

function updateSummary() {
  const done = state.photos.filter((p) => p.status === "done").length;
  const failed = state.photos.filter((p) => p.status === "failed").length;
  const total = state.photos.length;
  $("#summary").textContent = total === 0 ? "" :
    `${done} of ${total} colourised` + (failed ? `, ${failed} failed` : "");
  $("#download-all").disabled = !state.photos.some((p) => p.result);
}

// ---- download all: one photo as itself, several as a ZIP made here (stored, not deflated:
// photos are compressed already) ----

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

async function zip(entries) {
  const encoder = new TextEncoder();
  const now = new Date();
  const time = (now.getHours() << 11) | (now.getMinutes() << 5) | (now.getSeconds() >> 1);
  const date = ((now.getFullYear() - 1980) << 9) | ((now.getMonth() + 1) << 5) | now.getDate();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const entry of entries) {
    const name = encoder.encode(entry.name);
    const data = new Uint8Array(await entry.blob.arrayBuffer());
    const crc = crc32(data);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint16(6, 0x0800, true); // names in UTF-8
    local.setUint16(10, time, true);
    local.setUint16(12, date, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, data.length, true);
    local.setUint32(22, data.length, true);
    local.setUint16(26, name.length, true);
    parts.push(local.buffer, name, data);
    const record = new DataView(new ArrayBuffer(46));
    record.setUint32(0, 0x02014b50, true);
    record.setUint16(4, 20, true);
    record.setUint16(6, 20, true);
    record.setUint16(8, 0x0800, true);
    record.setUint16(12, time, true);
    record.setUint16(14, date, true);
    record.setUint32(16, crc, true);
    record.setUint32(20, data.length, true);
    record.setUint32(24, data.length, true);
    record.setUint16(28, name.length, true);
    record.setUint32(42, offset, true);
    central.push(record.buffer, name);
    offset += 30 + name.length + data.length;
  }
  const size = central.reduce((sum, part) => sum + part.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, entries.length, true);
  end.setUint16(10, entries.length, true);
  end.setUint32(12, size, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, end.buffer], { type: "application/zip" });
}

function uniqueNames(photos) {
  const seen = new Map();
  return photos.map((photo) => {
    let name = photo.filename;
    const count = seen.get(name) || 0;
    seen.set(name, count + 1);
    if (count > 0) name = name.replace(/(\.[^.]*)?$/, `-${count + 1}$1`);
    return { name, blob: photo.result };
  });
}

function save(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

$("#download-all").addEventListener("click", async () => {
  const ready = state.photos.filter((p) => p.result);
  if (ready.length === 1) {
    save(ready[0].result, ready[0].filename);
  } else if (ready.length > 1) {
    save(await zip(uniqueNames(ready)), "coloi-colourised.zip");
  }
});

// ---- picking and dropping ----

$("#files").addEventListener("change", (event) => {
  addFiles([...event.target.files]);
  event.target.value = ""; // the same photo may be picked again
});
const drop = $("#drop");
for (const name of ["dragenter", "dragover"]) {
  document.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) {
  document.addEventListener(name, () => drop.classList.remove("over"));
}
document.addEventListener("drop", (event) => {
  event.preventDefault();
  const files = [...event.dataTransfer.files].filter((f) => f.type.startsWith("image/") ||
    /\.(jpe?g|png|tiff?|webp|bmp|gif)$/i.test(f.name));
  addFiles(files);
});

start();
