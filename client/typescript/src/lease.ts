/**
 * `Lease`: a lease record as the service answered it, typed and checked.
 *
 * Example:
 *
 *     const lease = await client.acquire("cron", "host-a", 10);
 *     lease.fencingToken;   // 7: pass it along with every write you make as leader
 *     lease.holder, lease.held, lease.expiresAt;
 *
 * Field names are camelCase (JavaScript's habit); `parseLease` maps the wire's
 * snake_case. Times are `Date`s on the service's clock (`serverTime` says when
 * it answered); the elector never uses them to decide whether it leads, only
 * its own monotonic clock. A `Date` keeps milliseconds; the wire's
 * microseconds are dropped, which nothing here needs.
 */

/** One key's lease record (docs/contract.md, "The lease record"). */
export interface Lease {
  readonly key: string;
  /** The identity of the current (or last) term's holder. */
  readonly holder: string;
  /** Strictly increases with every new term of the key; renewals keep it. */
  readonly fencingToken: number;
  /** Seconds the latest grant lasts. */
  readonly ttl: number;
  readonly acquiredAt: Date;
  readonly renewedAt: Date;
  readonly expiresAt: Date;
  /** How many times the holder changed. */
  readonly transitions: number;
  /** False once expired or released. */
  readonly held: boolean;
  /** The deciding clock when the service answered. */
  readonly serverTime: Date;
  /** Who an admin or the holder named to take the lease next; absent while none is named. */
  readonly successor?: string;
}

/** Not a lease record: the answer was outside the contract. */
export class NotALease extends Error {}

function field(data: Record<string, unknown>, name: string, type: "string" | "number" | "boolean"): unknown {
  const value = data[name];
  if (typeof value !== type) {
    throw new NotALease(`not a lease record: ${name} must be a ${type}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function time(data: Record<string, unknown>, name: string): Date {
  const value = field(data, name, "string") as string;
  const out = new Date(value);
  if (Number.isNaN(out.getTime())) {
    throw new NotALease(`not a lease record: ${name} is not an RFC 3339 time: ${value}`);
  }
  return out;
}

function integer(data: Record<string, unknown>, name: string): number {
  const value = field(data, name, "number") as number;
  if (!Number.isSafeInteger(value)) {
    throw new NotALease(`not a lease record: ${name} must be an integer, got ${value}`);
  }
  return value;
}

/** The contract's JSON record as a `Lease`; throws `NotALease` when it is not one. */
export function parseLease(data: unknown): Lease {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new NotALease(`expected a lease object, got ${JSON.stringify(data)}`);
  }
  const d = data as Record<string, unknown>;
  return Object.freeze({
    key: field(d, "key", "string") as string,
    holder: field(d, "holder", "string") as string,
    fencingToken: integer(d, "fencing_token"),
    ttl: field(d, "ttl", "number") as number,
    acquiredAt: time(d, "acquired_at"),
    renewedAt: time(d, "renewed_at"),
    expiresAt: time(d, "expires_at"),
    transitions: integer(d, "transitions"),
    held: field(d, "held", "boolean") as boolean,
    serverTime: time(d, "server_time"),
    ...(d.successor === undefined || d.successor === null
      ? {}
      : { successor: field(d, "successor", "string") as string }),
  });
}

/** Seconds until expiry by the service's clock at its answer (0 if lapsed). */
export function remaining(lease: Lease): number {
  return Math.max(0, (lease.expiresAt.getTime() - lease.serverTime.getTime()) / 1000);
}
