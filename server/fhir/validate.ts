// Validation on every write: R4 base StructureDefinitions via @medplum/core, plus the rules the
// validator leaves to the server (id syntax, resourceType). Refusals carry issue.expression.
import { OperationOutcomeError, validateResource, type TypedValueWithPath } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { isResourceType } from './definitions.ts';
import { badRequest, unprocessable } from './outcome.ts';
import { profileIssues } from './profiles.ts';
import { requiredBindingIssues } from './terminology.ts';

export const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;

export function isValidId(id: string): boolean {
  return ID_RE.test(id);
}

/** Checks the shape a body must have before anything else: an object naming a known type. */
export function assertResourceShape(body: unknown, expectedType?: string): asserts body is Resource {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw badRequest('The request body must be a FHIR resource (a JSON object)');
  }
  const type = (body as { resourceType?: unknown }).resourceType;
  if (typeof type !== 'string' || !type) {
    throw badRequest('The resource has no resourceType', ['resourceType']);
  }
  if (!isResourceType(type)) {
    throw badRequest(`Unknown resource type "${type}"`, ['resourceType']);
  }
  if (expectedType && type !== expectedType) {
    throw badRequest(`The resource type "${type}" does not match the URL's "${expectedType}"`, ['resourceType']);
  }
}

/** Returns the validation issues of a resource (empty when valid). */
export function validationIssues(resource: Resource): OperationOutcomeIssue[] {
  const issues: OperationOutcomeIssue[] = [];
  if (resource.id !== undefined && (typeof resource.id !== 'string' || !isValidId(resource.id))) {
    issues.push({
      severity: 'error',
      code: 'value',
      diagnostics: `Invalid id "${String(resource.id)}": 1-64 characters of A-Z, a-z, 0-9, '-' and '.'`,
      expression: [`${resource.resourceType}.id`],
    });
  }
  const tokens: Record<string, TypedValueWithPath[]> = {};
  try {
    issues.push(...validateResource(resource, { collect: { tokens } }).filter((i) => i.severity === 'error' || i.severity === 'fatal'));
    issues.push(...requiredBindingIssues(tokens));
    // Profiles of our IG that the resource claims are enforced too (others are not known here).
    for (const url of resource.meta?.profile ?? []) issues.push(...profileIssues(resource, url));
  } catch (e) {
    if (e instanceof OperationOutcomeError) {
      for (const issue of e.outcome.issue ?? []) {
        issues.push({ ...issue, diagnostics: issue.diagnostics ?? issue.details?.text });
      }
    } else {
      throw e;
    }
  }
  return issues;
}

/** Throws 422 with every issue when the resource is not valid R4. */
export function assertValid(resource: Resource): void {
  const issues = validationIssues(resource);
  if (issues.some((i) => i.severity === 'error' || i.severity === 'fatal')) throw unprocessable(issues);
}
