/**
 * `LeaseClient`: the service's HTTP API as typed calls, over the global `fetch`.
 *
 * Example:
 *
 *     const client = new LeaseClient("http://127.0.0.1:8080", { token: process.env.TOKEN });
 *     const lease = await client.acquire("cron", "host-a", 10);   // or throws LeaseHeld
 *     await client.renew("cron", "host-a", lease.fencingToken, 10);
 *     await client.get("cron");
 *     for await (const l of client.list("cr")) console.log(l.key, l.holder);
 *     await client.release("cron", "host-a", lease.fencingToken);
 *
 * Every call takes `{ timeout, signal }`: `timeout` in seconds (default the
 * client's, 5 s) ends it with `RequestTimeout`; `signal` aborts it with
 * `TransportError`. Failures are the `LeaseError` tree of `errors.ts`. The
 * token is sent as `Authorization: Bearer`. No state but the options: one
 * client may be shared by any number of electors.
 */

import { InternalError, InvalidRequest } from "./errors.js";
import { PREFIX_PATTERN, asLease, deadline, headers, jsonOf, keyUrl, transportError } from "./http.js";
import type { Lease } from "./lease.js";
import { LeaseWatch, type WatchOptions } from "./watch.js";

export interface ClientOptions {
  /** API token, sent as `Authorization: Bearer TOKEN`. */
  token?: string | null | undefined;
  /** Default seconds per call (5). */
  timeout?: number;
  /** The `fetch` to use (default the global one); for a proxy agent, say. */
  fetch?: typeof fetch;
}

export interface CallOptions {
  /** Seconds before the call ends with `RequestTimeout`. */
  timeout?: number;
  /** Aborts the call (a `TransportError`). */
  signal?: AbortSignal;
}

export interface LeasePage {
  readonly leases: Lease[];
  /** Pass as `cursor` for the next page; null on the last page. */
  readonly nextCursor: string | null;
}

export const DEFAULT_TIMEOUT = 5;
export const PAGE_SIZE = 100;

export class LeaseClient {
  readonly baseUrl: string;
  readonly timeout: number;
  private readonly token: string | null;
  private readonly fetchFn: typeof fetch;

  constructor(baseUrl: string, options: ClientOptions = {}) {
    const url = new URL(baseUrl); // throws TypeError for a malformed URL, at once
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`baseUrl must be http:// or https://, got ${baseUrl}`);
    }
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.token = options.token ?? null;
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT;
    if (!(this.timeout > 0)) throw new RangeError(`timeout must be > 0 seconds, got ${this.timeout}`);
    this.fetchFn = options.fetch ?? globalThis.fetch;
  }

  /** Acquire `key` for `holder` for `ttl` seconds, or extend it if `holder` holds it. Throws `LeaseHeld`. */
  async acquire(key: string, holder: string, ttl: number, options: CallOptions = {}): Promise<Lease> {
    return this.leaseCall("POST", keyUrl(this.baseUrl, key, "acquire"), { holder, ttl }, options);
  }

  /** Renew this holder's term (`ttl` omitted: the lease keeps its ttl). Throws `LeaseLost`, `LeaseNotFound`. */
  async renew(
    key: string,
    holder: string,
    fencingToken: number,
    ttl?: number | null,
    options: CallOptions = {},
  ): Promise<Lease> {
    const body: Record<string, unknown> = { holder, fencing_token: fencingToken };
    if (ttl !== undefined && ttl !== null) body.ttl = ttl;
    return this.leaseCall("POST", keyUrl(this.baseUrl, key, "renew"), body, options);
  }

  /** Release this holder's term: free at once. Releasing twice is a success. */
  async release(key: string, holder: string, fencingToken: number, options: CallOptions = {}): Promise<Lease> {
    return this.leaseCall("POST", keyUrl(this.baseUrl, key, "release"), { holder, fencing_token: fencingToken }, options);
  }

  /** The key's record. Throws `LeaseNotFound` for a key never acquired. */
  async get(key: string, options: CallOptions = {}): Promise<Lease> {
    return this.leaseCall("GET", keyUrl(this.baseUrl, key), null, options);
  }

  /** One page of the keys starting with `prefix`, in key order. */
  async listPage(
    prefix = "",
    page: { cursor?: string | null; limit?: number } = {},
    options: CallOptions = {},
  ): Promise<LeasePage> {
    checkPrefix(prefix);
    const url = new URL(`${this.baseUrl}/v1/leases`);
    url.searchParams.set("limit", String(page.limit ?? PAGE_SIZE));
    if (prefix) url.searchParams.set("prefix", prefix);
    if (page.cursor) url.searchParams.set("cursor", page.cursor);
    const body = await this.call("GET", url, null, options);
    const fields = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
    const { leases, next_cursor: next } = fields;
    if (!Array.isArray(leases) || (next !== null && typeof next !== "string")) {
      throw new InternalError("answer is not a lease list", 200);
    }
    return { leases: leases.map((item) => asLease(item, 200)), nextCursor: next };
  }

  /** Every lease whose key starts with `prefix`, page after page, in key order. */
  async *list(prefix = "", options: CallOptions & { pageSize?: number } = {}): AsyncGenerator<Lease> {
    let cursor: string | null = null;
    do {
      const page: LeasePage = await this.listPage(prefix, { cursor, limit: options.pageSize ?? PAGE_SIZE }, options);
      yield* page.leases;
      cursor = page.nextCursor;
    } while (cursor !== null);
  }

  /** The key's watch stream (`GET /v1/leases/{key}/watch`); see `watch.ts`. */
  watch(key: string, options: WatchOptions = {}): LeaseWatch {
    const url = keyUrl(this.baseUrl, key, "watch");
    if (options.renewed) url.searchParams.set("renewed", "true");
    return new LeaseWatch(url, this.token, options.timeout ?? this.timeout, options, this.fetchFn);
  }

  /** The watch stream of every key starting with `prefix` (`GET /v1/watch`). */
  watchPrefix(prefix = "", options: WatchOptions = {}): LeaseWatch {
    checkPrefix(prefix);
    const url = new URL(`${this.baseUrl}/v1/watch`);
    if (prefix) url.searchParams.set("prefix", prefix);
    if (options.renewed) url.searchParams.set("renewed", "true");
    return new LeaseWatch(url, this.token, options.timeout ?? this.timeout, options, this.fetchFn);
  }

  private async leaseCall(method: string, url: URL, body: unknown, options: CallOptions): Promise<Lease> {
    return asLease(await this.call(method, url, body, options), 200);
  }

  private async call(method: string, url: URL, body: unknown, options: CallOptions): Promise<unknown> {
    const what = `${method} ${url.pathname}`;
    const { signal, done } = deadline(options.timeout ?? this.timeout, options.signal);
    try {
      const extra: Record<string, string> = body === null ? {} : { "content-type": "application/json" };
      const response = await this.fetchFn(url, {
        method,
        headers: headers(this.token, extra),
        body: body === null ? null : JSON.stringify(body),
        signal,
      });
      return await jsonOf(response);
    } catch (err) {
      throw transportError(err, what, signal);
    } finally {
      done();
    }
  }
}

function checkPrefix(prefix: string): void {
  if (typeof prefix !== "string" || !PREFIX_PATTERN.test(prefix)) {
    throw new InvalidRequest(`prefix: must match ${PREFIX_PATTERN.source}, got ${JSON.stringify(prefix)}`, 422);
  }
}
