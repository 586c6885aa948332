// leaderelection dashboard: every lease, live from GET /v1/watch (Server-Sent Events).
//
// The stream is read with fetch() rather than EventSource so that it can send an
// Authorization header: when the service answers 401, the page asks for a token
// and keeps it in sessionStorage (this tab only). authHeaders() is the one place
// that decides what credentials a request carries.
//
// A prefix stream starts with the current state of every key (replay) and then
// sends each change; events carry a per-key version, and anything not newer
// than what the page shows is ignored, so reconnects never move a row backwards.
//
// Fleet size: events only update the data (a Map, a sorted key list and the
// state counts, each in O(log n) or one splice); the table is drawn at most once
// per animation frame and holds the first PAGE_ROWS keys in key order ("Show
// more" adds a page; the prefix filter narrows the stream itself). So a replay
// of 10,000 keys costs 10,000 map updates and one drawing of 200 rows, where
// inserting every row into the DOM in order (the first version) took seconds
// of a frozen page. A virtual scroller was rejected: rows have variable height
// (history, phone layout) and a page of rows keeps the table plain HTML.
//
// A million keys: the first page is drawn from GET /v1/leases?limit=PAGE_ROWS
// before the stream opens (first row in well under 2 s, whatever the store's
// size), and the page watches what it shows: the prefix typed, and when that
// prefix replays more than WATCH_CAP keys, only the keys that share the shown
// rows' common prefix (the summary says so; typing a prefix watches that one).
// Streaming every key of a million to every open dashboard (the earlier
// design) took ten minutes of replay per page and kept a core busy.
"use strict";

const TOKEN_KEY = "leaderelection.token";
const PREFIX_KEY = "leaderelection.prefix";
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 10000;
const PAGE_ROWS = 200;
const WATCH_CAP = 20000; // keys a stream may replay before the page watches only what it shows

const leases = new Map(); // key -> {lease, version, type, state, changedAt, row, historyRow, dirty, flash}
const order = []; // every key, sorted
const counts = { held: 0, expired: 0, released: 0, revoked: 0 };
let shown = PAGE_ROWS; // rows drawn at most
let drawQueued = false;
let connects = 0; // streams opened since the page loaded (data-connects on #conn)
let clockOffsetMs = 0; // server clock minus this browser's clock
let controller = null;
let retryMs = RETRY_MIN_MS;
let lastEventId = null;
let watchPrefix = ""; // what the stream watches
let narrowed = false; // the stream watches the shown rows' common prefix, not the typed one
let replayed = 0; // replay events on the current stream
let loads = 0; // first-page loads begun (a newer one wins)

const $ = (id) => document.getElementById(id);

// -- credentials (the seam for API tokens) ------------------------------------

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function askForToken(message) {
  const form = $("auth");
  form.hidden = false;
  $("token-help").textContent = message;
  $("token").focus();
  setConn("error", "Needs an API token");
}

// -- connection status ----------------------------------------------------------

function setConn(state, text) {
  $("conn").dataset.state = state;
  $("conn-text").textContent = text;
}

// -- the stream -----------------------------------------------------------------

function currentPrefix() {
  const input = $("prefix");
  return input.checkValidity() ? input.value.trim() : "";
}

function connect() {
  if (controller) controller.abort();
  controller = new AbortController();
  connects += 1;
  replayed = 0;
  $("conn").dataset.connects = String(connects);
  stream(controller.signal, watchPrefix).catch((err) => {
    if (controller && controller.signal.aborted) return;
    setConn("connecting", `Reconnecting in ${Math.round(retryMs / 1000)} s…`);
    console.info("watch stream ended:", err && err.message);
    const wait = retryMs;
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    setTimeout(() => {
      if (!controller || !controller.signal.aborted) connect();
    }, wait);
  });
}

async function stream(signal, prefix) {
  const url = `/v1/watch?renewed=true&prefix=${encodeURIComponent(prefix)}`;
  const headers = { Accept: "text/event-stream", ...authHeaders() };
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  let resp;
  try {
    resp = await fetch(url, { headers, signal, cache: "no-store" });
  } catch (err) {
    if (signal.aborted) return;
    throw err;
  }
  if (resp.status === 401 || resp.status === 403) {
    const body = await resp.json().catch(() => ({}));
    askForToken(body.message || "This service asks for an API token.");
    return; // no retry until a token is given
  }
  if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
  setConn("live", "Live");
  retryMs = RETRY_MIN_MS;
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let fields = { event: "message", data: [], id: null };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (fields.data.length) dispatch(fields.event, fields.data.join("\n"), fields.id);
          fields = { event: "message", data: [], id: null };
        } else if (!line.startsWith(":")) {
          const i = line.indexOf(":");
          const name = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (name === "event") fields.event = val;
          else if (name === "data") fields.data.push(val);
          else if (name === "id") fields.id = val;
        }
      }
    }
  } catch (err) {
    if (signal.aborted) return;
    throw err;
  }
  if (!signal.aborted) throw new Error("the service closed the stream");
}

