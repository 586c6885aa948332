/**
 * The elector's decisions (`Election.step`) driven by inputs and a fake clock:
 * times are plain numbers of seconds, no timer, no network.
 */

import { test } from "node:test";
import assert from "node:assert/strict";

import { makeConfig } from "../src/config.js";
import { type Action, Election } from "../src/election.js";
import { BackendUnavailable, Forbidden, InternalError, InvalidRequest, LeaseHeld, LeaseLost, TransportError } from "../src/errors.js";
import type { Lease } from "../src/lease.js";

// term 10, renew 3, retry 2, margin 1, timeout (10 - 1 - 3) / 3 = 2
const config = makeConfig({ term: 10, renew: 3, retry: 2 });

function lease(token = 7, ttl = 10): Lease {
  const t = new Date(0);
  return {
    key: "job",
    holder: "me",
    fencingToken: token,
    ttl,
    acquiredAt: t,
    renewedAt: t,
    expiresAt: t,
    transitions: 0,
    held: true,
    serverTime: t,
  };
}

const kinds = (actions: Action[]) => actions.map((a) => (a.kind === "ousting" ? `ousting:${a.endedBy}` : a.kind));

/** An election that acquired at `sent` and got `granted` back at `at`. */
function leading(sent = 0, at = 0.1, granted = lease()): Election {
  const e = new Election(config, () => 0.5);
  assert.deepEqual(kinds(e.step({ kind: "tick", now: sent })), ["sendAcquire"]);
  assert.deepEqual(kinds(e.step({ kind: "answered", now: at, lease: granted })), ["elected"]);
  return e;
}

test("the first tick acquires with the configured timeout", () => {
  const e = new Election(config, () => 0);
  assert.deepEqual(e.step({ kind: "tick", now: 0 }), [{ kind: "sendAcquire", timeout: 2 }]);
  assert.equal(e.wake(), null, "nothing to wake for while the acquire is in flight");
});

test("a granted acquire begins a term: deadline = send time + term - margin, renew at send time + renew", () => {
  const e = leading(5, 5.2);
  assert.equal(e.phase, "leading");
  assert.equal(e.deadline, 5 + 10 - 1);
  assert.equal(e.wake(), 5 + 3);
  assert.ok(e.isLeader(13.99));
  assert.ok(!e.isLeader(14), "not leader at the deadline itself");
});

test("a granted ttl shorter than term shortens the deadline", () => {
  const e = leading(0, 0.1, lease(7, 4));
  assert.equal(e.deadline, 4 - 1);
});

test("renew is sent when due, with a timeout that never passes the deadline, and moves the deadline on", () => {
  const e = leading();
  assert.deepEqual(e.step({ kind: "tick", now: 2.9 }), []);
  const [renew] = e.step({ kind: "tick", now: 3 });
  assert.deepEqual(renew, { kind: "sendRenew", lease: lease(), timeout: 2 });
  assert.deepEqual(e.step({ kind: "answered", now: 3.4, lease: lease() }), []);
  assert.equal(e.deadline, 3 + 9, "from the renew's send time, not its answer");
  assert.equal(e.wake(), 6);
});

test("a renew that hangs does not hold the term: the deadline ends it, and the next call waits for the answer", () => {
  const e = leading();
  e.step({ kind: "tick", now: 3 }); // renew in flight, never answered
  assert.equal(e.wake(), 9, "the deadline still wakes the elector");
  assert.deepEqual(
    e.step({ kind: "tick", now: 9 }).map((a) => (a.kind === "ousting" ? [a.kind, a.endedBy, a.lease.fencingToken] : a.kind)),
    [["ousting", "deadline", 7]],
  );
  assert.ok(!e.isLeader(9));
  assert.equal(e.wake(), null, "no acquire while the renew is still in flight");
  // The renew answers after its own deadline (3 + 9 = 12): it begins nothing.
  assert.deepEqual(kinds(e.step({ kind: "answered", now: 12.5, lease: lease() })), []);
  assert.equal(e.phase, "following");
  assert.equal(e.last?.fencingToken, 7, "kept, so that stop can release it");
});

