// The kikimimi demo page: the public mimi protocol exactly as a browser speaks it.
//
// A session is one WebSocket to the API root (the page's "../"): the parameters in the
// query string (a browser cannot set headers on a WebSocket), 16-bit PCM (or FLAC) as
// binary frames, then {"command": "recog-break"}; JSON results come back until
// "recog-finished". See docs/demo.md and docs/protocol.md.

const FRAME_MS = 100;
const MIC_RATE = 16000;
const MAX_QUEUED_FRAMES = 300; // audio captured before the socket opened (30 s)
const MAX_FILE_BYTES = 64 * 1024 * 1024;
const MAX_LOG_ENTRIES = 400;
const TOKEN_KEY = "kikimimi-demo-token";
const NO_SPACE_LANGUAGES = new Set(["ja", "zh", "ko", "th"]);

const $ = (id) => document.getElementById(id);

// -- settings --------------------------------------------------------------------------

let routes = {}; // process → languages, from config.json

async function loadConfig() {
  const note = $("config-note");
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    const body = await response.json();
    if (!response.ok) {
      throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    }
    routes = body.processes;
  } catch (error) {
    routes = { "nict-asr": [], asr: [] };
    note.textContent = `This deployment's languages could not be listed (${error.message}); type one.`;
    note.hidden = false;
  }
  const process = $("process");
  process.replaceChildren();
  // nict-asr first: its options are what the page shows best.
  const names = Object.keys(routes).sort();
  names.sort((a, b) => (b === "nict-asr") - (a === "nict-asr"));
  for (const name of names) {
    process.append(new Option(name, name));
  }
  fillLanguages();
}

function fillLanguages() {
  const languages = routes[$("process").value] || [];
  $("languages").replaceChildren(...languages.map((language) => new Option(language, language)));
  const input = $("language");
  if (!input.value || (languages.length && !languages.includes(input.value) && !input.dataset.typed)) {
    const browser = (navigator.language || "").split("-")[0];
    input.value = languages.includes(browser) ? browser : languages[0] || "";
  }
  showOptionFields();
}

function showOptionFields() {
  const nict = $("process").value === "nict-asr";
  const v2 = nict && $("format").value === "v2";
  for (const element of document.querySelectorAll(".nict")) {
    const shown = element.classList.contains("v2") ? v2 : nict;
    element.classList.toggle("hidden-option", !shown);
  }
}

function restoreToken() {
  const saved = localStorage.getItem(TOKEN_KEY);
  if (saved) {
    $("token").value = saved;
    $("remember").checked = true;
  }
}

function keepToken() {
  // Only when the user asked for it; never in the page's own URL.
  if ($("remember").checked && $("token").value) {
    localStorage.setItem(TOKEN_KEY, $("token").value);
  } else {
    localStorage.removeItem(TOKEN_KEY);
  }
}

// The session's query parameters, but for the content type (known once the audio is).
function sessionParameters() {
  const process = $("process").value;
  const params = new URLSearchParams({ process, "input-language": $("language").value.trim() });
  if (process === "nict-asr") {
    const format = $("format").value;
    const options = [`response_format=${format}`];
    if (format === "v2") {
      options.push(`progressive=${$("progressive").checked}`, `temporary=${$("temporary").checked}`);
      options.push(`temporary_interval=${$("interval").value || 1500}`);
    }
    params.set("nict-asr-options", options.join(";"));
  }
  return { params, token: $("token").value.trim(), language: params.get("input-language") };
}

// The API is the page's parent path: "/" for "/demo/", "/prefix/" behind a path prefix.
function apiUrl(scheme, params) {
  const url = new URL("../", location.href);
  url.protocol = scheme;
  url.search = params.toString();
  url.hash = "";
  return url;
}

// -- what the page shows ---------------------------------------------------------------

let current = null; // the running Session

function setState(state, text) {
  const element = $("state");
  element.dataset.state = state;
  element.textContent = text || state;
  const busy = state === "connecting" || state === "streaming" || state === "finishing";
  $("settings-fields").disabled = busy;
  $("mic").disabled = busy;
  $("file").disabled = busy;
  $("stream-file").disabled = busy || !$("file").files.length;
  $("stop").disabled = !(state === "connecting" || state === "streaming");
}

function showError(code, message, detail) {
  $("error-code").textContent = code;
  $("error-message").textContent = message;
  $("error-detail").textContent = detail || "";
  $("error").hidden = false;
}

function clearOutput() {
  $("error").hidden = true;
  $("utterances").replaceChildren();
  $("temporary-text").textContent = "";
  $("timing").textContent = "";
  $("log").replaceChildren();
  $("level").value = 0;
  delete $("level").dataset.peak;
}

