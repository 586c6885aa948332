/** The SSE wire format and the event and error mapping, with no I/O. */

import { test } from "node:test";
import assert from "node:assert/strict";

import { BackendUnavailable, InternalError, LeaseHeld, LeaseNotFound, Unauthorized } from "../src/errors.js";
import { errorFor } from "../src/http.js";
import { LineSplitter, SseParser, type SseMessage } from "../src/sse.js";
import { parseEvent } from "../src/watch.js";

const record = {
  key: "job",
  holder: "host-a",
  fencing_token: 3,
  ttl: 10,
  acquired_at: "2026-11-27T09:20:16.123456Z",
  renewed_at: "2026-11-27T09:20:16.123456Z",
  expires_at: "2026-11-27T09:20:26.123456Z",
  transitions: 1,
  held: true,
  server_time: "2026-11-27T09:20:16.200000Z",
};

function messages(chunks: string[]): SseMessage[] {
  const lines = new LineSplitter();
  const parser = new SseParser();
  const out: SseMessage[] = [];
  for (const chunk of chunks) {
    for (const line of lines.push(chunk)) {
      const message = parser.feed(line);
      if (message !== null) out.push(message);
    }
  }
  return out;
}

test("lines end at \\n, \\r\\n or \\r, also when split across chunks", () => {
  const lines = new LineSplitter();
  assert.deepEqual(lines.push("a\r"), [], "a lone \\r at the end may be half of \\r\\n");
  assert.deepEqual(lines.push("\nb\rc\nd"), ["a", "b", "c"]);
  assert.deepEqual(lines.push("\n"), ["d"]);
  assert.equal(lines.pending, 0);
});

test("messages: event, joined data lines, id; comments and unknown fields ignored", () => {
  const text = ": keep-alive\n\nevent: acquired\nid: job:2\ndata: {\"a\":\ndata:1}\nretry: 5\n\n";
  // Cut the same text at every position: the result never depends on the chunking.
  for (let cut = 0; cut <= text.length; cut++) {
    assert.deepEqual(messages([text.slice(0, cut), text.slice(cut)]), [
      { event: "acquired", data: '{"a":\n1}', id: "job:2" },
    ]);
  }
});

test("a lease event is typed, with its lease parsed; unknown event types are skipped", () => {
  const data = JSON.stringify({ type: "released", key: "job", version: 4, revision: 9, replay: false, lease: { ...record, held: false } });
  const event = parseEvent({ event: "released", data, id: "job:4" });
  assert.equal(event?.type, "released");
  assert.equal(event?.id, "job:4");
  assert.equal(event?.lease.fencingToken, 3);
  assert.equal(event?.lease.held, false);
  assert.equal(event?.lease.expiresAt.toISOString(), "2026-11-27T09:20:26.123Z");
  assert.equal(parseEvent({ event: "message", data, id: null }), null);
  assert.throws(() => parseEvent({ event: "acquired", data: "{}", id: null }), InternalError);
});

test("error answers map by code, carry the record, and a 503 its Retry-After", () => {
  const answer = (status: number, body: unknown, headers: Record<string, string> = {}) =>
    errorFor(new Response(null, { status, headers }), typeof body === "string" ? body : JSON.stringify(body));
  const held = answer(409, { error: "lease_held", message: "held", lease: record });
  assert.ok(held instanceof LeaseHeld);
  assert.equal(held.lease?.holder, "host-a");
  assert.equal(held.status, 409);
  const down = answer(503, { error: "backend_unavailable", message: "down", lease: null }, { "retry-after": "5" });
  assert.ok(down instanceof BackendUnavailable && down.retryAfter === 5);
  assert.ok(answer(404, "<html>not here</html>") instanceof LeaseNotFound, "a body outside the contract maps by status");
  assert.ok(answer(401, "") instanceof Unauthorized);
  assert.ok(answer(502, "bad gateway") instanceof InternalError);
});

test("deleted, successor_named and transferred are typed; successor is read only when present", () => {
  const cases = [
    { type: "deleted", lease: { ...record, held: false } },
    { type: "successor_named", lease: { ...record, successor: "host-b" } },
    { type: "transferred", lease: { ...record, held: false, successor: "host-b" } },
  ];
  for (const c of cases) {
    const data = JSON.stringify({ type: c.type, key: "job", version: 8, revision: 4, replay: false, lease: c.lease });
    const event = parseEvent({ event: c.type, data, id: null });
    assert.equal(event?.type, c.type);
    assert.equal(event?.lease.successor, c.type === "deleted" ? undefined : "host-b");
  }
  const bad = JSON.stringify({ type: "transferred", key: "job", version: 8, revision: 4, replay: false, lease: { ...record, successor: 5 } });
  assert.throws(() => parseEvent({ event: "transferred", data: bad, id: null }), InternalError);
});
