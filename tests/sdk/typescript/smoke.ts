// A small openapi-fetch program typed by openapi-typescript from openapi/openapi.json.
//
// deploy/sdk-check.sh generates `schema.d.ts` next to this file, compiles it with
// `tsc --strict --noEmit` (the proof: a schema that types a field wrongly breaks the
// build), then compiles it to JavaScript and runs it with node against the release
// build (MP_BASE_URL). Every call below is typed by the generated `paths`.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

// The one Node.js global used; declared here so no @types/node is needed.
declare const process: { env: Record<string, string | undefined> };

type Schemas = components["schemas"];
type UsageEvent = Schemas["UsageEventRequest"];
type SpendLogEntry = Schemas["SpendLogEntry"];

// --- What the generated types must say (checked by the compiler alone) -------------
// `metadata` is a JSON object: a string must not type-check.
// @ts-expect-error metadata is an object, not a string
const metadataIsAnObject: UsageEvent["metadata"] = "feature=search";
// A spend-log entry's `status` and `billingSource` are enums, not free strings.
// @ts-expect-error status is "success" | "error"
const statusIsAnEnum: SpendLogEntry["status"] = "exploded";
// @ts-expect-error billingSource is "credits" | "api-keys"
const billingSourceIsAnEnum: SpendLogEntry["billingSource"] = "cash";
// Money is a decimal string, never a number.
// @ts-expect-error cost is a string
const costIsAString: SpendLogEntry["cost"] = 0.25;
void [metadataIsAnObject, statusIsAnEnum, billingSourceIsAnEnum, costIsAString];

// --- A real session ------------------------------------------------------------------
const baseUrl = process.env.MP_BASE_URL ?? "http://127.0.0.1:8080";
let checks = 0;

function check(condition: boolean, message: string): asserts condition {
  checks += 1;
  if (!condition) throw new Error(`ts-smoke: ${message}`);
}

// JSON with sorted keys: the server stores metadata as jsonb, which orders keys its own way.
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}

function step(message: string): void {
  console.log(`ts-smoke: ${message}`);
}

const run = crypto.randomUUID().slice(0, 8);
const email = `sdk-ts-${run}@example.com`;
const password = `pw-${crypto.randomUUID()}`;
const publicApi = createClient<paths>({ baseUrl });

step("sign up and log in");
const signup = await publicApi.POST("/v1/auth/signup", {
  body: { email, password, name: "SDK TypeScript" },
});
check(signup.response.status === 202 && signup.data?.status === "check_email", `signup answered ${signup.response.status}`);

const login = await publicApi.POST("/v1/auth/login", { body: { email, password } });
check(login.data !== undefined, `login answered ${login.response.status}`);
const tenant = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${login.data.accessToken}` },
});

const me = await tenant.GET("/v1/me");
check(me.data?.user.email === email, "GET /v1/me is another user");

step("create an organization, a project and an API key");
const org = await tenant.POST("/v1/orgs", { body: { name: `SDK TypeScript ${run}` } });
check(org.response.status === 201 && org.data !== undefined, `create org answered ${org.response.status}`);
const orgId = org.data.id;

const project = await tenant.POST("/v1/orgs/{orgId}/projects", {
  params: { path: { orgId } },
  body: { name: "Web", mode: "hybrid" },
});
check(project.data !== undefined, `create project answered ${project.response.status}`);
const projectId = project.data.id;

const key = await tenant.POST("/v1/orgs/{orgId}/projects/{projectId}/keys", {
  params: { path: { orgId, projectId } },
  body: { name: "gateway", expiresAt: null },
});
check(key.response.status === 201 && key.data !== undefined, `create key answered ${key.response.status}`);
const gateway = createClient<paths>({ baseUrl, headers: { "X-Api-Key": key.data.secret } });

step("record a usage event with bodies and metadata");
const event: UsageEvent = {
  requestId: `ts-${run}-1`,
  endpoint: "/chat/completions",
  provider: "openai",
  model: "gpt-4o",
  user: "customer-ts",
  status: "success",
  billingSource: "api-keys",
  promptTokens: 1200,
  cachedTokens: 200,
  completionTokens: 300,
  latencyMs: 840,
  startedAt: new Date(Date.now() - 60_000).toISOString(),
  requestBody: {
    model: "gpt-4o",
    messages: [{ role: "user", content: "Summarize the invoice." }],
    temperature: 0.2,
  },
  responseBody: { choices: [{ index: 0, message: { role: "assistant", content: "It is short." } }] },
  metadata: { feature: "summaries", experiment: { arm: "b", weight: 0.5 }, tags: ["ts"] },
};
const recorded = await gateway.POST("/v1/usage", { body: event });
check(recorded.response.status === 201 && recorded.data !== undefined, `usage answered ${recorded.response.status}`);
check(recorded.data.status === "accepted", `event status ${recorded.data.status}`);
const eventId = recorded.data.eventId;
check(typeof eventId === "string", "no event id");
const cost = recorded.data.cost;
check(typeof cost === "string" && /^[0-9]+(\.[0-9]+)?$/.test(cost), `cost ${String(cost)} is not a decimal string`);

const batch = await gateway.POST("/v1/usage/batch", {
  body: {
    events: [
      { ...event, requestId: `ts-${run}-2`, billingSource: "credits", metadata: { feature: "batch" } },
      { ...event, requestId: `ts-${run}-3`, status: "error", errorCode: "rate_limited", requestBody: null },
    ],
  },
});
check(batch.data?.accepted === 2 && batch.data.rejected === 0, `batch ${JSON.stringify(batch.data)}`);

step("read the spend logs");
const logs = await tenant.GET("/v1/orgs/{orgId}/spend-logs", {
  params: { path: { orgId }, query: { customer: "customer-ts", status: "success", limit: 10 } },
});
check(logs.data !== undefined, `spend logs answered ${logs.response.status}`);
const entries: SpendLogEntry[] = logs.data.data;
check(entries.length === 2, `${entries.length} successful entries, expected 2`);
const sources = new Set<SpendLogEntry["billingSource"]>(entries.map((e) => e.billingSource));
check(sources.has("api-keys") && sources.has("credits"), `billing sources ${[...sources].join(",")}`);

const detail = await tenant.GET("/v1/orgs/{orgId}/spend-logs/{eventId}", {
  params: { path: { orgId, eventId } },
});
check(detail.data !== undefined, `detail answered ${detail.response.status}`);
check(detail.data.cost === cost, `detail cost ${detail.data.cost} != ${cost}`);
check(canonical(detail.data.metadata) === canonical(event.metadata), "metadata changed");

step("read a typed problem");
const missing = await tenant.GET("/v1/orgs/{orgId}/spend-logs/{eventId}", {
  params: { path: { orgId, eventId: crypto.randomUUID() } },
});
check(missing.response.status === 404 && missing.error !== undefined, `missing answered ${missing.response.status}`);
const code: Schemas["ErrorCode"] = missing.error.code;
check(code === "not_found", `problem code ${code}`);

console.log(`ts-smoke: ${checks} passed, 0 failed`);
