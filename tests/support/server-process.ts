// A real Wardlink server as a child process (`node server/main.ts`), for tests that kill,
// restart or run several servers on one PostgreSQL (and Redis). The child gets the test's
// environment plus `env`; the helper waits for the printed FHIR base and remembers every child
// so a test file can stop whatever is left in afterAll.
import { spawn, type ChildProcess } from 'node:child_process';
import { repoRoot } from './fhir.ts';
import { TEST_CLIENT_ID, TEST_CLIENT_SECRET } from './token.ts';

export interface ServerProcess {
  child: ChildProcess;
  /** e.g. http://127.0.0.1:40123/fhir */
  fhirBase: string;
  /** e.g. http://127.0.0.1:40123 */
  origin: string;
  /** Everything the child printed so far. */
  output(): string;
  /** Sends the signal and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const running = new Set<ServerProcess>();

export async function startServerProcess(name: string, env: Record<string, string | undefined>): Promise<ServerProcess> {
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    HL7_PORT: '0',
    SEED_DEMO: 'false',
    LOG_LEVEL: 'info',
    DB_POOL_SIZE: '5',
    BOOTSTRAP_CLIENT_ID: TEST_CLIENT_ID,
    BOOTSTRAP_CLIENT_SECRET: TEST_CLIENT_SECRET,
    ...env,
  };
  delete childEnv.BASE_URL; // vitest sets BASE_URL=/ (Vite's)
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
  const child = spawn(process.execPath, ['server/main.ts'], { cwd: repoRoot, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 60_000;
  let m: RegExpMatchArray | null;
  while (!(m = out.replace(/\u001b\[[0-9;]*m/g, '').match(/FHIR base: (http:\/\/\S+\/fhir)/))) {
    if (child.exitCode !== null) throw new Error(`${name} exited: ${out}`);
    if (Date.now() > deadline) throw new Error(`${name} did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const proc: ServerProcess = {
    child,
    fhirBase: m[1],
    origin: new URL(m[1]).origin,
    output: () => out,
    kill(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
      return new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill(signal);
      });
    },
  };
  running.add(proc);
  child.once('exit', () => running.delete(proc));
  return proc;
}

/** Stops every child still running (SIGKILL after 10 s). */
export async function stopServerProcesses(): Promise<void> {
  await Promise.all(
    [...running].map(async (p) => {
      const timer = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
      await p.kill('SIGTERM');
      clearTimeout(timer);
    }),
  );
}
