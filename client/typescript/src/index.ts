/**
 * leaderelection: the lease service's client and leader elector for Node 18+.
 *
 * Example:
 *
 *     import { LeaseClient, LeaderElector } from "leaderelection";
 *
 *     const elector = new LeaderElector(new LeaseClient("http://127.0.0.1:8080"), "cron");
 *     elector.onElected = (me) => console.log(me, "leads with token", elector.fencingToken);
 *     elector.start();
 *     process.on("SIGTERM", () => void elector.stop());
 *
 * Global `fetch`, no runtime dependencies. The contract these calls follow is
 * docs/contract.md of the project; the Python client is its twin.
 */

export { LeaseClient, DEFAULT_TIMEOUT, PAGE_SIZE } from "./client.js";
export type { CallOptions, ClientOptions, LeasePage } from "./client.js";
export { makeConfig, MIN_TIMEOUT, MAX_DERIVED_TIMEOUT } from "./config.js";
export type { Config, ConfigInput } from "./config.js";
export { Election } from "./election.js";
export type { Action, Call, EndedBy, Input, Phase } from "./election.js";
export { LeaderElector, defaultIdentity, monotonic } from "./elector.js";
export type { Cancel, Clock, ElectorOptions, ErrorCallback, TermCallback, Timers } from "./elector.js";
export {
  BackendUnavailable,
  Forbidden,
  InternalError,
  InvalidRequest,
  LeaseError,
  LeaseHeld,
  LeaseLost,
  LeaseNotFound,
  RequestTimeout,
  ServiceError,
  TransportError,
  Unauthorized,
  isPermanent,
} from "./errors.js";
export { KEY_PATTERN, PREFIX_PATTERN } from "./http.js";
export { parseLease, remaining, NotALease } from "./lease.js";
export type { Lease } from "./lease.js";
export { LeaseWatch, KEEPALIVE_TIMEOUT, parseEvent } from "./watch.js";
export type { EventType, LeaseEvent, WatchOptions } from "./watch.js";
