// `npm start` on a fresh machine: no DATABASE_URL / REDIS_URL -> embedded PostgreSQL under
// DATA_DIR, data survives a restart, SIGTERM shuts down cleanly; a bad config value stops
// start-up with a message naming the variable.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/fhir.ts';
import { systemToken, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../support/token.ts';

const dataDir = mkdtempSync(path.join(tmpdir(), 'wardlink-embedded-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete e.DATABASE_URL;
  delete e.REDIS_URL;
  delete e.BASE_URL; // vitest sets BASE_URL=/ (Vite's) in its own environment

  return e;
}

async function start(port: number): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, ['server/main.ts'], {
    cwd: repoRoot,
    env: env({
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
      SEED_DEMO: 'false',
      HL7_PORT: '0',
      BOOTSTRAP_CLIENT_ID: TEST_CLIENT_ID,
      BOOTSTRAP_CLIENT_SECRET: TEST_CLIENT_SECRET,
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 90_000;
  while (!out.includes('FHIR base:')) {
    if (child.exitCode !== null) throw new Error(`server exited: ${out}`);
    if (Date.now() > deadline) throw new Error(`server did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { child, output: () => out };
}

async function stop(child: ChildProcess): Promise<number | null> {
  child.kill('SIGTERM');
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('embedded default', () => {
  it('starts on PGlite in DATA_DIR, keeps data across restarts and stops cleanly on SIGTERM', async () => {
    const port = 18000 + Math.floor(Math.random() * 2000);
    const base = `http://127.0.0.1:${port}/fhir`;
    const first = await start(port);
    expect(first.output()).toContain(`FHIR base: ${base}`);
    const unauthenticated = await fetch(`${base}/Patient`);
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.headers.get('www-authenticate')).toContain('Bearer');
    const token = await systemToken(`http://127.0.0.1:${port}`, TEST_CLIENT_ID, TEST_CLIENT_SECRET);
    const created = await fetch(`${base}/Patient`, {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Embedded' }] }),
    });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: string };
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    expect(await stop(first.child)).toBe(0);

    const second = await start(port);
    const token2 = await systemToken(`http://127.0.0.1:${port}`, TEST_CLIENT_ID, TEST_CLIENT_SECRET);
    const read = await fetch(`${base}/Patient/${id}`, { headers: { authorization: `Bearer ${token2}` } });
    expect(read.status).toBe(200);
    expect(((await read.json()) as any).name[0].family).toBe('Embedded');
    expect(await stop(second.child)).toBe(0);
  }, 240_000);

  it('refuses a bad configuration value, naming the variable', async () => {
    const child = spawn(process.execPath, ['server/main.ts'], {
      cwd: repoRoot,
      env: env({ PORT: 'eighty', DATA_DIR: dataDir }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stderr!.on('data', (d) => (out += d));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    expect(out).toContain('PORT');
  });
});
