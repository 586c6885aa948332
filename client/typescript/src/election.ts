/**
 * The elector's decisions, with no I/O: a state, inputs, and the actions each
 * input calls for.
 *
 * Example:
 *
 *     const e = new Election(makeConfig({ term: 8, renew: 4, retry: 2 }), Math.random);
 *     e.step({ kind: "tick", now: 0 });                      // [{ kind: "sendAcquire", ... }]
 *     e.step({ kind: "answered", now: 0.01, lease });        // [{ kind: "elected", lease }]
 *     e.wake();                                              // 4: the next renew is due then
 *     e.step({ kind: "tick", now: 7.2 });                    // no renew answered: [ousting(deadline), sendAcquire]
 *
 * `LeaderElector` (elector.ts) performs the actions (HTTP calls, callbacks in
 * order) and feeds back what happened; the unit tests drive `step` with
 * inputs and times alone. Keeping every decision in one function is what
 * lets the elector be read against the elector's state table (docs/elector.md)
 * row by row; a loop that interleaves calls and decisions, the shape of the
 * first Python elector, hides them. The phases, inputs and actions carry the
 * same names as the Go SDK's `Election.Step`, so both read against one table.
 *
 * Times are seconds on the elector's own monotonic clock; the service's clock
 * never decides leadership. One call at a time is in flight: a renew that
 * hangs does not stop the deadline (a `tick` at `wake()` ends the term), but
 * the next call waits for its answer or its timeout.
 */

import { LeaseLost, LeaseNotFound, BackendUnavailable, LeaseHeld, isPermanent } from "./errors.js";
import type { Config } from "./config.js";
import { MIN_TIMEOUT } from "./config.js";
import type { Lease } from "./lease.js";

/** Where the elector is. */
export type Phase =
  | "following" // not leading: acquire when nextAcquire comes
  | "leading" // a term is open until deadline; renew when nextRenew comes
  | "stopping" // stop asked: wait for the call in flight, then release
  | "done"; // the election has ended

export type Call = "acquire" | "renew" | "release";

/** One thing that happened at `now`. */
export type Input =
  | { kind: "tick"; now: number } // time passed (a timer fired, or the start)
  | { kind: "answered"; now: number; lease: Lease } // the call in flight succeeded
  | { kind: "answered"; now: number; error: unknown } // the call in flight failed
  | { kind: "free"; now: number } // the key's watch stream says the lease is free
  | { kind: "stop"; now: number }; // stop(), cancel() or a callback's cancel

/** Why a term ended. */
export type EndedBy =
  | "deadline" // no renewal in time: the deadline passed
  | "lost" // the service said lease_lost or not_found
  | "stopped"; // stop, cancel, or a permanent error

/** One thing to do, in order. */
export type Action =
  | { kind: "sendAcquire"; timeout: number } // acquire(key, identity, term)
  | { kind: "sendRenew"; lease: Lease; timeout: number } // renew(key, identity, lease.fencingToken, term)
  | { kind: "sendRelease"; lease: Lease; timeout: number } // release(key, identity, lease.fencingToken)
  | { kind: "elected"; lease: Lease } // call onElected: a term began
  | { kind: "ousting"; lease: Lease; endedBy: EndedBy } // call onOusting: the term ended
  | { kind: "reportError"; error: unknown } // call onError
  | { kind: "finish" }; // the election is over

/** The elector's state; `step` is its only writer. */
export class Election {
  phase: Phase = "following";
  /** The current term's latest lease (leading). */
  lease: Lease | null = null;
  /** The last lease granted to us, even after stepping down: what stop releases. */
  last: Lease | null = null;
  /** When the current term began. */
  since = 0;
  /** While leading: send time of the latest granted call + min(term, granted ttl) - margin. */
  deadline = 0;
  nextRenew = 0;
  nextAcquire = Number.NEGATIVE_INFINITY;
  /** The call sent and not yet answered (one at a time). */
  inFlight: Call | null = null;
  sentAt = 0;
  /** A `free` came while an acquire was in flight: acquire again at once after it. */
  woken = false;
  /** The permanent error that ended the election. */
  refusal: unknown = null;
  /** An admin transferred this term: release it while following (row C10), so the successor takes over at once. */
  handOver: Lease | null = null;

