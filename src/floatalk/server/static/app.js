// floatalk web page: plain JS, no build step. Talks to the REST jobs and the /stream WebSocket
// of the same server (docs/serving.md).
"use strict";

const $ = (id) => document.getElementById(id);
const key = new URLSearchParams(location.search).get("key");
const headers = key ? { "X-API-Key": key } : {};
const withKey = (url) => (key ? url + (url.includes("?") ? "&" : "?") + "key=" + encodeURIComponent(key) : url);
let recorded = null; // a Blob recorded from the microphone
let currentJob = null;

function options() {
  return {
    emotion: $("emotion").value,
    emotion_scale: parseFloat($("emotion_scale").value),
    audio_scale: parseFloat($("audio_scale").value),
    seed: parseInt($("seed").value, 10),
    nfe: parseInt($("nfe").value, 10),
    crop: $("crop").checked,
  };
}

function say(id, text, isError) {
  const el = $(id);
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function errorOf(response) {
  try { return (await response.json()).error || response.statusText; } catch (e) { return response.statusText; }
}

$("portrait").addEventListener("change", () => {
  const file = $("portrait").files[0];
  if (file) $("preview").src = URL.createObjectURL(file);
});

// ------------------------------------------------------------------ upload flow (REST job)

$("record").addEventListener("click", async () => {
  const button = $("record");
  if (button.recorder) { button.recorder.stop(); return; }
  try {
    const media = await navigator.mediaDevices.getUserMedia({ audio: true });
    const recorder = new MediaRecorder(media);
    const parts = [];
    recorder.ondataavailable = (e) => parts.push(e.data);
    recorder.onstop = () => {
      media.getTracks().forEach((t) => t.stop());
      recorded = new Blob(parts, { type: recorder.mimeType || "audio/webm" });
      button.recorder = null;
      button.textContent = "record";
      say("status", `recorded ${(recorded.size / 1024).toFixed(0)} KiB of speech`);
    };
    recorder.start();
    button.recorder = recorder;
    button.textContent = "stop recording";
  } catch (e) {
    say("status", "no microphone: " + e.message, true);
  }
});

$("generate").addEventListener("click", async () => {
  const portrait = $("portrait").files[0];
  const speech = $("speech").files[0] || recorded;
  if (!portrait) return say("status", "choose a portrait first", true);
  if (!speech) return say("status", "choose or record speech first", true);
  const form = new FormData();
  form.append("portrait", portrait, portrait.name);
  form.append("speech", speech, speech.name || "speech.webm");
  form.append("options", JSON.stringify(options()));
  $("generate").disabled = true;
  $("download").hidden = true;
  say("status", "uploading…");
  try {
    const response = await fetch("jobs", { method: "POST", body: form, headers });
    if (!response.ok) throw new Error(await errorOf(response));
    currentJob = (await response.json()).id;
    $("cancel").disabled = false;
    await poll(currentJob);
  } catch (e) {
    say("status", e.message, true);
  } finally {
    $("generate").disabled = false;
    $("cancel").disabled = true;
  }
});

async function poll(id) {
  for (;;) {
    const response = await fetch(`jobs/${id}`, { headers });
    if (!response.ok) throw new Error(await errorOf(response));
    const job = await response.json();
    $("progress").value = job.progress;
    if (job.status === "done") {
      const blob = await (await fetch(`jobs/${id}/video`, { headers })).blob();
      const url = URL.createObjectURL(blob);
      $("result").src = url;
      $("download").href = url;
      $("download").download = `floatalk-${id.slice(0, 8)}.mp4`;
      $("download").hidden = false;
      say("status", `done: ${job.frames_total} frames, seed ${job.seed}`);
      document.body.dataset.job = "done";
      return;
    }
    if (job.status === "failed" || job.status === "cancelled") throw new Error(job.error || job.status);
    say("status", `${job.status}: ${job.frames_done} / ${job.frames_total} frames`);
    await new Promise((r) => setTimeout(r, 400));
  }
}

$("cancel").addEventListener("click", async () => {
  if (currentJob) await fetch(`jobs/${currentJob}`, { method: "DELETE", headers });
});

// ------------------------------------------------------------------ live flow (WebSocket)

let live = null;

$("live-start").addEventListener("click", async () => {
  const portrait = $("portrait").files[0];
  if (!portrait) return say("live-status", "choose a portrait first", true);
  $("live-start").disabled = true;
  try {
    const form = new FormData();
    form.append("portrait", portrait, portrait.name);
    form.append("options", JSON.stringify({ crop: $("crop").checked }));
    const response = await fetch("portraits", { method: "POST", body: form, headers });
    if (!response.ok) throw new Error(await errorOf(response));
    const portraitId = (await response.json()).id;
    live = await startLive(portraitId);
    $("live-stop").disabled = false;
  } catch (e) {
    say("live-status", e.message, true);
    $("live-start").disabled = false;
  }
});

$("live-stop").addEventListener("click", () => { if (live) live.stop(); });

async function startLive(portraitId) {
  const media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false } });
  const context = new AudioContext();
  const input = context.createMediaStreamSource(media);
  const processor = context.createScriptProcessor(4096, 1, 1);
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(withKey(`${proto}//${location.host}${location.pathname.replace(/[^/]*$/, "")}stream`));
  ws.binaryType = "arraybuffer";
  const canvas = $("live");
  const draw = canvas.getContext("2d");
  const opts = options();
  delete opts.crop;
  const state = { fps: 25, delay: 1.5, t0: null, frames: 0, sent: 0, stopped: false, playTime: 0 };
  const player = context.createGain();
  player.connect(context.destination);

  ws.onopen = () => ws.send(JSON.stringify({ type: "start", portrait_id: portraitId, options: opts }));
  ws.onmessage = async (event) => {
    if (typeof event.data === "string") {
      const message = JSON.parse(event.data);
      if (message.type === "started") {
        state.fps = message.fps;
        state.rate = message.sample_rate;
        state.t0 = context.currentTime;
        say("live-status", "live: speak");
      } else if (message.type === "done") {
        say("live-status", `done: ${message.frames} frames`);
        document.body.dataset.live = "done";
      } else if (message.type === "error") {
        say("live-status", message.error, true);
      }
      return;
    }
    // a frame: 4-byte little-endian index, then JPEG bytes; shown at its time plus a fixed delay,
    // in step with the sound played back with the same delay
    const index = new DataView(event.data).getUint32(0, true);
    const bitmap = await createImageBitmap(new Blob([event.data.slice(4)], { type: "image/jpeg" }));
    const due = state.t0 + state.delay + index / state.fps;
    const wait = Math.max(0, (due - context.currentTime) * 1000);
    setTimeout(() => {
      draw.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      state.frames += 1;
      canvas.dataset.frames = String(state.frames);
    }, wait);
  };
  ws.onclose = () => stop();

  processor.onaudioprocess = (event) => {
    if (state.t0 === null || ws.readyState !== WebSocket.OPEN) return;
    const samples = event.inputBuffer.getChannelData(0);
    const pcm = resampleToInt16(samples, context.sampleRate, state.rate || 16000);
    ws.send(pcm.buffer);
    state.sent += pcm.length;
    // the sound, delayed like the frames
    const buffer = context.createBuffer(1, samples.length, context.sampleRate);
    buffer.copyToChannel(samples, 0);
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(player);
    const at = Math.max(context.currentTime, state.t0 + state.delay + (state.sent - pcm.length) / (state.rate || 16000));
    source.start(at);
  };
  input.connect(processor);
  processor.connect(context.destination);

  function stop() {
    if (state.stopped) return;
    state.stopped = true;
    processor.disconnect();
    input.disconnect();
    media.getTracks().forEach((t) => t.stop());
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));
    $("live-start").disabled = false;
    $("live-stop").disabled = true;
  }
  return { stop };
}

function resampleToInt16(samples, from, to) {
  const n = Math.floor((samples.length * to) / from);
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    const x = (i * from) / to;
    const j = Math.floor(x);
    const f = x - j;
    const a = samples[j] || 0;
    const b = samples[Math.min(j + 1, samples.length - 1)] || 0;
    const v = a + (b - a) * f;
    out[i] = Math.max(-32768, Math.min(32767, Math.round(v * 32767)));
  }
  return out;
}
