// kinema studio: a page over the /v1 task API, nothing else. Plain JS, no build step, no CDN.
//
// Why fetch everywhere (and not EventSource or <video src>): the API wants the
// key in the Authorization header, which EventSource and media elements cannot
// send. So events are read from a fetch() stream, and videos are fetched as
// blobs and played from object URLs; the key never appears in a URL or a log.
"use strict";

const KEY_STORAGE = "kinema.apiKey";
const PAGE_SIZE = 12;
const QUOTE_DELAY_MS = 300; // wait for typing to pause before asking for a price
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

// The camera menu in the API's vocabulary (GenerationRequest.camera: pan/tilt/zoom in [-2, 2]).
const CAMERAS = {
  none: null,
  static: { pan: 0, tilt: 0, zoom: 0 },
  "pan-left": { pan: -1, tilt: 0, zoom: 0 },
  "pan-right": { pan: 1, tilt: 0, zoom: 0 },
  "tilt-up": { pan: 0, tilt: 1, zoom: 0 },
  "tilt-down": { pan: 0, tilt: -1, zoom: 0 },
  "zoom-in": { pan: 0, tilt: 0, zoom: 1 },
  "zoom-out": { pan: 0, tilt: 0, zoom: -1 },
};
const CAMERA_LABELS = { none: "as the prompt says" }; // the others read as their value, dashes as spaces

// Aspect ratios the API accepts (GenerationRequest.aspect_ratio), in menu order.
const ASPECTS = [
  ["16:9", "16:9 landscape"],
  ["9:16", "9:16 portrait"],
  ["1:1", "1:1 square"],
  ["4:3", "4:3"],
  ["3:4", "3:4"],
];

// Every camera and aspect menu (the video form's, the storyboard's and the shot
// template's) gets its options from CAMERAS and ASPECTS, so the menus cannot drift
// apart; an aspect menu names its own default in data-aspect-menu.
function fillMenus() {
  const templates = [...document.querySelectorAll("template")].map((t) => t.content);
  for (const root of [document, ...templates]) {
    for (const select of root.querySelectorAll("select[data-camera-menu]")) {
      select.replaceChildren(...Object.keys(CAMERAS).map((value) => new Option(CAMERA_LABELS[value] || value.replace("-", " "), value)));
    }
    for (const select of root.querySelectorAll("select[data-aspect-menu]")) {
      const chosen = select.dataset.aspectMenu;
      select.replaceChildren(...ASPECTS.map(([value, label]) => new Option(label, value, value === chosen, value === chosen)));
    }
  }
}

// What to tell a person for each family of machine-readable codes; the code itself is shown too.
const ERROR_TITLES = [
  ["auth.", "Check your API key."],
  ["credits.", "Not enough credits."],
  ["quota.", "Limit reached."],
  ["rate.", "Too many requests."],
  ["moderation.", "This prompt is not allowed."],
  ["input.", "Please fix the request."],
  ["idempotency.", "Conflicting retry."],
  ["not_found", "Not found."],
  ["internal.", "The server failed."],
  ["network.", "Cannot reach the server."],
];

const $ = (id) => document.getElementById(id);
const state = { key: "", tasks: new Map(), streams: new Map(), blobs: new Map(), cursor: null, quoteSeq: 0, idempotency: null };

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  if (state.key) h.Authorization = `Bearer ${state.key}`;
  return h;
}

// The API answers errors as {"error": {"code", "message"}}; tolerate FastAPI's {"detail": ...} too.
async function errorFrom(response) {
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  const err = body && (body.error || (typeof body.detail === "object" && !Array.isArray(body.detail) ? body.detail : null) || body);
  let code = err && typeof err.code === "string" ? err.code : `http.${response.status}`;
  let message = err && typeof err.message === "string" ? err.message : "";
  if (!message && body && Array.isArray(body.detail) && body.detail.length) message = body.detail[0].msg || "";
  if (!message && body && typeof body.detail === "string") message = body.detail;
  return new ApiError(response.status, code, message || response.statusText || "request failed");
}

