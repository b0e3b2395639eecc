// Builds the UI into ui/dist, or with --if-stale only when ui/dist is missing or older than a
// source file (npm's prestart and the UI tests call it that way, so `npm ci && npm start`
// serves a built UI without a separate step).
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { uiConfig, uiRoot } from './vite.config.ts';

const STAMP = join(uiRoot, 'dist', '.build-stamp');
/** Held while building: test files in parallel workers must not build into ui/dist at once. */
const LOCK = join(uiRoot, '.build-lock');

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const name of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, name)));
  return newest;
}

/** True when ui/dist is missing or older than ui/src, index.html or the build config. */
export function uiIsStale(): boolean {
  if (!existsSync(STAMP)) return true;
  const built = statSync(STAMP).mtimeMs;
  const sources = [join(uiRoot, 'src'), join(uiRoot, 'index.html'), join(uiRoot, 'vite.config.ts'), join(uiRoot, 'public')].filter((p) => existsSync(p));
  return sources.some((p) => newestMtime(p) > built);
}

async function locked<T>(fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch {
      // A lock left by a killed build is stale after two minutes.
      if (existsSync(LOCK) && Date.now() - statSync(LOCK).mtimeMs > 120_000) rmSync(LOCK, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

export async function buildUi(options: { ifStale?: boolean } = {}): Promise<boolean> {
  if (options.ifStale && !uiIsStale()) return false;
  return locked(async () => {
    // Someone else may have built it while this one waited.
    if (options.ifStale && !uiIsStale()) return false;
    const { build } = await import('vite');
    await build(uiConfig);
    writeFileSync(STAMP, new Date().toISOString() + '\n');
    return true;
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const ifStale = process.argv.includes('--if-stale');
  const started = Date.now();
  const built = await buildUi({ ifStale });
  console.log(built ? `UI built into ui/dist in ${Date.now() - started} ms` : 'UI is up to date (ui/dist)');
}
