// A small consumer of the types openapi-typescript generates from openapi/sessions.yaml.
// tests/test_generated_clients.py generates `./sessions.ts` beside a copy of this file and runs
// `tsc --noEmit` with strict settings. The @ts-expect-error lines must each fail to compile:
// they prove the generated types are as precise as the contract.
import type { components, operations, paths } from "./sessions";

type Session = components["schemas"]["Session"];
type SessionList = components["schemas"]["SessionList"];
type ApiError = components["schemas"]["Error"];
type ListQuery = NonNullable<operations["listSessions"]["parameters"]["query"]>;
type ListPage = paths["/sessions"]["get"]["responses"][200]["content"]["application/json"];

function queryString(query: ListQuery): string {
  const params = new URLSearchParams();
  if (query.limit !== undefined) params.set("limit", String(query.limit));
  if (query.before !== undefined) params.set("before", query.before);
  return params.toString();
}

/** Every session of the organization: follow nextCursor until a page has none. */
export async function listAll(base: string, key: string): Promise<Session[]> {
  const all: Session[] = [];
  let query: ListQuery = { limit: 100 };
  for (let page = 0; page < 10_000; page++) {
    const response = await fetch(`${base}/sessions?${queryString(query)}`, {
      headers: { Authorization: `Bearer ${key}` },
    });
    if (!response.ok) {
      const problem = (await response.json()) as ApiError;
      throw new Error(`${response.status} ${problem.error.code}: ${problem.error.message}`);
    }
    const body = (await response.json()) as ListPage;
    all.push(...body.data);
    if (body.nextCursor === undefined || body.nextCursor === null) return all;
    query = { ...query, before: body.nextCursor };
  }
  throw new Error("pagination did not end");
}

/** Milliseconds a session lasted; null while it is live (releasedAt is null then). */
export function duration(session: Session): number | null {
  if (session.releasedAt === null) return null;
  return Date.parse(session.releasedAt) - Date.parse(session.createdAt);
}

export const device: Session["device"] = {
  id: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", platform: "ios", type: "simulator", name: "iPhone 16 Pro", osVersion: "18.2",
};
export const live: Session = {
  id: "5d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a", organization: "6f1c2a52-3a5e-4d5b-9d0e-0b8f3c1e2a47",
  user: "0c5d9a7e-2b1f-4e3a-8c6d-5f4e3d2c1b0a", device, createdAt: "2026-11-28T10:02:11.500000Z", releasedAt: null,
  expiresAt: "2026-11-28T11:02:11.500000Z", name: "checkout flow", build: "nightly-42", tags: ["smoke"],
  metadata: { commit: "4f2a9c1" }, result: null, resultReason: null, durationSeconds: null, artifactCount: 0,
  stateHistory: [{ state: "started", at: "2026-11-28T10:02:11.500000Z" }],
};

type Artifact = components["schemas"]["Artifact"];
type NewArtifact = components["schemas"]["NewArtifact"];

/** Attach a file to a session: declare it, PUT its bytes where `upload` says, complete it. */
export async function attach(base: string, key: string, sessionId: string, file: Blob, sha256: string): Promise<Artifact> {
  const auth = { Authorization: `Bearer ${key}` };
  const declared = await fetch(`${base}/sessions/${sessionId}/artifacts`, {
    method: "POST",
    headers: { ...auth, "Content-Type": "application/json" },
    body: JSON.stringify({ type: "video", name: "screen.mp4", contentType: "video/mp4", size: file.size, sha256 }),
  });
  const artifact = (await declared.json()) as NewArtifact;
  const url = new URL(artifact.upload.url, base).toString();
  await fetch(url, { method: artifact.upload.method, headers: artifact.upload.headers, body: file });
  const done = await fetch(`${base}/sessions/${sessionId}/artifacts/${artifact.id}/complete`, { method: "POST", headers: auth });
  return (await done.json()) as Artifact;
}

/** Where to play an available artifact from, seeking with ranges; null until it is available. */
export function playable(artifact: Artifact): string | null {
  return artifact.status === "available" && artifact.download ? artifact.download.url : null;
}

// @ts-expect-error an artifact's type is one of the documented ones
export const unknownType: Artifact["type"] = "movie";