async function api(method, path, { body, extraHeaders, raw } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body === undefined ? extraHeaders : { "Content-Type": "application/json", ...extraHeaders }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "network.unreachable", String(e.message || e));
  }
  if (!response.ok) throw await errorFrom(response);
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

// ---------------------------------------------------------------- errors

function showError(err) {
  const code = err.code || "internal.client";
  const family = ERROR_TITLES.find(([prefix]) => code.startsWith(prefix));
  $("error-title").textContent = family ? family[1] : "Something went wrong.";
  $("error-message").textContent = err.message || "";
  $("error-code").textContent = code;
  $("error").dataset.code = code;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  delete $("error").dataset.code;
}

// ---------------------------------------------------------------- the request being composed

function composedRequest() {
  const req = { prompt: $("prompt").value.trim(), aspect_ratio: $("aspect").value, seconds: Number($("seconds").value) };
  const seed = $("seed").value.trim();
  if (seed !== "") req.seed = Number(seed);
  const camera = CAMERAS[$("camera").value];
  if (camera) req.camera = camera;
  const negative = $("negative").value.trim();
  if (negative) req.negative_prompt = negative;
  const steps = $("steps").value.trim();
  if (steps !== "") req.steps = Number(steps);
  return req;
}

let quoteTimer = null;
function requestChanged() {
  $("prompt-count").textContent = String($("prompt").value.length);
  state.idempotency = null; // a different body needs a different Idempotency-Key
  $("price").dataset.state = "stale"; // never show the price of the previous request as this one's
  clearTimeout(quoteTimer);
  quoteTimer = setTimeout(updateQuote, QUOTE_DELAY_MS);
}

async function updateQuote() {
  const seq = ++state.quoteSeq;
  const req = composedRequest();
  const price = $("price");
  if (!req.prompt) {
    price.textContent = "—";
    price.dataset.state = "empty";
    $("price-detail").textContent = "write a prompt to see the price";
    return;
  }
  if (!state.key) {
    price.textContent = "—";
    price.dataset.state = "nokey";
    $("price-detail").textContent = "enter your API key to see the price";
    return;
  }
  price.dataset.state = "loading";
  try {
    const quote = await api("POST", "/v1/quotes", { body: req });
    if (seq !== state.quoteSeq) return; // a newer edit already asked again
    price.textContent = `${formatCredits(quote.credits)} credits`;
    price.dataset.state = "ok";
    price.dataset.credits = String(quote.credits);
    $("price-detail").textContent = describeQuote(quote);
    if ($("error").dataset.code && $("error").dataset.code.startsWith("input.")) clearError();
  } catch (err) {
    if (seq !== state.quoteSeq) return;
    price.textContent = "—";
    price.dataset.state = "error";
    $("price-detail").textContent = err.code;
    showError(err);
  }
}

