// The zone map page's script (plain browser JavaScript: no build step). It is inlined into the
// page by src/web/page.ts and talks to the service only through JSON-RPC 2.0 over a WebSocket to
// the host and port that served it, like every other client (docs/spec/protocol.md §1-2).
'use strict';
(() => {
  // ---------------------------------------------------------------------------------------------
  // Conditions. The order is the legend's and, where one pixel holds several zones, the priority:
  // the first condition present wins, so a single offline zone among many empty ones still shows.
  const CONDITIONS = [
    { name: 'offline', label: 'offline', fill: '#1f2328', base: '#6e7781' },
    { name: 'read-only', label: 'read-only', fill: '#cf222e', base: '#ffaba8' },
    { name: 'explicit-open', label: 'explicit open', fill: '#0969da', base: '#b6e3ff' },
    { name: 'implicit-open', label: 'implicit open', fill: '#1a7f37', base: '#a8ecb8' },
    { name: 'closed', label: 'closed', fill: '#bf8700', base: '#fae17d' },
    { name: 'full', label: 'full', fill: '#6639ba', base: '#d8b9ff' },
    { name: 'empty', label: 'empty', fill: '#8c959f', base: '#eaeef2' },
    { name: 'not-write-pointer', label: 'conventional', fill: '#1b7c83', base: '#8ddbe0' },
  ];
  // QEMU's BlockZoneState and BlockZoneType numbers, as qemu-io prints them ("zcond:", "type:"),
  // spliced in by src/web/page.ts from src/shared/zone-numbers.ts, where qzoned io and NBD take them too.
  const QEMU_ZONE_NUMBERS = /*{{qemu-zone-numbers}}*/;
  const CONDITION_INDEX = new Map(CONDITIONS.map((c, i) => [c.name, i]));
  const UNKNOWN = 255; // not reported yet
  const I_OFFLINE = CONDITION_INDEX.get('offline');
  const I_EXPLICIT = CONDITION_INDEX.get('explicit-open');
  const I_IMPLICIT = CONDITION_INDEX.get('implicit-open');
  const I_CLOSED = CONDITION_INDEX.get('closed');
  const I_FULL = CONDITION_INDEX.get('full');
  const I_CONVENTIONAL = CONDITION_INDEX.get('not-write-pointer');
  // The conditions before full in the list (offline, read-only, open, closed) are the ones a person
  // must not miss however many zones there are: faulted zones, and zones holding open or active
  // resources. They are listed by zone number beside the map and marked on it where cells are small.
  const isNotable = (c) => c < I_FULL;

  const REPORT_CHUNK = 16384; // zones per blockdev-zone-report call: about 2 MB of JSON
  const INJECT_BATCH = 256; // blockdev-zone-inject requests per JSON-RPC batch
  const NODE_POLL_MS = 3000; // nodes have no event; the list is polled
  const CELL_SIZES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96]; // device pixels per zone cell
  const MARKED_BELOW = 8; // CSS px: a notable zone in a smaller cell gets a ring around it
  const MAX_MARKERS = 512; // rings per frame; the list beside the map names every notable zone anyway
  const LABEL_MIN = 18; // device px of a cell's inner square before its zone number is written in it
  const NOTABLE_LISTED = 12; // zone numbers listed per condition; the rest are counted

  /** '#rrggbb' -> a pixel of a Uint32Array over ImageData (little-endian: ABGR). */
  const pixel = (hex) => {
    const v = parseInt(hex.slice(1), 16);
    return (0xff000000 | ((v & 0xff) << 16) | (v & 0xff00) | ((v >> 16) & 0xff)) >>> 0;
  };
  const FILL_PX = CONDITIONS.map((c) => pixel(c.fill));
  const BASE_PX = CONDITIONS.map((c) => pixel(c.base));
  const BACKGROUND_PX = pixel('#ffffff');
  const UNKNOWN_PX = pixel('#f0f2f4');

  const $ = (id) => document.getElementById(id);
  const el = {
    body: document.body,
    connection: $('connection'),
    nodes: $('nodes'),
    nodesEmpty: $('nodes-empty'),
    summary: $('summary'),
    geometry: $('geometry'),
    openLimit: $('open-limit'),
    openCount: $('open-count'),
    openBar: $('open-bar'),
    activeLimit: $('active-limit'),
    activeCount: $('active-count'),
    activeBar: $('active-bar'),
    legend: $('legend'),
    attention: $('attention'),
    notable: $('notable'),
    notableNone: $('notable-none'),
    actions: $('actions'),
    selFirst: $('sel-first'),
    selCount: $('sel-count'),
    selLine: $('sel-line'),
    opAll: $('op-all'),
    message: $('message'),
    messageContext: $('message-context'),
    messageText: $('message-text'),
    messageReason: $('message-reason'),
    zoomIn: $('zoom-in'),
    zoomOut: $('zoom-out'),
    zoomFit: $('zoom-fit'),
    zoomLabel: $('zoom-label'),
    progress: $('progress'),
    scroll: $('map-scroll'),
    canvas: $('map'),
    spacer: $('map-spacer'),
    tooltip: $('tooltip'),
  };
  const ctx = el.canvas.getContext('2d', { alpha: false });

  // ---------------------------------------------------------------------------------------------
  // Formatting

  const hex = (n) => '0x' + n.toString(16);
  function bytes(n) {
    const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let u = 0;
    let v = n;
    while (v >= 1024 && u < units.length - 1 && v % 1024 === 0) {
      v /= 1024;
      u++;
    }
    if (u === 0 && v >= 1024) return `${n} bytes`;
    return `${v} ${units[u]}`;
  }
  const count = (n) => n.toLocaleString('en-US');
  const plural = (n, one, many) => `${count(n)} ${n === 1 ? one : many}`;

  // ---------------------------------------------------------------------------------------------
  // JSON-RPC 2.0 over WebSocket, reconnecting

  class RpcError extends Error {
    constructor(error) {
      super(error.message);
      this.code = error.code;
      this.reason = error.data && error.data.reason;
      this.errorClass = error.data && error.data.class;
    }
  }

  class Rpc {
    constructor(url) {
      this.url = url;
      this.nextId = 1;
      this.pending = new Map();
      this.ws = null;
      this.retryMs = 250;
      this.onEvent = () => {};
      this.onOpen = () => {};
      this.onClose = () => {};
    }

    connect() {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = () => {
        this.retryMs = 250;
        this.onOpen();
      };
      ws.onmessage = (e) => this.receive(e.data);
      ws.onclose = (e) => {
        if (this.ws !== ws) return;
        this.ws = null;
        const lost = new Error('The connection to the service was lost; the request may or may not have run.');
        for (const p of this.pending.values()) p.reject(lost);
        this.pending.clear();
        this.onClose(e);
        setTimeout(() => this.connect(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, 5000);
      };
    }

    get connected() {
      return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
    }

    receive(text) {
      let message;
      try {
        message = JSON.parse(text);
      } catch {
        return;
      }
      for (const m of Array.isArray(message) ? message : [message]) {
        if (m === null || typeof m !== 'object') continue;
        if (typeof m.method === 'string' && m.id === undefined) {
          this.onEvent(m.method, m.params);
          continue;
        }
        const p = this.pending.get(m.id);
        if (!p) continue;
        this.pending.delete(m.id);
        if (m.error) p.reject(new RpcError(m.error));
        else p.resolve(m.result);
      }
    }

    request(method, params) {
      const id = this.nextId++;
      const promise = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
      return { message: { jsonrpc: '2.0', id, method, params }, promise };
    }

    send(payload) {
      if (!this.connected) throw new Error('Not connected to the service.');
      this.ws.send(JSON.stringify(payload));
    }

    call(method, params = {}) {
      if (!this.connected) return Promise.reject(new Error('Not connected to the service.'));
      const r = this.request(method, params);
      this.send(r.message);
      return r.promise;
    }

    /** One JSON-RPC batch; resolves to [{result} | {error: RpcError}] in call order. */
    batch(calls) {
      if (!this.connected) return Promise.reject(new Error('Not connected to the service.'));
      const requests = calls.map(([method, params]) => this.request(method, params));
      this.send(requests.map((r) => r.message));
      return Promise.all(requests.map((r) => r.promise.then((result) => ({ result }), (error) => ({ error }))));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // State: the nodes, and the selected node's zones in typed arrays (262,144 zones = 6 MB)

  const state = {
    nodes: [],
    node: null, // name of the selected node
    zone: null, // its format-specific zone info (query-named-block-nodes)
    deviceSize: 0,
    n: 0,
    zoneSize: 0,
    cond: new Uint8Array(0),
    wp: new Float64Array(0),
    cap: new Float64Array(0),
    len: new Float64Array(0),
    attributes: new Map(), // zone number → its attributes (docs/spec/zone-model.md "Zone attributes"), only zones that have some
    counts: new Array(CONDITIONS.length).fill(0),
    notable: CONDITIONS.map(() => new Set()), // zone numbers per notable condition
    reported: 0,
    ready: false,
    loadGeneration: 0,
    sel: { first: 0, count: 1 },
    anchor: 0,
    events: 0,
  };

  const view = { k: 1, s: 8, fit: true, cols: 1, rows: 0, dpr: 1 };
  const draws = { frames: 0, lastMs: 0, markers: [], labels: new Map() };

  const startOf = (i) => i * state.zoneSize;
  const endOf = (i) => startOf(i) + state.len[i];

  /** Written share of the capacity, 0..1; conventional zones count as fully written. */
  function share(i) {
    const c = state.cond[i];
    if (c === I_CONVENTIONAL) return 1;
    const cap = state.cap[i];
    if (!(cap > 0)) return 0;
    return Math.min(1, Math.max(0, (state.wp[i] - startOf(i)) / cap));
  }

  function applyZones(zones) {
    for (const z of zones) {
      const i = Math.floor(z.start / state.zoneSize);
      if (!(i >= 0 && i < state.n)) continue;
      const c = CONDITION_INDEX.get(z.condition);
      if (c === undefined) continue;
      const old = state.cond[i];
      if (old !== UNKNOWN) {
        state.counts[old]--;
        if (isNotable(old)) state.notable[old].delete(i);
      }
      state.counts[c]++;
      if (isNotable(c)) state.notable[c].add(i);
      state.cond[i] = c;
      state.wp[i] = z['write-pointer'];
      state.cap[i] = z.capacity;
      state.len[i] = z.length;
      if (z.attributes && z.attributes.length > 0) state.attributes.set(i, z.attributes);
      else state.attributes.delete(i);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Drawing: one ImageData per frame, only the visible rows

  let image = null;
  let pixels = null;
  let drawQueued = false;

  function requestDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => {
      drawQueued = false;
      draw();
    });
  }

  const gapOf = (s) => (s >= 5 ? 1 : 0);

  /** Rows of the cell's inner square that are written; never hides a non-zero or non-full share. */
  function filledRows(i, inner) {
    const f = share(i);
    let rows = Math.round(f * inner);
    if (f > 0 && rows === 0) rows = 1;
    if (f < 1 && rows === inner) rows = inner - 1;
    return rows;
  }

  function draw() {
    const t0 = performance.now();
    const W = el.canvas.width;
    const H = el.canvas.height;
    if (!image || image.width !== W || image.height !== H) {
      image = ctx.createImageData(W, H);
      pixels = new Uint32Array(image.data.buffer);
    }
    pixels.fill(BACKGROUND_PX);
    const rect = (x, y, w, h, px) => {
      const y1 = Math.min(H, y + h);
      for (let yy = Math.max(0, y); yy < y1; yy++) {
        const o = yy * W + x;
        pixels.fill(px, o, o + w);
      }
    };
    const { k, s, cols } = view;
    const n = state.n;
    const cells = Math.ceil(n / k);
    const inner = s - gapOf(s);
    const top = scrollTopPx();
    for (let r = Math.floor(top / s); r < view.rows; r++) {
      const y = r * s - top;
      if (y >= H) break;
      for (let c = 0; c < cols; c++) {
        const cell = r * cols + c;
        if (cell >= cells) break;
        const x = c * s;
        if (k === 1) {
          const ci = state.cond[cell];
          if (ci === UNKNOWN) rect(x, y, inner, inner, UNKNOWN_PX);
          else if (inner >= 4) {
            const filled = filledRows(cell, inner);
            rect(x, y, inner, inner - filled, BASE_PX[ci]);
            rect(x, y + inner - filled, inner, filled, FILL_PX[ci]);
          } else rect(x, y, inner, inner, FILL_PX[ci]);
        } else {
          let best = UNKNOWN;
          const end = Math.min(n, (cell + 1) * k);
          for (let z = cell * k; z < end; z++) if (state.cond[z] < best) best = state.cond[z];
          rect(x, y, inner, inner, best === UNKNOWN ? UNKNOWN_PX : FILL_PX[best]);
        }
      }
    }
    ctx.putImageData(image, 0, 0);
    drawLabels(top);
    drawMarkers(top);
    drawSelection(top);
    draws.frames++;
    draws.lastMs = performance.now() - t0;
  }

  /** The canvas position of zone i's cell (device px, relative to the visible area). */
  function cellOrigin(i, top) {
    const cell = Math.floor(i / view.k);
    return { x: (cell % view.cols) * view.s, y: Math.floor(cell / view.cols) * view.s - top };
  }

  /**
   * Zone numbers inside cells large enough to hold them, white-edged dark digits that read on
   * every condition's colour. Records what it wrote, for the tests.
   */
  function drawLabels(top) {
    draws.labels = new Map();
    const { k, s, cols } = view;
    const inner = s - gapOf(s);
    if (k !== 1 || inner < LABEL_MIN) return;
    const family = 'ui-monospace, "DejaVu Sans Mono", monospace';
    const largest = Math.floor(Math.min(inner * 0.34, 13 * view.dpr));
    const smallest = Math.ceil(7 * view.dpr);
    ctx.save();
    ctx.font = `${largest}px ${family}`;
    const digitShare = ctx.measureText('0').width / largest; // a digit's width per pixel of font size
    // Per number of digits: the largest font, up to `largest`, at which the number fits its cell.
    const fontFor = (digits) => Math.min(largest, Math.floor((inner - 4) / (digits * digitShare)));
    ctx.textBaseline = 'top';
    ctx.lineJoin = 'round';
    ctx.strokeStyle = '#ffffff';
    ctx.fillStyle = '#1f2328';
    let current = 0;
    const H = el.canvas.height;
    for (let r = Math.floor(top / s); r < view.rows; r++) {
      const y = r * s - top;
      if (y >= H) break;
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        if (i >= state.n) break;
        const text = String(i);
        const px = fontFor(text.length);
        if (px < smallest) continue;
        if (px !== current) {
          current = px;
          ctx.font = `${px}px ${family}`;
          ctx.lineWidth = Math.max(2, Math.round(px / 4));
        }
        ctx.strokeText(text, c * s + 2, y + 2);
        ctx.fillText(text, c * s + 2, y + 2);
        draws.labels.set(i, text);
      }
    }
    ctx.restore();
  }

  /**
   * Rings around notable zones whose cells are too small to see (one pixel may hold thousands of
   * zones): a single offline or open zone among 262,144 cannot be missed. The legend's order
   * decides which condition marks a cell shared by several.
   */
  function drawMarkers(top) {
    draws.markers = [];
    if (view.s / view.dpr >= MARKED_BELOW) return;
    const H = el.canvas.height;
    const W = el.canvas.width;
    // Wide enough to leave the cell and its nearest neighbours visible inside the ring.
    const radius = 9 * view.dpr + view.s / 2;
    const marked = new Set();
    ctx.save();
    for (let c = 0; c < I_FULL && draws.markers.length < MAX_MARKERS; c++) {
      for (const i of state.notable[c]) {
        if (draws.markers.length >= MAX_MARKERS) break;
        const cell = Math.floor(i / view.k);
        if (marked.has(cell)) continue;
        const { x, y } = cellOrigin(i, top);
        if (y + view.s < 0 || y >= H) continue;
        marked.add(cell);
        const cx = Math.min(W - 1, x + view.s / 2);
        const cy = y + view.s / 2;
        ctx.beginPath();
        ctx.arc(cx, cy, radius, 0, 2 * Math.PI);
        ctx.lineWidth = 4 * view.dpr;
        ctx.strokeStyle = '#ffffff';
        ctx.stroke();
        ctx.lineWidth = 2 * view.dpr;
        ctx.strokeStyle = CONDITIONS[c].fill;
        ctx.stroke();
        draws.markers.push({ zone: i, condition: CONDITIONS[c].name, x: cx, y: cy, radius });
      }
    }
    ctx.restore();
  }

  /** Outlines the selected zones, one rectangle per visible row segment. */
  function drawSelection(top) {
    if (!state.ready && state.reported === 0) return;
    const { k, s, cols } = view;
    const firstCell = Math.floor(state.sel.first / k);
    const lastCell = Math.floor((state.sel.first + state.sel.count - 1) / k);
    const inner = s - gapOf(s);
    const H = el.canvas.height;
    const wide = s >= 8;
    ctx.save();
    for (let r = Math.max(Math.floor(firstCell / cols), Math.floor(top / s)); r <= Math.floor(lastCell / cols); r++) {
      const y = r * s - top;
      if (y >= H) break;
      const c0 = r === Math.floor(firstCell / cols) ? firstCell % cols : 0;
      const c1 = r === Math.floor(lastCell / cols) ? lastCell % cols : cols - 1;
      const w = (c1 - c0) * s + inner;
      // Dark outside the cells, and on large cells a white line inside: visible on every colour.
      ctx.strokeStyle = '#1f2328';
      ctx.lineWidth = wide ? 2 : 1;
      const half = ctx.lineWidth / 2;
      ctx.strokeRect(c0 * s - half, y - half, w + 2 * half, inner + 2 * half);
      if (wide) {
        ctx.strokeStyle = '#ffffff';
        ctx.lineWidth = 1;
        ctx.strokeRect(c0 * s + 0.5, y + 0.5, w - 1, inner - 1);
      }
    }
    ctx.restore();
  }

  // ---------------------------------------------------------------------------------------------
  // Layout, scrolling and zoom. The canvas is the size of the visible area (position: sticky); a
  // spacer below it gives the scroll height of every row, so any number of zones can scroll.

  const scrollTopPx = () => Math.round(el.scroll.scrollTop * view.dpr);

  function canvasSize() {
    view.dpr = window.devicePixelRatio || 1;
    return {
      cssW: el.scroll.clientWidth,
      cssH: el.scroll.clientHeight,
      W: Math.max(1, Math.floor(el.scroll.clientWidth * view.dpr)),
      H: Math.max(1, Math.floor(el.scroll.clientHeight * view.dpr)),
    };
  }

  /** The most zoomed-in view that shows every zone at once. */
  function fitView(W, H) {
    const n = Math.max(1, state.n);
    for (let i = CELL_SIZES.length - 1; i >= 0; i--) {
      const s = CELL_SIZES[i];
      const cols = Math.floor(W / s);
      if (cols >= 1 && Math.ceil(n / cols) * s <= H) return { k: 1, s };
    }
    let k = Math.max(2, Math.ceil(n / (W * H)));
    while (Math.ceil(Math.ceil(n / k) / W) > H) k++;
    return { k, s: 1 };
  }

  function layout(anchorZone, anchorY) {
    const { cssW, cssH, W, H } = canvasSize();
    if (view.fit) Object.assign(view, fitView(W, H));
    el.canvas.style.width = `${cssW}px`;
    el.canvas.style.height = `${cssH}px`;
    if (el.canvas.width !== W) el.canvas.width = W;
    if (el.canvas.height !== H) el.canvas.height = H;
    view.cols = Math.max(1, Math.floor(W / view.s));
    view.rows = Math.ceil(Math.ceil(state.n / view.k) / view.cols);
    el.spacer.style.height = `${Math.max(0, (view.rows * view.s) / view.dpr - cssH)}px`;
    if (anchorZone !== undefined) {
      const row = Math.floor(Math.floor(anchorZone / view.k) / view.cols);
      el.scroll.scrollTop = Math.max(0, (row * view.s - anchorY) / view.dpr);
    }
    el.zoomLabel.textContent = view.k > 1
      ? `${count(view.k)} zones per pixel`
      : view.s === 1 ? '1 zone per pixel' : `1 zone per ${view.s}×${view.s} pixel cell`;
    el.zoomOut.disabled = view.fit;
    el.zoomIn.disabled = view.k === 1 && view.s === CELL_SIZES[CELL_SIZES.length - 1];
    requestDraw();
  }

  /** Zooms one step, keeping the zone at canvas height y (device px) where it is. */
  function zoom(direction, y = el.canvas.height / 2) {
    if (state.n === 0) return;
    const hit = hitTest(0, y);
    const anchorZone = hit ? hit.first : 0;
    const { W, H } = canvasSize();
    const fit = fitView(W, H);
    const density = (v) => v.k / (v.s * v.s);
    let next = { k: view.k, s: view.s };
    if (direction > 0) {
      if (next.k > 1) next.k = Math.max(1, Math.floor(next.k / 2));
      else next.s = CELL_SIZES.find((s) => s > next.s) ?? next.s;
    } else if (next.k === 1 && next.s > 1) {
      next.s = [...CELL_SIZES].reverse().find((s) => s < next.s) ?? 1;
    } else next.k *= 2;
    view.fit = density(next) >= density(fit);
    if (!view.fit) Object.assign(view, next);
    layout(anchorZone, y);
  }

  /** The cell under canvas point (x, y) in device px: its first zone and how many it holds. */
  function hitTest(x, y) {
    const { k, s, cols } = view;
    const c = Math.floor(x / s);
    const r = Math.floor((y + scrollTopPx()) / s);
    if (c < 0 || c >= cols || r < 0) return null;
    const first = (r * cols + c) * k;
    if (first >= state.n) return null;
    return { first, count: Math.min(k, state.n - first) };
  }

  function eventPoint(e) {
    const r = el.canvas.getBoundingClientRect();
    return { x: (e.clientX - r.left) * view.dpr, y: (e.clientY - r.top) * view.dpr };
  }

  // ---------------------------------------------------------------------------------------------
  // Report lines, as qemu-io's zrp prints them (docs/spec/cli.md: 512-byte sectors, QEMU's zcond numbers)

  function reportLine(i) {
    const sector = (b) => hex(Math.floor(b / 512));
    const type = QEMU_ZONE_NUMBERS.type[state.cond[i] === I_CONVENTIONAL ? 'conventional' : 'sequential-write-required'];
    const zcond = QEMU_ZONE_NUMBERS.condition[CONDITIONS[state.cond[i]].name];
    return `start: ${sector(startOf(i))}, len ${sector(state.len[i])}, cap ${sector(state.cap[i])}, wptr ${sector(state.wp[i])}, zcond:${zcond}, [type: ${type}]`;
  }

  function zoneSummary(i) {
    if (state.cond[i] === UNKNOWN) return `zone ${count(i)}: not reported yet`;
    const c = CONDITIONS[state.cond[i]];
    const written = c.name === 'not-write-pointer' ? 'random access' : `${(share(i) * 100).toFixed(1)} % written (wp ${bytes(state.wp[i] - startOf(i))} of ${bytes(state.cap[i])})`;
    const attributes = state.attributes.get(i);
    const raised = attributes ? ` · ${attributes.join(', ')}` : '';
    return `zone ${count(i)} · ${c.name}${raised} · ${written}\n${reportLine(i)}`;
  }

  function rangeSummary(first, n) {
    if (n === 1) return zoneSummary(first);
    const tally = new Array(CONDITIONS.length).fill(0);
    let unknown = 0;
    for (let z = first; z < first + n; z++) {
      if (state.cond[z] === UNKNOWN) unknown++;
      else tally[state.cond[z]]++;
    }
    const parts = CONDITIONS.map((c, i) => (tally[i] ? `${c.name} ${count(tally[i])}` : null)).filter(Boolean);
    if (unknown) parts.push(`not reported yet ${count(unknown)}`);
    return `zones ${count(first)}–${count(first + n - 1)} (${count(n)}), offset ${hex(startOf(first))}\n${parts.join(', ')}`;
  }

  // ---------------------------------------------------------------------------------------------
  // Side panel

  function renderLegend() {
    el.legend.replaceChildren(
      ...CONDITIONS.map((c, i) => {
        const li = document.createElement('li');
        li.dataset.condition = c.name;
        const swatch = document.createElement('span');
        swatch.className = 'swatch';
        const top = document.createElement('span');
        top.style.background = c.base;
        const bottom = document.createElement('span');
        bottom.className = 'swatch-fill';
        bottom.style.background = c.fill;
        swatch.append(top, bottom);
        const label = document.createElement('span');
        label.textContent = c.label;
        const n = document.createElement('span');
        n.className = 'count';
        n.id = `count-${c.name}`;
        n.textContent = count(state.counts[i]);
        li.append(swatch, label, n);
        return li;
      }),
    );
  }

  function renderLimit(box, valueEl, bar, used, max) {
    valueEl.textContent = max > 0 ? `${count(used)} / ${count(max)}` : `${count(used)} (no limit)`;
    bar.style.width = max > 0 ? `${Math.min(100, (100 * used) / max)}%` : '0';
    box.classList.toggle('at-limit', max > 0 && used >= max);
    box.dataset.used = String(used);
    box.dataset.max = String(max);
  }

  /** The `limit` smallest zone numbers of a set (sorted), without sorting a large set whole. */
  function smallest(set, limit) {
    const out = [];
    for (const z of set) {
      if (out.length === limit && z >= out[limit - 1]) continue;
      let at = out.length;
      while (at > 0 && out[at - 1] > z) at--;
      out.splice(at, 0, z);
      if (out.length > limit) out.pop();
    }
    return out;
  }

  /** Brings zone i on screen with a cell of its own (selected), from the list of notable zones. */
  function goToZone(i) {
    state.anchor = i;
    select(i, 1);
    const s = view.k === 1 && view.s / view.dpr >= MARKED_BELOW ? view.s : CELL_SIZES.find((x) => x / view.dpr >= 16) ?? CELL_SIZES[CELL_SIZES.length - 1];
    view.fit = false;
    Object.assign(view, { k: 1, s });
    layout(i, Math.floor(el.canvas.height / 3));
  }

  /** Beside the map: every notable condition present, with its first zone numbers as links. */
  let notableShown = '';
  function renderNotable() {
    const listed = [];
    for (let c = 0; c < I_FULL; c++) listed.push(state.notable[c].size === 0 ? [] : smallest(state.notable[c], NOTABLE_LISTED));
    // Rebuilt only when it changes, so an event cannot replace a button under the pointer.
    const key = `${state.node}|${state.reported}|${listed.map((l, c) => `${state.notable[c].size}:${l.join(',')}`).join('|')}`;
    if (key === notableShown) return;
    notableShown = key;
    const items = [];
    for (let c = 0; c < I_FULL; c++) {
      const set = state.notable[c];
      if (set.size === 0) continue;
      const li = document.createElement('li');
      li.dataset.condition = CONDITIONS[c].name;
      const title = document.createElement('span');
      title.className = 'notable-title';
      const swatch = document.createElement('span');
      swatch.className = 'dot';
      swatch.style.background = CONDITIONS[c].fill;
      title.append(swatch, `${CONDITIONS[c].label} (${count(set.size)})`);
      li.append(title);
      for (const z of listed[c]) {
        const b = document.createElement('button');
        b.type = 'button';
        b.dataset.zone = String(z);
        b.textContent = count(z);
        b.title = `show zone ${count(z)}`;
        b.addEventListener('click', () => goToZone(z));
        li.append(' ', b);
      }
      if (set.size > NOTABLE_LISTED) {
        const more = document.createElement('span');
        more.className = 'more';
        more.textContent = ` and ${count(set.size - NOTABLE_LISTED)} more`;
        li.append(more);
      }
      items.push(li);
    }
    el.notable.replaceChildren(...items);
    el.notableNone.hidden = items.length > 0 || state.reported === 0;
  }

  function renderSummary() {
    if (!state.zone) return;
    renderNotable();
    for (let i = 0; i < CONDITIONS.length; i++) {
      const n = $(`count-${CONDITIONS[i].name}`);
      if (n) n.textContent = count(state.counts[i]);
    }
    const open = state.counts[I_EXPLICIT] + state.counts[I_IMPLICIT];
    const active = open + state.counts[I_CLOSED];
    renderLimit(el.openLimit, el.openCount, el.openBar, open, state.zone['max-open-zones']);
    renderLimit(el.activeLimit, el.activeCount, el.activeBar, active, state.zone['max-active-zones']);
    renderSelection();
  }

  function renderSelection() {
    if (state.n === 0) return;
    el.selFirst.max = String(state.n - 1);
    el.selCount.max = String(state.n - state.sel.first);
    if (document.activeElement !== el.selFirst) el.selFirst.value = String(state.sel.first);
    if (document.activeElement !== el.selCount) el.selCount.value = String(state.sel.count);
    el.selLine.textContent = rangeSummary(state.sel.first, state.sel.count);
    const busy = !state.ready;
    for (const b of el.actions.querySelectorAll('button')) b.disabled = busy || (b.dataset.inject !== undefined && el.opAll.checked);
  }

  function select(first, n) {
    first = Math.max(0, Math.min(state.n - 1, first));
    n = Math.max(1, Math.min(state.n - first, n));
    state.sel = { first, count: n };
    renderSelection();
    requestDraw();
  }

  function showMessage(kind, context, text, reason) {
    el.message.hidden = false;
    el.message.classList.toggle('error', kind === 'error');
    el.message.dataset.kind = kind;
    el.messageContext.textContent = context;
    el.messageText.textContent = text;
    el.messageReason.textContent = reason ? reason : '';
    el.messageReason.hidden = !reason;
  }

  const showError = (context, e) => showMessage('error', context, e.message, e.reason);

  function geometryText() {
    const z = state.zone;
    const parts = [`${plural(state.n, 'zone', 'zones')} of ${bytes(z.size)}`];
    if (z.capacity !== z.size) parts.push(`capacity ${bytes(z.capacity)}`);
    if (z['conventional-zones']) parts.push(`${count(z['conventional-zones'])} conventional`);
    parts.push(`append ≤ ${bytes(z['max-append-bytes'])}`);
    return parts.join(', ');
  }

  // ---------------------------------------------------------------------------------------------
  // Nodes

  const params = new URLSearchParams(location.search);
  let wantedNode = params.get('node');

  const zoneInfoOf = (node) => {
    const data = node.image && node.image['format-specific'] && node.image['format-specific'].data;
    const zone = data && data.zone;
    return zone && zone.mode === 'host-managed' ? zone : null;
  };

  function renderNodes() {
    const qcow2 = state.nodes.filter((n) => n.drv === 'qcow2');
    el.nodesEmpty.hidden = qcow2.length > 0;
    el.nodes.replaceChildren(
      ...qcow2.map((node) => {
        const zone = zoneInfoOf(node);
        const li = document.createElement('li');
        const b = document.createElement('button');
        b.type = 'button';
        b.dataset.node = node['node-name'];
        b.setAttribute('aria-pressed', String(node['node-name'] === state.node));
        b.disabled = !zone;
        const name = document.createElement('span');
        name.className = 'node-name';
        name.textContent = node['node-name'];
        const detail = document.createElement('span');
        detail.className = 'node-detail';
        detail.textContent = zone
          ? `${node.file} · ${plural(zone['nr-zones'], 'zone', 'zones')}${node.ro ? ' · read-only' : ''}`
          : `${node.file} · not zoned`;
        b.append(name, detail);
        b.addEventListener('click', () => chooseNode(node['node-name']));
        li.append(b);
        return li;
      }),
    );
  }

  async function refreshNodes() {
    let nodes;
    try {
      nodes = await rpc.call('query-named-block-nodes');
    } catch {
      return; // the connection handler says what is wrong
    }
    state.nodes = nodes;
    renderNodes();
    const names = new Set(nodes.filter((n) => zoneInfoOf(n)).map((n) => n['node-name']));
    if (state.node !== null && !names.has(state.node)) {
      showMessage('error', '', `Node ${state.node} is no longer open.`, '');
      clearNode();
    }
    if (state.node === null) {
      const zoned = nodes.filter((n) => zoneInfoOf(n));
      const first = zoned.find((n) => n['node-name'] === wantedNode) ?? zoned[0];
      if (first) chooseNode(first['node-name']);
    }
  }

  function clearNode() {
    state.loadGeneration++;
    state.node = null;
    state.zone = null;
    state.n = 0;
    state.ready = false;
    el.summary.hidden = true;
    el.attention.hidden = true;
    el.actions.hidden = true;
    el.body.dataset.node = '';
    el.body.dataset.ready = 'false';
    el.progress.textContent = '';
    renderNodes();
    layout();
  }

  function chooseNode(name) {
    wantedNode = name;
    const url = new URL(location.href);
    url.searchParams.set('node', name);
    history.replaceState(null, '', url);
    void loadNode(name);
  }

  async function loadNode(name) {
    const node = state.nodes.find((n) => n['node-name'] === name);
    const zone = node && zoneInfoOf(node);
    if (!zone) return;
    const generation = ++state.loadGeneration;
    const n = zone['nr-zones'];
    Object.assign(state, {
      node: name,
      zone,
      deviceSize: node.image['virtual-size'],
      n,
      zoneSize: zone.size,
      cond: new Uint8Array(n).fill(UNKNOWN),
      wp: new Float64Array(n),
      cap: new Float64Array(n),
      len: new Float64Array(n),
      attributes: new Map(),
      counts: new Array(CONDITIONS.length).fill(0),
      notable: CONDITIONS.map(() => new Set()),
      reported: 0,
      ready: false,
    });
    if (state.sel.first >= n) state.sel = { first: 0, count: 1 };
    state.sel.count = Math.min(state.sel.count, n - state.sel.first);
    el.body.dataset.node = name;
    el.body.dataset.ready = 'false';
    el.summary.hidden = false;
    el.attention.hidden = false;
    el.actions.hidden = false;
    el.geometry.textContent = geometryText();
    renderNodes();
    renderLegend();
    view.fit = true;
    el.scroll.scrollTop = 0;
    layout();
    renderSummary();
    try {
      for (let first = 0; first < n; first += REPORT_CHUNK) {
        const zones = await rpc.call('blockdev-zone-report', { 'node-name': name, offset: first * zone.size, 'nr-zones': Math.min(REPORT_CHUNK, n - first) });
        if (generation !== state.loadGeneration) return;
        applyZones(zones);
        state.reported = Math.min(n, first + REPORT_CHUNK);
        el.progress.textContent = state.reported < n ? `reading zones: ${Math.floor((100 * state.reported) / n)} %` : '';
        renderSummary();
        requestDraw();
      }
    } catch (e) {
      if (generation !== state.loadGeneration) return;
      el.progress.textContent = '';
      showError(`Reading the zones of ${name} failed:`, e);
      return;
    }
    state.ready = true;
    renderSummary();
    // Drawn before it says so: a screenshot taken once data-ready is "true" shows every zone.
    draw();
    el.body.dataset.ready = 'true';
  }

  // ---------------------------------------------------------------------------------------------
  // Actions

  function describeSelection() {
    const { first, count: n } = state.sel;
    return n === 1 ? `zone ${count(first)}` : `zones ${count(first)}–${count(first + n - 1)}`;
  }

  async function manage(op) {
    const args = { 'node-name': state.node, op };
    let what;
    if (el.opAll.checked) {
      args.all = true;
      what = 'every zone';
    } else {
      const { first, count: n } = state.sel;
      args.offset = startOf(first);
      args.length = endOf(first + n - 1) - startOf(first);
      what = describeSelection();
    }
    try {
      await rpc.call('blockdev-zone-mgmt', args);
      showMessage('ok', '', `${op} ${what}: done.`, '');
    } catch (e) {
      showError(`${op} ${what}:`, e);
    }
  }

  /** blockdev-zone-inject takes one zone; a range goes as batches, each zone on its own. */
  async function inject(condition) {
    const { first, count: n } = state.sel;
    const what = describeSelection();
    let failed = 0;
    let firstError = null;
    try {
      for (let z = first; z < first + n; z += INJECT_BATCH) {
        const calls = [];
        for (let i = z; i < Math.min(first + n, z + INJECT_BATCH); i++) {
          calls.push(['blockdev-zone-inject', { 'node-name': state.node, offset: startOf(i), condition }]);
        }
        for (const r of await rpc.batch(calls)) {
          if (r.error) {
            failed++;
            firstError ??= r.error;
          }
        }
      }
    } catch (e) {
      showError(`inject ${condition} into ${what}:`, e);
      return;
    }
    if (firstError) {
      const context = n === 1 ? `inject ${condition} into ${what}:` : `inject ${condition} into ${what}: ${count(failed)} of ${count(n)} refused; the first:`;
      showError(context, firstError);
    } else showMessage('ok', '', `inject ${condition} into ${what}: done.`, '');
  }

  // ---------------------------------------------------------------------------------------------
  // Events and wiring

  function onEvent(method, params) {
    if (method !== 'BLOCK_ZONES_CHANGED' || !params || !params.data) return;
    const data = params.data;
    if (data['node-name'] !== state.node) return;
    state.events++;
    applyZones(data.zones);
    renderSummary();
    requestDraw();
  }

  const token = params.get('token');
  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/${token ? `?token=${encodeURIComponent(token)}` : ''}`;
  const rpc = new Rpc(wsUrl);
  let pollTimer = null;
  rpc.onEvent = onEvent;
  rpc.onOpen = () => {
    el.body.dataset.status = 'open';
    el.connection.textContent = `connected to ${location.host}`;
    // Events may have been missed while disconnected: read everything again.
    const reload = state.node;
    state.node = null;
    if (reload !== null) wantedNode = reload;
    void refreshNodes();
    clearInterval(pollTimer);
    pollTimer = setInterval(() => void refreshNodes(), NODE_POLL_MS);
  };
  rpc.onClose = () => {
    el.body.dataset.status = 'closed';
    el.connection.textContent = token === null
      ? 'disconnected; retrying… (if the service has a token, open this page as /?token=TOKEN)'
      : 'disconnected; retrying… (check the token in the address)';
    clearInterval(pollTimer);
  };

  el.zoomIn.addEventListener('click', () => zoom(1));
  el.zoomOut.addEventListener('click', () => zoom(-1));
  el.zoomFit.addEventListener('click', () => {
    view.fit = true;
    el.scroll.scrollTop = 0;
    layout();
  });
  el.scroll.addEventListener('scroll', () => requestDraw(), { passive: true });
  el.scroll.addEventListener(
    'wheel',
    (e) => {
      if (!e.ctrlKey) return;
      e.preventDefault();
      zoom(e.deltaY < 0 ? 1 : -1, eventPoint(e).y);
    },
    { passive: false },
  );
  el.scroll.addEventListener('keydown', (e) => {
    if (e.key === '+' || e.key === '=') zoom(1);
    else if (e.key === '-') zoom(-1);
    else if (e.key === 'ArrowRight') select(state.sel.first + 1, 1);
    else if (e.key === 'ArrowLeft') select(state.sel.first - 1, 1);
    else return;
    e.preventDefault();
  });

  function showTooltip(e, hit) {
    if (!hit) {
      el.tooltip.hidden = true;
      return;
    }
    el.tooltip.textContent = rangeSummary(hit.first, hit.count);
    el.tooltip.hidden = false;
    const area = el.tooltip.parentElement.getBoundingClientRect();
    let x = e.clientX - area.left + 14;
    let y = e.clientY - area.top + 14;
    if (x + el.tooltip.offsetWidth > area.width) x = Math.max(0, e.clientX - area.left - el.tooltip.offsetWidth - 10);
    if (y + el.tooltip.offsetHeight > area.height) y = Math.max(0, e.clientY - area.top - el.tooltip.offsetHeight - 10);
    el.tooltip.style.left = `${x}px`;
    el.tooltip.style.top = `${y}px`;
  }

  el.canvas.addEventListener('pointermove', (e) => {
    if (e.pointerType !== 'mouse') return;
    const p = eventPoint(e);
    showTooltip(e, hitTest(p.x, p.y));
  });
  el.canvas.addEventListener('pointerleave', () => (el.tooltip.hidden = true));
  // A click or a tap selects the cell (shift extends from the last one) and shows its report line.
  el.canvas.addEventListener('click', (e) => {
    const p = eventPoint(e);
    const hit = hitTest(p.x, p.y);
    if (!hit) return;
    if (e.shiftKey) {
      const lo = Math.min(state.anchor, hit.first);
      const hi = Math.max(state.anchor, hit.first + hit.count - 1);
      select(lo, hi - lo + 1);
    } else {
      state.anchor = hit.first;
      select(hit.first, hit.count);
    }
    showTooltip(e, hit);
  });
  el.selFirst.addEventListener('change', () => select(Number(el.selFirst.value) || 0, state.sel.count));
  el.selCount.addEventListener('change', () => select(state.sel.first, Number(el.selCount.value) || 1));
  el.opAll.addEventListener('change', renderSelection);
  for (const b of el.actions.querySelectorAll('button[data-op]')) b.addEventListener('click', () => void manage(b.dataset.op));
  for (const b of el.actions.querySelectorAll('button[data-inject]')) b.addEventListener('click', () => void inject(b.dataset.inject));

  new ResizeObserver(() => layout()).observe(el.scroll);

  // For tests and the curious: what was drawn where, without reaching into closures.
  window.qzonedZoneMap = {
    conditions: CONDITIONS.map((c) => ({ ...c })),
    get node() { return state.node; },
    get ready() { return state.ready; },
    get zoneCount() { return state.n; },
    get events() { return state.events; },
    get frames() { return draws.frames; },
    get lastDrawMs() { return draws.lastMs; },
    get view() { return { k: view.k, s: view.s, fit: view.fit, cols: view.cols, rows: view.rows }; },
    /** The rings of the last frame: {zone, condition, x, y, radius} in canvas device px. */
    get markers() { return draws.markers.map((m) => ({ ...m })); },
    /** The zone number written in zone i's cell in the last frame, or null. */
    label: (i) => draws.labels.get(i) ?? null,
    get selection() { return { ...state.sel }; },
    zone(i) {
      if (!(i >= 0 && i < state.n) || state.cond[i] === UNKNOWN) return null;
      const z = { start: startOf(i), length: state.len[i], capacity: state.cap[i], 'write-pointer': state.wp[i], condition: CONDITIONS[state.cond[i]].name };
      const attributes = state.attributes.get(i);
      return attributes ? { ...z, attributes: [...attributes] } : z;
    },
    /** The text the page shows for zone i when it is the selection. */
    summary: (i) => zoneSummary(i),
    reportLine: (i) => reportLine(i),
    /** The cell of zone i on the canvas (device px) if visible: its square and how many rows are written. */
    cellRect(i) {
      const cell = Math.floor(i / view.k);
      const x = (cell % view.cols) * view.s;
      const y = Math.floor(cell / view.cols) * view.s - scrollTopPx();
      const size = view.s - gapOf(view.s);
      if (y < 0 || y + size > el.canvas.height) return null;
      return { x, y, size, filledRows: view.k === 1 && size >= 4 ? filledRows(i, size) : null };
    },
    /** Scrolls so that zone i is in view and zooms to cells of s pixels (s = 0: fit). */
    show(i, s) {
      view.fit = !s;
      if (s) Object.assign(view, { k: 1, s });
      layout(i, 0);
      draw();
    },
    select,
  };

  renderLegend();
  layout();
  rpc.connect();
})();