type SessionFacts = operations["updateSession"]["requestBody"]["content"]["application/json"];

/** Mark a session failed, with why: updateSession (PATCH), which answers the session. */
export async function markFailed(base: string, key: string, sessionId: string, why: string): Promise<Session> {
  const facts: SessionFacts = { result: "failed", resultReason: why };
  const response = await fetch(`${base}/sessions/${sessionId}`, {
    method: "PATCH",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify(facts),
  });
  if (!response.ok) throw new Error(((await response.json()) as ApiError).error.code);
  return (await response.json()) as paths["/sessions/{sessionId}"]["patch"]["responses"][200]["content"]["application/json"];
}

// @ts-expect-error a result is passed, failed, error or null, nothing else
export const skipped: SessionFacts = { result: "skipped" };
// @ts-expect-error tags are a list of strings
export const oneTag: SessionFacts = { tags: "smoke" };
export const lastPage: SessionList = { object: "list", data: [live] };
export const notFound: operations["getSession"]["responses"][404]["content"]["application/json"] = {
  error: { code: "not_found", message: "No session with this id exists in the selected organization." },
};

type ApiKey = components["schemas"]["ApiKey"];
type NewApiKey = components["schemas"]["NewApiKey"];
type AuditEvent = components["schemas"]["AuditEvent"];
type CreateKeyBody = operations["createApiKey"]["requestBody"]["content"]["application/json"];
type AuditQuery = NonNullable<operations["listAuditEvents"]["parameters"]["query"]>;