function formatCredits(value) {
  const n = Number(value);
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

function describeQuote(quote) {
  const parts = [];
  if (quote.width && quote.height) parts.push(`${quote.width}×${quote.height}`);
  if (quote.num_frames) parts.push(`${quote.num_frames} frames`);
  if (quote.steps) parts.push(`${quote.steps} steps`);
  if (quote.tflops) parts.push(`${Number(quote.tflops).toPrecision(3)} TFLOPs`);
  return parts.join(" · ");
}

async function submit(event) {
  event.preventDefault();
  const req = composedRequest();
  if (!state.key) return showError(new ApiError(401, "auth.missing_key", "Paste your API key at the top of the page first."));
  if (!req.prompt) return showError(new ApiError(422, "input.prompt.empty", "Describe the video you want."));
  // One key per composed body: a double click or a retry after a network error makes one task, not two.
  if (!state.idempotency) state.idempotency = crypto.randomUUID();
  const button = $("submit");
  button.disabled = true;
  try {
    const task = await api("POST", "/v1/tasks", { body: req, extraHeaders: { "Idempotency-Key": state.idempotency } });
    clearError();
    state.idempotency = null;
    upsertTask(task, { prepend: true });
    watch(task.id);
    refreshAccount();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- the gallery

async function loadTasks({ append = false } = {}) {
  if (!state.key) return;
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const filter = $("state-filter").value;
  if (filter) params.set("state", filter);
  if (append && state.cursor) params.set("cursor", state.cursor);
  try {
    const page = await api("GET", `/v1/tasks?${params}`);
    if (!append) {
      for (const id of [...state.tasks.keys()]) removeTaskCard(id);
    }
    const items = page.items || page.data || page.tasks || [];
    for (const task of items) {
      upsertTask(task);
      if (!TERMINAL.has(task.state)) watch(task.id);
    }
    state.cursor = page.next_cursor || null;
    $("more").hidden = !state.cursor;
  } catch (err) {
    showError(err);
  }
  updateEmpty();
}

function updateEmpty() {
  $("empty").hidden = state.tasks.size > 0;
}

function upsertTask(task, { prepend = false } = {}) {
  const known = state.tasks.get(task.id);
  // A finished task never changes again: a slower answer that still says "running" (e.g. the
  // cancel call's, overtaken by the event stream's "cancelled") must not bring it back.
  if (known && TERMINAL.has(known.task.state) && task.state && !TERMINAL.has(task.state)) return;
  const merged = known ? { ...known.task, ...task } : task;
  let card = known && known.card;
  if (!card) {
    card = $("task-template").content.firstElementChild.cloneNode(true);
    card.dataset.id = task.id;
    card.querySelector(".cancel").addEventListener("click", () => cancelTask(task.id));
    card.querySelector(".delete").addEventListener("click", () => deleteTask(task.id));
    const list = $("tasks");
    if (prepend) list.prepend(card); else list.append(card);
  }
  state.tasks.set(task.id, { task: merged, card });
  render(merged, card);
  updateEmpty();
  syncPreviews(task.id);
}

function filmLabel(board) {
  const shots = Array.isArray(board.shots) ? board.shots : [];
  const name = board.title || (shots[0] && shots[0].prompt) || "untitled";
  return `Film: ${name} (${shots.length} shot${shots.length === 1 ? "" : "s"})`;
}

function render(task, card) {
  card.dataset.state = task.state;
  const badge = card.querySelector(".state");
  badge.textContent = task.state;
  badge.className = `state ${task.state}`;
  card.dataset.kind = task.kind || "video";
  const board = task.request && task.request.storyboard;
  const prompt = board ? filmLabel(board) : (task.request && task.request.prompt) || task.prompt || "";
  card.querySelector(".prompt-text").textContent = prompt;
  card.querySelector(".prompt-text").title = prompt;

  const progressBox = card.querySelector(".progress");
  const active = task.state === "running" || task.state === "queued";
  progressBox.hidden = !active;
  if (active) {
    const value = Number(task.progress || 0);
    card.querySelector("progress").value = value;
    card.dataset.progress = String(value); // an attribute too, so tests and styles can watch it
    const step = task.step && task.total_steps ? ` · step ${task.step}/${task.total_steps}` : "";
    card.querySelector(".step").textContent = task.state === "queued" ? "waiting for a worker" : `${Math.round(value * 100)}%${step}`;
  }

  const meta = [];
  const seed = task.request && task.request.seed !== undefined ? task.request.seed : task.seed;
  if (seed !== undefined && seed !== null) meta.push(`seed ${seed}`);
  const charged = task.credits_charged ?? task.charged_credits;
  const reserved = task.credits_reserved ?? task.reserved_credits;
  if (task.state === "succeeded" && charged !== undefined && charged !== null) meta.push(`${formatCredits(charged)} credits`);
  else if (active && reserved !== undefined && reserved !== null) meta.push(`${formatCredits(reserved)} credits reserved`);
  const metaBox = card.querySelector(".meta");
  metaBox.textContent = meta.join(" · ");
  const failure = task.error || (task.error_code ? { code: task.error_code, message: task.error_message } : null);
  if (task.state === "failed" && failure) {
    const code = document.createElement("div");
    code.className = "code";
    code.textContent = `${failure.code}${failure.message ? `: ${failure.message}` : ""}`;
    metaBox.append(code);
  }

  card.querySelector(".cancel").hidden = !active;
  card.querySelector(".delete").hidden = !TERMINAL.has(task.state);
  if (task.state === "succeeded") showVideo(task, card);
}

// A muted, looping player with controls: how the studio shows every finished video and preview.
function loopingVideo(url) {
  const video = document.createElement("video");
  video.src = url;
  video.controls = true;
  video.loop = true;
  video.muted = true;
  video.playsInline = true;
  video.preload = "auto";
  return video;
}

// Fetch the video once (with the key), then play and download it from a blob URL.
async function showVideo(task, card) {
  if (state.blobs.has(task.id)) return;
  state.blobs.set(task.id, null); // in flight
  try {
    const response = await api("GET", `/v1/tasks/${encodeURIComponent(task.id)}/download`, { raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    state.blobs.set(task.id, url);
    card.querySelector(".media").replaceChildren(loopingVideo(url));
    const link = card.querySelector(".download");
    link.href = url;
    link.download = downloadName(task, response, blob);
    link.hidden = false;
    syncPreviews(task.id);
  } catch (err) {
    state.blobs.delete(task.id);
    showError(err);
  }
}

function downloadName(task, response, blob) {
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="?([^";]+)"?/i.exec(disposition);
  if (match) return match[1];
  const ext = (blob.type.split("/")[1] || "mp4").replace("quicktime", "mov");
  return `kinema-${task.id}.${ext}`;
}

async function cancelTask(id) {
  try {
    const task = await api("POST", `/v1/tasks/${encodeURIComponent(id)}/cancel`);
    if (task) upsertTask(task);
    refreshAccount();
  } catch (err) {
    showError(err);
  }
}

async function deleteTask(id) {
  try {
    await api("DELETE", `/v1/tasks/${encodeURIComponent(id)}`);
    removeTaskCard(id);
    refreshAccount();
  } catch (err) {
    showError(err);
  }
}

function removeTaskCard(id) {
  const known = state.tasks.get(id);
  if (!known) return;
  const controller = state.streams.get(id);
  if (controller) controller.abort();
  state.streams.delete(id);
  const url = state.blobs.get(id);
  if (url) URL.revokeObjectURL(url);
  state.blobs.delete(id);
  known.card.remove();
  state.tasks.delete(id);
  updateEmpty();
  syncPreviews(id);
}

// ---------------------------------------------------------------- live progress (server-sent events over fetch)

async function watch(id) {
  if (state.streams.has(id)) return;
  const controller = new AbortController();
  state.streams.set(id, controller);
  try {
    const response = await fetch(`/v1/tasks/${encodeURIComponent(id)}/events`, {
      headers: headers({ Accept: "text/event-stream" }),
      signal: controller.signal,
    });
    if (!response.ok) throw await errorFrom(response);
    await readEvents(response.body, (event) => onTaskEvent(id, event));
  } catch (err) {
    if (err.name === "AbortError") return;
    if (err instanceof ApiError && err.code !== "network.unreachable") showError(err);
  } finally {
    state.streams.delete(id);
  }
  // The stream ended: make sure the card shows the final state even if the last event was missed.
  const known = state.tasks.get(id);
  if (known && !TERMINAL.has(known.task.state)) {
    try { upsertTask(await api("GET", `/v1/tasks/${encodeURIComponent(id)}`)); } catch (_) { /* shown elsewhere */ }
    const again = state.tasks.get(id);
    if (again && !TERMINAL.has(again.task.state)) setTimeout(() => watch(id), 1000);
  }
}

// A minimal text/event-stream reader: blocks separated by a blank line, `event:` and `data:` fields.
async function readEvents(stream, onEvent) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") type = val;
        else if (field === "data") data.push(val);
      }
      if (data.length) onEvent({ type, data: data.join("\n") });
    }
  }
}

