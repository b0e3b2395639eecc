// The CapabilityStatement, generated from what is registered: resource types from the loaded
// definitions, interactions from the router's lists, search parameters from the loaded
// SearchParameters, operations from the operation registry. Never hand-written.
import { getSearchParameters } from '@medplum/core';
import type { CapabilityStatement, CapabilityStatementRestResource } from '@medplum/fhirtypes';
import { loadDefinitions } from './definitions.ts';
import { allOperations, operationApplies } from './operations/registry.ts';
import { SYSTEM_INTERACTIONS, TYPE_INTERACTIONS } from './router.ts';

/** Extra sections other parts of the server add (SMART security, subscription topics...). */
export type CapabilityContributor = (cs: CapabilityStatement) => void;
const contributors: CapabilityContributor[] = [];

export function contributeToCapabilities(fn: CapabilityContributor): void {
  contributors.push(fn);
  cached = undefined;
}

let cached: { base: string; json: string } | undefined;

export function capabilityStatementJson(fhirBase: string, version: string): string {
  if (cached?.base === fhirBase) return cached.json;
  const cs = buildCapabilityStatement(fhirBase, version);
  cached = { base: fhirBase, json: JSON.stringify(cs) };
  return cached.json;
}

export function buildCapabilityStatement(fhirBase: string, version: string): CapabilityStatement {
  const operations = allOperations();
  const resources: CapabilityStatementRestResource[] = loadDefinitions().map((type) => {
    const params = getSearchParameters(type) ?? {};
    return {
      type: type as CapabilityStatementRestResource['type'],
      profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
      interaction: TYPE_INTERACTIONS.map((code) => ({ code })),
      versioning: 'versioned-update',
      readHistory: true,
      updateCreate: true,
      conditionalCreate: true,
      conditionalRead: 'full-support',
      conditionalUpdate: true,
      conditionalDelete: 'single',
      referencePolicy: ['literal', 'logical', 'local'],
      searchParam: Object.entries(params)
        .filter(([, sp]) => sp.type !== undefined)
        .map(([code, sp]) => ({ name: code, definition: sp.url, type: sp.type })),
      operation: operations
        .filter((op) => operationApplies(op.definition, { type }) || operationApplies(op.definition, { type, id: 'x' }))
        .map((op) => ({ name: op.definition.code, definition: op.definition.url as string })),
    };
  });
  const cs: CapabilityStatement = {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    publisher: 'Wardlink',
    kind: 'instance',
    software: { name: 'Wardlink', version },
    implementation: { description: 'Wardlink FHIR R4 server', url: fhirBase },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    patchFormat: ['application/json-patch+json', 'application/fhir+json'],
    rest: [
      {
        mode: 'server',
        resource: resources,
        interaction: SYSTEM_INTERACTIONS.map((code) => ({ code })),
        // Parameters of every type that have no SearchParameter per type (search/compile.ts).
        searchParam: [
          { name: '_text', type: 'string', documentation: 'Full-text search of the narrative (web-search syntax)' },
          { name: '_content', type: 'string', documentation: 'Full-text search of every string of the resource (web-search syntax)' },
          { name: '_list', type: 'token', documentation: 'Items of the List with this id' },
          { name: '_filter', type: 'special', documentation: 'R4 _filter: eq ne co sw ew gt lt ge le sa eb ap pr, and / or / not' },
        ],
        operation: operations
          .filter((op) => operationApplies(op.definition, {}))
          .map((op) => ({ name: op.definition.code, definition: op.definition.url as string })),
      },
    ],
  };
  for (const fn of contributors) fn(cs);
  return cs;
}
