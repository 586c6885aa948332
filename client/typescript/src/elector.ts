/**
 * `LeaderElector`: campaign for a key, lead while the deadline allows, step down in time.
 *
 * Example:
 *
 *     const client = new LeaseClient("http://127.0.0.1:8080");
 *     const elector = new LeaderElector(client, "cron", { config: { term: 8, renew: 4, retry: 2 } });
 *     elector.onElected = (me, cancel) => console.log(me, "elected", elector.fencingToken);
 *     elector.onOusting = (me, cancel) => console.log(me, "ousting");
 *     elector.onError = (me, err, cancel) => console.log(me, "error", err.message);
 *     elector.start();
 *     ...
 *     await elector.stop();      // steps down (onOusting), then releases the lease
 *
 * What it does (the decisions are `Election.step` in election.ts; this file
 * only performs them: timers, HTTP calls, callbacks, the watch stream):
 *
 * 1. While not leading, send `acquire(key, identity, term)`; on `lease_held`
 *    or an error, wait `retry` (jittered shorter; a 503's Retry-After up to
 *    one term). With `watch` (the default) the key's watch stream ends that
 *    wait as soon as the lease is released or expires, so a graceful handoff
 *    takes one round trip. If the stream breaks, the follower still tries
 *    every `retry` while the stream reconnects (after `retry`, resuming from
 *    the last event).
 * 2. On success a term begins: the deadline is the monotonic time the request
 *    was *sent* + min(term, granted ttl) - margin, and `onElected` fires.
 * 3. While leading, send `renew` every `renew` seconds; each success moves the
 *    deadline on. Transient errors (transport, 503, 500) go to `onError` and
 *    are retried with jitter inside the deadline; `lease_lost` or `not_found`
 *    end the term at once.
 * 4. At the deadline the term ends (`onOusting`), whether or not a renew is
 *    still hanging: a timer is set for it, and `isLeader` compares it with the
 *    clock on every read, so even a process whose event loop was blocked past
 *    it reads false first.
 * 5. A permanent error (401, 403, 422/413) on acquire or renew ends the
 *    election: `onError` once, then as after `cancel()`.
 * 6. `stop()` (or `cancel` from a callback) ends the term, releases the lease
 *    so a follower takes over at once, and resolves when all is done.
 *
 * Callbacks get the identity and `cancel`; they run one at a time, in order,
 * and `onOusting` fires exactly once after every `onElected`, also on stop. A
 * callback that throws (or returns a rejected promise) goes to `onError`; the
 * election goes on. The clock is `performance.now()` (monotonic), never
 * `Date.now()`, whose jumps would stretch or cut a term; tests inject a fake
 * clock and fake timers.
 */

import { hostname } from "node:os";
import { randomBytes } from "node:crypto";

import type { LeaseClient } from "./client.js";
import { type Config, type ConfigInput, makeConfig } from "./config.js";
import { type Action, Election, type Input } from "./election.js";
import { KEY_PATTERN } from "./http.js";
import type { Lease } from "./lease.js";
import type { LeaseWatch } from "./watch.js";

export type Cancel = () => void;
/** `onElected(identity, cancel)` and `onOusting(identity, cancel)`. */
export type TermCallback = (identity: string, cancel: Cancel) => unknown;
/** `onError(identity, error, cancel)`. */
export type ErrorCallback = (identity: string, error: Error, cancel: Cancel) => unknown;

/** Seconds on a monotonic clock. */
export type Clock = () => number;

/** The timer functions the elector uses (Node's by default; fakes in unit tests). */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface ElectorOptions {
  /** The holder name (default `hostname-pid-random`). */
  identity?: string;
  config?: ConfigInput;
  onElected?: TermCallback;
  onOusting?: TermCallback;
  onError?: ErrorCallback;
  /** Follow the key's watch stream to take over at once on release (default true). */
  watch?: boolean;
  clock?: Clock;
  timers?: Timers;
  /** Jitter source in [0, 1) (default `Math.random`). */
  random?: () => number;
}

