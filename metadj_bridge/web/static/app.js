// metadj-bridge control page: live state from the WebSocket /ws, actions through the control API (docs/web.md).
// Plain JavaScript, no build step. Everything the page shows comes from the bridge's state; a click only sends.
"use strict";

const METERS = ["low", "mid", "high", "energy"];
// Offered for MIDI learn when the bridge does not list its own targets (docs/profiles.md, "Targets").
const FALLBACK_LEARN_TARGETS = [
  "noise_scale", "kv_cache_attention_bias", "vace_context_scale", "base_seed", "denoising_steps",
  "prompt.mix", "prompt.intensity", "prompt.select", "prompt.next", "prompt.previous", "theme.select",
  "theme.next", "theme.previous", "theme.random", "action.pulse_noise", "action.accent", "action.seed_step",
  "action.reset_cache", "action.toggle_pause", "action.panic",
];

const $ = (id) => document.getElementById(id);

// --- the access token: from ?token= (kept in localStorage), sent as a header, or as ?token= where a browser
// cannot send headers (the WebSocket, the picture) ---------------------------------------------------------------
const TOKEN_KEY = "metadj-bridge.token";
let token = null;

function loadToken() {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given) {
    storeToken(given);
    params.delete("token");  // keep it out of the address bar (screen shares, photos of the phone)
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
    return given;
  }
  try { return localStorage.getItem(TOKEN_KEY); } catch (_) { return null; }
}

function storeToken(value) {
  try { localStorage.setItem(TOKEN_KEY, value); } catch (_) { /* private mode: the token lives in this tab */ }
}

function withToken(path) {
  if (!token) return path;
  return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

function wantToken() {
  $("token-banner").hidden = false;
}

// --- messages to the performer -------------------------------------------------------------------------------------
let messageTimer = null;

function say(text, isError) {
  const el = $("message");
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
  el.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => { el.hidden = true; }, isError ? 8000 : 3000);
}

// --- the control API ---------------------------------------------------------------------------------------------
async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  let response;
  try {
    response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  } catch (err) {
    say("the bridge does not answer (" + err.message + ")", true);
    return null;
  }
  let data = null;
  try { data = await response.json(); } catch (_) { /* an answer without JSON: the status says enough */ }
  if (response.status === 401) wantToken();
  if (!response.ok) {
    const error = new Error((data && data.error) || response.status + " " + response.statusText);
    error.status = response.status;
    throw error;
  }
  if (data && data.state) render(data.state);
  return data;
}

// An action from a button: errors go to the message line.
async function send(path, body, done) {
  try {
    const data = await post(path, body);
    if (data && done) say(done);
    return data;
  } catch (err) {
    say(err.message, true);
    return null;
  }
}

// A continuous control (the crossfader): the newest value wins, at most one request in flight.
function latestOnly(path, field) {
  let pending = null;
  let busy = false;
  async function pump() {
    busy = true;
    while (pending !== null) {
      const value = pending;
      pending = null;
      await send(path, { [field]: value });
    }
    busy = false;
  }
  return (value) => {
    pending = value;
    if (!busy) pump();
  };
}

// --- the live state ----------------------------------------------------------------------------------------------
let state = null;
let beatAnchor = null;  // {bar, beats, bpm, at}: the beat grid, run on between messages
let crossfadeHeldUntil = 0;

function render(next) {
  if (!next || typeof next !== "object") return;
  state = next;
  const control = next.control || {};
  renderBar(next);
  renderMeters(next.audio);
  renderPrompt(next.show, control);
  renderThemes(control.themes || [], control.theme || (next.show && next.show.theme));
  renderShow(next.show);
  renderScenes(control.scenes || []);
  renderProfiles(control.profiles || [], next.profile);
  renderLearn(control);
  renderWarnings(next.warnings || []);
  renderPicture(next, control);
  if (control.token_required === false) $("token-banner").hidden = true;
}

function renderBar(s) {
  const scope = s.scope || {};
  const scopeEl = $("scope");
  const fps = typeof scope.fps_in === "number" ? " · " + scope.fps_in.toFixed(1) + " fps" : "";
  scopeEl.textContent = "Scope: " + (scope.state || "-") + fps;
  scopeEl.dataset.state = scope.state || "";
  scopeEl.title = scope.last_error ? "Scope: " + scope.last_error : "Scope session" + (scope.url ? " at " + scope.url : "");
  const tempo = s.tempo;
  $("tempo").textContent = tempo ? tempo.bpm.toFixed(1) + " BPM · " + tempo.source : "- BPM";
  if (tempo) {
    beatAnchor = { bar: tempo.bar_position, beats: tempo.beats_per_bar || 4, bpm: tempo.bpm, at: performance.now() };
  } else {
    beatAnchor = null;
  }
  const profile = s.profile || "-";
  $("profile").textContent = profile.split(/[\\/]/).pop();
  $("profile").title = "running profile: " + profile;
}

