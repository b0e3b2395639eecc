// HTTP door to the HL7 v2 feed, a Koa router the app mounts (behind auth):
//   POST /hl7/v2                 one v2 message (text) -> the FHIR transaction Bundle it maps to (dry run)
//   POST /hl7/v2?commit=true     the same message stored and processed like an MLLP one -> ACK + outcome
//   GET  /hl7/v2/messages        the message store (?status=error|rejected|processed|received, _count, before)
//   GET  /hl7/v2/messages/:id    one stored message (?raw=true adds the raw text)
//   PUT  /hl7/v2/messages/:id    an operator's fix: replaces the raw text (the original is kept)
//   POST /hl7/v2/messages/:id/$reprocess   runs a stored message again
//   GET  /hl7/v2/outbound/dead   outbound messages that exhausted their retries
//   POST /hl7/v2/outbound/:id/$resend      queues a dead outbound message again
import Router from '@koa/router';
import type { Context } from 'koa';
import { badRequest, notFound, tooLarge } from '../fhir/outcome.ts';
import { ERROR_TEXT, V2Error } from './message.ts';
import { dryRun, receive, reprocess, type InboundDeps } from './inbound/process.ts';
import { deadLetters, resend, type OutboundDeps } from './outbound/queue.ts';
import * as store from './store.ts';

const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

async function readText(ctx: Context): Promise<Buffer> {
  const parsed = (ctx.request as { body?: unknown }).body;
  if (typeof parsed === 'string') return Buffer.from(parsed, 'utf8');
  if (Buffer.isBuffer(parsed)) return parsed;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > MAX_MESSAGE_BYTES) throw tooLarge(`An HL7 v2 message may be at most ${MAX_MESSAGE_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  // Messages pasted with LF or CRLF line ends are accepted: segments end with CR in v2.
  const buf = Buffer.concat(chunks);
  if (buf.length === 0) throw badRequest('The request body must be one HL7 v2 message (ER7 text)');
  return buf;
}

function v2Outcome(e: V2Error) {
  return {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: 'error',
        code: 'invalid',
        details: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0357', code: e.code, display: ERROR_TEXT[e.code] }], text: e.message },
        diagnostics: e.message,
        expression: e.location ? [[e.location.segment, e.location.field].filter((x) => x !== undefined).join('-')] : undefined,
      },
    ],
  };
}

export function createHl7Router(deps: InboundDeps, outbound?: OutboundDeps): Router {
  const router = new Router({ prefix: '/hl7/v2' });

  router.post('/', async (ctx) => {
    const raw = await readText(ctx);
    if (ctx.query.commit === 'true') {
      const result = await receive(deps, raw, 'http');
      const final = result.processing ? await result.processing : result;
      ctx.status = final.ackCode === 'AA' || final.ackCode === 'CA' ? 200 : final.ackCode === 'AE' || final.ackCode === 'CE' ? 422 : 400;
      ctx.type = 'application/json';
      ctx.body = {
        messageId: result.messageId,
        duplicate: result.duplicate ?? false,
        status: final.status,
        ackCode: final.ackCode,
        ack: result.ack ?? final.ack,
        resources: final.resources ?? [],
        errors: final.errors ?? [],
      };
      return;
    }
    try {
      const { bundle } = dryRun(raw);
      ctx.type = 'application/fhir+json';
      ctx.body = JSON.stringify(bundle);
    } catch (e) {
      if (!(e instanceof V2Error)) throw e;
      ctx.status = e.reject ? 400 : 422;
      ctx.type = 'application/fhir+json';
      ctx.body = JSON.stringify(v2Outcome(e));
    }
  });

  router.get('/messages', async (ctx) => {
    const count = Math.min(Math.max(Number(ctx.query._count ?? 50) || 50, 1), 500);
    const list = await store.listMessages(deps.db, {
      status: typeof ctx.query.status === 'string' ? ctx.query.status : undefined,
      sender: typeof ctx.query.sender === 'string' ? ctx.query.sender : undefined,
      beforeId: typeof ctx.query.before === 'string' ? ctx.query.before : undefined,
      limit: count,
    });
    ctx.type = 'application/json';
    ctx.body = { messages: list, next: list.length === count ? list[list.length - 1].id : undefined };
  });

  router.get('/messages/:id', async (ctx) => {
    const m = await store.getMessage(deps.db, ctx.params.id);
    if (!m) throw notFound(`No stored HL7 v2 message ${ctx.params.id}`);
    const body: Record<string, unknown> = { ...m };
    if (ctx.query.raw === 'true') body.raw = (await store.getRaw(deps.db, m.id))?.toString('utf8');
    ctx.type = 'application/json';
    ctx.body = body;
  });

  router.put('/messages/:id', async (ctx) => {
    const raw = await readText(ctx);
    const m = await store.getMessage(deps.db, ctx.params.id);
    if (!m) throw notFound(`No stored HL7 v2 message ${ctx.params.id}`);
    if (!(await store.replaceRaw(deps.db, m.id, raw))) throw badRequest(`Message ${m.id} was processed; only failed messages can be fixed`);
    ctx.type = 'application/json';
    ctx.body = await store.getMessage(deps.db, m.id);
  });

  router.post('/messages/:id/\\$reprocess', async (ctx) => {
    const result = await reprocess(deps, ctx.params.id);
    if (!result) throw notFound(`No stored HL7 v2 message ${ctx.params.id}`);
    ctx.type = 'application/json';
    ctx.body = { ...result, processing: undefined };
  });

  if (outbound) {
    router.get('/outbound/dead', async (ctx) => {
      ctx.type = 'application/json';
      ctx.body = { messages: await deadLetters(outbound.db) };
    });
    router.post('/outbound/:id/\\$resend', async (ctx) => {
      if (!(await resend(outbound, ctx.params.id))) throw notFound(`No dead outbound message ${ctx.params.id}`);
      ctx.type = 'application/json';
      ctx.body = { id: ctx.params.id, status: 'pending' };
    });
  }

  return router;
}