type Pending = Input extends infer I ? (I extends { now: number } ? Omit<I, "now"> : never) : never;

/** `hostname-pid-random`: unique per process, readable in the dashboard. */
export function defaultIdentity(): string {
  return `${hostname()}-${process.pid}-${randomBytes(4).toString("hex")}`;
}

export const monotonic: Clock = () => performance.now() / 1000;

const nodeTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export class LeaderElector {
  readonly key: string;
  readonly identity: string;
  readonly config: Config;
  onElected: TermCallback | null;
  onOusting: TermCallback | null;
  onError: ErrorCallback | null;
  /** Resolves when the election has ended (after `stop()`, `cancel()` or a permanent error). */
  readonly done: Promise<void>;

  private readonly election: Election;
  private readonly clock: Clock;
  private readonly timers: Timers;
  private readonly follows: boolean;
  private readonly pending: Pending[] = [];
  private draining = false;
  private started = false;
  private ending = false;
  private timer: unknown = null;
  private stream: LeaseWatch | null = null;
  private wakeFollower: (() => void) | null = null;
  private resolveDone!: () => void;
  private readonly waiters = new Set<() => void>();
  readonly cancel: Cancel = () => this.feed({ kind: "stop" });

  constructor(
    readonly client: LeaseClient,
    key: string,
    options: ElectorOptions = {},
  ) {
    if (typeof key !== "string" || !KEY_PATTERN.test(key)) {
      throw new RangeError(`key must match ${KEY_PATTERN.source}, got ${JSON.stringify(key)}`);
    }
    this.key = key;
    this.identity = options.identity ?? defaultIdentity();
    this.config = makeConfig(options.config);
    this.onElected = options.onElected ?? null;
    this.onOusting = options.onOusting ?? null;
    this.onError = options.onError ?? null;
    this.follows = options.watch ?? true;
    this.clock = options.clock ?? monotonic;
    this.timers = options.timers ?? nodeTimers;
    this.election = new Election(this.config, options.random ?? Math.random);
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  /** True only while a term is open and the clock is before its deadline. */
  get isLeader(): boolean {
    return this.election.isLeader(this.clock());
  }

  /** The current term's lease, or null when not leading. */
  get lease(): Lease | null {
    return this.isLeader ? this.election.lease : null;
  }

  /** The current term's fencing token, or null when not leading. */
  get fencingToken(): number | null {
    return this.lease?.fencingToken ?? null;
  }

  /** The elector's phase: following, leading, stopping or done. */
  get phase(): Election["phase"] {
    return this.election.phase;
  }

  /** Start campaigning; returns at once. */
  start(): void {
    if (this.started) throw new Error("this elector was already started");
    this.started = true;
    if (this.follows) void this.follow();
    this.feed({ kind: "tick" });
  }

  /** End the election: step down now, release the lease; resolves when done. */
  stop(): Promise<void> {
    if (!this.started) {
      this.started = true;
      this.feed({ kind: "stop" });
    } else {
      this.cancel();
    }
    return this.done;
  }

  /** Resolves true once this elector leads, false when the election ends or `timeout` seconds pass. */
  waitForLeadership(timeout?: number): Promise<boolean> {
    return new Promise((resolve) => {
      let handle: unknown = null;
      const check = () => {
        const answer = this.isLeader ? true : this.election.phase === "done" ? false : null;
        if (answer === null) return;
        this.waiters.delete(check);
        if (handle !== null) this.timers.clearTimeout(handle);
        resolve(answer);
      };
      this.waiters.add(check);
      if (timeout !== undefined) {
        handle = this.timers.setTimeout(() => {
          this.waiters.delete(check);
          resolve(this.isLeader);
        }, timeout * 1000);
      }
      check();
    });
  }

  // -- the decisions' inputs and actions ----------------------------------------------

  /** Queue an input; steps run one at a time, so a callback's `cancel` waits its turn. */
  private feed(input: Pending): void {
    if (this.election.phase === "done") return;
    this.pending.push(input);
    if (this.draining) return;
    this.draining = true;
    try {
      for (let next = this.pending.shift(); next !== undefined; next = this.pending.shift()) {
        if (next.kind === "stop") this.endFollowing();
        const actions = this.election.step({ ...next, now: this.clock() } as Input);
        for (const action of actions) this.perform(action);
      }
    } finally {
      this.draining = false;
    }
    this.schedule();
  }

  private perform(action: Action): void {
    const { client, key, identity } = this;
    switch (action.kind) {
      case "sendAcquire":
        return this.send(client.acquire(key, identity, this.config.term, { timeout: action.timeout }));
      case "sendRenew":
        return this.send(
          client.renew(key, identity, action.lease.fencingToken, this.config.term, { timeout: action.timeout }),
        );
      case "sendRelease":
        return this.send(client.release(key, identity, action.lease.fencingToken, { timeout: action.timeout }));
      case "elected":
        this.call(this.onElected);
        return this.notifyWaiters();
      case "ousting":
        return this.call(this.onOusting);
      case "reportError":
        return this.report(action.error);
      case "finish":
        this.endFollowing();
        if (this.timer !== null) this.timers.clearTimeout(this.timer);
        this.timer = null;
        this.notifyWaiters();
        return this.resolveDone();
    }
  }

  private send(call: Promise<Lease>): void {
    call.then(
      (lease) => this.feed({ kind: "answered", lease }),
      (error: unknown) => this.feed({ kind: "answered", error }),
    );
  }

  /** One timer, at the step function's next wake-up (a renew, the deadline, an acquire). */
  private schedule(): void {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    const at = this.election.wake();
    if (at === null || this.election.phase === "done") return;
    const ms = Math.max(0, (at - this.clock()) * 1000);
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      this.feed({ kind: "tick" });
    }, ms);
  }

  private notifyWaiters(): void {
    for (const check of [...this.waiters]) check();
  }

  private call(callback: TermCallback | null): void {
    if (callback === null) return;
    try {
      const result = callback(this.identity, this.cancel);
      if (result instanceof Promise) result.catch((err: unknown) => this.report(err));
    } catch (err) {
      this.report(err);
    }
  }

  private report(error: unknown): void {
    const err = error instanceof Error ? error : new Error(String(error));
    const callback = this.onError;
    if (callback === null) {
      console.warn(`leaderelection ${this.key}: ${err.message}`);
      return;
    }
    try {
      const result = callback(this.identity, err, this.cancel);
      if (result instanceof Promise) result.catch((e: unknown) => console.warn(`leaderelection ${this.key}: onError:`, e));
    } catch (e) {
      console.warn(`leaderelection ${this.key}: onError threw:`, e);
    }
  }

  // -- the follower's watch stream ------------------------------------------------------

  /** Feed `free` when the key's watch stream says the lease was released, expired, deleted or transferred. */
  private async follow(): Promise<void> {
    let lastEventId: string | undefined;
    while (!this.ending) {
      const stream = this.client.watch(this.key, lastEventId === undefined ? {} : { lastEventId });
      this.stream = stream;
      try {
        for await (const event of stream) {
          lastEventId = event.id;
          if (!event.lease.held) this.feed({ kind: "free" });
        }
      } catch {
        // A broken or refused stream never ends the election: the follower
        // polls every retry meanwhile, and acquire decides what is permanent.
      } finally {
        this.stream = null;
      }
      if (this.ending) return;
      await new Promise<void>((resolve) => {
        const handle = this.timers.setTimeout(() => {
          this.wakeFollower = null;
          resolve();
        }, this.config.retry * 1000);
        this.wakeFollower = () => {
          this.timers.clearTimeout(handle);
          resolve();
        };
      });
      this.wakeFollower = null;
    }
  }

  private endFollowing(): void {
    this.ending = true;
    this.stream?.close();
    this.wakeFollower?.();
  }
}
