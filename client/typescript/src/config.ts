/**
 * `makeConfig`: the election's timing, checked when it is made.
 *
 * Example:
 *
 *     makeConfig();                                  // term 15 s, renew every 5 s, retry every 2 s
 *     makeConfig({ term: 8, renew: 4, retry: 2 });   // the Go library's example
 *     makeConfig({ term: 30, renew: 10, retry: 3, margin: 2 });
 *
 * Every field is seconds, as in the Python client's `Config`:
 *
 * - `term`: the ttl each acquire and renew asks for. Default 15.
 * - `renew`: how long after a successful acquire or renew was sent the leader
 *   sends the next renew. Default 5.
 * - `retry`: a follower's wait between acquire attempts (jitter only shortens
 *   it), and the most a failed renew waits before the next one. Default 2.
 * - `margin`: the leader's deadline is `monotonic send time of the last
 *   successful acquire/renew + min(term, granted ttl) - margin`. Default term / 10.
 * - `timeout`: the HTTP timeout of one attempt. Default
 *   `min((term - margin - renew) / 3, 10)`, so two renew attempts fit before
 *   the deadline.
 *
 * A broken rule throws a `RangeError` naming it, never a silent clamp:
 * `0 < retry`; `0 < renew < term`; `0 <= margin < term`; `timeout >= 0.05`;
 * `renew + 2 * timeout <= term - margin`. The messages are the Python
 * client's, word for word, so one search finds both.
 */

/** Shortest HTTP timeout per attempt that can work at all, seconds. */
export const MIN_TIMEOUT = 0.05;
/** The derived per-attempt timeout never exceeds this, seconds. */
export const MAX_DERIVED_TIMEOUT = 10;

export interface ConfigInput {
  term?: number;
  renew?: number;
  retry?: number;
  margin?: number;
  timeout?: number;
}

export interface Config {
  readonly term: number;
  readonly renew: number;
  readonly retry: number;
  readonly margin: number;
  readonly timeout: number;
}

/** `%g`-like: 0.1 stays 0.1, 2 stays 2 (as the Python messages print). */
function g(value: number): string {
  return String(Number(value.toPrecision(6)));
}

function seconds(name: string, value: unknown): number {
  if (typeof value !== "number") {
    throw new RangeError(`${name} must be seconds (a number), got ${JSON.stringify(value)}`);
  }
  if (!Number.isFinite(value)) throw new RangeError(`${name} must be a finite number of seconds, got ${value}`);
  return value;
}

/** The checked, complete configuration (frozen); throws `RangeError` naming a broken rule. */
export function makeConfig(input: ConfigInput = {}): Config {
  const t = seconds("term", input.term ?? 15);
  const r = seconds("renew", input.renew ?? 5);
  const y = seconds("retry", input.retry ?? 2);
  const m = input.margin === undefined ? t / 10 : seconds("margin", input.margin);
  if (!(y > 0)) throw new RangeError(`rule 0 < retry broken: retry=${g(y)}`);
  if (!(0 < r && r < t)) throw new RangeError(`rule 0 < renew < term broken: renew=${g(r)}, term=${g(t)}`);
  if (!(0 <= m && m < t)) throw new RangeError(`rule 0 <= margin < term broken: margin=${g(m)}, term=${g(t)}`);
  const window = t - m - r;
  let o: number;
  if (input.timeout === undefined) {
    o = Math.min(window / 3, MAX_DERIVED_TIMEOUT);
    if (o < MIN_TIMEOUT) {
      throw new RangeError(
        "rule renew + 2 * timeout <= term - margin (two renew attempts fit before the deadline) " +
          `leaves no room: term - margin - renew = ${g(t)} - ${g(m)} - ${g(r)} = ${g(window)} s, ` +
          `and the derived timeout (that / 3) must be at least ${g(MIN_TIMEOUT)} s; ` +
          "shorten renew or margin, or lengthen term",
      );
    }
  } else {
    o = seconds("timeout", input.timeout);
    if (o < MIN_TIMEOUT) throw new RangeError(`rule timeout >= ${g(MIN_TIMEOUT)} broken: timeout=${g(o)}`);
    if (r + 2 * o > t - m) {
      throw new RangeError(
        "rule renew + 2 * timeout <= term - margin (two renew attempts fit before the deadline) " +
          `broken: ${g(r)} + 2 * ${g(o)} = ${g(r + 2 * o)} > ${g(t)} - ${g(m)} = ${g(t - m)}`,
      );
    }
  }
  return Object.freeze({ term: t, renew: r, retry: y, margin: m, timeout: o });
}