/** A new key of the caller's; its secret is in this answer only. */
export async function createKey(base: string, key: string, body: CreateKeyBody): Promise<NewApiKey> {
  const response = await fetch(`${base}/api-keys`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (response.status !== 201) throw new Error(((await response.json()) as ApiError).error.code);
  return (await response.json()) as paths["/api-keys"]["post"]["responses"][201]["content"]["application/json"];
}

/** Who made a change: a user's id, "the command line", or "the system". */
export function actorOf(event: AuditEvent): string {
  if (event.actor === null) return "the system";
  return event.actor.user ?? "the command line";
}

export const roleChanges: AuditQuery = { type: "member.role_changed", limit: 50 };
export const inviteTester: operations["createInvitation"]["requestBody"]["content"]["application/json"] = {
  email: "tester@example.com", role: "readwrite",
};
export const answered: operations["acceptInvitation"]["responses"][409]["content"]["application/json"] = {
  error: { code: "invitation_not_pending", message: "This invitation is accepted: it can no longer be answered." },
};
export const lastAdmin: operations["changeMemberRole"]["responses"][409]["content"]["application/json"] = {
  error: { code: "last_admin", message: "This is the organization's last admin: make another member admin first." },
};
export const listedKey: ApiKey = {
  id: "7e3f1a2b-4c5d-4e6f-8a9b-0c1d2e3f4a5b", name: null, prefix: "sapi_3f9a0c2e7b1d4a68",
  user: "0c5d9a7e-2b1f-4e3a-8c6d-5f4e3d2c1b0a", organization: null, createdAt: "2026-11-28T09:20:00.000000Z",
  lastUsedAt: null, expiresAt: null, revokedAt: null,
};
export type Removed = operations["removeMember"]["responses"][204];

// Each of these must NOT compile.
// @ts-expect-error a listed key never carries its secret
export const leaked: string = listedKey.secret;
// @ts-expect-error the actor is null for the system: check before reading it
export const careless = (event: AuditEvent): string | null => event.actor.user;
// @ts-expect-error an invitation names a role
export const noRole: operations["createInvitation"]["requestBody"]["content"]["application/json"] = { email: "a@b.c" };
// @ts-expect-error an invitation's status is a closed list
export const unknownStatus: components["schemas"]["Invitation"]["status"] = "maybe";
// @ts-expect-error the event types are a closed list
export const unknownType: AuditQuery = { type: "key.lost" };
// @ts-expect-error getOrganization names the organization in its path, never in X-Organization-Id
export const byHeader: operations["getOrganization"]["parameters"]["header"] = { "X-Organization-Id": "x" };
// @ts-expect-error releasedAt is required: null while live, never absent
export const withoutReleasedAt: Session = { id: "x", organization: "x", user: "x", device, createdAt: "x", expiresAt: "x" };
// @ts-expect-error createdAt is never null
export const nullCreatedAt: Session["createdAt"] = null;
// @ts-expect-error object is always the literal "list"
export const notAList: SessionList["object"] = "page";
// @ts-expect-error limit is a number
export const textLimit: ListQuery = { limit: "100" };
// @ts-expect-error getSession needs its sessionId
export const noSessionId: operations["getSession"]["parameters"]["path"] = {};
// @ts-expect-error the error envelope needs a code
export const noCode: ApiError = { error: { message: "m" } };
// @ts-expect-error listSessions documents no 404
export type NoListNotFound = operations["listSessions"]["responses"][404];

type UsageQuery = operations["getUsage"]["parameters"]["query"];
type UsageRow = components["schemas"]["UsageRow"];

/** Last month's device minutes per platform, as a map: getUsage with one month-long bucket. */
export async function minutesPerPlatform(base: string, key: string, org: string): Promise<Map<string, number>> {
  const query: UsageQuery = { from: "2026-11-01T00:00:00Z", to: "2026-12-01T00:00:00Z", granularity: "month", groupBy: "platform" };
  const response = await fetch(`${base}/organizations/${org}/usage?${new URLSearchParams(query)}`, {
    headers: { Authorization: `Bearer ${key}` },
  });
  if (!response.ok) throw new Error(((await response.json()) as ApiError).error.code);
  const report = (await response.json()) as paths["/organizations/{organizationId}/usage"]["get"]["responses"][200]["content"]["application/json"];
  return new Map(report.data.map((row: UsageRow) => [row.platform ?? "all", row.deviceMinutes]));
}

// @ts-expect-error buckets are hours, days or months
export const weekly: UsageQuery = { from: "2026-11-01T00:00:00Z", to: "2026-12-01T00:00:00Z", granularity: "week" };
// @ts-expect-error `from` and `to` are both required
export const openEnded: UsageQuery = { from: "2026-11-01T00:00:00Z" };
export const asCsv: paths["/organizations/{organizationId}/usage"]["get"]["responses"][200]["content"]["text/csv"] =
  "start,end,sessions,deviceMinutes,peakConcurrency\r\n";

type Concurrency = components["schemas"]["Concurrency"];

/** Whether a start on `platform` could lease now: the organization's plan has room and a device is free. */
export function canStart(view: Concurrency, platform: components["schemas"]["Platform"]): boolean {
  const entry = view.byPlatform.find((row) => row.platform === platform);
  return view.live < view.maxLiveSessions && entry !== undefined && entry.available > 0;
}
// @ts-expect-error a platform is ios or android
export const windows: components["schemas"]["PlatformConcurrency"] = { platform: "windows", live: 0, queued: 0, available: 1 };

type SessionRequest = components["schemas"]["SessionRequest"];
type Started = operations["createSession"]["responses"];

/** Start a session on a busy fleet: 201 is the session, 202 a request to long-poll until it starts. */
export async function startOrWait(base: string, key: string, org: string): Promise<Session> {
  const headers = { Authorization: `Bearer ${key}`, "X-Organization-Id": org, "Content-Type": "application/json" };
  const body: components["schemas"]["CreateSessionRequest"] = { platform: "ios", queue: { maxWaitSeconds: 600 } };
  const response = await fetch(`${base}/sessions`, { method: "POST", headers, body: JSON.stringify(body) });
  if (response.status === 201) return (await response.json()) as Started[201]["content"]["application/json"];
  if (response.status !== 202) throw new Error(((await response.json()) as ApiError).error.code);
  let request = (await response.json()) as Started[202]["content"]["application/json"];
  for (let poll = 0; poll < 30 && request.status === "queued"; poll++) {
    const waited = await fetch(`${base}/session-requests/${request.id}`, { headers: { ...headers, Prefer: "wait=60" } });
    request = (await waited.json()) as SessionRequest;
  }
  if (request.status !== "started" || request.session === null) throw new Error(`the start ${request.status}`);
  return request.session;
}
// @ts-expect-error a request that waits has a reason: concurrency or device
export const why: SessionRequest["reason"] = "budget";
