// indexRowsFor skips the parameters whose properties a resource lacks (without evaluating their
// FHIRPath). Skipping must never lose a row: over every resource of the corpus (the FHIR R4
// examples and Synthea bundles) the rows equal those of evaluating every parameter.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { loadDefinitions } from '../../../server/fhir/definitions.ts';
import { indexRowsFor } from '../../../server/fhir/search/index-rows.ts';
import { corpusFiles, readJson } from '../../support/fhir.ts';

loadDefinitions();
const BASE = 'http://test/fhir';

function resourcesOf(r: Resource): Resource[] {
  if (r.resourceType !== 'Bundle') return [r];
  return [r, ...((r as Bundle).entry ?? []).flatMap((e) => (e.resource ? resourcesOf(e.resource) : []))];
}

describe('index rows', () => {
  it('are the same with and without skipping absent properties, for every corpus resource', () => {
    const files = [
      ...corpusFiles('fhir-examples'),
      ...corpusFiles(path.join('synthea-r4', 'fhir-data-pipes')).slice(0, 6),
    ];
    const resources = files.flatMap((f) => resourcesOf(readJson<Resource>(f)));
    expect(resources.length).toBeGreaterThan(1000);
    const types = new Set<string>();
    for (const r of resources) {
      const skipped = indexRowsFor(r, BASE);
      const full = indexRowsFor(r, BASE, { everyParam: true });
      expect(skipped, `${r.resourceType}/${r.id}`).toEqual(full);
      types.add(r.resourceType);
    }
    expect(types.size).toBeGreaterThan(25);
  });

  it('finds values held as a choice type or only as a primitive extension', () => {
    const rows = indexRowsFor({ resourceType: 'Patient', id: 'p', deceasedDateTime: '2020-01-02' } as Resource, BASE);
    expect(rows.date.map((d) => d.param)).toContain('death-date');
    expect(rows.token).toContainEqual(expect.objectContaining({ param: 'deceased', code: 'true' }));
    const obs = indexRowsFor(
      { resourceType: 'Observation', id: 'o', status: 'final', code: { text: 'x' }, valueQuantity: { value: 7, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' } } as Resource,
      BASE,
    );
    expect(obs.quantity.map((q) => q.param)).toContain('value-quantity');
    // A birthDate given only as an extension (no value) indexes nothing and breaks nothing.
    const ext = { resourceType: 'Patient', id: 'e', _birthDate: { extension: [{ url: 'http://example.org/x', valueString: 'unknown' }] } } as Resource;
    expect(indexRowsFor(ext, BASE)).toEqual(indexRowsFor(ext, BASE, { everyParam: true }));
  });
});
