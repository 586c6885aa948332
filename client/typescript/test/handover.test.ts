/**
 * Hand-over against a live service (`LEADERELECTION_TEST_SERVER`, set by
 * tests/test_typescript_sdk.py): an admin's transfer of a lease an elector
 * holds, and a key deleted under an open watch stream. The service runs
 * without an auth file, so every caller is an admin.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import { LeaseClient } from "../src/client.js";
import { LeaderElector } from "../src/elector.js";
import type { LeaseEvent } from "../src/watch.js";

const server = process.env.LEADERELECTION_TEST_SERVER ?? "";
const live = { skip: server === "" ? "LEADERELECTION_TEST_SERVER is not set" : false };
const run = randomBytes(4).toString("hex");
const key = (name: string) => `ts-${run}-${name}`;

/** Poll `predicate` until it holds or `seconds` pass (never a fixed sleep). */
async function until(predicate: () => boolean | Promise<boolean>, seconds: number, what: string): Promise<void> {
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    if (await predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail(`${what}: not within ${seconds} s`);
}

/** An operator's request; its JSON answer (200 expected). */
async function admin(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const answer = await fetch(`${server}${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
  });
  const data = (await answer.json()) as Record<string, unknown>;
  assert.equal(answer.status, 200, `${method} ${path}: ${JSON.stringify(data)}`);
  return data;
}

test("an admin's transfer: the leader steps down and releases, the named successor leads at once", live, async () => {
  const client = new LeaseClient(server);
  const k = key("transfer");
  const config = { term: 3, renew: 0.75, retry: 0.5 };
  const log: string[] = [];
  const make = (identity: string) =>
    new LeaderElector(client, k, {
      identity,
      config,
      onElected: (me) => log.push(`${me} elected`),
      onOusting: (me) => log.push(`${me} ousting`),
      onError: (me, err) => log.push(`${me} error ${err.message}`),
    });
  const a = make("ts-a");
  const b = make("ts-b");
  try {
    a.start();
    assert.ok(await a.waitForLeadership(10));
    const token = a.fencingToken ?? 0;
    b.start();
    const began = performance.now();
    const named = await admin("POST", `/v1/leases/${k}/transfer`, { to: "ts-b" });
    assert.equal(named.successor, "ts-b");
    assert.equal(named.holder, "ts-a");
    // ts-a's next renew (within renew) is lease_lost; it releases, and ts-b,
    // woken by "transferred", acquires at once. Without the release ts-b
    // would wait for ts-a's term to lapse (term after its last renew).
    await until(() => b.isLeader, 10, "ts-b leads");
    assert.ok(performance.now() - began < config.term * 1000, "ts-b led before ts-a's term could lapse");
    assert.deepEqual(log, ["ts-a elected", "ts-a ousting", "ts-b elected"]);
    assert.ok((b.fencingToken ?? 0) > token);
    const history = await admin("GET", `/v1/leases/${k}/history`);
    const terms = history.terms as Array<Record<string, unknown>>;
    assert.equal(terms.at(-2)?.holder, "ts-a");
    assert.equal(terms.at(-2)?.ended_by, "transferred", "ts-a released its term, naming the successor");
    assert.ok(!a.isLeader);
    assert.equal(a.phase, "following", "ts-a goes on campaigning");
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test("a deleted event leaves the watch going: the key acquired again comes next", live, async () => {
  const client = new LeaseClient(server);
  const k = key("delete");
  const first = await client.acquire(k, "host-a", 10);
  const stream = client.watch(k);
  const seen: LeaseEvent[] = [];
  let failure: unknown = null;
  const reading = (async () => {
    try {
      for await (const event of stream) seen.push(event);
    } catch (err) {
      failure = err;
    }
  })();
  try {
    await until(() => seen.length >= 1, 10, "the replayed state");
    await client.release(k, "host-a", first.fencingToken);
    await until(() => seen.length >= 2, 10, "the released event");
    await admin("DELETE", `/v1/leases/${k}`);
    await until(() => seen.length >= 3, 10, "the deleted event");
    assert.equal(seen[2]?.type, "deleted");
    assert.equal(seen[2]?.lease.held, false);
    assert.equal(seen[2]?.lease.fencingToken, first.fencingToken);
    const again = await client.acquire(k, "host-b", 10);
    await until(() => seen.length >= 4, 10, "the next term's event on the same stream");
    assert.equal(seen[3]?.type, "acquired");
    assert.equal(seen[3]?.lease.holder, "host-b");
    assert.ok(again.fencingToken > first.fencingToken, "the token goes on above the deleted key's");
    assert.equal(failure, null);
  } finally {
    stream.close();
    await reading;
  }
});
