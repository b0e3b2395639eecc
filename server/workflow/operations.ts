// The workflow operations: their OperationDefinitions are the JSON files in ig/operations (one
// source for the CapabilityStatement and the IG); this file binds a handler to each.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Attachment, OperationDefinition, Parameters, ParametersParameter, ServiceRequest } from '@medplum/fhirtypes';
import { IG_DIR } from '../fhir/definitions.ts';
import { registerOperation, type OperationTarget } from '../fhir/operations/registry.ts';
import { badRequest, methodNotAllowed } from '../fhir/outcome.ts';
import type { FhirContext, FhirRequest, FhirResponse } from '../fhir/request.ts';
import { addNote, applyAction, createRequest } from './engine.ts';
import { ACTIONS, PRIORITIES, type Action, type Priority } from './model.ts';

function definition(id: string): OperationDefinition {
  return JSON.parse(readFileSync(path.join(IG_DIR, 'operations', `${id}.json`), 'utf8')) as OperationDefinition;
}

function params(req: FhirRequest): ParametersParameter[] {
  if (req.method !== 'POST') throw methodNotAllowed('Workflow operations change state: use POST with a Parameters body');
  const body = req.body as Parameters | undefined;
  if (body === undefined) return [];
  if (body?.resourceType !== 'Parameters') throw badRequest('The body must be a Parameters resource');
  return body.parameter ?? [];
}

function one(ps: ParametersParameter[], name: string): ParametersParameter | undefined {
  const found = ps.filter((p) => p.name === name);
  if (found.length > 1) throw badRequest(`Parameter "${name}" may appear only once`, [name]);
  return found[0];
}

function str(ps: ParametersParameter[], name: string): string | undefined {
  const p = one(ps, name);
  if (!p) return undefined;
  const v = p.valueString ?? p.valueCode ?? p.valueMarkdown ?? p.valueCodeableConcept?.text ?? p.valueCodeableConcept?.coding?.[0]?.display;
  if (v === undefined) throw badRequest(`Parameter "${name}" needs a string or code value`, [name]);
  return v;
}

function ref(ps: ParametersParameter[], name: string): string | undefined {
  const p = one(ps, name);
  if (!p) return undefined;
  const v = p.valueReference?.reference ?? p.valueString;
  if (!v) throw badRequest(`Parameter "${name}" needs a Reference`, [name]);
  return v;
}

function priorityOf(v: string | undefined, name = 'priority'): Priority | undefined {
  if (v === undefined) return undefined;
  if (!(PRIORITIES as readonly string[]).includes(v)) throw badRequest(`${name} must be one of ${PRIORITIES.join(', ')}`, [name]);
  return v as Priority;
}

async function transitionHandler(ctx: FhirContext, req: FhirRequest, target: OperationTarget, fixed?: Action): Promise<FhirResponse> {
  const ps = params(req);
  const action = (fixed ?? str(ps, 'action')) as Action | undefined;
  if (!action || !ACTIONS.includes(action)) throw badRequest(`action must be one of ${ACTIONS.join(', ')}`, ['action']);
  const task = await applyAction(ctx, target.id as string, action, {
    reason: str(ps, 'reason'),
    owner: ref(ps, 'owner'),
    priority: priorityOf(str(ps, 'priority')),
  });
  return { status: 200, body: task, versionId: task.meta?.versionId, lastModified: task.meta?.lastUpdated };
}

for (const action of ACTIONS) {
  registerOperation({ definition: definition(`Task-${action}`), handler: (ctx, req, target) => transitionHandler(ctx, req, target, action) });
}
registerOperation({ definition: definition('Task-transition'), handler: (ctx, req, target) => transitionHandler(ctx, req, target) });

registerOperation({
  definition: definition('Task-add-note'),
  async handler(ctx, req, target) {
    const ps = params(req);
    const text = str(ps, 'text');
    if (!text) throw badRequest('$add-note needs a "text" parameter', ['text']);
    const { note } = await addNote(ctx, target.id as string, text);
    return { status: 201, body: note };
  },
});

registerOperation({
  definition: definition('ServiceRequest-request'),
  async handler(ctx, req) {
    const ps = params(req);
    const workflow = str(ps, 'workflow');
    if (workflow !== 'consult' && workflow !== 'referral') throw badRequest('workflow must be consult or referral', ['workflow']);
    const patient = ref(ps, 'patient');
    const department = ref(ps, 'department');
    if (!patient) throw badRequest('$request needs a patient', ['patient']);
    if (!department) throw badRequest('$request needs a department (the target Organization)', ['department']);
    const base = one(ps, 'serviceRequest')?.resource;
    if (base && base.resourceType !== 'ServiceRequest') throw badRequest('serviceRequest must be a ServiceRequest', ['serviceRequest']);
    const attachments: Attachment[] = ps.filter((p) => p.name === 'attachment').map((p) => {
      if (!p.valueAttachment) throw badRequest('attachment needs a valueAttachment', ['attachment']);
      return p.valueAttachment;
    });
    const created = await createRequest(ctx, {
      workflow,
      patient,
      performer: department,
      priority: priorityOf(str(ps, 'priority')) ?? (base as ServiceRequest | undefined)?.priority ?? 'routine',
      reason: str(ps, 'reason'),
      note: str(ps, 'note'),
      draft: one(ps, 'draft')?.valueBoolean === true,
      serviceRequest: base as ServiceRequest | undefined,
      attachments,
    });
    const out: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'serviceRequest', resource: created.serviceRequest },
        { name: 'task', resource: created.task },
      ],
    };
    return { status: 201, body: out, location: `${ctx.fhirBase}/Task/${created.task.id}/_history/${created.task.meta?.versionId}` };
  },
});