function logMessage(session, kind, text) {
  const item = document.createElement("li");
  item.dataset.kind = kind;
  item.dataset.t = Math.round(performance.now() - session.startedAt);
  item.dataset.audio = session.clock().toFixed(3);
  item.textContent = `${(item.dataset.t / 1000).toFixed(2)} s  ${text}`;
  const log = $("log");
  log.append(item);
  while (log.childElementCount > MAX_LOG_ENTRIES) {
    log.firstElementChild.remove();
  }
}

// The meter spans -60 to 0 dBFS; data-peak keeps the session's loudest frame.
function showLevel(rms) {
  const db = 20 * Math.log10(Math.max(rms, 1e-6));
  const meter = $("level");
  meter.value = Math.max(0, Math.min(1, (db + 60) / 60));
  meter.dataset.peak = Math.max(meter.value, Number(meter.dataset.peak || 0)).toFixed(2);
}

// -- results ---------------------------------------------------------------------------

class Transcript {
  constructor(session) {
    this.session = session;
    this.separator = NO_SPACE_LANGUAGES.has(session.language.split("-")[0]) ? "" : " ";
    this.last = null; // the last determined segment: {text, time}
    this.firstTemporary = null; // clock of the first temporary of the segment in progress
    this.shownWordsEnd = -1; // asr: end (ms) of the last word shown
  }

  temporary(text) {
    if (this.firstTemporary === null && text) {
      this.firstTemporary = this.session.clock();
    }
    $("temporary-text").textContent = text;
  }

  determined(text, time) {
    if (this.last && this.last.text === text && this.last.time === time) {
      return; // recog-finished repeats the last progressive segment
    }
    this.last = { text, time };
    $("temporary-text").textContent = "";
    if (!text) {
      return;
    }
    const clock = this.session.clock();
    const item = document.createElement("li");
    item.dataset.text = text;
    item.dataset.determined = clock.toFixed(3);
    const timing = [];
    if (typeof time === "number") {
      item.dataset.start = (time / 1000).toFixed(3);
      timing.push(`starts at ${(time / 1000).toFixed(2)} s`);
    }
    if (this.firstTemporary !== null) {
      item.dataset.firstTemporary = this.firstTemporary.toFixed(3);
      timing.push(`first temporary at ${this.firstTemporary.toFixed(2)} s`);
    }
    timing.push(`determined at ${clock.toFixed(2)} s of audio`);
    const words = document.createElement("span");
    words.className = "text";
    words.textContent = text;
    const caption = document.createElement("small");
    caption.textContent = timing.join(" · ");
    item.append(words, caption);
    $("utterances").append(item);
    this.firstTemporary = null;
  }

  // One result message of any format.
  show(message) {
    const finished = message.status === "recog-finished";
    const entries = message.response || [];
    if (message.type === "asr#nictlvcsr2") {
      for (const entry of entries) {
        if (entry.determined) {
          this.determined(entry.result, entry.time);
        } else {
          this.temporary(entry.result);
        }
      }
    } else if (message.type === "asr#nictlvcsr") {
      // One morpheme line per word: surface|reading|base|…; marker lines start with "|||".
      const surfaces = entries.map((e) => e.result.split("|")[0]).filter((s) => s);
      this.determined(surfaces.join(this.separator), undefined);
    } else if (message.type === "asr#mimilvcsr") {
      // In progress: each determined segment's words; finished: every word again.
      const fresh = entries.filter((w) => Array.isArray(w.time) && w.time[0] >= this.shownWordsEnd);
      if (fresh.length) {
        this.shownWordsEnd = fresh[fresh.length - 1].time[1];
        this.determined(fresh.map((w) => w.result).join(this.separator), fresh[0].time[0]);
      }
    }
    if (finished) {
      $("temporary-text").textContent = "";
    }
  }
}

// -- audio sources ---------------------------------------------------------------------

// The microphone: getUserMedia → AudioWorklet → 16-bit mono frames of FRAME_MS.
class Microphone {
  async open(onFrame) {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    try {
      this.context = new AudioContext({ sampleRate: MIC_RATE });
      this.source = this.context.createMediaStreamSource(this.stream);
    } catch {
      // Browsers that cannot resample a microphone into a 16 kHz context: the device's
      // rate, declared in the content type; the endpoint resamples.
      if (this.context) {
        this.context.close();
      }
      this.context = new AudioContext();
      this.source = this.context.createMediaStreamSource(this.stream);
    }
    this.rate = this.context.sampleRate;
    await this.context.audioWorklet.addModule("pcm-worklet.js");
    this.node = new AudioWorkletNode(this.context, "pcm-frames", {
      processorOptions: { frameSamples: Math.round((this.rate * FRAME_MS) / 1000) },
    });
    this.node.port.onmessage = (event) => {
      if (event.data.pcm) {
        onFrame(event.data.pcm, event.data.samples, event.data.rms);
      } else if (event.data.flushed && this.flushed) {
        this.flushed();
      }
    };
    this.source.connect(this.node);
    await this.context.resume();
    return `audio/x-pcm;bit=16;rate=${this.rate};channels=1`;
  }

