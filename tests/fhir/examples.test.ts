// The official R4 examples in the shared corpus are valid R4: every one must be accepted
// (update-as-create with its own id) and read back unchanged apart from meta.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { corpusDir, corpusFiles, http, readJson } from '../support/fhir.ts';

const files = [...corpusFiles('fhir-examples'), ...corpusFiles('fhir-examples/referenced')];

describe('official R4 examples', () => {
  it('are all accepted and read back as sent', async () => {
    const failures: string[] = [];
    for (const file of files) {
      const resource = readJson(file);
      if (!resource.id || resource.resourceType === 'Bundle') continue;
      const res = await http('PUT', `${resource.resourceType}/${resource.id}`, { body: resource });
      if (resource.resourceType === 'Subscription' && !String(resource.criteria).startsWith('http')) {
        // Classic R4 query-criteria Subscriptions: this server implements topic-based ones
        // (Subscriptions Backport IG) and says so.
        expect(res.status, file).toBe(400);
        expect(res.body.issue[0].expression).toContain('Subscription.criteria');
        continue;
      }
      if (res.status !== 201 && res.status !== 200) {
        failures.push(`${path.relative(corpusDir, file)}: ${res.status} ${JSON.stringify(res.body?.issue?.slice(0, 2))}`);
        continue;
      }
      const read = await http('GET', `${resource.resourceType}/${resource.id}`);
      const { meta: _a, ...sent } = resource;
      const { meta: _b, ...got } = read.body;
      expect(got, file).toEqual(sent);
    }
    expect(failures).toEqual([]);
  });

  it('accepts the example batch Bundles', async () => {
    for (const name of ['Bundle-bundle-request-medsallergies.json', 'Bundle-bundle-request-simplesummary.json']) {
      const bundle = readJson(path.join(corpusDir, 'fhir-examples', name));
      const res = await http('POST', '', { body: bundle });
      expect(res.status, name).toBe(200);
      expect(res.body.type).toBe('batch-response');
      expect(res.body.entry).toHaveLength(bundle.entry.length);
    }
  });

  it('refuses the illustrative example transaction as a whole, naming the entry that cannot succeed', async () => {
    // It updates Patient/123a with If-Match W/"2" and calls ValueSet/$lookup: on a server that
    // does not hold that version (and has no such operation) the transaction must fail whole.
    const bundle = readJson(path.join(corpusDir, 'fhir-examples', 'Bundle-bundle-transaction.json'));
    const res = await http('POST', '', { body: bundle });
    expect([404, 412, 501]).toContain(res.status);
    expect(res.body.issue[0].diagnostics).toMatch(/^Bundle\.entry\[\d+\]/);
    expect((await http('GET', 'Patient/123')).status).toBe(404);
  });
});
