// Serves the built web UI (ui/dist, see ui/build.ts) under /app: hashed assets with a year-long
// immutable cache, every other path under /app answered with index.html (the client-side router
// decides what to show), gzip for clients that accept it. Files are read once and kept in memory
// (the whole UI is a few hundred kB); a rebuild is picked up when index.html changes.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { Context, Next } from 'koa';

export const UI_PATH = '/app';
export const UI_DIST = fileURLToPath(new URL('../../ui/dist', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

interface StaticFile {
  body: Buffer;
  gzip?: Buffer;
  type: string;
  etag: string;
}

// The app talks to this origin only (FHIR API, token endpoint, websocket).
const CSP = [
  "default-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data: blob:",
  "style-src 'self' 'unsafe-inline'",
  "script-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

function load(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const full = join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (!name.startsWith('.')) {
        const body = readFileSync(full);
        const type = TYPES[extname(name)] ?? 'application/octet-stream';
        const compressible = /^(text\/|application\/json|image\/svg)/.test(type) && body.length > 512;
        const etag = `"${statSync(full).mtimeMs.toString(36)}-${body.length.toString(36)}"`;
        files.set('/' + relative(dir, full).split(sep).join('/'), { body, type, etag, gzip: compressible ? gzipSync(body, { level: 9 }) : undefined });
      }
    }
  };
  walk(dir);
  return files;
}

export function uiStatic(dist: string = UI_DIST) {
  let cache: { stamp: number; files: Map<string, StaticFile> } | undefined;
  const files = (): Map<string, StaticFile> | undefined => {
    const index = join(dist, 'index.html');
    if (!existsSync(index)) return undefined;
    const stamp = statSync(index).mtimeMs;
    if (!cache || cache.stamp !== stamp) cache = { stamp, files: load(dist) };
    return cache.files;
  };

  return async (ctx: Context, next: Next) => {
    if (ctx.path !== UI_PATH && !ctx.path.startsWith(UI_PATH + '/')) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      ctx.set('Allow', 'GET, HEAD');
      return;
    }
    if (ctx.path === UI_PATH) {
      ctx.redirect(UI_PATH + '/' + (ctx.querystring ? `?${ctx.querystring}` : ''));
      return;
    }
    const all = files();
    if (!all) {
      ctx.status = 503;
      ctx.type = 'text/plain';
      ctx.body = 'The web UI is not built: run `npm run build:ui` (npm start does it when needed).';
      return;
    }
    const rel = ctx.path.slice(UI_PATH.length);
    const isAsset = rel.startsWith('/assets/');
    let file = all.get(rel);
    if (!file && isAsset) {
      ctx.status = 404;
      ctx.type = 'text/plain';
      ctx.body = 'Not found';
      return;
    }
    // Client routes (/app/board, /app/callback, ...) get the app shell.
    const shell = !file || rel === '/';
    if (shell) file = all.get('/index.html') as StaticFile;
    const f = file as StaticFile;
    ctx.set('Cache-Control', isAsset ? 'public, max-age=31536000, immutable' : 'no-cache');
    ctx.set('ETag', f.etag);
    ctx.vary('Accept-Encoding');
    if (f.type.startsWith('text/html')) {
      ctx.set('Content-Security-Policy', CSP);
      ctx.set('X-Frame-Options', 'DENY');
    }
    if (ctx.get('if-none-match') === f.etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = f.type;
    if (f.gzip && ctx.acceptsEncodings('gzip', 'identity') === 'gzip') {
      ctx.set('Content-Encoding', 'gzip');
      ctx.body = f.gzip;
    } else {
      ctx.body = f.body;
    }
  };
}