function onTaskEvent(id, event) {
  let payload;
  try { payload = JSON.parse(event.data); } catch (_) { return; }
  const update = payload.task || payload;
  if (!update.state && event.type && event.type !== "message" && !["progress", "task"].includes(event.type)) update.state = event.type;
  upsertTask({ ...update, id });
  if (update.state && TERMINAL.has(update.state)) {
    const controller = state.streams.get(id);
    if (controller) controller.abort();
    refreshAccount();
  }
}

// ---------------------------------------------------------------- account and key

async function refreshAccount() {
  if (!state.key) { $("account").textContent = ""; return; }
  try {
    const account = await api("GET", "/v1/account");
    const balance = account.credits_available ?? account.balance ?? account.credits;
    $("account").textContent = balance !== undefined ? `${formatCredits(balance)} credits${account.plan ? ` · ${account.plan}` : ""}` : "";
    $("account").dataset.credits = balance !== undefined ? String(balance) : "";
  } catch (err) {
    $("account").textContent = "";
    if (err.code.startsWith("auth.")) showError(err);
  }
}

function setKey(key) {
  state.key = key.trim();
  if (state.key) localStorage.setItem(KEY_STORAGE, state.key);
  else localStorage.removeItem(KEY_STORAGE);
  $("api-key").value = state.key;
  clearError();
  for (const id of [...state.tasks.keys()]) removeTaskCard(id);
  state.cursor = null;
  refreshAccount();
  loadTasks();
  updateQuote();
  if (storyVisible()) updateStoryQuote();
}

