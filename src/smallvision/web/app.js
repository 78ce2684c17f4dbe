// The exported page: photos (chosen, dropped, pasted), the camera and a drawing pad in; the model's
// top classes out, with the run's calibrated probabilities and its "none of these" answer. Decoding
// and preprocessing run in a worker (preprocess.js), the model in ONNX Runtime Web (WebAssembly).
(async function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const TOP_K = 5;
  let doc, session, worker, nextId = 0;
  const waiting = new Map();

  function say(text, error) {
    $("message").textContent = text;
    $("message").className = error ? "error" : "";
  }

  function pending(delta) {
    body.dataset.pending = String(Number(body.dataset.pending) + delta);
  }

  try {
    doc = await (await fetch("model.json")).json();
    const here = new URL(".", location.href).href;
    // the engine comes gzipped; a server that itself sends .gz files as Content-Encoding: gzip hands it over inflated
    const packed = new Uint8Array(await (await fetch("ort-wasm-simd-threaded.wasm.gz")).arrayBuffer());
    ort.env.wasm.wasmBinary = packed[0] === 0x1f && packed[1] === 0x8b ? new Uint8Array(await new Response(
      new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"))).arrayBuffer()) : packed;
    ort.env.wasm.wasmPaths = { mjs: here + "ort-wasm-simd-threaded.js" };
    // several threads need a cross-origin-isolated page (COOP/COEP headers), which a plain static server does not give
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
    worker = new Worker("preprocess.js");
  } catch (e) {
    $("title").textContent = "The model could not be loaded";
    say(String((e && e.message) || e) + (location.protocol === "file:" ? " (open this folder through a web server: " +
        "python -m http.server -d FOLDER)" : ""), true);
    return;
  }
  worker.onmessage = (event) => {
    const m = event.data, done = waiting.get(m.id);
    waiting.delete(m.id);
    if (done) done(m);
  };
  const rule = doc.preprocessing, card = doc.card || {};
  const classes = doc.class_names;
  // a folder data set by its name, not the path it was trained from
  $("title").textContent = `${card.model || "model"} · ${String(card.dataset || "").replace(/^folder:.*[\\/]/, "folder:")}`;
  const acc = typeof card.test_accuracy === "number" ? `test accuracy ${card.test_accuracy.toFixed(2)} %, ` : "";
  $("card").textContent = `${acc}${classes.length} classes (${classes.slice(0, 8).join(", ")}${classes.length > 8 ? ", …" : ""})` +
    (doc.ood ? "; answers \"none of these\" for images unlike its training data" : "");
  if (rule.digit_style || rule.channels === 1) $("draw-box").hidden = false;

  // --- the model
  function prepare(message, transfer) {
    return new Promise((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, (m) => (m.error ? reject(new Error(m.error)) : resolve(m)));
      worker.postMessage({ ...message, id, rule }, transfer || []);
    });
  }

  async function classify(x) {
    const input = new ort.Tensor("float32", x, [1, rule.channels, rule.height, rule.width]);
    const out = await session.run({ [session.inputNames[0]]: input });
    const logits = Array.from(out[session.outputNames[0]].data);
    let probs;
    if (doc.probabilities === "sigmoid") probs = logits.map((z) => 1 / (1 + Math.exp(-z)));
    else {
      const top = Math.max(...logits);
      const e = logits.map((z) => Math.exp(z - top));
      const s = e.reduce((a, b) => a + b, 0);
      probs = e.map((v) => v / s);
    }
    const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a]);
    const r = { probs, order, top1: classes[order[0]], label: classes[order[0]] };
    if (doc.thresholds) {  // multi-label: every class at or above its threshold
      r.label = order.filter((i) => probs[i] >= doc.thresholds[i]).map((i) => classes[i]).join(" ");
    }
    if (doc.ood && out.ood_score) {
      r.ood = out.ood_score.data[0];
      if (r.ood > doc.ood.threshold) { r.none = true; r.label = doc.ood.label; }
    }
    return r;
  }

  function bars(r) {
    const box = document.createElement("div");
    for (const i of r.order.slice(0, Math.min(TOP_K, classes.length))) {
      const row = document.createElement("div");
      row.className = "bar";
      row.innerHTML = '<span class="cls"></span><span class="track"><span class="fill"></span></span><span class="p"></span>';
      row.querySelector(".cls").textContent = classes[i];
      row.querySelector(".cls").title = classes[i];
      row.querySelector(".fill").style.width = `${(100 * r.probs[i]).toFixed(1)}%`;
      row.querySelector(".p").textContent = `${(100 * r.probs[i]).toFixed(1)} %`;
      box.append(row);
    }
    return box;
  }

  function answer(el, r) {
    el.dataset.label = r.label;
    el.dataset.top1 = r.top1;
    el.dataset.probs = JSON.stringify(r.probs);
    if (r.ood !== undefined) el.dataset.ood = String(r.ood);
    const label = document.createElement("div");
    label.className = "label" + (r.none ? " none" : "");
    label.textContent = r.label || "(no class above its threshold)";
    el.append(label, bars(r));
  }

  // --- photos: chosen, dropped, pasted
  async function photo(file) {
    const el = document.createElement("div");
    el.className = "result";
    el.dataset.name = file.name || "pasted image";
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = el.dataset.name;
    $("results").prepend(el);
    pending(1);
    try {
      const m = await prepare({ file });
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = el.dataset.name;
      el.append(img, name);
      if (m.note) name.textContent += ` (${m.note})`;
      answer(el, await classify(m.x));
    } catch (e) {
      el.classList.add("error-card");
      el.dataset.error = String(e.message || e);
      el.append(name);
      const msg = document.createElement("div");
      msg.textContent = el.dataset.error;
      el.append(msg);
    } finally {
      pending(-1);
      body.dataset.answered = String(Number(body.dataset.answered) + 1);
    }
  }

  async function photos(files) {
    const list = Array.from(files);
    if (!list.length) return;
    say(list.length > 1 ? `${list.length} images…` : "");
    for (const f of list) await photo(f);  // one at a time: the worker and the model each run one
    const bad = document.querySelectorAll(".result.error-card").length;
    say(`${document.querySelectorAll(".result").length} images answered` + (bad ? `, ${bad} could not be read` : ""));
  }

  $("file").addEventListener("change", (e) => { photos(e.target.files); e.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); photos(e.dataTransfer.files); });
  document.addEventListener("paste", (e) => {
    const files = Array.from(e.clipboardData.items).filter((i) => i.kind === "file").map((i) => i.getAsFile());
    if (files.length) photos(files);
    else say("nothing to read in what was pasted: copy an image, then paste", true);
  });

  // --- pixels from a canvas (the camera's frame, the drawing pad)
  function pixelsOf(source, w, h) {
    const c = new OffscreenCanvas(w, h);
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(source, 0, 0, w, h);
    const data = ctx.getImageData(0, 0, w, h).data;
    return { rgba: data, w, h };
  }

  async function fromPixels(px) {
    const m = await prepare({ rgba: px.rgba, w: px.w, h: px.h }, [px.rgba.buffer]);
    return classify(m.x);
  }

  // --- the camera: live top classes, a few frames a second
  let stream = null;
  $("camera").addEventListener("click", async () => {
    if (stream) { stopCamera(); return; }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (e) {
      stream = null;
      const why = e && e.name === "NotAllowedError" ? "camera permission refused: allow the camera for this page in the " +
        "browser's site settings, or choose photos" : e && e.name === "NotFoundError" ? "no camera found" :
        `the camera could not start (${(e && e.name) || e})`;
      body.dataset.camera = "refused";
      say(why, true);
      return;
    }
    const video = $("video");
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    $("camera").textContent = "Stop the camera";
    body.dataset.camera = "on";
    say("");
    liveLoop();
  });

  function stopCamera() {
    for (const t of stream.getTracks()) t.stop();
    stream = null;
    $("video").hidden = true;
    $("camera").textContent = "Start the camera";
    body.dataset.camera = "off";
  }

  async function liveLoop() {
    const video = $("video"), live = $("live");
    let frames = 0;
    const t0 = performance.now();
    while (stream) {
      const started = performance.now();
      if (video.videoWidth) {
        const r = await fromPixels(pixelsOf(video, video.videoWidth, video.videoHeight));
        frames++;
        live.replaceChildren();
        answer(live, r);
        live.dataset.frames = String(frames);
        const rate = document.createElement("div");
        rate.className = "name";
        rate.textContent = `${(frames * 1000 / (performance.now() - t0)).toFixed(1)} frames/s`;
        live.append(rate);
      }
      await new Promise((ok) => setTimeout(ok, Math.max(0, 250 - (performance.now() - started))));
    }
  }

  // --- the drawing pad (digit-style and gray models): dark ink on white, read as a scan is
  const pad = $("canvas"), pen = pad.getContext("2d", { willReadFrequently: true });
  function clearPad() {
    pen.fillStyle = "#fff";
    pen.fillRect(0, 0, pad.width, pad.height);
    $("draw-label").textContent = "";
  }
  clearPad();
  let drawing = false, last = null;
  const at = (e) => {
    const b = pad.getBoundingClientRect();
    return [(e.clientX - b.left) * pad.width / b.width, (e.clientY - b.top) * pad.height / b.height];
  };
  pad.addEventListener("pointerdown", (e) => { drawing = true; last = at(e); pad.setPointerCapture(e.pointerId); });
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const p = at(e);
    pen.strokeStyle = "#000";
    pen.lineWidth = 22;
    pen.lineCap = pen.lineJoin = "round";
    pen.beginPath();
    pen.moveTo(...last);
    pen.lineTo(...p);
    pen.stroke();
    last = p;
  });
  pad.addEventListener("pointerup", async () => {
    if (!drawing) return;
    drawing = false;
    pending(1);
    try {
      const r = await fromPixels(pixelsOf(pad, pad.width, pad.height));
      const out = $("draw-label");
      out.textContent = `${r.label} (${(100 * r.probs[r.order[0]]).toFixed(1)} %)`;
      out.dataset.label = r.label;
    } finally { pending(-1); }
  });
  $("clear").addEventListener("click", clearPad);

  // for `smallvision benchmark`: the median time of `n` model calls on one input, in ms
  window.smallvision = {
    async latency(n) {
      const x = new Float32Array(rule.channels * rule.height * rule.width), times = [];
      await classify(x);
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await classify(x);
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      return times[Math.floor(n / 2)];
    },
  };
  body.dataset.ready = "1";
  say("Ready: drop, paste or choose photos" + (rule.digit_style ? ", or draw a digit" : "") + ".");
})();
