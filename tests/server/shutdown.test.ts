// Graceful shutdown: stop() (what SIGTERM calls) lets an in-flight request finish and commit
// before the pools close; /healthz and /readyz report the process state.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../server/server.ts';
import { corpusFiles } from '../support/fhir.ts';
import { startInProcessServer, type InProcessServer } from '../support/in-process-server.ts';

let env: InProcessServer;
let server: RunningServer;
let accessToken: string;

beforeAll(async () => {
  env = await startInProcessServer();
  ({ server, accessToken } = env);
});
afterAll(async () => {
  // The test stops the server itself; only the database is left.
  await env?.database.drop();
});

describe('graceful shutdown', () => {
  it('reports health and readiness, then finishes an in-flight transaction before stopping', async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });

    const bundle = readFileSync(corpusFiles('synthea-r4/smart-on-fhir')[0], 'utf8');
    const inFlight = fetch(server.fhirBase, { method: 'POST', headers: { 'content-type': 'application/fhir+json', authorization: `Bearer ${accessToken}` }, body: bundle });
    await new Promise((r) => setTimeout(r, 30));
    const stopped = server.stop();
    const res = await inFlight;
    expect(res.status).toBe(200);
    const body = (await res.json()) as { entry: unknown[] };
    expect(body.entry.length).toBe(JSON.parse(bundle).entry.length);
    await stopped;
    // The server no longer accepts connections.
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
  });
});