// The beat dots move on between messages (10 a second at most) from the last grid and its tempo.
function drawBeats(now) {
  const holder = $("beats");
  const beats = beatAnchor ? beatAnchor.beats : 4;
  if (holder.childElementCount !== beats) {
    holder.replaceChildren(...Array.from({ length: beats }, (_, i) => {
      const dot = document.createElement("span");
      dot.className = "beat" + (i === 0 ? " down" : "");
      return dot;
    }));
  }
  let lit = -1;
  if (beatAnchor && beatAnchor.bpm > 0) {
    const elapsed = Math.min(now - beatAnchor.at, 2000) / 60000 * beatAnchor.bpm;
    const position = (beatAnchor.bar + elapsed) % beats;
    lit = Math.floor(position);
    holder.dataset.beat = String(lit);
  }
  Array.from(holder.children).forEach((dot, i) => dot.classList.toggle("on", i === lit));
  requestAnimationFrame(drawBeats);
}

function renderMeters(audio) {
  for (const name of METERS) {
    const meter = document.querySelector('.meter[data-meter="' + name + '"]');
    const raw = audio && typeof audio[name] === "number" ? audio[name] : 0;
    const value = Math.max(0, Math.min(1, raw));
    meter.dataset.value = value.toFixed(3);
    meter.querySelector(".meter-fill").style.transform = "scaleX(" + value.toFixed(3) + ")";
  }
}

function renderPrompt(show, control) {
  const list = $("prompts");
  const prompts = (show && show.prompts) || [];
  const typed = control.typed_prompt;
  list.replaceChildren(...prompts.map((p) => {
    const item = document.createElement("li");
    const text = document.createElement("span");
    text.textContent = p.text;
    const weight = document.createElement("span");
    weight.className = "weight";
    weight.title = "weight " + Number(p.weight).toFixed(2);
    const fill = document.createElement("span");
    fill.style.width = Math.max(0, Math.min(1, Number(p.weight) || 0)) * 100 + "%";
    weight.append(fill);
    item.append(text, weight);
    if (typed && p.text === typed) item.classList.add("typed");
    return item;
  }));
  const transition = show && typeof show.transition === "number" ? show.transition : null;
  $("transition").style.width = (transition === null ? 0 : Math.max(0, Math.min(1, transition)) * 100) + "%";
  $("transition").parentElement.dataset.value = transition === null ? "" : transition.toFixed(2);

  const ends = control.theme_prompts || [];
  $("xfade-a").textContent = ends[0] || "prompt 1";
  $("xfade-a").title = ends[0] || "";
  $("xfade-b").textContent = ends[1] || "prompt 2";
  $("xfade-b").title = ends[1] || "";
  const slider = $("crossfade");
  slider.disabled = ends.length < 2;
  if (typeof control.crossfade === "number" && performance.now() > crossfadeHeldUntil) {
    slider.value = String(control.crossfade);
  }
}

// Rebuilds a row of buttons only when its names change, so a finger on a button is not lost to a redraw.
function buttonRow(holder, names, make) {
  const key = JSON.stringify(names);
  if (holder.dataset.names === key) return;
  holder.dataset.names = key;
  holder.replaceChildren(...names.map(make));
}

function renderThemes(themes, active) {
  const holder = $("themes");
  buttonRow(holder, themes, (name) => {
    const button = document.createElement("button");
    button.textContent = name;
    button.dataset.theme = name;
    button.addEventListener("click", () => send("/api/theme", { name }));
    return button;
  });
  for (const button of holder.children) {
    const on = button.dataset.theme === active;
    button.classList.toggle("active", on);
    button.setAttribute("aria-pressed", on ? "true" : "false");
  }
}

function renderShow(show) {
  const paused = Boolean(show && show.paused);
  const pause = $("pause");
  pause.textContent = paused ? "resume" : "pause";
  pause.dataset.action = paused ? "resume" : "pause";
  pause.setAttribute("aria-pressed", paused ? "true" : "false");
  $("paused-note").hidden = !paused;
  $("panic").setAttribute("aria-pressed", show && show.calm ? "true" : "false");
}

