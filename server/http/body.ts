// Reads the request body with a size limit (413 past it) and parses it by content type:
// FHIR/JSON (and JSON Patch) -> parsed JSON (400 on malformed JSON); form -> pairs (POST
// _search); anything else -> raw bytes (Binary uploads).
import type { Context } from 'koa';
import { badRequest, tooLarge, unsupportedMediaType } from '../fhir/outcome.ts';

export interface ParsedBody {
  json?: unknown;
  form?: [string, string][];
  raw?: Buffer;
}

const JSON_TYPES = new Set(['application/fhir+json', 'application/json', 'application/json-patch+json', 'text/json']);

export async function readBody(ctx: Context, limits: { json: number; binary: number }, allowRaw: boolean): Promise<ParsedBody> {
  const contentType = (ctx.get('content-type') || '').split(';')[0].trim().toLowerCase();
  const isJson = JSON_TYPES.has(contentType);
  const isForm = contentType === 'application/x-www-form-urlencoded';
  const limit = isJson || isForm ? limits.json : limits.binary;
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > limit) throw tooLarge(`The request body is larger than the limit of ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw tooLarge(`The request body is larger than the limit of ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  const buf = Buffer.concat(chunks, size);
  if (isJson) {
    try {
      return { json: JSON.parse(buf.toString('utf8')) };
    } catch (e) {
      throw badRequest(`The body is not valid JSON: ${(e as Error).message}`);
    }
  }
  if (isForm) return { form: [...new URLSearchParams(buf.toString('utf8')).entries()] };
  if (contentType.includes('xml')) throw unsupportedMediaType('XML is not supported; send application/fhir+json');
  if (allowRaw) return { raw: buf };
  throw unsupportedMediaType(`Unsupported content type "${contentType || '(none)'}"; send application/fhir+json`);
}