  constructor(
    readonly config: Config,
    /** Jitter source in [0, 1). */
    readonly random: () => number,
  ) {}

  /** A term is open and `now` is before its deadline (read between steps too). */
  isLeader(now: number): boolean {
    return this.phase === "leading" && now < this.deadline;
  }

  /** When the election next needs a `tick`; null when only an answer, a `free` or a `stop` can move it. */
  wake(): number | null {
    if (this.phase === "leading") {
      return this.inFlight === null ? Math.min(this.deadline, this.nextRenew) : this.deadline;
    }
    if (this.phase === "following" && this.inFlight === null) return this.nextAcquire;
    return null;
  }

  /** Apply one input; the actions it calls for, in order. */
  step(input: Input): Action[] {
    const now = input.now;
    // The deadline first: whatever arrives, a term past its deadline is over,
    // and "not leader" is said before anything else is done.
    const out = this.expire(now);
    switch (input.kind) {
      case "tick":
        break;
      case "free":
        if (this.phase === "following") {
          if (this.inFlight === null) this.nextAcquire = now;
          else this.woken = true;
        }
        break;
      case "stop":
        if (this.phase === "leading" || this.phase === "following") {
          this.stepDown("stopped", out);
          this.phase = "stopping";
        }
        break;
      case "answered": {
        const call = this.inFlight;
        this.inFlight = null;
        if (call === "release" && this.phase === "following") {
          // Row C10's release after a transfer: its answer changes nothing.
          this.handOver = null;
          this.last = null;
          this.nextAcquire = now;
        } else if (call === "release") {
          const error = "error" in input ? input.error : null;
          if (error !== null && this.refusal === null && !(error instanceof LeaseLost || error instanceof LeaseNotFound)) {
            out.push({ kind: "reportError", error });
          }
          this.last = null;
          this.phase = "done";
          out.push({ kind: "finish" });
        } else if (call !== null) {
          if ("lease" in input) this.granted(input.lease, now, out);
          else this.failed(call, input.error, now, out);
        }
        break;
      }
    }
    this.due(now, out);
    return out;
  }

  /** A successful acquire or renew, sent at `sentAt`. */
  private granted(lease: Lease, now: number, out: Action[]): void {
    this.last = lease;
    if (this.phase === "stopping" || this.phase === "done") return; // the release decides what follows
    // The service started its ttl no earlier than the call was sent, so
    // sentAt + ttl is no later than its expiry; the margin absorbs clock-rate
    // drift and the time the application needs to stop.
    const deadline = this.sentAt + Math.min(this.config.term, lease.ttl) - this.config.margin;
    this.nextRenew = this.sentAt + this.config.renew;
    if (this.phase === "leading") {
      this.lease = lease;
      this.deadline = Math.max(this.deadline, deadline);
      return;
    }
    if (deadline <= now) {
      // Answered after its own deadline (a pause, a slow answer): begins nothing.
      this.nextAcquire = now + this.followerWait(null);
      return;
    }
    this.phase = "leading";
    this.woken = false; // a release seen while this acquire was in flight is spent
    this.lease = lease;
    this.since = now;
    this.deadline = deadline;
    out.push({ kind: "elected", lease });
  }

  /** A failed acquire or renew. */
  private failed(call: Call, error: unknown, now: number, out: Action[]): void {
    if (this.phase === "stopping" || this.phase === "done") return;
    if (isPermanent(error)) {
      // No retry can fix it: say so once and end the election, as after stop.
      this.stepDown("stopped", out);
      this.phase = "stopping";
      this.refusal = error;
      out.push({ kind: "reportError", error });
      return;
    }
    if (call === "acquire") {
      if (!(error instanceof LeaseHeld)) out.push({ kind: "reportError", error });
      this.nextAcquire = this.woken ? now : now + this.followerWait(error);
      this.woken = false;
      return;
    }
    if (error instanceof LeaseLost || error instanceof LeaseNotFound) {
      // Another term has the key: end ours now and ask again at once (the
      // answer names the new holder, or the lease is free again).
      const ended = this.lease;
      this.stepDown("lost", out);
      this.nextAcquire = now;
      if (ended !== null && handedOn(error, ended)) {
        // An admin named a successor of our term: step down (done), then
        // release as stop() does, so that it takes over at once.
        this.handOver = ended;
      }
      return;
    }
    // A renew that failed on the way (transport, 503, 500): retry while the deadline allows.
    out.push({ kind: "reportError", error });
    if (this.phase === "leading") this.nextRenew = now + this.renewFailedWait(now);
    else this.nextAcquire = now; // the deadline passed meanwhile: campaign again
  }

