// A program written against the client that openapi-typescript generates from
// openapi.yaml (build/schema.d.ts) and openapi-fetch: acquire, a rival refused,
// renew, get, list, release. Each step prints one JSON line for
// tests/test_openapi_ts.py, which checks them against the service.
//
//   node build/calls.js http://127.0.0.1:8080 KEY HOLDER RIVAL
import createClient from "openapi-fetch";
import type { components, operations, paths } from "./build/schema.js";

type Lease = components["schemas"]["Lease"];
type ErrorBody = components["schemas"]["ErrorBody"];
// Operations are named by their operationId: a renamed one does not compile.
type Acquired = operations["acquireLease"]["responses"][200]["content"]["application/json"];
type Page = operations["listLeases"]["responses"][200]["content"]["application/json"];

const [baseUrl, key, holder, rival] = process.argv.slice(2);
if (!baseUrl || !key || !holder || !rival) {
  console.error("usage: node build/calls.js SERVER KEY HOLDER RIVAL");
  process.exit(2);
}

const client = createClient<paths>({ baseUrl });
const path = { key };

function emit(step: string, status: number, fields: Record<string, unknown>): void {
  console.log(JSON.stringify({ step, status, ...fields }));
}

function must<T>(step: string, answer: { data?: T; error?: unknown; response: Response }): T {
  if (answer.data === undefined) {
    console.error(`${step}: ${answer.response.status} ${JSON.stringify(answer.error)}`);
    process.exit(1);
  }
  return answer.data;
}

function times(lease: Lease): Record<string, number> {
  // format: date-time; Date parses RFC 3339 (to the millisecond)
  return {
    acquired_ms: new Date(lease.acquired_at).getTime(),
    expires_ms: new Date(lease.expires_at).getTime(),
    server_ms: new Date(lease.server_time).getTime(),
  };
}

// Never called: the generated types know each body, so a wrong one must not compile.
export function typeChecks(): void {
  // @ts-expect-error acquire needs a ttl
  void client.POST("/v1/leases/{key}/acquire", { params: { path }, body: { holder } });
  // @ts-expect-error the fencing token is a number
  void client.POST("/v1/leases/{key}/renew", { params: { path }, body: { holder, fencing_token: "1" } });
  // @ts-expect-error there is no such operation
  const missing: operations["stealLease"] = {};
  void missing;
}

const got = await client.POST("/v1/leases/{key}/acquire", {
  params: { path },
  body: { holder, ttl: 30 },
});
const acquired: Acquired = must("acquire", got);
const token: number = acquired.fencing_token;
emit("acquire", got.response.status, { lease: acquired, ...times(acquired) });

const refused = await client.POST("/v1/leases/{key}/acquire", {
  params: { path },
  body: { holder: rival, ttl: 30 },
});
if (refused.error === undefined) {
  console.error("a rival's acquire of a held lease succeeded");
  process.exit(1);
}
const error: ErrorBody = refused.error;
emit("refused", refused.response.status, { error: error.error, holder: error.lease?.holder ?? null });

const renewedAnswer = await client.POST("/v1/leases/{key}/renew", {
  params: { path },
  body: { holder, fencing_token: token, ttl: 20 },
});
const renewed = must("renew", renewedAnswer);
emit("renew", renewedAnswer.response.status, { lease: renewed, ...times(renewed) });

const lookedUp = await client.GET("/v1/leases/{key}", { params: { path } });
const current = must("get", lookedUp);
emit("get", lookedUp.response.status, { lease: current });

const listed = await client.GET("/v1/leases", { params: { query: { prefix: key, limit: 10 } } });
const page: Page = must("list", listed);
emit("list", listed.response.status, {
  keys: page.leases.map((lease) => lease.key),
  next_cursor: page.next_cursor,
});

const releasedAnswer = await client.POST("/v1/leases/{key}/release", {
  params: { path },
  body: { holder, fencing_token: token },
});
const released = must("release", releasedAnswer);
emit("release", releasedAnswer.response.status, { lease: released });