  // The samples still in the worklet, then stop capturing.
  async close() {
    if (this.node) {
      await Promise.race([
        new Promise((resolve) => {
          this.flushed = resolve;
          this.node.port.postMessage("flush");
        }),
        new Promise((resolve) => setTimeout(resolve, 500)),
      ]);
      this.node.port.onmessage = null;
      this.source.disconnect();
    }
    if (this.stream) {
      this.stream.getTracks().forEach((track) => track.stop());
    }
    if (this.context) {
      await this.context.close();
    }
    this.node = null;
    this.stream = null;
    this.context = null;
  }
}

function wavFormat(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 12;
  let format = null;
  while (offset + 8 <= view.byteLength) {
    const id = String.fromCharCode(...bytes.subarray(offset, offset + 4));
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (id === "fmt ") {
      let tag = view.getUint16(body, true);
      if (tag === 0xfffe && size >= 26) {
        tag = view.getUint16(body + 24, true); // WAVE_FORMAT_EXTENSIBLE: the subformat
      }
      format = {
        tag,
        channels: view.getUint16(body + 2, true),
        rate: view.getUint32(body + 4, true),
        bits: view.getUint16(body + 14, true),
      };
    } else if (id === "data") {
      if (!format) {
        throw new Error("this WAV file has no fmt chunk before its data");
      }
      if (format.tag !== 1 || format.bits !== 16) {
        throw new Error(`only 16-bit PCM WAV can be streamed (this one: format ${format.tag}, ${format.bits} bit); convert it, e.g. sox in.wav -b 16 out.wav`);
      }
      const end = Math.min(body + size, bytes.byteLength);
      return {
        audio: bytes.subarray(body, end),
        contentType: `audio/x-pcm;bit=16;rate=${format.rate};channels=${format.channels}`,
        bytesPerSecond: format.rate * format.channels * 2,
        frameBytes: format.channels * 2,
      };
    }
    offset = body + size + (size % 2);
  }
  throw new Error("this WAV file has no data chunk");
}

function flacFormat(bytes) {
  // STREAMINFO, the first metadata block: rate (20 bits), channels-1 (3), bits-1 (5),
  // total samples (36) from byte 18 of the file.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 42 || (bytes[4] & 0x7f) !== 0) {
    throw new Error("this FLAC file does not start with its STREAMINFO block");
  }
  const packed = view.getUint32(18);
  const rate = packed >>> 12;
  const channels = ((packed >>> 9) & 0x7) + 1;
  const bits = ((packed >>> 4) & 0x1f) + 1;
  const samples = (packed & 0xf) * 2 ** 32 + view.getUint32(22);
  const seconds = samples && rate ? samples / rate : bytes.byteLength / 16000; // unknown: a guess
  return {
    audio: bytes,
    contentType: `audio/x-flac;bit=${bits};rate=${rate};channels=${channels}`,
    bytesPerSecond: bytes.byteLength / seconds,
    frameBytes: 1,
  };
}

// A file streamed at real time: WAV (16-bit PCM), FLAC, or raw 16 kHz s16le mono.
async function readAudioFile(file) {
  if (file.size > MAX_FILE_BYTES) {
    throw new Error(`the file is larger than ${MAX_FILE_BYTES / 1024 / 1024} MiB`);
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic === "RIFF" && String.fromCharCode(...bytes.subarray(8, 12)) === "WAVE") {
    return wavFormat(bytes);
  }
  if (magic === "fLaC") {
    return flacFormat(bytes);
  }
  return {
    audio: bytes,
    contentType: "audio/x-pcm;bit=16;rate=16000;channels=1",
    bytesPerSecond: 32000,
    frameBytes: 2,
  };
}

function pcmLevel(chunk) {
  const samples = new Int16Array(chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + (chunk.byteLength & ~1)));
  let sum = 0;
  for (const s of samples) {
    sum += (s / 32768) ** 2;
  }
  return samples.length ? Math.sqrt(sum / samples.length) : 0;
}

// -- a session -------------------------------------------------------------------------

