/**
 * What every call shares: URLs, headers, timeouts and the mapping of answers
 * to leases or errors. No state; `client.ts` and `watch.ts` use it.
 *
 * Example:
 *
 *     const url = keyUrl("http://127.0.0.1:8080", "cron", "acquire");
 *     const { signal, done } = deadline(5, callerSignal);
 *     try { response = await fetch(url, { signal }); } catch (err) { throw transportError(err, what, signal); }
 *     finally { done(); }
 *     const lease = await leaseOf(response);     // or the mapped LeaseError
 */

import {
  BackendUnavailable,
  ERRORS_BY_CODE,
  ERRORS_BY_STATUS,
  InternalError,
  InvalidRequest,
  LeaseError,
  RequestTimeout,
  ServiceError,
  TransportError,
} from "./errors.js";
import { type Lease, parseLease } from "./lease.js";

/** The contract's key pattern (docs/contract.md, "key"). */
export const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** The contract's prefix pattern for listings and watches. */
export const PREFIX_PATTERN = /^[A-Za-z0-9._-]{0,128}$/;
export const USER_AGENT = "leaderelection-typescript/0.1.0";

/** Throws `InvalidRequest` (as the service would) unless `key` matches the contract. */
export function checkKey(key: string): string {
  if (typeof key !== "string" || !KEY_PATTERN.test(key)) {
    throw new InvalidRequest(`key: must match ${KEY_PATTERN.source}, got ${JSON.stringify(key)}`, 422);
  }
  return key;
}

/**
 * `/v1/leases/{key}[/{action}]` under `base`. The key is checked first, so no
 * "../", "?" or "%2F" can ever reach another route.
 */
export function keyUrl(base: string, key: string, action = ""): URL {
  const path = `/v1/leases/${encodeURIComponent(checkKey(key))}${action ? `/${action}` : ""}`;
  return new URL(base + path);
}

export function headers(token: string | null, extra: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = { "user-agent": USER_AGENT, accept: "application/json", ...extra };
  if (token !== null) out.authorization = `Bearer ${token}`;
  return out;
}

/**
 * An `AbortSignal` that fires after `seconds` or when `outer` fires, and
 * `done()` to clear the timer. Hand-combined because `AbortSignal.any` needs
 * Node 20.3 and the package promises 18.
 */
export function deadline(seconds: number | null, outer?: AbortSignal): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onOuter = () => controller.abort(outer?.reason);
  if (outer !== undefined) {
    if (outer.aborted) controller.abort(outer.reason);
    else outer.addEventListener("abort", onOuter, { once: true });
  }
  if (seconds !== null) {
    timer = setTimeout(
      () => controller.abort(new DOMException(`no answer within ${Number(seconds.toFixed(3))} s`, "TimeoutError")),
      Math.max(0, seconds * 1000),
    );
  }
  return {
    signal: controller.signal,
    done: () => {
      if (timer !== undefined) clearTimeout(timer);
      outer?.removeEventListener("abort", onOuter);
    },
  };
}

/** The SDK's error for a failed `fetch` or body read (`what` names the call). */
export function transportError(err: unknown, what: string, signal: AbortSignal): LeaseError {
  if (err instanceof LeaseError) return err;
  const reason: unknown = signal.aborted ? signal.reason : undefined;
  if (reason instanceof DOMException && reason.name === "TimeoutError") {
    return new RequestTimeout(`${what}: ${reason.message}`, { cause: err });
  }
  if (signal.aborted) return new TransportError(`${what}: aborted`, { cause: reason ?? err });
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
  const text = err instanceof Error ? `${err.name}: ${err.message}${cause}` : String(err);
  return new TransportError(`${what}: ${text}`, { cause: err });
}

function retryAfter(response: Response): number {
  const value = Number(response.headers.get("retry-after") ?? "1");
  return Number.isFinite(value) && value >= 0 ? value : 1;
}

/** The error for a non-2xx answer whose body was read as `text`. */
export function errorFor(response: Response, text: string): ServiceError {
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null; // a proxy's HTML page, say: mapped by status below
  }
  const fields = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  const code = typeof fields.error === "string" ? fields.error : "";
  const cls = ERRORS_BY_CODE[code] ?? ERRORS_BY_STATUS[response.status] ?? InternalError;
  const message =
    typeof fields.message === "string" ? fields.message : `HTTP ${response.status}: ${JSON.stringify(text.slice(0, 200))}`;
  let lease: Lease | null = null;
  if (fields.lease !== undefined && fields.lease !== null) {
    try {
      lease = parseLease(fields.lease);
    } catch {
      lease = null;
    }
  }
  if (cls === BackendUnavailable) return new BackendUnavailable(message, response.status, lease, retryAfter(response));
  return new cls(message, response.status, lease);
}

/** The parsed JSON body of a 2xx answer; the mapped error otherwise. */
export async function jsonOf(response: Response): Promise<unknown> {
  const text = await response.text();
  if (!response.ok) throw errorFor(response, text);
  try {
    return JSON.parse(text);
  } catch {
    throw new InternalError(`answer is not JSON: ${JSON.stringify(text.slice(0, 200))}`, response.status);
  }
}

/** `parseLease` of a 2xx answer, or `InternalError` for a body outside the contract. */
export function asLease(body: unknown, status: number): Lease {
  try {
    return parseLease(body);
  } catch (err) {
    throw new InternalError(`answer is not a lease record: ${(err as Error).message}`, status);
  }
}