function init() {
  fillMenus();
  state.key = localStorage.getItem(KEY_STORAGE) || "";
  $("api-key").value = state.key;
  $("key-form").addEventListener("submit", (e) => { e.preventDefault(); setKey($("api-key").value); });
  $("key-forget").addEventListener("click", () => setKey(""));
  $("error-close").addEventListener("click", clearError);
  $("task-form").addEventListener("submit", submit);
  for (const id of ["prompt", "aspect", "seconds", "seed", "camera", "negative", "steps"]) {
    $(id).addEventListener("input", requestChanged);
  }
  $("seed-dice").addEventListener("click", () => {
    $("seed").value = String(Math.floor(Math.random() * 2 ** 32));
    requestChanged();
  });
  $("state-filter").addEventListener("change", () => { state.cursor = null; loadTasks(); });
  $("refresh").addEventListener("click", () => { state.cursor = null; loadTasks(); refreshAccount(); });
  $("more").addEventListener("click", () => loadTasks({ append: true }));
  initStoryboard();
  refreshAccount();
  loadTasks();
  updateQuote();
}

document.addEventListener("DOMContentLoaded", init);

// ---------------------------------------------------------------- the storyboard editor
//
// A film is a list of shots, edited here and kept in localStorage. Every edit asks
// POST /v1/storyboards/quotes for the price (per shot and in total); the quote also
// carries, per shot, the video task body that previews that shot alone, so "Preview
// shot" makes exactly the request (and seed) the film will use. "Render film" submits
// POST /v1/storyboards: a task like any other, shown in the gallery.

const STORY_STORAGE = "kinema.storyboard";
const TAB_STORAGE = "kinema.tab";
const story = { shots: [], quote: null, quoteSeq: 0, idempotency: null, nextUid: 1, timer: null };

