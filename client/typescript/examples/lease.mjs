#!/usr/bin/env node
// @ts-check
// Lead for a key with the TypeScript SDK, from plain JavaScript (Node 18 or newer).
//
//   (cd client/typescript && npm ci && npm run build)
//   node client/typescript/examples/lease.mjs KEY [HOLDER]
//
//   LEADERELECTION_SERVER   service URL (default http://127.0.0.1:8080)
//   LEADERELECTION_TOKEN    API token, sent as "Authorization: Bearer ..." (optional)
//   LEASE_TTL               seconds a grant lasts (default 10; renew every ttl/3)
//
// Each step is one JSON line on stdout:
//   {"event":"elected","key":"cron","holder":"...","fencing_token":7}
// LeaderElector runs the loop: acquire, renew, step down at its own deadline
// (monotonic send time + ttl - margin) whatever the network does, take over
// at once when the watch stream says the lease was released, and release on
// SIGINT or SIGTERM.

import { LeaderElector, LeaseClient } from "../dist/index.js";

const server = process.env.LEADERELECTION_SERVER || "http://127.0.0.1:8080";
const ttl = Number(process.env.LEASE_TTL || "10");
const [key, holder] = process.argv.slice(2);

const client = new LeaseClient(server, { token: process.env.LEADERELECTION_TOKEN || null });
/** @type {LeaderElector} */
let elector;
try {
  if (!key) throw new Error("KEY is required");
  const config = { term: ttl, renew: ttl / 3, retry: Math.min(2, ttl / 3) };
  elector = new LeaderElector(client, key, holder ? { identity: holder, config } : { config });
} catch (err) {
  console.error(`usage: LEASE_TTL=10 node lease.mjs KEY [HOLDER]: ${err instanceof Error ? err.message : err}`);
  process.exit(2);
}

const say = (/** @type {string} */ event, extra = {}) =>
  console.log(JSON.stringify({ event, key, holder: elector.identity, ...extra }));
/** @type {number | null} */
let token = null;
elector.onElected = () => say("elected", { fencing_token: (token = elector.fencingToken) });
elector.onOusting = () => say("ousting", { fencing_token: token });
elector.onError = (_me, err) => say("error", { message: String(err) });

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await elector.stop(); // ousting first, then the release: a follower takes over at once
    say("released", { fencing_token: token });
    process.exit(0);
  });
}
elector.start();