function renderScenes(scenes) {
  buttonRow($("scenes"), scenes, (name) => {
    const button = document.createElement("button");
    button.textContent = name;
    button.dataset.scene = name;
    button.title = "recall " + name;
    button.addEventListener("click", () => {
      const bars = Number($("morph-bars").value);
      send("/api/scene/recall", { name, morph_bars: bars }, "scene " + name + (bars ? " over " + bars + " bars" : ""));
    });
    return button;
  });
}

function renderProfiles(profiles, running) {
  const holder = $("profiles");
  buttonRow(holder, profiles, (path) => {
    const button = document.createElement("button");
    button.textContent = path.split(/[\\/]/).pop();
    button.title = path;
    button.dataset.profile = path;
    button.addEventListener("click", () => send("/api/profile", { path }, "switching to " + button.textContent));
    return button;
  });
  for (const button of holder.children) {
    const on = button.dataset.profile === running;
    button.classList.toggle("active", on);
    button.setAttribute("aria-pressed", on ? "true" : "false");
  }
}

function renderLearn(control) {
  const select = $("learn-target");
  const targets = control.learn_targets || FALLBACK_LEARN_TARGETS.concat(
    (control.themes || []).map((name) => "theme.set:" + name));
  const key = JSON.stringify(targets);
  if (select.dataset.names !== key) {
    const chosen = select.value;
    select.dataset.names = key;
    select.replaceChildren(...targets.map((t) => new Option(t, t)));
    if (targets.includes(chosen)) select.value = chosen;
  }
  const learn = control.learn;
  if (!learn) return;
  const status = $("learn-status");
  const where = learn.source ? learn.source + " → " + learn.target : learn.target;
  const texts = {
    waiting: "move a control for " + learn.target + " …",
    moving: where + ": move it over its range, then let it rest",
    written: where + " written to the profile as mappings." + learn.name,
    failed: "learn failed: " + (learn.error || "unknown error"),
    cancelled: "learn cancelled",
    timeout: "no control moved",
  };
  status.textContent = texts[learn.state] || learn.state;
  status.classList.toggle("done", learn.state === "written");
  status.classList.toggle("error", learn.state === "failed" || learn.state === "timeout");
}

function renderWarnings(warnings) {
  const list = $("warnings");
  const key = JSON.stringify(warnings);
  if (list.dataset.names === key) return;
  list.dataset.names = key;
  list.replaceChildren(...warnings.slice().reverse().map((text) => {
    const item = document.createElement("li");
    item.textContent = text;
    return item;
  }));
}

// --- the picture: the MJPEG stream; started again when it breaks (a bridge restart ends it) ----------------------
let pictureRetry = null;

// A show with several screens: a pill for each (its state; its error on hover); a click shows its picture.
let pictureScreen = "main";

function renderScreens(screens) {
  const holder = $("screens");
  holder.hidden = screens.length < 2;
  if (!screens.some((sc) => sc.name === pictureScreen)) pictureScreen = "main";
  const names = screens.map((sc) => sc.name);
  Array.from(holder.children).forEach((el) => { if (!names.includes(el.dataset.screen)) el.remove(); });
  for (const sc of screens) {
    let pill = Array.from(holder.children).find((el) => el.dataset.screen === sc.name);
    if (!pill) {  // kept from one message to the next, so a click is never lost to a redraw
      pill = document.createElement("button");
      pill.type = "button";
      pill.className = "pill screen";
      pill.dataset.screen = sc.name;
      pill.addEventListener("click", () => { pictureScreen = sc.name; if (state) render(state); });
      holder.append(pill);
    }
    const fps = typeof sc.fps_in === "number" && sc.state === "streaming" ? " · " + sc.fps_in.toFixed(1) + " fps" : "";
    pill.textContent = sc.name + ": " + (sc.state || "-") + fps;
    pill.dataset.state = sc.state || "";
    pill.title = sc.last_error ? sc.name + ": " + sc.last_error : sc.pipeline + " at " + sc.url;
    pill.setAttribute("aria-pressed", String(sc.name === pictureScreen));
  }
}

function renderPicture(s, control) {
  renderScreens(s.screens || []);
  const img = $("picture");
  if (!s.video) {  // no video output in this show: nothing to watch, nothing to retry
    clearTimeout(pictureRetry);
    pictureRetry = null;
    if (img.dataset.stream) {
      img.removeAttribute("src");
      delete img.dataset.stream;
    }
  } else {
    const stream = withToken(pictureScreen === "main" ? control.stream || "/stream.mjpg"
      : "/screens/" + encodeURIComponent(pictureScreen) + "/stream.mjpg");
    if (img.dataset.stream !== stream && !pictureRetry) startPicture(stream);
  }
  const frames = s.video ? s.video.frames_shown : 0;
  $("picture-note").hidden = Boolean(s.video && frames > 0);
  $("picture-note").textContent = s.video ? "waiting for the first frame" : "no video output in this show";
}

