// The browser editor: lists editors/manifest.json and packs/index.json, runs the chosen filter with
// onnxruntime-web (WebAssembly) on a photo or on webcam frames. Plain JS, no build step.
//
// Editor contract (factory/export/onnx_export.py): input float32 NCHW RGB in [-1, 1] (pixel / 127.5 - 1),
// height and width multiples of the stride (16); output the same; pixels = round(clip((y + 1) * 127.5)).
//
// Page options (URL query): max=<px> longer side (default 512), threads=<n>, precision=fp32|int8,
// filter=<id> (e.g. editor:sepia or pack:NAME/CONCEPT) selected at start.
//
// Stable hooks (tests, bench/web.py): #editors lists one button[data-filter-id][data-kind=editor|pack]
// [data-name][data-pack] per filter (ids "editor:NAME", "pack:PACK/CONCEPT"; a pack that cannot be read is a
// button[data-broken][data-pack] whose title is the message); #file, #before / #after (canvases at model size),
// #status[data-kind=info|busy|done|error], #fps[data-fps], #camera[data-running], #square, #precision,
// #max-side, #runtime[data-threads][data-isolated]; body[data-state] = loading | ready | busy | done | error.
// window.editfactory: filters, current, lastEdit {filter, width, height, ms, model}, runs, fps, camera
// {frames, width, height}, select(id), openFile(file), startCamera(), stopCamera(), bench({size, runs,
// warmup}), pixels(canvasId) -> {width, height, rgba (base64)}.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const STRIDE = 16;
  const MAX_SESSIONS = 6;

  const app = {
    filters: [], current: null, precision: 'fp32', image: null, imageName: '', lastEdit: null, runs: 0,
    fps: null, camera: null, threads: 1, isolated: !!self.crossOriginIsolated, sessions: new Map(), errors: [],
  };
  window.editfactory = app;

  // -- status line ---------------------------------------------------------------------------------
  function setStatus(text, kind = 'info') {
    const el = $('status');
    el.textContent = text;
    el.dataset.kind = kind;
    document.body.dataset.state = kind === 'info' ? 'ready' : kind;
    if (kind === 'error') app.errors.push(text);
  }
  const fail = (err) => setStatus(err instanceof Error ? err.message : String(err), 'error');
  window.addEventListener('error', (e) => fail(`unexpected error: ${e.message}`));
  window.addEventListener('unhandledrejection', (e) => fail(`unexpected error: ${e.reason?.message ?? e.reason}`));

  // -- inference is serialized: one session.run at a time (photo edits and camera frames share it) --
  let queue = Promise.resolve();
  const exclusive = (fn) => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => {});
    return run;
  };

  // -- fetching ------------------------------------------------------------------------------------
  async function fetchOk(url, what) {
    let res;
    try {
      res = await fetch(url, { cache: 'no-cache' });
    } catch (e) {
      throw new Error(`${what}: could not fetch ${url} (${e.message})`);
    }
    if (!res.ok) {
      const why = res.status === 404 ? 'is missing' : `failed`;
      throw new Error(`${what}: ${url} ${why} (HTTP ${res.status})`);
    }
    return res;
  }
  async function fetchJson(url, what) {
    const res = await fetchOk(url, what);
    try {
      return await res.json();
    } catch (e) {
      throw new Error(`${what}: ${url} is not valid JSON`);
    }
  }
  async function fetchBytes(url, what) {
    const res = await fetchOk(url, what);
    return new Uint8Array(await res.arrayBuffer());
  }
  async function sha256(bytes) {
    if (!self.crypto?.subtle) return null; // not a secure context: the size check still applies
    const digest = await crypto.subtle.digest('SHA-256', bytes);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
  }
  // size and sha256 against the manifest (or pack.json): a truncated or corrupt download is named as such
  async function verify(bytes, expected, what, url, listing = 'the manifest') {
    if (expected?.bytes != null && bytes.length !== expected.bytes) {
      throw new Error(`${what}: ${url} is ${bytes.length} bytes, ${listing} says ${expected.bytes} ` +
        '(truncated or changed since: re-export it, then reload)');
    }
    if (expected?.sha256) {
      const got = await sha256(bytes);
      if (got && got !== expected.sha256) {
        throw new Error(`${what}: ${url} does not match its sha256 in ${listing} (corrupt or changed: re-export it)`);
      }
    }
  }

  // -- onnxruntime-web -----------------------------------------------------------------------------
  function setupRuntime() {
    if (typeof ort === 'undefined') {
      throw new Error('onnxruntime-web did not load (vendor/ort.wasm.min.js is missing): run `make web`, ' +
        'then `factory web` again');
    }
    ort.env.wasm.wasmPaths = new URL('vendor/', location.href).href;
    ort.env.wasm.proxy = false;
    ort.env.logLevel = 'error';
    const wanted = Math.max(1, Number(params.get('threads')) || Math.min(4, navigator.hardwareConcurrency || 1));
    // multi-threaded WebAssembly needs SharedArrayBuffer, i.e. a cross-origin isolated page (COOP + COEP headers)
    app.threads = app.isolated ? wanted : 1;
    ort.env.wasm.numThreads = app.threads;
    const el = $('runtime');
    el.dataset.threads = String(app.threads);
    el.dataset.isolated = String(app.isolated);
    el.textContent = `onnxruntime-web ${ort.env.versions?.web ?? ''} · WebAssembly · ${app.threads} thread` +
      (app.threads === 1 ? '' : 's') + (app.isolated ? '' :
        ' (page not cross-origin isolated: its server sends no COOP/COEP headers, so one thread)');
  }
  const sessionOptions = () => ({ executionProviders: ['wasm'], graphOptimizationLevel: 'all' });

  async function createSession(bytes, options, what, url) {
    let session;
    try {
      session = await ort.InferenceSession.create(bytes, { ...sessionOptions(), ...options });
    } catch (e) {
      throw new Error(`${what}: onnxruntime-web could not load ${url} (corrupt, or not an editor model): ` +
        `${(e.message || String(e)).slice(0, 300)}`);
    }
    const [first, ...rest] = session.inputNames;
    // an editor with a screen also takes the pixel positions, one with a lens basis the pixels' place in the frame
    const extraOk = new Set(rest).size === rest.length && rest.every((n) => n === 'position' || n === 'frame');
    if (!first || !extraOk || session.outputNames.length < 1) {
      throw new Error(`${what}: ${url} is not an editor (inputs ${session.inputNames.join(', ')}; an editor ` +
        'takes one image, the pixel positions when it draws a fixed screen and the pixels\' place in the frame ' +
        'when it has a lens basis)');
    }
    session.editfactoryModel = url; // which file runs (an editor without editor.int8.onnx runs fp32)
    return session;
  }

  // -- filters: standalone editors and pack concepts -----------------------------------------------
  function editorFilter(e) {
    const files = e.files || {};
    return {
      id: `editor:${e.name}`, kind: 'editor', name: e.name, instruction: e.instruction || '',
      stride: e.input?.stride || STRIDE,
      files: { fp32: files['editor.onnx'] || null, int8: files['editor.int8.onnx'] || null },
    };
  }

  async function loadPack(entry) {
    const url = `packs/${entry.path}`;
    const what = `pack '${entry.name}'`;
    const p = await fetchJson(url, what);
    const ok = p && p.format === 'editfactory-pack/1' && typeof p.model === 'string' && Array.isArray(p.concepts) &&
      p.external_data && typeof p.external_data.base === 'string' && typeof p.external_data.concept === 'string';
    if (!ok) throw new Error(`${what}: ${url} is not an editfactory-pack/1 file (model, external_data, concepts)`);
    const dir = url.slice(0, url.lastIndexOf('/') + 1);
    const pack = { name: p.name || entry.name, dir, model: p.model, external: p.external_data, base: null,
      stride: p.stride || p.input?.stride || STRIDE,
      expected: { bytes: p.base?.weights_bytes, sha256: p.base?.weights_sha256 } };
    return p.concepts.filter((c) => c && c.name && c.file).map((c) => ({
      id: `pack:${entry.name}/${c.name}`, kind: 'pack', name: c.name, instruction: c.instruction || '',
      stride: pack.stride, pack, file: c.file, bytes: c.bytes, sha256: c.sha256,
    }));
  }

  // the base graph and its weights are fetched once per pack; a concept adds only its own .bin
  function packBase(pack) {
    if (!pack.base) {
      const what = `pack '${pack.name}'`;
      const weightsUrl = pack.dir + pack.external.base;
      const checked = async (w) => {
        await verify(w, pack.expected, what, weightsUrl, 'pack.json');
        return w;
      };
      pack.base = Promise.all([fetchBytes(pack.dir + pack.model, what), fetchBytes(weightsUrl, what).then(checked)]);
      pack.base.catch(() => { pack.base = null; });
    }
    return pack.base;
  }

  async function openSession(filter, precision) {
    const what = filter.kind === 'pack' ? `filter '${filter.pack.name}/${filter.name}'` : `editor '${filter.name}'`;
    if (filter.kind === 'pack') {
      const [model, baseWeights] = await packBase(filter.pack);
      const url = filter.pack.dir + filter.file;
      const concept = await fetchBytes(url, what);
      await verify(concept, filter, what, url, 'pack.json');
      const externalData = [
        { path: filter.pack.external.base, data: baseWeights },
        { path: filter.pack.external.concept, data: concept },
      ];
      return createSession(model, { externalData }, what, `${filter.pack.dir}${filter.pack.model} with ${filter.file}`);
    }
    const file = (precision === 'int8' && filter.files.int8) || filter.files.fp32 || filter.files.int8;
    if (!file) throw new Error(`${what}: the manifest lists no editor.onnx for it`);
    const url = `editors/${file.path}`;
    const bytes = await fetchBytes(url, what);
    await verify(bytes, file, what, url);
    return createSession(bytes, {}, what, url);
  }

  function getSession(filter, precision) {
    const key = `${filter.id}|${filter.kind === 'pack' ? 'pack' : precision}`;
    let entry = app.sessions.get(key);
    if (!entry) {
      entry = openSession(filter, precision);
      app.sessions.set(key, entry);
      entry.catch(() => app.sessions.delete(key)); // a failed load is tried again next time
      if (app.sessions.size > MAX_SESSIONS) { // free the oldest session (not the one just asked for)
        const [oldKey, old] = app.sessions.entries().next().value;
        app.sessions.delete(oldKey);
        old.then((s) => exclusive(() => s.release()), () => {});
      }
    } else { // most recently used last
      app.sessions.delete(key);
      app.sessions.set(key, entry);
    }
    return entry;
  }

  function renderFilters(brokenPacks) {
    const list = $('editors');
    list.replaceChildren();
    let group = null;
    for (const f of app.filters) {
      const g = f.kind === 'pack' ? `pack ${f.pack.name}` : 'editors';
      if (g !== group && (f.kind === 'pack' || app.filters.some((x) => x.kind === 'pack'))) {
        const li = document.createElement('li');
        li.className = 'group';
        li.textContent = g;
        list.append(li);
      }
      group = g;
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.filterId = f.id;
      b.dataset.kind = f.kind;
      b.dataset.name = f.name;
      if (f.kind === 'pack') b.dataset.pack = f.pack.name;
      b.setAttribute('aria-pressed', 'false');
      b.textContent = f.name;
      const small = document.createElement('small');
      small.textContent = f.instruction;
      b.append(small);
      b.addEventListener('click', () => selectFilter(f.id));
      li.append(b);
      list.append(li);
    }
    for (const [name, message] of brokenPacks) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.broken = 'true';
      b.dataset.pack = name;
      b.textContent = `pack ${name}: unavailable`;
      b.title = message;
      b.addEventListener('click', () => fail(message));
      li.append(b);
      list.append(li);
    }
    $('editors-empty').hidden = app.filters.length > 0 || brokenPacks.length > 0;
  }

  async function loadFilters() {
    const problems = [];
    let editors = [];
    try {
      const m = await fetchJson('editors/manifest.json', 'the editors list');
      if (m.format !== 'editfactory-editors/1' || !Array.isArray(m.editors)) {
        throw new Error('the editors list: editors/manifest.json is not an editfactory-editors/1 file');
      }
      editors = m.editors.filter((e) => e && e.name).map(editorFilter);
    } catch (e) {
      problems.push(e.message);
    }
    const broken = [];
    let packs = [];
    try {
      const idx = await fetchJson('packs/index.json', 'the packs list');
      const loaded = await Promise.allSettled((idx.packs || []).map(loadPack));
      loaded.forEach((r, i) => {
        if (r.status === 'fulfilled') packs = packs.concat(r.value);
        else broken.push([idx.packs[i].name, r.reason.message]);
      });
    } catch (e) {
      if (!/HTTP 404/.test(e.message)) problems.push(e.message); // a folder without packs/ has no packs
    }
    app.filters = editors.concat(packs);
    renderFilters(broken);
    return problems.concat(broken.map((b) => b[1]));
  }

  async function selectFilter(id) {
    const filter = app.filters.find((f) => f.id === id);
    if (!filter) return fail(`no filter '${id}' on this page`);
    app.current = filter;
    for (const b of document.querySelectorAll('#editors button[data-filter-id]')) {
      b.setAttribute('aria-pressed', String(b.dataset.filterId === id));
    }
    if (app.camera) return; // the camera loop picks the new filter up with its next frame
    if (app.image) return editPhoto();
    setStatus(`loading ${filter.name}…`, 'busy');
    try {
      await getSession(filter, app.precision);
      setStatus(`${filter.name} ready: pick or drop a photo, or start the webcam`);
    } catch (e) {
      if (app.current === filter) fail(e);
    }
  }

  // -- pixels <-> tensors --------------------------------------------------------------------------
  function maxSide() {
    const v = Math.floor(Number($('max-side').value) / STRIDE) * STRIDE;
    return Math.min(4096, Math.max(STRIDE, v || 512));
  }
  // the longer side at most `limit` (rounded down to the stride), each side a multiple of the stride
  function modelSize(w, h, limit, stride) {
    const top = Math.max(stride, Math.floor(limit / stride) * stride);
    const s = Math.min(1, top / Math.max(w, h));
    const r = (n) => Math.min(top, Math.max(stride, Math.round((n * s) / stride) * stride));
    return [r(w), r(h)];
  }
  // draws source (a crop of it: sx, sy, sw, sh) into canvas at w x h; returns its RGBA pixels
  function drawInput(canvas, source, crop, w, h) {
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(source, crop[0], crop[1], crop[2], crop[3], 0, 0, w, h);
    return ctx.getImageData(0, 0, w, h);
  }
  function toTensor(img) {
    const { width: w, height: h, data: px } = img;
    const n = w * h;
    const x = new Float32Array(3 * n);
    for (let i = 0; i < n; i++) {
      x[i] = px[4 * i] / 127.5 - 1;
      x[n + i] = px[4 * i + 1] / 127.5 - 1;
      x[2 * n + i] = px[4 * i + 2] / 127.5 - 1;
    }
    return new ort.Tensor('float32', x, [1, 3, h, w]);
  }
  function drawOutput(canvas, tensor) {
    const [, , h, w] = tensor.dims;
    const y = tensor.data;
    const n = w * h;
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    const out = ctx.createImageData(w, h);
    const px = out.data; // Uint8ClampedArray: clips to [0, 255] and rounds
    for (let i = 0; i < n; i++) {
      px[4 * i] = Math.round((y[i] + 1) * 127.5);
      px[4 * i + 1] = Math.round((y[n + i] + 1) * 127.5);
      px[4 * i + 2] = Math.round((y[2 * n + i] + 1) * 127.5);
      px[4 * i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
  }
  // An editor with a screen (halftone dots, pixel blocks) also takes each pixel's (row, col) as a fraction of the
  // photo's short side (factory/runtime/position.py): here every call is a whole photo.
  function positionTensor(h, w) {
    const n = w * h;
    const short = Math.min(w, h);
    const p = new Float32Array(2 * n);
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        p[r * w + c] = Math.fround(r / short);
        p[n + r * w + c] = Math.fround(c / short);
      }
    }
    return new ort.Tensor('float32', p, [1, 2, h, w]);
  }
  // An editor with a lens basis (a vignette about the photo's centre) also takes each pixel's centre as a fraction
  // of the photo's height and width, -1 at one edge and 1 at the other (factory/runtime/position.py frame_grid).
  function frameTensor(h, w) {
    const n = w * h;
    const p = new Float32Array(2 * n);
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        p[r * w + c] = Math.fround((r + 0.5 - h / 2) * (2 / h));
        p[n + r * w + c] = Math.fround((c + 0.5 - w / 2) * (2 / w));
      }
    }
    return new ort.Tensor('float32', p, [1, 2, h, w]);
  }
  async function runModel(session, input) {
    const feeds = { [session.inputNames[0]]: input };
    const [, , h, w] = input.dims;
    if (session.inputNames.includes('position')) feeds.position = positionTensor(h, w);
    if (session.inputNames.includes('frame')) feeds.frame = frameTensor(h, w);
    const t0 = performance.now();
    const out = await session.run(feeds);
    const ms = performance.now() - t0;
    const y = out[session.outputNames[0]];
    for (const name of session.outputNames.slice(1)) out[name].dispose?.();
    return { y, ms };
  }

  // -- photos --------------------------------------------------------------------------------------
  async function openFile(file) {
    if (!file) return;
    if (app.camera) stopCamera();
    const kind = file.type || 'unknown type';
    if (!file.type.startsWith('image/')) {
      return fail(`${file.name} is not an image (${kind}): pick or drop a photo (JPEG, PNG, WebP, …)`);
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none' });
    } catch (e) {
      return fail(`${file.name} could not be decoded as an image (${kind}; damaged or an unsupported format)`);
    }
    app.image?.close?.();
    app.image = bitmap;
    app.imageName = file.name;
    if (!app.current) return setStatus(`${file.name}: now choose a filter`);
    return editPhoto();
  }

  let editToken = 0;
  async function editPhoto() {
    const filter = app.current;
    const image = app.image;
    if (!filter || !image) return;
    const token = ++editToken;
    const [w, h] = modelSize(image.width, image.height, maxSide(), filter.stride);
    const pixels = drawInput($('before'), image, [0, 0, image.width, image.height], w, h);
    setStatus(`${filter.name}: editing ${app.imageName} at ${w}×${h}…`, 'busy');
    try {
      const session = await getSession(filter, app.precision);
      if (token !== editToken) return;
      const { y, ms } = await exclusive(() => runModel(session, toTensor(pixels)));
      if (token !== editToken) return y.dispose?.();
      drawOutput($('after'), y);
      y.dispose?.();
      app.runs += 1;
      app.lastEdit = { filter: filter.id, name: filter.name, width: w, height: h, ms, source: app.imageName,
        model: session.editfactoryModel };
      $('timing').textContent = `(${ms.toFixed(0)} ms)`;
      const note = app.precision === 'int8' && filter.kind === 'editor' && !filter.files.int8 ? ' (fp32: no int8 file)'
        : '';
      setStatus(`${filter.name}: ${app.imageName} at ${w}×${h} in ${ms.toFixed(0)} ms${note}`, 'done');
    } catch (e) {
      if (token === editToken) fail(e);
    }
  }

  // -- webcam --------------------------------------------------------------------------------------
  function cameraError(e) {
    switch (e?.name) {
      case 'NotFoundError': case 'OverconstrainedError': case 'DevicesNotFoundError':
        return 'no camera found on this device';
      case 'NotAllowedError': case 'PermissionDeniedError': case 'SecurityError':
        return 'camera access was denied (allow it in the browser’s site settings)';
      case 'NotReadableError': case 'TrackStartError':
        return 'the camera is in use by another program or could not be started';
      default:
        return `the camera could not be started: ${e?.message || e}`;
    }
  }

  async function startCamera() {
    if (app.camera) return;
    if (!app.current) return fail('choose a filter first, then start the webcam');
    if (!navigator.mediaDevices?.getUserMedia) {
      return fail('no camera here: browsers allow the camera only on https pages or on localhost');
    }
    setStatus('starting the webcam…', 'busy');
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } },
        audio: false });
    } catch (e) {
      return fail(cameraError(e));
    }
    const video = $('video');
    video.srcObject = stream;
    try {
      await video.play();
    } catch (e) {
      stream.getTracks().forEach((t) => t.stop());
      return fail(cameraError(e));
    }
    const cam = { stream, frames: 0, first: null, last: null, times: [] };
    app.camera = cam;
    app.fps = null;
    $('camera').textContent = 'stop webcam';
    $('camera').dataset.running = 'true';
    setStatus(`webcam: ${video.videoWidth}×${video.videoHeight}, filter ${app.current.name}`, 'busy');
    cameraLoop(cam);
  }

  function stopCamera() {
    const cam = app.camera;
    if (!cam) return;
    app.camera = null;
    cam.stream.getTracks().forEach((t) => t.stop());
    $('video').srcObject = null;
    $('camera').textContent = 'start webcam';
    $('camera').dataset.running = 'false';
    setStatus(app.fps ? `webcam stopped (${app.fps.toFixed(1)} fps)` : 'webcam stopped');
  }

  function nextFrame(video) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 100);
      if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(() => { clearTimeout(timer); resolve(); });
    });
  }

  async function cameraLoop(cam) {
    const video = $('video');
    const fpsEl = $('fps');
    while (app.camera === cam) {
      await nextFrame(video);
      if (app.camera !== cam) break;
      const filter = app.current;
      const vw = video.videoWidth;
      const vh = video.videoHeight;
      if (!filter || video.readyState < 2 || !vw || !vh) continue;
      let session;
      try {
        session = await getSession(filter, app.precision);
      } catch (e) {
        fail(e);
        stopCamera();
        break;
      }
      const side = Math.min(vw, vh);
      const crop = $('square').checked ? [(vw - side) / 2, (vh - side) / 2, side, side] : [0, 0, vw, vh];
      const [w, h] = modelSize(crop[2], crop[3], maxSide(), filter.stride);
      try {
        const pixels = drawInput($('before'), video, crop, w, h);
        const { y, ms } = await exclusive(() => runModel(session, toTensor(pixels)));
        if (app.camera !== cam) { y.dispose?.(); break; }
        drawOutput($('after'), y);
        y.dispose?.();
        const now = performance.now();
        cam.frames += 1;
        cam.first ??= now;
        cam.last = now;
        cam.times.push(now);
        while (cam.times.length > 2 && now - cam.times[0] > 2000) cam.times.shift();
        if (cam.times.length >= 2) {
          app.fps = ((cam.times.length - 1) * 1000) / (now - cam.times[0]);
          fpsEl.textContent = `${app.fps.toFixed(1)} fps`;
          fpsEl.dataset.fps = app.fps.toFixed(2);
        }
        cam.width = w;
        cam.height = h;
        cam.lastMs = ms;
        $('timing').textContent = `(${ms.toFixed(0)} ms)`;
        setStatus(`webcam: ${filter.name} at ${w}×${h}, ${ms.toFixed(0)} ms per frame`, 'busy');
      } catch (e) {
        fail(e);
        stopCamera();
        break;
      }
    }
  }

  // -- for bench/web.py: repeated runs of the current filter on one size x size input ---------------
  app.bench = async ({ size = 256, runs = 20, warmup = 3 } = {}) => {
    if (!app.current) throw new Error('no filter selected');
    const session = await getSession(app.current, app.precision);
    const n = size * size;
    const x = new Float32Array(3 * n);
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.001) * 0.9;
    const input = new ort.Tensor('float32', x, [1, 3, size, size]);
    const times = [];
    for (let i = 0; i < warmup + runs; i++) {
      const { y, ms } = await exclusive(() => runModel(session, input));
      y.dispose?.();
      if (i >= warmup) times.push(ms);
    }
    const sorted = [...times].sort((a, b) => a - b);
    return { size, runs, warmup, threads: app.threads, isolated: app.isolated, times_ms: times,
      median_ms: sorted[Math.floor(sorted.length / 2)], mean_ms: times.reduce((a, b) => a + b, 0) / times.length };
  };
  // RGBA pixels of a canvas as base64 (tests compare them with Python onnxruntime's output)
  app.pixels = (id) => {
    const c = $(id);
    const d = c.getContext('2d', { willReadFrequently: true }).getImageData(0, 0, c.width, c.height).data;
    let s = '';
    for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
    return { width: c.width, height: c.height, rgba: btoa(s) };
  };
  app.select = selectFilter;
  app.openFile = openFile;
  app.startCamera = startCamera;
  app.stopCamera = stopCamera;

  // -- wiring --------------------------------------------------------------------------------------
  function wire() {
    $('file').addEventListener('change', (e) => {
      openFile(e.target.files[0]).catch(fail);
      e.target.value = '';
    });
    document.addEventListener('dragover', (e) => {
      e.preventDefault();
      document.body.classList.add('dragging');
    });
    document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
    document.addEventListener('drop', (e) => {
      e.preventDefault();
      document.body.classList.remove('dragging');
      const files = e.dataTransfer?.files;
      if (!files || files.length === 0) return fail('nothing to open: drop a photo file');
      openFile(files[0]).catch(fail);
    });
    $('camera').addEventListener('click', () => (app.camera ? stopCamera() : startCamera().catch(fail)));
    $('precision').addEventListener('change', (e) => {
      app.precision = e.target.value;
      if (app.image && app.current && !app.camera) editPhoto();
    });
    $('max-side').addEventListener('change', () => {
      $('max-side').value = String(maxSide());
      if (app.image && app.current && !app.camera) editPhoto();
    });
  }

  async function main() {
    wire();
    if (params.get('max')) $('max-side').value = params.get('max');
    if (params.get('precision') === 'int8') $('precision').value = 'int8';
    app.precision = $('precision').value;
    try {
      setupRuntime();
    } catch (e) {
      return fail(e);
    }
    const problems = await loadFilters();
    if (!problems.length) setStatus(app.filters.length ? 'choose a filter, then pick or drop a photo or start the webcam'
      : 'no editors yet');
    const first = params.get('filter') || app.filters[0]?.id;
    if (first) await selectFilter(first);
    if (problems.length) fail(problems.join('; ')); // still shown once the first filter is ready
  }
  main().catch(fail);
})();
