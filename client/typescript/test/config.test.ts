/** makeConfig: the defaults and every rule, by its message (the Python client's words). */

import { test } from "node:test";
import assert from "node:assert/strict";

import { makeConfig } from "../src/config.js";

test("defaults: term 15, renew 5, retry 2, margin term/10, timeout min((term-margin-renew)/3, 10)", () => {
  const c = makeConfig();
  assert.deepEqual({ ...c }, { term: 15, renew: 5, retry: 2, margin: 1.5, timeout: (15 - 1.5 - 5) / 3 });
  assert.ok(Object.isFrozen(c));
  assert.equal(makeConfig({ term: 100, renew: 10 }).timeout, 10, "the derived timeout is capped at 10 s");
});

test("given values are kept, never clamped", () => {
  assert.deepEqual({ ...makeConfig({ term: 8, renew: 4, retry: 2, margin: 0.5, timeout: 1 }) }, {
    term: 8,
    renew: 4,
    retry: 2,
    margin: 0.5,
    timeout: 1,
  });
});

const broken: Array<[string, Parameters<typeof makeConfig>[0], RegExp]> = [
  ["retry zero", { retry: 0 }, /^rule 0 < retry broken: retry=0$/],
  ["renew not below term", { term: 5, renew: 5 }, /^rule 0 < renew < term broken: renew=5, term=5$/],
  ["renew zero", { renew: 0 }, /rule 0 < renew < term broken/],
  ["margin negative", { margin: -1 }, /^rule 0 <= margin < term broken: margin=-1, term=15$/],
  ["margin not below term", { term: 3, renew: 1, margin: 3 }, /rule 0 <= margin < term broken/],
  ["timeout too short", { timeout: 0.01 }, /^rule timeout >= 0.05 broken: timeout=0.01$/],
  ["two renews do not fit", { term: 10, renew: 5, margin: 1, timeout: 3 }, /5 \+ 2 \* 3 = 11 > 10 - 1 = 9$/],
  ["no room for a derived timeout", { term: 1, renew: 0.85, margin: 0.1 }, /leaves no room/],
  ["not a number", { term: "15" as unknown as number }, /^term must be seconds \(a number\)/],
  ["not finite", { renew: Number.POSITIVE_INFINITY }, /^renew must be a finite number of seconds/],
];

for (const [name, input, message] of broken) {
  test(`refused: ${name}`, () => {
    assert.throws(() => makeConfig(input), (err: unknown) => err instanceof RangeError && message.test(err.message));
  });
}