function startPicture(stream) {
  const img = $("picture");
  img.dataset.stream = stream;
  img.src = stream;
}

function pictureBroke() {
  const img = $("picture");
  const stream = img.dataset.stream;
  if (!stream || pictureRetry || (state && !state.video)) return;
  img.removeAttribute("src");
  pictureRetry = setTimeout(() => {
    pictureRetry = null;
    startPicture(stream);
  }, 2000);
}

// --- the WebSocket: reconnects with a capped, jittered backoff while the bridge restarts -------------------------
let socket = null;
let backoff = 500;

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(scheme + "//" + location.host + withToken("/ws"));
  socket = ws;
  const link = $("link");
  link.dataset.state = "connecting";
  link.textContent = "connecting";
  let opened = false;
  ws.addEventListener("open", () => {
    opened = true;
    backoff = 500;
    $("token-banner").hidden = true;  // the bridge let this socket in: no token is missing
    link.dataset.state = "open";
    link.textContent = "live";
  });
  ws.addEventListener("message", (event) => {
    let data;
    try { data = JSON.parse(event.data); } catch (_) { return; }
    if (data && data.type === "state") render(data);
  });
  ws.addEventListener("close", (event) => {
    if (socket !== ws) return;
    link.dataset.state = "closed";
    link.textContent = "reconnecting";
    if (!opened) checkToken();  // refused at the handshake (a wrong token?) or the bridge is away
    const wait = backoff * (0.75 + Math.random() * 0.5);
    backoff = Math.min(backoff * 2, 5000);
    setTimeout(connect, wait);
    pictureBroke();
  });
}

// A WebSocket refused at the handshake says nothing about why: ask the API once.
async function checkToken() {
  try {
    const asked = token;
    const headers = asked ? { Authorization: "Bearer " + asked } : {};
    const response = await fetch("/api/state", { headers });
    // A token typed while this was under way is not the one refused.
    if (response.status === 401 && token === asked) wantToken();
    else if (response.ok) render(await response.json());
  } catch (_) { /* the bridge is away: the reconnect goes on */ }
}

// --- wiring --------------------------------------------------------------------------------------------------------
function wire() {
  $("prompt-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("prompt-text");
    const text = input.value.trim();
    if (!text) return;
    if (await send("/api/prompt", { text }, "prompt sent")) input.value = "";
  });

  const crossfade = latestOnly("/api/crossfade", "value");
  $("crossfade").addEventListener("input", (event) => {
    crossfadeHeldUntil = performance.now() + 1500;  // the state must not pull the fader from under the finger
    crossfade(Number(event.target.value));
  });

  for (const button of document.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => send("/api/action", { name: button.dataset.action }));
  }

  // Tap tempo and "one" count the moment the finger lands, not when it lifts.
  const onLanding = (button, action) => {
    const now = () => {
      button.classList.add("flash");
      setTimeout(() => button.classList.remove("flash"), 90);
      send("/api/action", { name: action });
    };
    button.addEventListener("pointerdown", (event) => { event.preventDefault(); now(); });
    button.addEventListener("keydown", (event) => {
      if ((event.key === " " || event.key === "Enter") && !event.repeat) { event.preventDefault(); now(); }
    });
  };
  onLanding($("tap"), "tap");
  onLanding($("downbeat"), "downbeat");

  $("scene-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("scene-name").value.trim();
    if (!name) return;
    if (await send("/api/scene/save", { name }, "scene " + name + " saved")) $("scene-name").value = "";
  });

  $("learn-start").addEventListener("click", async () => {
    const body = { target: $("learn-target").value };
    const name = $("learn-name").value.trim();
    if (name) body.name = name;
    try {
      await post("/api/learn", body);
      if (!(state && state.control && state.control.learn)) $("learn-status").textContent = "move a control …";
    } catch (err) {
      const status = $("learn-status");
      status.classList.add("error");
      status.textContent = err.status === 404 || err.status === 501
        ? "MIDI learn: not available in this bridge" : err.message;
    }
  });
  $("learn-cancel").addEventListener("click", () => send("/api/learn/cancel", {}));

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    token = value;
    storeToken(value);
    $("token-banner").hidden = true;
    if (socket) socket.close();  // its close handler reconnects, now with the token
    delete $("picture").dataset.stream;  // the next state starts the picture again, with the token
  });

  $("picture").addEventListener("error", pictureBroke);
}

token = loadToken();
wire();  // the picture starts with the first state, which says whether this show has one
requestAnimationFrame(drawBeats);
connect();
