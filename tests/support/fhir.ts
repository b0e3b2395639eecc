// What test files use to talk to the running server: a real FHIR client (fhir-kit-client) and
// raw HTTP for headers and error cases.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from 'fhir-kit-client';
import { inject } from 'vitest';

export const fhirBase = (): string => inject('fhirBase');

export const token = (): string => inject('token');

export function client(): Client {
  return new Client({ baseUrl: fhirBase(), bearerToken: token() });
}

export interface HttpResult<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export async function http<T = any>(
  method: string,
  pathAndQuery: string,
  options: { body?: unknown; headers?: Record<string, string>; raw?: Buffer | string } = {},
): Promise<HttpResult<T>> {
  const headers: Record<string, string> = { accept: 'application/fhir+json', authorization: `Bearer ${token()}`, ...options.headers };
  let body: string | Buffer | undefined;
  if (options.raw !== undefined) body = options.raw;
  else if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['content-type'] ??= 'application/fhir+json';
  }
  const url = pathAndQuery.startsWith('http') ? pathAndQuery : `${fhirBase()}/${pathAndQuery.replace(/^\//, '')}`;
  const res = await fetch(url, { method, headers, body: body as BodyInit | undefined });
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed as T, text };
}

/** A value unique to this test run, for identifiers and names. */
export function unique(prefix = 'x'): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');
/** The shared corpus of real public data, read in place (never copied into the repo). */
export const corpusDir = path.resolve(repoRoot, '..', 'shared', 'corpus');

export function corpusFiles(sub: string, filter: RegExp = /\.json$/): string[] {
  const dir = path.join(corpusDir, sub);
  return readdirSync(dir)
    .filter((f) => filter.test(f))
    .sort()
    .map((f) => path.join(dir, f));
}

export function readJson<T = any>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}