function newShot(fields = {}) {
  return { uid: story.nextUid++, prompt: "", duration: "1", camera: "none", seed: "", caption: "", transition: "", preview: null, card: null, ...fields };
}

function loadStory() {
  let saved = null;
  try { saved = JSON.parse(localStorage.getItem(STORY_STORAGE) || "null"); } catch (_) { saved = null; }
  if (saved && typeof saved === "object") {
    $("story-title").value = saved.title || "";
    $("story-intro").checked = Boolean(saved.intro);
    $("story-music").checked = Boolean(saved.music);
    if (saved.aspect) $("story-aspect").value = saved.aspect;
    if (saved.transition) $("story-transition").value = saved.transition;
    const shots = Array.isArray(saved.shots) ? saved.shots : [];
    story.shots = shots.map((s) => newShot({
      prompt: String(s.prompt || ""), duration: String(s.duration || "1"), camera: s.camera || "none",
      seed: s.seed === undefined || s.seed === null ? "" : String(s.seed), caption: String(s.caption || ""), transition: s.transition || "",
    }));
  }
  if (!story.shots.length) story.shots = [newShot()];
  renderShots();
}

function saveStory() {
  const data = {
    title: $("story-title").value, intro: $("story-intro").checked, music: $("story-music").checked, aspect: $("story-aspect").value, transition: $("story-transition").value,
    shots: story.shots.map(({ prompt, duration, camera, seed, caption, transition }) => ({ prompt, duration, camera, seed, caption, transition })),
  };
  localStorage.setItem(STORY_STORAGE, JSON.stringify(data));
}

// The storyboard in the API's format (docs/storyboards.md): only what the person set.
function composedStoryboard() {
  const board = { aspect_ratio: $("story-aspect").value, transition: $("story-transition").value, shots: [] };
  const title = $("story-title").value.trim();
  if (title) board.title = title;
  if (title && $("story-intro").checked) board.intro = { title, duration: 1.5 };
  if ($("story-music").checked) board.soundtrack = { music: { volume: 0.25 } };
  for (const s of story.shots) {
    const shot = { prompt: s.prompt.trim(), duration: Number(s.duration) };
    const camera = CAMERAS[s.camera];
    if (camera) shot.camera = camera;
    if (String(s.seed).trim() !== "") shot.seed = Number(s.seed);
    if (s.caption.trim()) shot.caption = s.caption.trim();
    if (s.transition) shot.transition = s.transition;
    board.shots.push(shot);
  }
  return board;
}

function renderShots() {
  const list = $("shots");
  list.replaceChildren();
  story.shots.forEach((shot, i) => {
    const card = $("shot-template").content.firstElementChild.cloneNode(true);
    card.dataset.uid = String(shot.uid);
    card.querySelector(".shot-number").textContent = `Shot ${i + 1}`;
    for (const [selector, key] of [[".shot-prompt", "prompt"], [".shot-duration", "duration"], [".shot-camera", "camera"],
      [".shot-seed", "seed"], [".shot-caption", "caption"], [".shot-transition", "transition"]]) {
      const field = card.querySelector(selector);
      field.value = shot[key];
      const update = () => { if (shot[key] !== field.value) { shot[key] = field.value; storyChanged(); } };
      field.addEventListener("input", update);
      field.addEventListener("change", update);
    }
    card.querySelector(".shot-up").disabled = i === 0;
    card.querySelector(".shot-down").disabled = i === story.shots.length - 1;
    card.querySelector(".shot-delete").disabled = story.shots.length === 1;
    card.querySelector(".shot-up").addEventListener("click", () => moveShot(shot, -1));
    card.querySelector(".shot-down").addEventListener("click", () => moveShot(shot, 1));
    card.querySelector(".shot-delete").addEventListener("click", () => deleteShot(shot));
    card.querySelector(".shot-preview-button").addEventListener("click", () => previewShot(shot));
    shot.card = card;
    list.append(card);
    paintShotPreview(shot);
  });
}

