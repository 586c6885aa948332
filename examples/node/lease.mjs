#!/usr/bin/env node
// Keep a leaderelection lease from Node.js (18 or newer), with nothing but the built-in fetch.
//
//   node examples/node/lease.mjs KEY [HOLDER]
//
//   LEADERELECTION_SERVER   service URL (default http://127.0.0.1:8080)
//   LEADERELECTION_TOKEN    API token, sent as "Authorization: Bearer ..." (optional)
//   LEASE_TTL               seconds a grant lasts (default 10)
//
// It acquires KEY (retrying while someone else holds it), renews every ttl/3,
// and releases on SIGINT or SIGTERM. Each step is one JSON line on stdout:
//   {"event":"acquired","key":"cron","holder":"...","fencing_token":7}
// Leadership is judged by this process's monotonic clock alone: a grant lasts
// until (time the request was SENT + ttl - margin). If no renewal succeeds by
// then it prints "lost" and campaigns again, whatever the network did.

import { hostname } from "node:os";
import { randomBytes } from "node:crypto";

const server = (process.env.LEADERELECTION_SERVER || "http://127.0.0.1:8080").replace(/\/+$/, "");
const token = process.env.LEADERELECTION_TOKEN || "";
const ttl = Number(process.env.LEASE_TTL || "10");
const key = process.argv[2];
const holder = process.argv[3] || `${hostname()}-${process.pid}-${randomBytes(2).toString("hex")}`;

if (!key || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(key) || !(ttl > 0)) {
  console.error("usage: LEASE_TTL=10 node lease.mjs KEY [HOLDER]  (KEY: letters, digits, . _ -)");
  process.exit(2);
}

const renewEvery = ttl / 3; // seconds between renewals while leading
const retryEvery = Math.min(2, ttl / 3); // seconds between acquire attempts while following
const margin = ttl / 10; // leave the lease this early: covers clock drift and reaction time
const requestTimeout = Math.min(ttl / 4, 10);

const say = (event, extra = {}) => console.log(JSON.stringify({ event, key, holder, ...extra }));
const now = () => performance.now() / 1000; // monotonic seconds
const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

// One API call: POST /v1/leases/KEY/ACTION. Returns {status, body}; throws on no answer.
async function call(action, body) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${server}/v1/leases/${encodeURIComponent(key)}/${action}`, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(requestTimeout * 1000),
  });
  return { status: response.status, body: await response.json() };
}

let lease = null; // the record while we lead
let deadline = 0; // monotonic second at which we stop calling ourselves leader
let stopping = false;
let wake = null; // resolves the current sleep early when a signal arrives

async function pause(seconds) {
  await Promise.race([sleep(seconds), new Promise((resolve) => (wake = resolve))]);
}

async function campaign() {
  while (!stopping) {
    const sent = now();
    try {
      const { status, body } = await call("acquire", { holder, ttl });
      if (status === 200) {
        lease = body;
        deadline = sent + ttl - margin;
        say("acquired", { fencing_token: lease.fencing_token });
        return;
      }
      if (status === 409) say("waiting", { leader: body.lease && body.lease.holder });
      else say("error", { status, error: body.error, message: body.message });
    } catch (err) {
      say("error", { message: String(err) });
    }
    await pause(retryEvery);
  }
}

async function lead() {
  while (!stopping && lease) {
    await pause(Math.max(0, Math.min(renewEvery, deadline - now())));
    if (stopping) return;
    if (now() >= deadline) {
      say("lost", { reason: "deadline passed without a renewal" });
      lease = null;
      return;
    }
    const sent = now();
    try {
      const { status, body } = await call("renew", {
        holder,
        fencing_token: lease.fencing_token,
        ttl,
      });
      if (status === 200) {
        lease = body;
        deadline = sent + ttl - margin;
        say("renewed", { fencing_token: lease.fencing_token, expires_at: lease.expires_at });
      } else if (status === 409 || status === 404) {
        say("lost", { reason: body.error });
        lease = null;
      } else {
        say("error", { status, error: body.error, message: body.message });
      }
    } catch (err) {
      say("error", { message: String(err) }); // keep trying until the deadline
    }
  }
}

async function release() {
  if (!lease) return;
  try {
    const { status, body } = await call("release", { holder, fencing_token: lease.fencing_token });
    if (status === 200) say("released", { fencing_token: lease.fencing_token });
    else say("error", { status, error: body.error, message: body.message });
  } catch (err) {
    say("error", { message: String(err) }); // the lease lapses by itself after ttl
  }
  lease = null;
}

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    stopping = true;
    if (wake) wake();
  });
}

while (!stopping) {
  await campaign();
  await lead();
}
await release();
