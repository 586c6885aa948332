/**
 * The client and the elector against a live service: `LEADERELECTION_TEST_SERVER`
 * (tests/test_typescript_sdk.py starts one and always sets it). Each run uses
 * keys of its own, so a shared service is fine.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import { LeaseClient } from "../src/client.js";
import { LeaderElector } from "../src/elector.js";
import {
  InvalidRequest,
  LeaseError,
  LeaseHeld,
  LeaseLost,
  LeaseNotFound,
  TransportError,
} from "../src/errors.js";
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

test("acquire, renew, get, list page by page, release", live, async () => {
  const client = new LeaseClient(server);
  const k = key("calls");
  const lease = await client.acquire(k, "host-a", 10);
  assert.equal(lease.key, k);
  assert.equal(lease.holder, "host-a");
  assert.equal(lease.held, true);
  assert.equal(lease.ttl, 10);
  const renewed = await client.renew(k, "host-a", lease.fencingToken, 12);
  assert.equal(renewed.fencingToken, lease.fencingToken);
  assert.equal(renewed.ttl, 12);
  assert.ok(renewed.expiresAt > lease.expiresAt);
  assert.equal((await client.get(k)).holder, "host-a");

  for (const name of ["list-a", "list-b", "list-c"]) await client.acquire(key(name), "host-a", 10);
  const first = await client.listPage(key("list-"), { limit: 2 });
  assert.deepEqual(first.leases.map((l) => l.key), [key("list-a"), key("list-b")]);
  assert.notEqual(first.nextCursor, null);
  const all = [];
  for await (const l of client.list(key("list-"), { pageSize: 1 })) all.push(l.key);
  assert.deepEqual(all, [key("list-a"), key("list-b"), key("list-c")]);

  const released = await client.release(k, "host-a", lease.fencingToken);
  assert.equal(released.held, false);
  const again = await client.acquire(k, "host-b", 10);
  assert.equal(again.fencingToken, lease.fencingToken + 1, "a new term, a larger token");
});

test("errors: lease_held and lease_lost carry the current record; not_found; bad ttl; bad key never sent", live, async () => {
  const client = new LeaseClient(server);
  const k = key("errors");
  const lease = await client.acquire(k, "host-a", 10);
  await assert.rejects(client.acquire(k, "host-b", 10), (err: unknown) => {
    assert.ok(err instanceof LeaseHeld);
    assert.equal(err.status, 409);
    assert.equal(err.lease?.holder, "host-a");
    return true;
  });
  await assert.rejects(client.renew(k, "host-a", lease.fencingToken + 5), (err: unknown) => {
    assert.ok(err instanceof LeaseLost);
    assert.equal(err.lease?.fencingToken, lease.fencingToken);
    return true;
  });
  await assert.rejects(client.get(key("never")), LeaseNotFound);
  await assert.rejects(client.acquire(key("ttl"), "host-a", 99999), (err: unknown) => {
    assert.ok(err instanceof InvalidRequest);
    assert.equal(err.status, 422);
    assert.match(err.message, /ttl/);
    return true;
  });
  await assert.rejects(client.get("../etc"), InvalidRequest);
  assert.equal((await client.get(k)).holder, "host-a", "nothing changed");
});

test("no answer is a TransportError", live, async () => {
  const closed = new LeaseClient("http://127.0.0.1:9", { timeout: 2 }); // discard port: nothing listens
  await assert.rejects(closed.get("job"), (err: unknown) => err instanceof TransportError && err instanceof LeaseError);
});

test("watch: the current state first, then each change; close ends the iteration", live, async () => {
  const client = new LeaseClient(server);
  const k = key("watch");
  const lease = await client.acquire(k, "host-a", 10);
  const stream = client.watch(k);
  const seen: LeaseEvent[] = [];
  const reading = (async () => {
    for await (const event of stream) seen.push(event);
  })();
  await until(() => seen.length >= 1, 10, "the replayed state");
  assert.equal(seen[0]?.type, "acquired");
  assert.equal(seen[0]?.replay, true);
  await client.release(k, "host-a", lease.fencingToken);
  await until(() => seen.length >= 2, 10, "the released event");
  assert.equal(seen[1]?.type, "released");
  assert.equal(seen[1]?.lease.held, false);
  stream.close();
  await reading; // returns, no error
  const resumed = client.watch(k, { lastEventId: seen[1]?.id ?? "" });
  const next = client.acquire(k, "host-b", 10);
  for await (const event of resumed) {
    assert.equal(event.type, "acquired", "nothing seen already is sent again");
    assert.equal(event.lease.holder, "host-b");
    resumed.close();
  }
  await next;
});

test("two electors: one leads; stop releases and the other takes over with a larger token", live, async () => {
  const client = new LeaseClient(server);
  const k = key("elect");
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
  const a = make("a");
  const b = make("b");
  a.start();
  assert.ok(await a.waitForLeadership(10));
  b.start();
  const token = a.fencingToken;
  assert.equal(token, (await client.get(k)).fencingToken);
  await until(async () => {
    const now = await client.get(k);
    return now.renewedAt > now.acquiredAt;
  }, 5, "a renewal by the leader");
  assert.ok(!b.isLeader);
  await a.stop();
  assert.ok(!a.isLeader);
  assert.ok(await b.waitForLeadership(5), "b takes over");
  assert.ok((b.fencingToken ?? 0) > (token ?? 0));
  assert.deepEqual(log, ["a elected", "a ousting", "b elected"]);
  await b.stop();
  assert.equal((await client.get(k)).held, false, "stop released the lease");
  assert.deepEqual(log, ["a elected", "a ousting", "b elected", "b ousting"]);
});

test("a permanent error ends the election after one onError", live, async () => {
  const client = new LeaseClient(server);
  const errors: Error[] = [];
  const elector = new LeaderElector(client, key("refused"), {
    config: { term: 5000, renew: 5, retry: 0.2 }, // past the service's ttl_max: 422 every time
    onError: (_me, err) => errors.push(err),
    onElected: () => assert.fail("never elected"),
  });
  elector.start();
  await elector.done;
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof InvalidRequest);
  assert.equal(elector.phase, "done");
});

test("a follower wakes on the watch stream's release, long before its retry", live, async () => {
  /** A real client that counts the answers to its acquires. */
  class Counting extends LeaseClient {
    answered = 0;
    override async acquire(...args: Parameters<LeaseClient["acquire"]>) {
      try {
        return await super.acquire(...args);
      } finally {
        this.answered += 1;
      }
    }
  }
  const client = new LeaseClient(server);
  const k = key("wake");
  // retry 30 s: a follower that only polled would wait 22.5-30 s after its first try.
  const config = { term: 60, renew: 20, retry: 30 };
  const a = new LeaderElector(client, k, { identity: "a", config });
  const bClient = new Counting(server);
  const b = new LeaderElector(bClient, k, { identity: "b", config });
  try {
    a.start();
    assert.ok(await a.waitForLeadership(10));
    b.start();
    await until(() => bClient.answered >= 1, 10, "b's first acquire answered (lease_held)");
    assert.ok(!b.isLeader);
    await a.stop();
    assert.ok(await b.waitForLeadership(10), "b took over on the release event, not by polling");
    assert.equal(bClient.answered, 2, "one refused acquire, one granted");
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});