class Session {
  constructor(settings) {
    Object.assign(this, settings);
    this.startedAt = performance.now();
    this.audioSeconds = 0; // captured or read so far
    this.lastAudioAt = null;
    this.opened = false;
    this.broke = false;
    this.breakAt = null;
    this.firstResultAt = null;
    this.errorShown = false;
    this.queue = [];
    this.transcript = new Transcript(this);
    this.stopSource = async () => {};
  }

  // Seconds on the audio's own clock: audio captured (or read) so far, plus the time since
  // its last frame; for a microphone it is the time since capturing began.
  clock() {
    if (this.lastAudioAt === null) {
      return 0;
    }
    return this.audioSeconds + (performance.now() - this.lastAudioAt) / 1000;
  }

  connect(contentType) {
    const params = new URLSearchParams(this.params);
    params.set("content-type", contentType);
    if (this.token) {
      // A browser cannot send an Authorization header on a WebSocket: the protocol's
      // query parameter. It is in this request line only, never in the page's URL.
      params.set("access-token", this.token);
    }
    this.contentType = contentType;
    const url = apiUrl(location.protocol === "https:" ? "wss:" : "ws:", params);
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => {
      this.opened = true;
      setState("streaming");
      if (url.searchParams.has("access-token")) {
        url.searchParams.set("access-token", "…");
      }
      logMessage(this, "open", `opened ${url} — sending ${contentType}`);
      for (const frame of this.queue) {
        this.ws.send(frame);
      }
      this.queue = [];
      if (this.breakPending) {
        this.sendBreak();
      }
    };
    this.ws.onmessage = (event) => this.received(event.data);
    this.ws.onclose = (event) => this.closed(event);
  }

  audio(pcm, seconds) {
    this.audioSeconds += seconds;
    this.lastAudioAt = performance.now();
    $("clock").textContent = `${this.audioSeconds.toFixed(1)} s`;
    if (this.broke) {
      return;
    }
    if (this.opened) {
      this.ws.send(pcm);
    } else {
      this.queue.push(pcm);
      if (this.queue.length > MAX_QUEUED_FRAMES) {
        this.queue.shift();
      }
    }
  }

  sendBreak() {
    if (!this.opened) {
      this.breakPending = true;
      return;
    }
    if (!this.broke && this.ws.readyState === WebSocket.OPEN) {
      this.broke = true;
      this.breakAt = performance.now();
      this.ws.send(JSON.stringify({ command: "recog-break" }));
      logMessage(this, "sent", '{"command": "recog-break"}');
      setState("finishing");
    }
  }

  // The user's Stop, or the end of the file: the rest of the audio, then recog-break.
  async stop() {
    await this.stopSource();
    if (this.ws.readyState === WebSocket.CONNECTING) {
      this.breakPending = true;
    } else {
      this.sendBreak();
    }
  }

  received(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      logMessage(this, "unparsed", String(data));
      return;
    }
    if (this.firstResultAt === null) {
      this.firstResultAt = this.clock();
    }
    if (message.type === "error") {
      logMessage(this, "error", data);
      const error = message.error || {};
      this.errorShown = true;
      showError(error.code || "error", error.message || "", `session ${message.session_id || "?"}`);
      return;
    }
    const entries = message.response || [];
    const kind = message.status === "recog-finished"
      ? "finished"
      : entries.some((e) => e.determined === false) ? "temporary" : "determined";
    logMessage(this, kind, data);
    this.transcript.show(message);
    if (message.status === "recog-finished") {
      this.finishedAt = performance.now();
      this.showTiming();
    }
  }

  showTiming() {
    const parts = [];
    if (this.firstResultAt !== null) {
      parts.push(`first result at ${this.firstResultAt.toFixed(2)} s of audio`);
    }
    if (this.breakAt !== null && this.finishedAt) {
      parts.push(`final ${Math.round(this.finishedAt - this.breakAt)} ms after recog-break`);
    }
    parts.push(`${this.audioSeconds.toFixed(1)} s of audio`);
    $("timing").textContent = parts.join(" · ");
    $("timing").dataset.finalMs = this.breakAt !== null ? Math.round(this.finishedAt - this.breakAt) : "";
  }

  async closed(event) {
    await this.stopSource();
    logMessage(this, "close", `closed ${event.code}${event.reason ? ` ${event.reason}` : ""}`);
    $("temporary-text").textContent = ""; // a hypothesis of a session that ended is no text
    if (current === this) {
      current = null;
    }
    if (!this.opened) {
      // A refused handshake is an HTTP answer the WebSocket API hides (the browser reports
      // only 1006): ask the same question over HTTP to show the server's own answer.
      setState("failed", "refused");
      await explainRefusal(this);
      return;
    }
    if (event.code === 1000 && this.finishedAt) {
      setState("done");
    } else {
      setState("failed", `closed ${event.code}`);
      if (!this.errorShown) {
        showError(`closed ${event.code}`, event.reason || "the connection ended without a final result");
      }
    }
  }
}

