/**
 * Every error the SDK throws, in one tree rooted at `LeaseError`.
 *
 * Example:
 *
 *     try {
 *       await client.acquire("cron", "host-a", 10);
 *     } catch (err) {
 *       if (err instanceof LeaseHeld) console.log("held by", err.lease?.holder);
 *       else if (err instanceof TransportError) console.log("no answer:", err.message);
 *       else throw err;
 *     }
 *
 * The tree (the service's error code and HTTP status on the right):
 *
 *     LeaseError
 *      ├── TransportError            no answer: connect, read, write failed
 *      │    └── RequestTimeout       no answer within the timeout
 *      └── ServiceError              the service answered with an error body
 *           ├── LeaseHeld            lease_held          409
 *           ├── LeaseLost            lease_lost          409
 *           ├── LeaseNotFound        not_found           404
 *           ├── InvalidRequest       invalid_request     422, 413, 405 (also thrown
 *           │                                            locally for a bad key)
 *           ├── Unauthorized         unauthorized        401
 *           ├── Forbidden            forbidden           403
 *           ├── BackendUnavailable   backend_unavailable 503 (`retryAfter`)
 *           └── InternalError        internal            500, or an answer outside
 *                                                        the contract
 *
 * The same names as the Python client's `leaderelection.errors`, so a reader of
 * one knows the other. Classes rather than one error with a `code` field:
 * `instanceof` narrows the type (a `LeaseHeld` always has `lease`), which a
 * string comparison does not.
 */

import type { Lease } from "./lease.js";

/** The root of every error this package throws. */
export class LeaseError extends Error {
  /** The contract's error code, or "transport" when no answer came. */
  readonly code: string = "transport";

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request got no answer (connection refused or reset, DNS, a broken stream). */
export class TransportError extends LeaseError {}

/** The request got no answer within its timeout. */
export class RequestTimeout extends TransportError {}

/** The service answered `{"error", "message", "lease"}` with a non-2xx status. */
export class ServiceError extends LeaseError {
  override readonly code: string = "internal";
  /** The HTTP status of the answer. */
  readonly status: number;
  /** The service's current record where it sent one (`lease_held`, `lease_lost`), else null. */
  readonly lease: Lease | null;

  constructor(message: string, status: number, lease: Lease | null = null) {
    super(message);
    this.status = status;
    this.lease = lease;
  }

  override toString(): string {
    return `${this.code} (${this.status}): ${this.message}`;
  }
}

/** Another holder has the lease; `lease` is its current record. */
export class LeaseHeld extends ServiceError {
  override readonly code = "lease_held";
}

/** This holder and token no longer hold the lease; `lease` says who does. */
export class LeaseLost extends ServiceError {
  override readonly code = "lease_lost";
}

/** The key was never acquired. */
export class LeaseNotFound extends ServiceError {
  override readonly code = "not_found";
}

/** A bad key, holder, ttl, token or cursor: the request changed nothing. */
export class InvalidRequest extends ServiceError {
  override readonly code = "invalid_request";
}

/** No valid API token was sent. */
export class Unauthorized extends ServiceError {
  override readonly code = "unauthorized";
}

/** The token may not do this (a read-only token, a key outside its prefix). */
export class Forbidden extends ServiceError {
  override readonly code = "forbidden";
}

/** The service cannot reach its backend; try again after `retryAfter` seconds. */
export class BackendUnavailable extends ServiceError {
  override readonly code = "backend_unavailable";
  /** Seconds, from the answer's `Retry-After` header (1 when absent). */
  readonly retryAfter: number;

  constructor(message: string, status: number, lease: Lease | null = null, retryAfter = 1) {
    super(message, status, lease);
    this.retryAfter = retryAfter;
  }
}

/** The service failed (500), or answered something outside the contract. */
export class InternalError extends ServiceError {
  override readonly code = "internal";
}

type ServiceErrorClass = new (message: string, status: number, lease: Lease | null) => ServiceError;

/** The class of each error code of the contract. */
export const ERRORS_BY_CODE: Readonly<Record<string, ServiceErrorClass>> = {
  lease_held: LeaseHeld,
  lease_lost: LeaseLost,
  not_found: LeaseNotFound,
  invalid_request: InvalidRequest,
  unauthorized: Unauthorized,
  forbidden: Forbidden,
  backend_unavailable: BackendUnavailable,
  internal: InternalError,
};

/** The class for an answer whose body names no known code (a proxy's page, say). */
export const ERRORS_BY_STATUS: Readonly<Record<number, ServiceErrorClass>> = {
  401: Unauthorized,
  403: Forbidden,
  404: LeaseNotFound,
  405: InvalidRequest,
  413: InvalidRequest,
  422: InvalidRequest,
  503: BackendUnavailable,
};

/**
 * Errors no retry can fix: the same request gets the same answer until someone
 * changes the token, its scope or the arguments. An elector that gets one on
 * acquire or renew ends its election (`onError` once, then as after `cancel()`).
 * `lease_lost`, 429 and 5xx are not here: they are states of the world that
 * change by themselves.
 */
export function isPermanent(err: unknown): boolean {
  return err instanceof InvalidRequest || err instanceof Unauthorized || err instanceof Forbidden;
}