  /** End the open term if its deadline has passed. */
  private expire(now: number): Action[] {
    const out: Action[] = [];
    if (this.phase === "leading" && now >= this.deadline) {
      this.stepDown("deadline", out);
      this.nextAcquire = now;
    }
    return out;
  }

  /** End the open term now, if one is open. */
  private stepDown(endedBy: EndedBy, out: Action[]): void {
    if (this.phase !== "leading" || this.lease === null) return;
    const lease = this.lease;
    this.phase = "following";
    this.lease = null;
    out.push({ kind: "ousting", lease, endedBy });
  }

  /** Send what is due at `now`, if no call is in flight. */
  private due(now: number, out: Action[]): void {
    if (this.inFlight !== null) return;
    if (this.phase === "following" && this.handOver !== null) {
      this.send("release", now);
      out.push({ kind: "sendRelease", lease: this.handOver, timeout: this.config.timeout });
    } else if (this.phase === "following" && now >= this.nextAcquire) {
      this.send("acquire", now);
      out.push({ kind: "sendAcquire", timeout: this.config.timeout });
    } else if (this.phase === "leading" && now >= this.nextRenew && this.lease !== null) {
      const timeout = this.attemptTimeout(now);
      this.send("renew", now);
      out.push({ kind: "sendRenew", lease: this.lease, timeout });
    } else if (this.phase === "stopping") {
      if (this.last !== null) {
        this.send("release", now);
        out.push({ kind: "sendRelease", lease: this.last, timeout: this.config.timeout });
      } else {
        this.phase = "done";
        out.push({ kind: "finish" });
      }
    }
  }

  private send(call: Call, now: number): void {
    this.inFlight = call;
    this.sentAt = now;
  }

  /** The timeout of the next renew: never past the deadline. */
  private attemptTimeout(now: number): number {
    return Math.max(MIN_TIMEOUT, Math.min(this.config.timeout, this.deadline - now));
  }

  /**
   * The pause before the next renew after a transient failure: jittered, and
   * short enough that one more full-length attempt still fits before the
   * deadline when it can; never a busy loop.
   */
  private renewFailedWait(now: number): number {
    const left = this.deadline - now;
    const room = left - this.config.timeout;
    if (room > 0) return (0.5 + 0.5 * this.random()) * Math.min(this.config.retry, room);
    return Math.min(Math.max(left, 0), Math.max(MIN_TIMEOUT, this.config.timeout / 10));
  }

  /**
   * The pause before the next acquire: `retry` shortened by up to a quarter
   * (jitter never lengthens it, so a released lease is taken within `retry`);
   * a 503's Retry-After is honoured up to one term.
   */
  private followerWait(error: unknown): number {
    const wait = (1 - 0.25 * this.random()) * this.config.retry;
    if (error instanceof BackendUnavailable) return Math.max(wait, Math.min(error.retryAfter, this.config.term));
    return wait;
  }
}

/**
 * A renew's `lease_lost` whose record still names this holder with the ended
 * term's token and names a successor: an admin's transfer. (The ended lease
 * was granted to this elector, so its holder is our identity.)
 */
function handedOn(error: LeaseLost | LeaseNotFound, ended: Lease): boolean {
  const rec = error instanceof LeaseLost ? error.lease : null;
  return (
    rec !== null &&
    rec.holder === ended.holder &&
    rec.fencingToken === ended.fencingToken &&
    rec.successor !== undefined
  );
}