test("a late renew that still has time left resumes the same term with the same token", () => {
  const e = leading();
  e.step({ kind: "tick", now: 8.5 }); // renew sent 0.5 s before the deadline
  assert.deepEqual(kinds(e.step({ kind: "tick", now: 9 })), ["ousting:deadline"]);
  const actions = e.step({ kind: "answered", now: 9.2, lease: lease() });
  assert.deepEqual(kinds(actions), ["elected"]);
  assert.equal(e.deadline, 8.5 + 9);
});

test("a transient renew error is reported and retried with jitter, while the deadline allows", () => {
  const e = leading();
  e.step({ kind: "tick", now: 3 });
  const error = new TransportError("reset");
  assert.deepEqual(e.step({ kind: "answered", now: 3.5, error }), [{ kind: "reportError", error }]);
  assert.ok(e.isLeader(3.5));
  // random 0.5: (0.5 + 0.25) * min(retry 2, time left 5.5 - timeout 2) = 1.5
  assert.equal(e.wake(), 3.5 + 1.5);
  // Close to the deadline, with no room for a full attempt: short waits, never a busy loop.
  e.step({ kind: "tick", now: 5 });
  e.step({ kind: "answered", now: 8.5, error: new InternalError("boom", 500) });
  assert.equal(e.wake(), 8.5 + Math.max(0.05, 2 / 10));
  const [renew] = e.step({ kind: "tick", now: 8.7 });
  assert.equal(renew?.kind, "sendRenew");
  assert.ok(renew?.kind === "sendRenew" && Math.abs(renew.timeout - 0.3) < 1e-9, "the timeout ends at the deadline");
});

test("lease_lost on renew ends the term at once and campaigns again at once", () => {
  const e = leading();
  e.step({ kind: "tick", now: 3 });
  const actions = e.step({ kind: "answered", now: 3.1, error: new LeaseLost("taken", 409) });
  assert.deepEqual(kinds(actions), ["ousting:lost", "sendAcquire"]);
});

test("an admin's transfer: step down, release that term, then campaign again", () => {
  const e = leading();
  e.step({ kind: "tick", now: 3 });
  const handed = { ...lease(), successor: "next" };
  const actions = e.step({ kind: "answered", now: 3.1, error: new LeaseLost("transferred", 409, handed) });
  assert.deepEqual(kinds(actions), ["ousting:lost", "sendRelease"]);
  assert.equal(actions[1]?.kind === "sendRelease" && actions[1].lease.fencingToken, 7);
  // The release's answer (granted or not) changes nothing: acquire at once.
  assert.deepEqual(kinds(e.step({ kind: "answered", now: 3.2, error: new LeaseLost("gone", 409) })), ["sendAcquire"]);
  assert.equal(e.phase, "following");
  assert.equal(e.handOver, null);
  assert.equal(e.last, null);
});

test("stop while the hand-over release is in flight: that release ends the election", () => {
  const e = leading();
  e.step({ kind: "tick", now: 3 });
  e.step({ kind: "answered", now: 3.1, error: new LeaseLost("transferred", 409, { ...lease(), successor: "next" }) });
  assert.deepEqual(kinds(e.step({ kind: "stop", now: 3.15 })), []);
  assert.deepEqual(kinds(e.step({ kind: "answered", now: 3.2, lease: { ...lease(), held: false } })), ["finish"]);
  assert.equal(e.phase, "done");
});

test("lease_lost naming another holder or token is no hand-over: no release", () => {
  for (const rec of [
    { ...lease(8), holder: "other", successor: "next" },
    { ...lease(6), successor: "next" },
    lease(),
  ]) {
    const e = leading();
    e.step({ kind: "tick", now: 3 });
    assert.deepEqual(kinds(e.step({ kind: "answered", now: 3.1, error: new LeaseLost("lost", 409, rec) })), [
      "ousting:lost",
      "sendAcquire",
    ]);
  }
});

test("lease_held is no error for a follower: it waits retry, shortened by jitter only", () => {
  for (const r of [0, 0.999]) {
    const e = new Election(config, () => r);
    e.step({ kind: "tick", now: 0 });
    assert.deepEqual(e.step({ kind: "answered", now: 0.1, error: new LeaseHeld("held", 409) }), []);
    const wait = (e.wake() ?? 0) - 0.1;
    assert.ok(wait > 0.75 * 2 - 1e-9 && wait <= 2, `wait ${wait}`);
  }
});

