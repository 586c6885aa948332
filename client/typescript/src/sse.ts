/**
 * The Server-Sent Events wire format, parsed by hand with no I/O.
 *
 * Example:
 *
 *     const lines = new LineSplitter();
 *     const parser = new SseParser();
 *     for (const line of lines.push("event: acquired\nid: job:1\ndata: {}\n\n")) {
 *       const message = parser.feed(line);   // { event: "acquired", data: "{}", id: "job:1" }
 *     }
 *
 * Why by hand: Node has no `EventSource` before 22, and the browser's
 * `EventSource` can send neither an `Authorization` header nor a timeout; the
 * format is a few lines (https://html.spec.whatwg.org/#event-stream-interpretation),
 * and a dependency for it would break the package's "no runtime dependencies".
 */

/** One complete message: the `event:` name, the joined `data:` lines, the last `id:`. */
export interface SseMessage {
  readonly event: string;
  readonly data: string;
  readonly id: string | null;
}

/**
 * Splits decoded text into lines, across chunk boundaries. A line ends at
 * "\r\n", "\n" or "\r"; a "\r" at the end of a chunk waits for the next one,
 * in case it is the first half of "\r\n".
 */
export class LineSplitter {
  private buffer = "";

  /** The complete lines in `chunk` plus what was buffered, without their ends. */
  push(chunk: string): string[] {
    this.buffer += chunk;
    const out: string[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c === "\n") {
        out.push(this.buffer.slice(start, i));
        start = i + 1;
      } else if (c === "\r") {
        if (i + 1 === this.buffer.length) break; // maybe "\r\n" split across chunks
        out.push(this.buffer.slice(start, i));
        if (this.buffer[i + 1] === "\n") i++;
        start = i + 1;
      }
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** Bytes of a line still waiting for its end (a bound on a hostile stream). */
  get pending(): number {
    return this.buffer.length;
  }
}

/**
 * The event-stream interpretation, one line at a time. `feed(line)` returns
 * the message a blank line completes (when it had data), else null. Comments
 * (the service's keep-alives, ": ping") and unknown fields are ignored.
 */
export class SseParser {
  private event = "message";
  private data: string[] = [];
  private id: string | null = null;
  /** The last event id seen, kept across messages as the spec says. */
  lastEventId: string | null = null;

  feed(line: string): SseMessage | null {
    if (line === "") {
      const done =
        this.data.length > 0 ? { event: this.event, data: this.data.join("\n"), id: this.id ?? this.lastEventId } : null;
      this.event = "message";
      this.data = [];
      this.id = null;
      return done;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") this.event = value;
    else if (name === "data") this.data.push(value);
    else if (name === "id" && !value.includes("\0")) {
      this.id = value;
      this.lastEventId = value;
    }
    return null;
  }
}
