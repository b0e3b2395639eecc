// Forks serve.ts as a child process (same Node binary) and gives the parent a handle on it.
import { TEST_CLIENT_SECRET } from '../support/token.ts';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ServerStats {
  /** SQL statements sent by the process since it started. */
  queries: number;
  /** CPU time the process has used since it started (user + system), ms. */
  cpuMs: number;
  rssMb: number;
}

export interface ServerProc {
  kind: 'fhir' | 'fhir-noauth' | 'ceiling';
  /** Origin of the server, e.g. http://127.0.0.1:40123. */
  url: string;
  /** Authorization header for the FHIR server (a system token), empty for the others. */
  headers: Record<string, string>;
  stats(): Promise<ServerStats>;
  stop(): Promise<void>;
}

const SERVE = fileURLToPath(new URL('./serve.ts', import.meta.url));

/** profileDir: write a V8 CPU profile of the child there when it exits (--profile). */
export async function forkServer(kind: 'fhir' | 'fhir-noauth' | 'ceiling', databaseUrl: string, poolSize: number, profileDir?: string): Promise<ServerProc> {
  const child: ChildProcess = fork(SERVE, [kind, databaseUrl, String(poolSize)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // The child registers the bootstrap client with the secret this process will present.
    env: { ...process.env, TEST_CLIENT_SECRET },
    execArgv: ['--disable-warning=ExperimentalWarning', ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  let token: string | undefined;
  const url = await new Promise<string>((resolve, reject) => {
    const onMessage = (msg: { type: string; url?: string; token?: string }) => {
      if (msg.type === 'ready' && msg.url) {
        child.off('message', onMessage);
        token = msg.token;
        resolve(msg.url);
      }
    };
    child.on('message', onMessage);
    void exited.then((code) => reject(new Error(`the ${kind} server process exited (code ${code}) before it was ready`)));
  });

  return {
    kind,
    url,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    stats() {
      return new Promise<ServerStats>((resolve, reject) => {
        const onMessage = (msg: { type: string } & ServerStats) => {
          if (msg.type !== 'stats') return;
          child.off('message', onMessage);
          resolve({ queries: msg.queries, cpuMs: msg.cpuMs, rssMb: msg.rssMb });
        };
        child.on('message', onMessage);
        if (!child.connected) reject(new Error(`the ${kind} server process is gone`));
        else child.send({ type: 'stats' });
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.send({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 8_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