function addShot() {
  const shot = newShot();
  story.shots.push(shot);
  renderShots();
  storyChanged();
  shot.card.querySelector(".shot-prompt").focus();
}

function moveShot(shot, delta) {
  const i = story.shots.indexOf(shot);
  const j = i + delta;
  if (i < 0 || j < 0 || j >= story.shots.length) return;
  [story.shots[i], story.shots[j]] = [story.shots[j], story.shots[i]];
  renderShots();
  storyChanged();
}

function deleteShot(shot) {
  if (story.shots.length === 1) return;
  story.shots = story.shots.filter((s) => s !== shot);
  renderShots();
  storyChanged();
}

function storyChanged() {
  story.idempotency = null; // a different film needs a different Idempotency-Key
  story.quote = null;
  $("film-price").dataset.state = "stale";
  for (const s of story.shots) {
    if (!s.card) continue;
    s.card.querySelector(".shot-price").dataset.state = "stale";
    delete s.card.dataset.invalid;
  }
  saveStory();
  clearTimeout(story.timer);
  story.timer = setTimeout(updateStoryQuote, QUOTE_DELAY_MS);
}

function markInvalidShot(err) {
  const m = /^shots\[(\d+)\]/.exec((err && err.message) || "");
  const shot = m && story.shots[Number(m[1])];
  if (shot && shot.card) shot.card.dataset.invalid = "true";
}

async function updateStoryQuote() {
  clearTimeout(story.timer);
  const seq = ++story.quoteSeq;
  const board = composedStoryboard();
  const price = $("film-price");
  const missing = board.shots.findIndex((s) => !s.prompt);
  if (missing >= 0) {
    price.textContent = "—";
    price.dataset.state = "empty";
    $("film-price-detail").textContent = `write a prompt for shot ${missing + 1} to see the price`;
    return null;
  }
  if (!state.key) {
    price.textContent = "—";
    price.dataset.state = "nokey";
    $("film-price-detail").textContent = "enter your API key to see the price";
    return null;
  }
  price.dataset.state = "loading";
  try {
    const quote = await api("POST", "/v1/storyboards/quotes", { body: { storyboard: board } });
    if (seq !== story.quoteSeq) return null; // a newer edit already asked again
    story.quote = quote;
    price.textContent = `${formatCredits(quote.credits)} credits`;
    price.dataset.state = "ok";
    price.dataset.credits = String(quote.credits);
    $("film-price-detail").textContent = describeFilm(quote);
    quote.shots.forEach((q, i) => {
      const shot = story.shots[i];
      if (!shot || !shot.card) return;
      const el = shot.card.querySelector(".shot-price");
      el.textContent = `${formatCredits(q.credits)} credits · ${Number(q.seconds).toFixed(1)} s`;
      el.dataset.state = "ok";
      el.dataset.credits = String(q.credits);
    });
    if ($("error").dataset.code && $("error").dataset.code.startsWith("input.")) clearError();
    return quote;
  } catch (err) {
    if (seq !== story.quoteSeq) return null;
    price.textContent = "—";
    price.dataset.state = "error";
    $("film-price-detail").textContent = err.code;
    markInvalidShot(err);
    showError(err);
    return null;
  }
}

function describeFilm(quote) {
  const parts = [`${Number(quote.duration).toFixed(1)} s film`, `${quote.width}×${quote.height}`, `${quote.shots.length} shot${quote.shots.length === 1 ? "" : "s"}`];
  if (quote.references && quote.references.length) parts.push(`${quote.references.length} reference frame${quote.references.length === 1 ? "" : "s"}`);
  const text = parts.join(" · ");
  return quote.warnings && quote.warnings.length ? `${text} — ${quote.warnings.join(" ")}` : text;
}