// -- the first page, before the stream -----------------------------------------

async function load() {
  const prefix = currentPrefix();
  const gen = ++loads;
  if (controller) controller.abort(); // the old stream's events must not fill the new rows
  watchPrefix = prefix;
  narrowed = false;
  if (!(await listFirstPage(prefix, gen))) return;
  if (gen === loads) connect();
}

async function listFirstPage(prefix, gen) {
  // False when the stream must not open (a token is needed, or a newer load began).
  let resp;
  try {
    const url = `/v1/leases?limit=${PAGE_ROWS}&prefix=${encodeURIComponent(prefix)}`;
    resp = await fetch(url, { headers: authHeaders(), cache: "no-store" });
  } catch {
    return gen === loads; // the stream brings the rows
  }
  if (resp.status === 401 || resp.status === 403) {
    const body = await resp.json().catch(() => ({}));
    askForToken(body.message || "This service asks for an API token.");
    return false;
  }
  if (gen !== loads) return false;
  if (!resp.ok) return true;
  const body = await resp.json().catch(() => ({ leases: [] }));
  if (gen !== loads) return false;
  for (const lease of body.leases) {
    // version 0: the stream's replay of the same key (version 2 or more) replaces it
    const type = lease.state === "held" ? "acquired" : lease.state;
    apply(type, { key: lease.key, version: 0, replay: true, lease });
  }
  return true;
}

function commonPrefix(a, b) {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i += 1;
  return a.slice(0, i);
}

function narrow() {
  // More than WATCH_CAP keys under the typed prefix: watch the rows shown.
  narrowed = true;
  const last = order[Math.min(shown, order.length) - 1];
  const prefix = commonPrefix(order[0], last);
  if (prefix.length <= watchPrefix.length) return; // cannot narrow: keep the stream
  watchPrefix = prefix;
  for (const key of order) {
    if (key.startsWith(prefix)) continue;
    counts[leases.get(key).state] -= 1;
    leases.delete(key);
  }
  const kept = order.filter((key) => key.startsWith(prefix));
  order.length = 0;
  order.push(...kept);
  lastEventId = null;
  scheduleDraw();
  connect();
}

function dispatch(type, data, id) {
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return;
  }
  if (id) lastEventId = id;
  apply(type, event);
  if (event.replay && (replayed += 1) > WATCH_CAP && !narrowed) narrow();
}

// -- state ----------------------------------------------------------------------

function changedAt(type, lease) {
  if (type === "renewed") return lease.renewed_at;
  if (type === "released" || type === "expired" || type === "revoked") return lease.expires_at;
  return lease.acquired_at;
}

function stateOf(lease) {
  // The service decides the state on its clock; the page never guesses it. A
  // semaphore key (limit, holders) is held while any of its slots is.
  if (lease.holders && lease.holders.length > 0) return "held";
  return lease.state;
}

function forget(event) {
  // An admin deleted the key: its row goes (a later acquire brings it back).
  const known = leases.get(event.key);
  if (!known || event.version <= known.version) return;
  counts[known.state] -= 1;
  leases.delete(event.key);
  order.splice(order.indexOf(event.key), 1);
  announce(`${event.key}: deleted (last holder ${event.lease.holder})`);
  scheduleDraw();
}

function holderText(lease) {
  // A semaphore key: every holder, and how many of its slots are free.
  if (lease.limit === undefined) return lease.holder;
  const names = lease.holders.map((slot) => slot.holder).join(", ") || "—";
  return `${names} (${lease.limit - lease.holders.length} of ${lease.limit} slots free)`;
}

function tokenText(lease) {
  if (lease.limit === undefined || lease.holders.length === 0) return String(lease.fencing_token);
  return lease.holders.map((slot) => slot.fencing_token).join(", ");
}

