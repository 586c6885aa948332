/**
 * Watch streams: typed lease events from the service's Server-Sent Events.
 *
 * Example:
 *
 *     const events = client.watch("cron");              // one key
 *     for await (const event of events) {
 *       console.log(event.type, event.lease.holder, event.lease.fencingToken);
 *       if (done) events.close();                       // ends the loop at once
 *     }
 *     client.watchPrefix("jobs.", { renewed: true });   // every key under a prefix
 *
 * A stream starts with the current state of each key (`replay` true), then
 * each change: `acquired`, `released`, `expired`, `taken_over`, `deleted`,
 * `successor_named`, `transferred` and, with `renewed: true`, `renewed`
 * (docs/watch.md); an event type this client does not know is skipped. Iteration waits for the next event and ends when
 * the service closes the stream or `close()` is called. A broken connection,
 * or no byte for 45 s (the service sends a keep-alive every 15 s), throws
 * `TransportError`; a refused one the mapped error (`InvalidRequest`,
 * `Unauthorized`, ...). Reconnect with `lastEventId: event.id` of the last
 * event seen: that key's state is not sent again unless it changed.
 *
 * The body is read with `fetch`'s own stream reader and parsed by `sse.ts`.
 */

import { InternalError, InvalidRequest, TransportError } from "./errors.js";
import { deadline, errorFor, headers, transportError } from "./http.js";
import { type Lease, parseLease } from "./lease.js";
import { LineSplitter, type SseMessage, SseParser } from "./sse.js";

export type EventType =
  | "acquired"
  | "taken_over"
  | "renewed"
  | "released"
  | "expired"
  | "deleted"
  | "successor_named"
  | "transferred";
const EVENT_TYPES: ReadonlySet<string> = new Set([
  "acquired",
  "taken_over",
  "renewed",
  "released",
  "expired",
  "deleted",
  "successor_named",
  "transferred",
]);

/** No byte for this long (the service sends a keep-alive every 15 s): the stream is dead. */
export const KEEPALIVE_TIMEOUT = 45;
/** A line longer than this is not the service talking: the stream is cut. */
const MAX_LINE = 1 << 20;

/** One change of one key, or (`replay`) its state when the stream (re)connected. */
export interface LeaseEvent {
  readonly type: EventType;
  readonly key: string;
  /** Strictly increases over a key's events. */
  readonly version: number;
  readonly revision: number;
  readonly replay: boolean;
  readonly lease: Lease;
  /** `KEY:VERSION`: pass as `lastEventId` to resume after this event. */
  readonly id: string;
}

/** The typed event, or null for an event type this client does not know. */
export function parseEvent(message: SseMessage): LeaseEvent | null {
  if (!EVENT_TYPES.has(message.event)) return null;
  try {
    const body = JSON.parse(message.data) as Record<string, unknown>;
    const { key, version, revision, replay } = body;
    if (typeof key !== "string" || !Number.isSafeInteger(version) || !Number.isSafeInteger(revision)) {
      throw new Error("key, version or revision missing");
    }
    if (typeof replay !== "boolean") throw new Error("replay must be a boolean");
    return Object.freeze({
      type: message.event as EventType,
      key,
      version: version as number,
      revision: revision as number,
      replay,
      lease: parseLease(body.lease),
      id: message.id ?? `${key}:${String(version)}`,
    });
  } catch (err) {
    throw new InternalError(`watch: not a lease event: ${(err as Error).message}`, 200);
  }
}

export interface WatchOptions {
  /** Resume after this event (`event.id`). */
  lastEventId?: string;
  /** Also send `renewed` events. */
  renewed?: boolean;
  /** Seconds to wait for the stream to be answered (default: the client's timeout). */
  timeout?: number;
  /** Ends the stream when it fires, as `close()` does. */
  signal?: AbortSignal;
}

/** Drops anything not newer than what was already delivered for its key. */
class Versions {
  private readonly last = new Map<string, number>();

  constructor(lastEventId: string | undefined) {
    const match = /^(.*):(\d+)$/.exec(lastEventId ?? "");
    if (match?.[1] !== undefined && match[2] !== undefined) this.last.set(match[1], Number(match[2]));
  }

  fresh(event: LeaseEvent): boolean {
    if (event.version <= (this.last.get(event.key) ?? -1)) return false;
    this.last.set(event.key, event.version);
    return true;
  }
}

/** An open (or opening) watch stream: `for await` it once, `close()` it from anywhere. */
export class LeaseWatch implements AsyncIterable<LeaseEvent> {
  private readonly controller = new AbortController();
  private closed = false;
  private started = false;

  constructor(
    private readonly url: URL,
    private readonly token: string | null,
    private readonly timeout: number,
    private readonly options: WatchOptions,
    private readonly fetchFn: typeof fetch,
  ) {
    if (options.signal !== undefined) {
      if (options.signal.aborted) this.close();
      else options.signal.addEventListener("abort", () => this.close(), { once: true });
    }
  }

  /** End the stream: an iteration waiting for the next event returns at once. */
  close(): void {
    this.closed = true;
    this.controller.abort(new DOMException("watch closed", "AbortError"));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<LeaseEvent> {
    if (this.started) throw new InvalidRequest("watch: a stream can be iterated once", 422);
    this.started = true;
    if (this.closed) return;
    const what = `GET ${this.url.pathname}`;
    const extra: Record<string, string> = { accept: "text/event-stream", "cache-control": "no-store" };
    if (this.options.lastEventId) extra["last-event-id"] = this.options.lastEventId;
    // The answer's head must come within the timeout; after that only the
    // keep-alive rule applies, so the timer is re-armed on every chunk.
    let timer = deadline(this.timeout, this.controller.signal);
    let response: Response;
    try {
      response = await this.fetchFn(this.url, { headers: headers(this.token, extra), signal: timer.signal });
      if (!response.ok) throw errorFor(response, await response.text());
    } catch (err) {
      timer.done();
      if (this.closed) return;
      throw transportError(err, what, timer.signal);
    }
    timer.done();
    if (response.body === null) throw new TransportError(`${what}: an answer with no body`);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const lines = new LineSplitter();
    const parser = new SseParser();
    const versions = new Versions(this.options.lastEventId);
    try {
      for (;;) {
        timer = deadline(KEEPALIVE_TIMEOUT, this.controller.signal);
        const onAbort = () => void reader.cancel().catch(() => undefined);
        timer.signal.addEventListener("abort", onAbort, { once: true });
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (this.closed) return;
          throw transportError(err, what, timer.signal);
        } finally {
          timer.done();
          timer.signal.removeEventListener("abort", onAbort);
        }
        if (this.closed) return;
        if (timer.signal.aborted) {
          throw new TransportError(`${what}: no byte for ${KEEPALIVE_TIMEOUT} s (keep-alives stopped)`);
        }
        if (chunk.done) return; // the service ended the stream (shutdown, say)
        for (const line of lines.push(decoder.decode(chunk.value, { stream: true }))) {
          const message = parser.feed(line);
          const event = message === null ? null : parseEvent(message);
          if (event !== null && versions.fresh(event)) yield event;
          if (this.closed) return;
        }
        if (lines.pending > MAX_LINE) throw new TransportError(`${what}: a line longer than ${MAX_LINE} bytes`);
      }
    } finally {
      this.closed = true;
      await reader.cancel().catch(() => undefined);
    }
  }
}