// The refusal as the server sends it: POST / with the same parameters and no audio answers
// the same check with its status and JSON body (the token as a header, not in the URL).
async function explainRefusal(session) {
  const params = new URLSearchParams(session.params);
  params.set("content-type", session.contentType);
  const headers = session.token ? { Authorization: `Bearer ${session.token}` } : {};
  let response;
  try {
    response = await fetch(apiUrl(location.protocol, params), {
      method: "POST", headers, body: new Uint8Array(0), cache: "no-store", credentials: "omit",
    });
  } catch (error) {
    showError("unreachable", "the server could not be reached", String(error));
    return;
  }
  let body = {};
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page
  }
  if (response.ok) {
    showError("websocket", "the server accepts these parameters over HTTP, but the WebSocket did not open",
      "a proxy in between may not pass WebSocket upgrades (the browser reported 1006)");
    return;
  }
  const error = body.error || {};
  const retry = response.headers.get("Retry-After");
  showError(`${response.status} ${error.code || response.statusText}`, error.message || "",
    retry ? `retry after ${retry} s` : "");
  $("error").dataset.status = response.status;
  $("error").dataset.code = error.code || "";
}

async function startMicrophone() {
  const session = begin();
  const microphone = new Microphone();
  session.stopSource = async () => {
    session.stopSource = async () => {};
    await microphone.close();
    $("level").value = 0;
  };
  try {
    const contentType = await microphone.open((pcm, samples, rms) => {
      session.audio(pcm, samples / microphone.rate);
      showLevel(rms);
    });
    session.connect(contentType);
  } catch (error) {
    await session.stopSource();
    setState("failed", "no microphone");
    showError("microphone", error.message || String(error));
    current = null;
  }
}

async function streamFile() {
  const file = $("file").files[0];
  if (!file) {
    return;
  }
  const session = begin();
  let audio;
  try {
    audio = await readAudioFile(file);
  } catch (error) {
    setState("failed", "unreadable file");
    showError("file", error.message);
    current = null;
    return;
  }
  let stopped = false;
  session.stopSource = async () => {
    stopped = true;
    $("level").value = 0;
  };
  session.connect(audio.contentType);
  await new Promise((resolve) => {
    const opened = session.ws.onopen;
    session.ws.onopen = (event) => {
      opened(event);
      resolve();
    };
    session.ws.addEventListener("close", resolve);
  });
  if (!session.opened) {
    return;
  }
  // Real time: FRAME_MS of audio every FRAME_MS, on a schedule that does not drift.
  const chunkBytes = Math.max(audio.frameBytes, Math.round((audio.bytesPerSecond * FRAME_MS) / 1000 / audio.frameBytes) * audio.frameBytes);
  const began = performance.now();
  for (let offset = 0, i = 0; offset < audio.audio.byteLength && !stopped; offset += chunkBytes, i++) {
    const wait = began + i * FRAME_MS - performance.now();
    if (wait > 0) {
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    if (stopped || session.ws.readyState !== WebSocket.OPEN) {
      return;
    }
    const chunk = audio.audio.slice(offset, offset + chunkBytes);
    session.audio(chunk, chunk.byteLength / audio.bytesPerSecond);
    if (audio.frameBytes > 1) {
      showLevel(pcmLevel(chunk));
    }
  }
  if (!stopped) {
    await session.stop();
  }
}

function begin() {
  keepToken();
  clearOutput();
  current = new Session(sessionParameters());
  setState("connecting");
  return current;
}

// -- wiring ----------------------------------------------------------------------------

function init() {
  restoreToken();
  $("settings").addEventListener("submit", (event) => event.preventDefault());
  $("process").addEventListener("change", fillLanguages);
  $("format").addEventListener("change", showOptionFields);
  $("language").addEventListener("input", () => {
    $("language").dataset.typed = "1";
  });
  $("remember").addEventListener("change", keepToken);
  $("mic").addEventListener("click", startMicrophone);
  $("file").addEventListener("change", () => {
    $("stream-file").disabled = !$("file").files.length || Boolean(current);
  });
  $("stream-file").addEventListener("click", streamFile);
  $("stop").addEventListener("click", () => current && current.stop());
  setState("idle");
  loadConfig();
}

init();