function apply(type, event) {
  if (type === "deleted") return forget(event);
  const key = event.key;
  if (!key.startsWith(watchPrefix)) return; // from a stream the page has just left
  const known = leases.get(key);
  if (known && event.version <= known.version) return;
  clockOffsetMs = Date.parse(event.lease.server_time) - Date.now();
  const entry = known || { row: null, historyRow: null };
  const before = known ? known.lease.holder : null;
  const valueBefore = known ? known.lease.value : undefined;
  // A row drawn from the listing (version 0) that the stream's replay finds
  // changed: the change came between the two reads, and is shown as one.
  const listed = known && known.version === 0 && event.replay;
  const sameTerm =
    known &&
    known.lease.fencing_token === event.lease.fencing_token &&
    known.state === stateOf(event.lease);
  if (known) counts[known.state] -= 1;
  else insertKey(key);
  entry.lease = event.lease;
  entry.version = event.version;
  entry.type = type;
  entry.state = stateOf(event.lease);
  entry.changedAt = Date.parse(changedAt(type, event.lease));
  entry.dirty = true;
  counts[entry.state] += 1;
  leases.set(key, entry);
  if ((!event.replay && type !== "renewed") || (listed && !sameTerm)) {
    entry.flash = true;
    announce(describe(type, event.lease, before));
    if (entry.historyRow) loadHistory(key, entry);
  } else if ((!event.replay || listed) && known && valueBefore !== event.lease.value) {
    // A renewal that published a new value: a change worth showing, in the same term.
    entry.flash = true;
    announce(`${key}: ${event.lease.holder} published ${event.lease.value ?? "no value"}`);
    if (entry.historyRow) loadHistory(key, entry);
  }
  scheduleDraw();
}

