#!/usr/bin/env node
/**
 * The TypeScript elector's conformance adapter: one `LeaderElector` campaigning
 * for one key, reporting what happens as JSON lines.
 *
 *     node dist/elect.js --server http://127.0.0.1:8080 --key job --identity ts-1 \
 *         --term 3 --renew 0.75 --retry 0.5 [--token TOKEN]
 *
 * Each line on stdout is one object, written as it happens:
 *
 *     {"event": "elected", "identity": "ts-1", "fencing_token": 4, "time": 1764660000.123}
 *     {"event": "ousting", "identity": "ts-1", "fencing_token": 4, "time": 1764660003.456}
 *     {"event": "error", "identity": "ts-1", "message": "transport: ...", "time": 1764660004.5}
 *
 * SIGTERM or SIGINT stops the election (the lease is released) and exits 0.
 * A permanent error (invalid_request, unauthorized, forbidden) ends it: the
 * error line, then exit status 1. Bad arguments: exit status 2. The command
 * line is the same for the adapters of every language (the Python one, the
 * Go `cmd/elect`), so one suite runs them all.
 */

import { parseArgs } from "node:util";
import { writeSync } from "node:fs";

import { LeaseClient } from "./client.js";
import { LeaderElector } from "./elector.js";

/**
 * One line, written with a blocking `write(2)` on stdout: on its way when this
 * returns, whatever stdout is (`process.stdout.write` may buffer for a file).
 */
function emit(fields: Record<string, unknown>): void {
  // The record's time is a wall-clock stamp for the reader; the elector's
  // deadlines never use it.
  const line = JSON.stringify({ ...fields, time: Date.now() / 1000 });
  writeSync(1, `${line}\n`);
}

function usage(message: string): never {
  process.stderr.write(
    `elect: ${message}\nusage: elect --server URL --key KEY [--identity ID] [--term S] [--renew S] [--retry S] [--token T]\n`,
  );
  process.exit(2);
}

function seconds(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const out = Number(value);
  if (value.trim() === "" || !Number.isFinite(out)) usage(`--${name} must be a number of seconds, got ${value}`);
  return out;
}

function main(): void {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        server: { type: "string" },
        key: { type: "string" },
        identity: { type: "string" },
        term: { type: "string" },
        renew: { type: "string" },
        retry: { type: "string" },
        token: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (!values.server || !values.key) usage("--server and --key are required");
  const token = values.token ?? process.env.LEADERELECTION_TOKEN ?? null;
  let elector: LeaderElector;
  let token_: number | null = null; // the term's token, for the ousting line
  try {
    const client = new LeaseClient(values.server, { token: token === "" ? null : token });
    elector = new LeaderElector(client, values.key, {
      ...(values.identity ? { identity: values.identity } : {}),
      config: {
        term: seconds("term", values.term, 15),
        renew: seconds("renew", values.renew, 5),
        retry: seconds("retry", values.retry, 2),
      },
    });
  } catch (err) {
    usage((err as Error).message);
  }
  elector.onElected = (identity) => {
    token_ = elector.fencingToken;
    emit({ event: "elected", identity, fencing_token: token_ });
  };
  elector.onOusting = (identity) => emit({ event: "ousting", identity, fencing_token: token_ });
  elector.onError = (identity, err) => emit({ event: "error", identity, message: String(err) });

  let stopping = false;
  const stop = () => {
    stopping = true;
    void elector.stop();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  elector.start();
  void elector.done.then(() => process.exit(stopping ? 0 : 1));
}

main();