test("a 503 on acquire is reported and its Retry-After honoured up to one term", () => {
  const e = new Election(config, () => 0);
  e.step({ kind: "tick", now: 0 });
  const error = new BackendUnavailable("down", 503, null, 5);
  assert.deepEqual(e.step({ kind: "answered", now: 0, error }), [{ kind: "reportError", error }]);
  assert.equal(e.wake(), 5);
  e.step({ kind: "tick", now: 5 });
  e.step({ kind: "answered", now: 5, error: new BackendUnavailable("down", 503, null, 60) });
  assert.equal(e.wake(), 5 + 10, "capped at term");
});

test("the watch stream's free wakes a waiting follower at once, or right after the acquire in flight", () => {
  const e = new Election(config, () => 0);
  e.step({ kind: "tick", now: 0 });
  e.step({ kind: "answered", now: 0.1, error: new LeaseHeld("held", 409) });
  assert.deepEqual(kinds(e.step({ kind: "free", now: 0.5 })), ["sendAcquire"]);
  assert.deepEqual(kinds(e.step({ kind: "free", now: 0.6 })), [], "one call at a time");
  assert.deepEqual(kinds(e.step({ kind: "answered", now: 0.7, error: new LeaseHeld("held", 409) })), ["sendAcquire"]);
});

test("stop while leading: ousting first, then release; lease_lost on release is no error", () => {
  const e = leading();
  assert.deepEqual(kinds(e.step({ kind: "stop", now: 1 })), ["ousting:stopped", "sendRelease"]);
  assert.ok(!e.isLeader(1));
  assert.deepEqual(kinds(e.step({ kind: "answered", now: 1.1, error: new LeaseLost("gone", 409) })), ["finish"]);
  assert.equal(e.phase, "done");
  assert.deepEqual(e.step({ kind: "tick", now: 2 }), []);
});

test("a release that fails on the way is reported", () => {
  const e = leading();
  e.step({ kind: "stop", now: 1 });
  assert.deepEqual(kinds(e.step({ kind: "answered", now: 1.1, error: new TransportError("reset") })), [
    "reportError",
    "finish",
  ]);
});

test("stop while an acquire is in flight waits for it, and releases what it granted without leading", () => {
  const e = new Election(config, () => 0);
  e.step({ kind: "tick", now: 0 });
  assert.deepEqual(kinds(e.step({ kind: "stop", now: 0.1 })), []);
  assert.deepEqual(kinds(e.step({ kind: "answered", now: 0.2, lease: lease() })), ["sendRelease"]);
  assert.deepEqual(kinds(e.step({ kind: "answered", now: 0.3, lease: lease() })), ["finish"]);
});

test("stop of a follower that never led ends without a call", () => {
  const e = new Election(config, () => 0);
  e.step({ kind: "tick", now: 0 });
  e.step({ kind: "answered", now: 0.1, error: new LeaseHeld("held", 409) });
  assert.deepEqual(kinds(e.step({ kind: "stop", now: 0.5 })), ["finish"]);
});

test("a permanent error on acquire ends the election after one report", () => {
  const e = new Election(config, () => 0);
  e.step({ kind: "tick", now: 0 });
  const error = new InvalidRequest("ttl out of range", 422);
  assert.deepEqual(e.step({ kind: "answered", now: 0.1, error }), [{ kind: "reportError", error }, { kind: "finish" }]);
  assert.equal(e.refusal, error);
});

test("a permanent error on renew: ousting, one report, release (whose own failure is not reported again)", () => {
  const e = leading();
  e.step({ kind: "tick", now: 3 });
  const error = new Forbidden("read-only token", 403);
  assert.deepEqual(kinds(e.step({ kind: "answered", now: 3.1, error })), ["ousting:stopped", "reportError", "sendRelease"]);
  assert.deepEqual(kinds(e.step({ kind: "answered", now: 3.2, error })), ["finish"]);
});

test("an acquire answered after its own deadline begins nothing", () => {
  const e = new Election(config, () => 0);
  e.step({ kind: "tick", now: 0 });
  assert.deepEqual(kinds(e.step({ kind: "answered", now: 9, lease: lease() })), []);
  assert.equal(e.phase, "following");
  assert.equal(e.wake(), 9 + 2);
});
