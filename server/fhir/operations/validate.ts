// $validate (R4 resource-operation-validate): at type level on a posted resource (or a
// Parameters wrapping it), at instance level on the stored resource or a posted replacement.
// Always answers 200 with an OperationOutcome; the issues say whether the resource is valid.
import type { OperationDefinition, OperationOutcome, Parameters, Resource } from '@medplum/fhirtypes';
import { assertVisible } from '../authorize.ts';
import { badRequest } from '../outcome.ts';
import type { FhirContext, FhirRequest, FhirResponse } from '../request.ts';
import { assertResourceShape, validationIssues } from '../validate.ts';
import { registerOperation, type OperationTarget } from './registry.ts';

const definition: OperationDefinition = {
  resourceType: 'OperationDefinition',
  id: 'Resource-validate',
  url: 'http://hl7.org/fhir/OperationDefinition/Resource-validate',
  name: 'Validate',
  status: 'active',
  kind: 'operation',
  code: 'validate',
  resource: ['Resource' as never],
  system: false,
  type: true,
  instance: true,
  parameter: [
    { name: 'resource', use: 'in', min: 0, max: '1', type: 'Resource' },
    { name: 'mode', use: 'in', min: 0, max: '1', type: 'code' },
    { name: 'profile', use: 'in', min: 0, max: '1', type: 'uri' },
    { name: 'return', use: 'out', min: 1, max: '1', type: 'OperationOutcome' },
  ],
};

async function handler(ctx: FhirContext, req: FhirRequest, target: OperationTarget): Promise<FhirResponse> {
  let resource: Resource | undefined;
  const body = req.body as Resource | undefined;
  if (body?.resourceType === 'Parameters') {
    resource = (body as Parameters).parameter?.find((p) => p.name === 'resource')?.resource;
  } else if (body) {
    resource = body;
  }
  if (!resource && target.id) {
    resource = await ctx.repo.readResource(target.type as string, target.id);
    await assertVisible(ctx, resource);
  }
  if (!resource) throw badRequest('$validate needs a resource in the body (or a Parameters with a "resource" part)');
  assertResourceShape(resource, target.type);
  const issues = validationIssues(resource);
  const outcome: OperationOutcome = {
    resourceType: 'OperationOutcome',
    issue: issues.length ? issues : [{ severity: 'information', code: 'informational', diagnostics: 'Validation successful: no issues' }],
  };
  return { status: 200, body: outcome };
}

registerOperation({ definition, handler });