function insertKey(key) {
  let lo = 0;
  let hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (order[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  order.splice(lo, 0, key);
}

function describe(type, lease, before) {
  switch (type) {
    case "acquired": return `${lease.key}: acquired by ${lease.holder}`;
    case "taken_over": return `${lease.key}: taken over by ${lease.holder} from ${before ?? "a lapsed holder"}`;
    case "released": return `${lease.key}: released by ${lease.holder}`;
    case "expired": return `${lease.key}: expired (last holder ${lease.holder})`;
    case "revoked": return `${lease.key}: revoked (holder ${lease.holder})`;
    case "successor_named": return `${lease.key}: ${lease.holder} is to hand over to ${lease.successor}`;
    case "transferred": return `${lease.key}: handed by ${lease.holder} to ${lease.successor ?? "a successor"}`;
    default: return `${lease.key}: ${type}`;
  }
}

function announce(text) {
  $("announce").textContent = text;
}

// -- rendering ------------------------------------------------------------------

function scheduleDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(draw);
}

function draw() {
  drawQueued = false;
  const nodes = [];
  for (const key of order.slice(0, shown)) {
    const entry = leases.get(key);
    if (!entry.row) createRow(key, entry);
    if (entry.dirty) updateRow(entry);
    nodes.push(entry.row);
    if (entry.historyRow) nodes.push(entry.historyRow);
  }
  const rows = $("rows");
  const same = rows.children.length === nodes.length && nodes.every((n, i) => rows.children[i] === n);
  if (!same) rows.replaceChildren(...nodes);
  for (const key of order.slice(0, shown)) {
    const entry = leases.get(key);
    if (entry.flash) {
      entry.flash = false;
      entry.row.classList.remove("flash");
      void entry.row.offsetWidth; // restart the animation
      entry.row.classList.add("flash");
    }
  }
  $("empty").hidden = leases.size > 0;
  const rest = order.length - Math.min(shown, order.length);
  $("more").hidden = rest <= 0;
  $("show-more").textContent = `Show ${Math.min(PAGE_ROWS, rest)} more (${rest} not shown)`;
  summarize();
}

function createRow(key, entry) {
  const row = $("row-template").content.firstElementChild.cloneNode(true);
  row.classList.add("lease");
  row.dataset.key = key;
  row.querySelector(".key").textContent = key;
  const toggle = row.querySelector(".history-toggle");
  toggle.setAttribute("aria-label", `History of ${key}`);
  toggle.addEventListener("click", () => toggleHistory(key));
  entry.row = row;
  entry.dirty = true;
}

function updateRow(entry) {
  entry.dirty = false;
  const row = entry.row;
  const lease = entry.lease;
  row.dataset.state = entry.state;
  row.querySelector(".holder .name").textContent = holderText(lease);
  // A pending transfer (docs/contract.md, "transfer"): shown until the successor's term begins.
  const successor = row.querySelector(".holder .successor");
  successor.textContent = lease.successor == null ? "" : ` → ${lease.successor}`;
  successor.title = lease.successor == null ? "" : `handed to ${lease.successor}`;
  row.toggleAttribute("data-successor", lease.successor != null);
  const value = row.querySelector(".value");
  value.textContent = lease.value ?? "—";
  value.title = lease.value ?? "no value published";
  value.toggleAttribute("data-none", lease.value == null);
  row.querySelector(".token").textContent = tokenText(lease);
  row.querySelector(".transitions").textContent = String(lease.transitions);
  const badge = row.querySelector(".badge");
  badge.dataset.state = entry.state;
  badge.textContent = entry.state;
  const time = row.querySelector(".changed time");
  time.dateTime = new Date(entry.changedAt).toISOString();
  time.title = `${entry.type} at ${new Date(entry.changedAt).toLocaleString()}`;
  tickRow(entry);
}

function formatLeft(ms) {
  if (ms <= 0) return "0.0 s";
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function formatAgo(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function tickRow(entry) {
  const now = Date.now() + clockOffsetMs;
  const left = entry.state === "held" ? Date.parse(entry.lease.expires_at) - now : 0;
  entry.row.querySelector(".left").textContent = entry.state === "held" ? formatLeft(left) : "—";
  entry.row.querySelector(".changed time").textContent = formatAgo(now - entry.changedAt);
}

function tick() {
  for (const key of order.slice(0, shown)) {
    const entry = leases.get(key);
    if (entry.row) tickRow(entry);
  }
}

function summarize() {
  const paged = order.length > shown ? ` (the first ${shown} shown)` : "";
  const scope =
    watchPrefix !== currentPrefix()
      ? `. More than ${WATCH_CAP} keys: watching those under “${watchPrefix}”; type a prefix to see others`
      : "";
  $("summary").textContent =
    `${leases.size} leases: ${counts.held} held, ${counts.expired} expired, ` +
    `${counts.released} released` +
    (counts.revoked ? `, ${counts.revoked} revoked` : "") + paged + scope;
}

// -- history --------------------------------------------------------------------

function toggleHistory(key) {
  const entry = leases.get(key);
  const toggle = entry.row.querySelector(".history-toggle");
  if (entry.historyRow) {
    entry.historyRow.remove();
    entry.historyRow = null;
    toggle.setAttribute("aria-expanded", "false");
    return;
  }
  const row = document.createElement("tr");
  row.className = "history";
  const cell = document.createElement("td");
  cell.colSpan = 9;
  cell.id = `history-${key}`;
  row.appendChild(cell);
  entry.row.after(row);
  entry.historyRow = row;
  scheduleDraw();
  toggle.setAttribute("aria-expanded", "true");
  toggle.setAttribute("aria-controls", cell.id);
  loadHistory(key, entry);
}

async function loadHistory(key, entry) {
  const cell = entry.historyRow && entry.historyRow.firstElementChild;
  if (!cell) return;
  let body;
  try {
    const resp = await fetch(`/v1/leases/${encodeURIComponent(key)}/history`, {
      headers: authHeaders(),
      cache: "no-store",
    });
    if (resp.status === 401 || resp.status === 403) {
      askForToken("Reading a history needs an API token.");
      return;
    }
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    body = await resp.json();
  } catch (err) {
    cell.textContent = `History unavailable (${err.message}).`;
    return;
  }
  const title = document.createElement("strong");
  title.textContent = `Last ${body.terms.length} terms of ${key} (newest first; the backend keeps ${body.limit})`;
  const list = document.createElement("ol");
  list.reversed = true;
  for (const term of [...body.terms].reverse()) {
    const item = document.createElement("li");
    const start = new Date(term.acquired_at).toLocaleString();
    const end = term.ended_at
      ? `${term.ended_by} ${new Date(term.ended_at).toLocaleString()}`
      : "current term";
    const value = term.value == null ? "" : `, value ${term.value}`;
    item.textContent = `token ${term.fencing_token}: ${term.holder}, from ${start}, ${end}${value}`;
    list.appendChild(item);
  }
  cell.replaceChildren(title, list);
}

// -- start ----------------------------------------------------------------------

function resetRows() {
  leases.clear();
  order.length = 0;
  counts.held = counts.expired = counts.released = counts.revoked = 0;
  shown = PAGE_ROWS;
  lastEventId = null;
  $("rows").replaceChildren();
  $("empty").hidden = false;
  summarize();
}

function start() {
  const input = $("prefix");
  input.value = new URLSearchParams(location.search).get("prefix") ?? sessionStorage.getItem(PREFIX_KEY) ?? "";
  let debounce = null;
  input.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      if (!input.checkValidity()) return;
      sessionStorage.setItem(PREFIX_KEY, input.value.trim());
      resetRows();
      load();
    }, 250);
  });
  $("filter").addEventListener("submit", (e) => e.preventDefault());
  $("show-more").addEventListener("click", () => {
    shown += PAGE_ROWS;
    scheduleDraw();
  });
  $("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    $("auth").hidden = true;
    setConn("connecting", "Connecting…");
    load();
  });
  setInterval(tick, 250);
  summarize();
  load();
}

document.addEventListener("DOMContentLoaded", start);
