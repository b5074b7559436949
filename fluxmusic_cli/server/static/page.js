// The fluxmusic page: make clips, follow every job in one event stream, listen, look and edit.
// Plain JavaScript, no build step, nothing from another origin. The browser signs in with the
// session cookie of the one-time login link; every request goes to the server's own API.
"use strict";

(function () {
  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  // The main options, sent with every job whose command takes them (read off the API schema).
  const OPTIONS = ["steps", "duration", "guidance", "seed", "negative_prompt", "encoders",
    "format", "save_latent"];
  const ACTIVE = ["queued", "running"];
  const RECORD_FIELDS = [
    ["operation", "Operation"],
    ["prompt", "Prompt"],
    ["negative_prompt", "Negative prompt"],
    ["seed", "Seed"],
    ["steps", "Steps"],
    ["guidance", "Guidance"],
    ["duration", "Duration", (v) => `${Number(v).toFixed(2)} s`],
    ["encoders", "Encoders"],
    ["model", "Model", (v) => (v && (v.variant || String(v.source || "").split("/").pop())) || ""],
    ["device", "Device"],
    ["dtype", "Dtype"],
    ["lufs", "Loudness", (v) => `${Number(v).toFixed(1)} LUFS`],
    ["format", "Format"],
    ["version", "fluxmusic"],
  ];

  const state = {
    schema: {}, // command -> its job fields (JSON Schema properties)
    engine: null,
    cards: new Map(), // job id -> card
    source: null,
  };

  // A clip's audio, spectrogram and peaks load when its card comes near the screen, so a long
  // history does not ask for every clip at once.
  const cardOf = new WeakMap(); // li -> card
  const nearScreen = "IntersectionObserver" in window
    ? new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        nearScreen.unobserve(entry.target);
        const card = cardOf.get(entry.target);
        if (card && card.job) loadMedia(card, card.job);
      }
    }, { rootMargin: "400px" })
    : null;

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // One request to the API; its JSON, or an ApiError carrying the server's sentence.
  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "The server cannot be reached; is fluxmusic serve still running?");
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const said = data && typeof data.error === "string" ? data.error : "";
      throw new ApiError(response.status, said || `The server answered ${response.status}.`);
    }
    return data;
  }

  // -- start ------------------------------------------------------------------------------------

  async function start() {
    $("#make").addEventListener("submit", onGenerate);
    window.addEventListener("resize", () => requestAnimationFrame(redrawAll));
    try {
      state.engine = await api("GET", "/v1/engine");
      readSchema(await api("GET", "/v1/openapi.json"));
    } catch (err) {
      if (err.status === 401) signedOut();
      else $("#make-error").textContent = err.message;
      return;
    }
    showEngine(state.engine);
    listen();
  }

  function signedOut() {
    $("#signin").hidden = false;
    $("#generate").disabled = true;
    setLive("closed", "not signed in");
  }

  function readSchema(openapi) {
    const body = openapi.paths["/v1/jobs"].post.requestBody.content["application/json"].schema;
    for (const variant of body.oneOf || []) state.schema[variant.title] = variant.properties || {};
    const generate = state.schema.generate || {};
    for (const name of ["steps", "duration", "guidance", "negative_prompt"]) {
      const prop = generate[name];
      if (prop && prop.default !== undefined && prop.default !== null) {
        $("#" + name).placeholder = String(prop.default);
      }
    }
    const serverEncoders = state.engine && state.engine.options && state.engine.options.encoders;
    fillSelect($("#encoders"), (generate.encoders || {}).enum, serverEncoders);
    fillSelect($("#format"), (generate.format || {}).enum, (generate.format || {}).default);
    const strength = (state.schema.remix || {}).strength;
    if (strength && strength.default != null) {
      $("#job-card").content.querySelector(".edit-strength").placeholder = String(strength.default);
    }
  }

  function fillSelect(select, values, serverDefault) {
    if (serverDefault) select.options[0].textContent = `server default (${serverDefault})`;
    for (const value of values || []) select.add(new Option(value, value));
  }

  function showEngine(engine) {
    const options = engine.options || {};
    const resolved = engine.resolved || {};
    const model = String(options.model || "").split("/").pop();
    $("#engine").textContent = [model && `model ${model}`, resolved.device, resolved.dtype]
      .filter(Boolean).join(" · ");
  }

  // -- one event stream for every job -----------------------------------------------------------

  function listen() {
    const source = new EventSource("/v1/events");
    state.source = source;
    source.addEventListener("open", () => setLive("open", "live"));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        setLive("closed", "disconnected");
        setTimeout(reconnect, 3000);
      } else {
        setLive("connecting", "reconnecting…");
      }
    });
    source.addEventListener("jobs", (e) => replaceAll(JSON.parse(e.data).jobs));
    source.addEventListener("job", (e) => upsert(JSON.parse(e.data)));
    source.addEventListener("deleted", (e) => dropCard(JSON.parse(e.data).id));
  }

  // The stream was refused (the server restarted and forgot this browser's session, say).
  async function reconnect() {
    try {
      await api("GET", "/v1/engine");
    } catch (err) {
      if (err.status === 401) signedOut();
      else setTimeout(reconnect, 5000);
      return;
    }
    listen();
  }

  function setLive(kind, text) {
    const live = $("#live");
    live.dataset.state = kind;
    live.textContent = text;
  }

  function replaceAll(jobs) {
    const keep = new Set(jobs.map((job) => job.id));
    for (const id of Array.from(state.cards.keys())) if (!keep.has(id)) dropCard(id);
    const list = $("#jobs");
    for (const job of jobs) list.appendChild(cardFor(job).li); // newest first, as listed
    for (const job of jobs) update(state.cards.get(job.id), job);
    $("#empty").hidden = state.cards.size > 0;
  }

  function upsert(job) {
    let card = state.cards.get(job.id);
    if (!card) {
      card = cardFor(job);
      $("#jobs").prepend(card.li);
    }
    update(card, job);
    $("#empty").hidden = true;
  }

  function dropCard(id) {
    const card = state.cards.get(id);
    if (!card) return;
    if (nearScreen) nearScreen.unobserve(card.li);
    state.cards.delete(id);
    card.li.remove();
    $("#empty").hidden = state.cards.size > 0;
  }

  // -- a job's card -----------------------------------------------------------------------------

  function cardFor(job) {
    const existing = state.cards.get(job.id);
    if (existing) return existing;
    const li = $("#job-card").content.firstElementChild.cloneNode(true);
    li.dataset.jobId = job.id;
    const card = { id: job.id, li, job: null, loaded: false, peaks: null, region: null };
    $(".job-remove", li).addEventListener("click", () => removeJob(card));
    for (const button of $$("[data-action]", li)) {
      button.addEventListener("click", () => editJob(card, button.dataset.action, button));
    }
    for (const input of [$(".region-start", li), $(".region-end", li)]) {
      input.addEventListener("input", () => regionFromInputs(card));
    }
    wireWave(card);
    cardOf.set(li, card);
    state.cards.set(job.id, card);
    return card;
  }

  function update(card, job) {
    const li = card.li;
    card.job = job;
    const progress = job.progress || { step: 0, steps: 0 };
    li.dataset.status = job.status;
    li.dataset.step = String(progress.step);
    li.dataset.steps = String(progress.steps);
    const request = job.request || {};
    const input = request.input ? ` of ${shortRef(request.input)}` : "";
    $(".job-command", li).textContent = job.command + input;
    $(".job-prompt", li).textContent = request.prompt || (job.record && job.record.prompt) || "";
    $(".job-status", li).textContent = statusText(job);

    const bar = $(".job-progress", li);
    const meter = $("progress", bar);
    bar.hidden = !(ACTIVE.includes(job.status) || job.status === "succeeded");
    meter.max = Math.max(1, progress.steps);
    meter.value = job.status === "succeeded" ? meter.max : progress.step;
    meter.setAttribute("aria-label", `Progress of job ${job.id.slice(0, 8)}`);
    $(".job-steps", li).textContent = stepsText(job, progress);

    $(".job-error", li).textContent = job.status !== "succeeded" && job.error ? job.error : "";
    const remove = $(".job-remove", li);
    if (!card.confirming || ACTIVE.includes(job.status)) {
      remove.textContent = ACTIVE.includes(job.status) ? "Cancel" : "Delete";
      remove.setAttribute("aria-label", `${remove.textContent} job ${job.id.slice(0, 8)}`);
    }
    if (job.status === "succeeded" && !card.loaded) showResult(card, job);
  }

  function statusText(job) {
    if (job.status === "queued" && job.position != null) {
      return job.position === 0 ? "queued, next" : `queued, ${job.position} ahead`;
    }
    return job.status;
  }

  function stepsText(job, progress) {
    if (job.status === "succeeded") {
      const seconds = (Date.parse(job.finished) - Date.parse(job.started)) / 1000;
      return Number.isFinite(seconds) ? `done in ${seconds.toFixed(1)} s` : "done";
    }
    if (job.status === "running" && progress.steps) {
      return `step ${progress.step} of ${progress.steps}`;
    }
    return job.status === "running" ? "starting" : "";
  }

  function shortRef(ref) {
    const [kind, id] = ref.split(":");
    return `${kind} ${String(id || "").slice(0, 8)}`;
  }

  function showResult(card, job) {
    card.loaded = true;
    $(".job-result", card.li).hidden = false;
    showRecord(card.li, job.record || {});
    if (nearScreen) nearScreen.observe(card.li);
    else loadMedia(card, job);
  }

  function loadMedia(card, job) {
    if (card.removing || !state.cards.has(card.id)) return;
    const li = card.li;
    const base = `/v1/jobs/${encodeURIComponent(job.id)}`;
    const format = (job.request && job.request.format) || (job.record && job.record.format) || "wav";
    const audio = $(".job-audio", li);
    audio.src = `${base}/audio`;
    audio.addEventListener("timeupdate", () => drawWave(card));
    audio.addEventListener("seeked", () => drawWave(card));
    $(".job-spectrogram", li).src = `${base}/spectrogram.png`;
    const download = $(".job-download", li);
    download.href = `${base}/audio`;
    download.download = `fluxmusic-${job.id.slice(0, 8)}.${format}`;
    download.setAttribute("aria-label", `Download the clip of job ${job.id.slice(0, 8)}`);
    api("GET", `${base}/peaks`).then(
      (peaks) => {
        card.peaks = peaks;
        for (const input of [$(".region-start", li), $(".region-end", li)]) {
          input.max = peaks.duration.toFixed(2);
        }
        drawWave(card);
      },
      (err) => showActionError(card, err.message),
    );
  }

  function showRecord(li, record) {
    const list = $(".job-record", li);
    list.textContent = "";
    for (const [key, label, shown] of RECORD_FIELDS) {
      const value = record[key];
      if (value === undefined || value === null || value === "") continue;
      const text = shown ? shown(value) : String(value);
      if (!text) continue;
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = text;
      list.append(dt, dd);
    }
    $(".job-record-json", li).textContent = JSON.stringify(record, null, 2);
  }

  // -- the waveform: drawn from the server's peaks; drag to choose a region -------------------

  function wireWave(card) {
    const canvas = $(".job-wave", card.li);
    let from = null;
    let fromX = 0;
    canvas.addEventListener("pointerdown", (e) => {
      if (!card.peaks || e.button !== 0) return;
      canvas.setPointerCapture(e.pointerId);
      from = timeAt(card, e);
      fromX = e.clientX;
      e.preventDefault();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (from === null) return;
      setRegion(card, from, timeAt(card, e));
    });
    const finish = (e) => {
      if (from === null) return;
      const t = timeAt(card, e);
      if (Math.abs(e.clientX - fromX) < 3) {
        const audio = $(".job-audio", card.li); // a click, not a drag: play from there
        if (Number.isFinite(audio.duration)) audio.currentTime = Math.min(t, audio.duration);
      } else {
        setRegion(card, from, t);
      }
      from = null;
    };
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", () => {
      from = null;
    });
  }

  function timeAt(card, e) {
    const box = $(".job-wave", card.li).getBoundingClientRect();
    const x = Math.min(Math.max(e.clientX - box.left, 0), box.width);
    return box.width ? (x / box.width) * card.peaks.duration : 0;
  }

  function setRegion(card, a, b) {
    const start = Math.min(a, b);
    const end = Math.max(a, b);
    card.region = [start, end];
    $(".region-start", card.li).value = start.toFixed(2);
    $(".region-end", card.li).value = end.toFixed(2);
    drawWave(card);
  }

  function regionFromInputs(card) {
    const start = parseFloat($(".region-start", card.li).value);
    const end = parseFloat($(".region-end", card.li).value);
    card.region = Number.isFinite(start) && Number.isFinite(end) ? [start, end] : null;
    drawWave(card);
  }

  function drawWave(card) {
    const canvas = $(".job-wave", card.li);
    const peaks = card.peaks;
    if (!peaks || !canvas.isConnected) return;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    const ctx = canvas.getContext("2d");
    const colours = getComputedStyle(document.documentElement);
    ctx.clearRect(0, 0, width, height);
    const duration = peaks.duration || 1;
    const x = (seconds) => (seconds / duration) * width;
    if (card.region) {
      ctx.fillStyle = colours.getPropertyValue("--region");
      const [start, end] = card.region;
      ctx.fillRect(x(start), 0, Math.max(1, x(end) - x(start)), height);
    }
    const pairs = peaks.peaks;
    const mid = height / 2;
    let loudest = 0; // the clip's shape fills the height, however quiet it is
    for (const [low, high] of pairs) loudest = Math.max(loudest, -low, high);
    const scale = loudest > 0 ? 0.95 / loudest : 1;
    ctx.fillStyle = colours.getPropertyValue("--wave");
    for (let px = 0; px < width; px++) {
      const first = Math.floor((px / width) * pairs.length);
      const last = Math.max(first + 1, Math.floor(((px + 1) / width) * pairs.length));
      let low = 0;
      let high = 0;
      for (let i = first; i < last && i < pairs.length; i++) {
        low = Math.min(low, pairs[i][0]);
        high = Math.max(high, pairs[i][1]);
      }
      const top = mid - Math.min(1, high * scale) * mid;
      const bottom = mid - Math.max(-1, low * scale) * mid;
      ctx.fillRect(px, top, 1, Math.max(1, bottom - top));
    }
    const audio = $(".job-audio", card.li);
    if (audio.currentTime > 0) {
      ctx.fillStyle = colours.getPropertyValue("--playhead");
      ctx.fillRect(x(audio.currentTime), 0, Math.max(1, ratio), height);
    }
  }

  function redrawAll() {
    for (const card of state.cards.values()) drawWave(card);
  }

  // -- sending jobs -----------------------------------------------------------------------------

  // The main options a job of `command` takes, as typed (an empty field is left to the server).
  function mainOptions(command) {
    const fields = state.schema[command] || {};
    const out = {};
    for (const name of OPTIONS) {
      if (!(name in fields)) continue;
      const input = $("#" + name);
      if (input.type === "checkbox") {
        out[name] = input.checked;
      } else if (input.value.trim() !== "") {
        out[name] = input.type === "number" ? asNumber(input.value) : input.value.trim();
      }
    }
    return out;
  }

  function asNumber(text) {
    const value = Number(text);
    return Number.isFinite(value) ? value : text; // the server says what is wrong with it
  }

  async function onGenerate(e) {
    e.preventDefault();
    const body = { command: "generate", prompt: $("#prompt").value, ...mainOptions("generate") };
    const button = $("#generate");
    button.disabled = true;
    $("#make-error").textContent = "";
    try {
      const made = await api("POST", "/v1/jobs", body);
      $("#make-status").textContent = `Queued ${made.id.slice(0, 8)}.`;
    } catch (err) {
      $("#make-status").textContent = "";
      $("#make-error").textContent = err.message;
      if (err.status === 401) signedOut();
    } finally {
      if ($("#signin").hidden) button.disabled = false;
    }
  }

  async function editJob(card, action, button) {
    const li = card.li;
    const body = { command: action, input: `job:${card.id}`, ...mainOptions(action) };
    const prompt = $(".edit-prompt", li).value.trim();
    if (prompt) body.prompt = prompt;
    if (action === "remix") {
      const strength = $(".edit-strength", li).value;
      if (strength !== "") body.strength = asNumber(strength);
    } else if (action === "extend") {
      const add = $(".edit-add", li).value;
      if (add !== "") body.add = asNumber(add);
    } else if (action === "repaint") {
      const start = $(".region-start", li).value;
      const end = $(".region-end", li).value;
      if (start === "" || end === "") {
        showActionError(card, "Choose a region first: drag across the waveform, or type its start and end.");
        return;
      }
      body.region = [`${start}:${end}`];
    }
    showActionError(card, "");
    button.disabled = true;
    try {
      await api("POST", "/v1/jobs", body);
    } catch (err) {
      showActionError(card, err.message);
      if (err.status === 401) signedOut();
    } finally {
      button.disabled = false;
    }
  }

  function showActionError(card, message) {
    $(".job-action-error", card.li).textContent = message;
  }

  // Cancel stops a queued or running job at once; Delete (a finished job and its files) asks
  // for a second click within a few seconds.
  async function removeJob(card) {
    const button = $(".job-remove", card.li);
    const finished = card.job && !ACTIVE.includes(card.job.status);
    if (finished && !card.confirming) {
      card.confirming = true;
      button.textContent = "Really delete?";
      button.setAttribute("aria-label", `Really delete job ${card.id.slice(0, 8)}? Press again`);
      setTimeout(() => {
        card.confirming = false;
        if (card.job) update(card, card.job);
      }, 4000);
      return;
    }
    card.removing = finished;
    button.disabled = true;
    try {
      await api("DELETE", `/v1/jobs/${encodeURIComponent(card.id)}`);
      if (finished) dropCard(card.id);
    } catch (err) {
      card.removing = false;
      $(".job-error", card.li).textContent = err.message;
    } finally {
      button.disabled = false;
    }
  }

  start();
})();
