/**
 * `LeaderElector` performing the step function's actions, with a fake clock,
 * fake timers and an in-memory client whose answers the test gives by hand.
 */

import { test } from "node:test";
import assert from "node:assert/strict";

import type { LeaseClient } from "../src/client.js";
import { LeaderElector, type Timers } from "../src/elector.js";
import { LeaseHeld } from "../src/errors.js";
import type { Lease } from "../src/lease.js";

interface Pending {
  call: string;
  resolve: (lease: Lease) => void;
  reject: (err: unknown) => void;
}

function lease(token = 1): Lease {
  const t = new Date(0);
  return { key: "job", holder: "me", fencingToken: token, ttl: 10, acquiredAt: t, renewedAt: t, expiresAt: t, transitions: 0, held: true, serverTime: t };
}

/** A clock and timers that move only when the test says so. */
class FakeTime implements Timers {
  now = 100;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 0;

  setTimeout(fn: () => void, ms: number): unknown {
    this.next += 1;
    this.timers.set(this.next, { at: this.now + ms / 1000, fn });
    return this.next;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Move the clock to `to`, firing each timer due on the way, in order. */
  async advance(to: number): Promise<void> {
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= to).sort((a, b) => a[1].at - b[1].at)[0];
      if (due === undefined) break;
      this.timers.delete(due[0]);
      this.now = Math.max(this.now, due[1].at);
      due[1].fn();
      await settle();
    }
    this.now = to;
  }
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

function setUp() {
  const time = new FakeTime();
  const calls: Pending[] = [];
  const call = (name: string) => new Promise<Lease>((resolve, reject) => calls.push({ call: name, resolve, reject }));
  const client = {
    acquire: () => call("acquire"),
    renew: () => call("renew"),
    release: () => call("release"),
  } as unknown as LeaseClient;
  const log: string[] = [];
  const elector = new LeaderElector(client, "job", {
    identity: "me",
    config: { term: 10, renew: 3, retry: 2 }, // margin 1: deadline = send time + 9
    watch: false,
    clock: () => time.now,
    timers: time,
    random: () => 0,
    onElected: () => log.push("elected"),
    onOusting: () => log.push("ousting"),
    onError: (_me, err) => log.push(`error ${err.message}`),
  });
  return { time, calls, elector, log };
}

test("elected, renewed on time, then a hanging renew is cut off by the deadline", async () => {
  const { time, calls, elector, log } = setUp();
  elector.start();
  const acquire = calls.shift();
  assert.equal(acquire?.call, "acquire");
  acquire?.resolve(lease(4));
  await settle();
  assert.deepEqual(log, ["elected"]);
  assert.ok(elector.isLeader);
  assert.equal(elector.fencingToken, 4);

  await time.advance(103); // renew due at send time (100) + 3
  const renew = calls.shift();
  assert.equal(renew?.call, "renew");
  renew?.resolve(lease(4));
  await settle();
  // Deadline now 103 + 9 = 112; the next renew at 106 hangs.
  await time.advance(106);
  assert.equal(calls.shift()?.call, "renew");
  time.now = 112; // the event loop was blocked past the deadline: no timer has run
  assert.equal(elector.isLeader, false, "read from the clock, not from the timer");
  assert.equal(elector.fencingToken, null);
  await time.advance(112);
  assert.deepEqual(log, ["elected", "ousting"]);
  assert.equal(calls.length, 0, "no second call while the renew is in flight");
});

test("cancel from onElected: ousting, then release; done resolves; callbacks in order", async () => {
  const { calls, elector, log } = setUp();
  elector.onElected = (_me, cancel) => {
    log.push("elected");
    cancel();
    log.push("after cancel"); // cancel waits for this callback to return
  };
  elector.start();
  calls.shift()?.resolve(lease(2));
  await settle();
  assert.deepEqual(log, ["elected", "after cancel", "ousting"]);
  const release = calls.shift();
  assert.equal(release?.call, "release");
  let done = false;
  void elector.done.then(() => (done = true));
  await settle();
  assert.equal(done, false, "not done before the release answers");
  release?.resolve(lease(2));
  await settle();
  assert.equal(done, true);
  assert.equal(elector.phase, "done");
});

test("a callback that throws goes to onError, and the election goes on", async () => {
  const { time, calls, elector, log } = setUp();
  elector.onElected = () => {
    throw new Error("app bug");
  };
  elector.start();
  calls.shift()?.resolve(lease(3));
  await settle();
  assert.deepEqual(log, ["error app bug"]);
  assert.ok(elector.isLeader);
  await time.advance(103);
  assert.equal(calls.shift()?.call, "renew");
});

test("a follower retries after retry (jitter only shortens it) and stop ends it without a call", async () => {
  const { time, calls, elector, log } = setUp();
  elector.start();
  calls.shift()?.reject(new LeaseHeld("held", 409));
  await settle();
  await time.advance(101.4);
  assert.equal(calls.length, 0);
  await time.advance(102); // random 0: retry * (1 - 0) = 2 s
  const acquire = calls.shift();
  assert.equal(acquire?.call, "acquire");
  const stopped = elector.stop();
  acquire?.reject(new LeaseHeld("held", 409)); // stop waits for the call in flight
  await stopped;
  assert.equal(calls.length, 0, "nothing to release");
  assert.deepEqual(log, []);
});