// Preview: the shot alone, as an ordinary video task with the film's request for it.
async function previewShot(shot) {
  if (!state.key) return showError(new ApiError(401, "auth.missing_key", "Paste your API key at the top of the page first."));
  const button = shot.card.querySelector(".shot-preview-button");
  button.disabled = true;
  try {
    const quote = story.quote || (await updateStoryQuote());
    const index = story.shots.indexOf(shot);
    const request = quote && quote.shots[index] && quote.shots[index].request;
    if (!request) return; // the quote failed and says why
    const task = await api("POST", "/v1/tasks", { body: request, extraHeaders: { "Idempotency-Key": crypto.randomUUID() } });
    shot.preview = { taskId: task.id };
    upsertTask(task, { prepend: true });
    watch(task.id);
    refreshAccount();
  } catch (err) {
    showError(err);
  } finally {
    if (shot.card) shot.card.querySelector(".shot-preview-button").disabled = false;
  }
}

function paintShotPreview(shot) {
  if (!shot.card) return;
  const label = shot.card.querySelector(".shot-preview-state");
  const media = shot.card.querySelector(".shot-media");
  const known = shot.preview && state.tasks.get(shot.preview.taskId);
  if (!known) {
    label.textContent = "";
    delete shot.card.dataset.previewState;
    media.replaceChildren();
    return;
  }
  const task = known.task;
  shot.card.dataset.previewState = task.state;
  label.textContent = task.state === "running" ? `preview ${Math.round(Number(task.progress || 0) * 100)}%` : `preview ${task.state}`;
  const url = state.blobs.get(task.id);
  const current = media.querySelector("video");
  if (task.state === "succeeded" && url && (!current || current.src !== url)) {
    media.replaceChildren(loopingVideo(url));
  } else if (task.state !== "succeeded") {
    media.replaceChildren();
  }
}

function syncPreviews(taskId) {
  for (const shot of story.shots) {
    if (shot.preview && shot.preview.taskId === taskId) paintShotPreview(shot);
  }
}

async function renderFilm(event) {
  event.preventDefault();
  if (!state.key) return showError(new ApiError(401, "auth.missing_key", "Paste your API key at the top of the page first."));
  const board = composedStoryboard();
  const missing = board.shots.findIndex((s) => !s.prompt);
  if (missing >= 0) return showError(new ApiError(422, "input.prompt.empty", `Shot ${missing + 1} needs a prompt.`));
  if (!story.idempotency) story.idempotency = crypto.randomUUID();
  const button = $("film-render");
  button.disabled = true;
  try {
    const task = await api("POST", "/v1/storyboards", { body: { storyboard: board }, extraHeaders: { "Idempotency-Key": story.idempotency } });
    clearError();
    story.idempotency = null;
    upsertTask(task, { prepend: true });
    watch(task.id);
    refreshAccount();
  } catch (err) {
    markInvalidShot(err);
    showError(err);
  } finally {
    button.disabled = false;
  }
}

function showTab(name) {
  for (const [tab, panel] of [["tab-video", "panel-video"], ["tab-story", "panel-story"]]) {
    const on = tab === `tab-${name}`;
    $(tab).setAttribute("aria-selected", String(on));
    $(panel).hidden = !on;
  }
  localStorage.setItem(TAB_STORAGE, name);
  if (name === "story" && !story.quote) updateStoryQuote();
}

function storyVisible() {
  return !$("panel-story").hidden;
}

function initStoryboard() {
  loadStory();
  $("tab-video").addEventListener("click", () => showTab("video"));
  $("tab-story").addEventListener("click", () => showTab("story"));
  $("shot-add").addEventListener("click", addShot);
  $("story-form").addEventListener("submit", renderFilm);
  for (const id of ["story-title", "story-intro", "story-music", "story-aspect", "story-transition"]) {
    $(id).addEventListener("input", storyChanged);
    $(id).addEventListener("change", storyChanged);
  }
  showTab(localStorage.getItem(TAB_STORAGE) === "story" ? "story" : "video");
}
