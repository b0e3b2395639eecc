import { loadDefinitions } from '../server/fhir/definitions.ts';
import { getSearchParameters } from '@medplum/core';
const types = loadDefinitions();
const urls = new Map<string,string>();
for (const t of types) for (const [c, sp] of Object.entries(getSearchParameters(t) ?? {})) {
  if (sp.type === 'composite') {
    const comps = sp.component!.map(cc => { const code = cc.definition!.split('/').pop()!.replace(t + '-', ''); const d = Object.values(getSearchParameters(t)!).find(x => x.url === cc.definition); return (d?.type ?? '?') + ':' + code + '(' + cc.expression + ')'; });
    console.log(t, c, sp.expression, comps.join(' , '));
  }
  if (sp.type === 'special') console.log('SPECIAL', t, c, sp.expression);
  if (!sp.url?.startsWith('http://hl7.org/fhir/SearchParameter')) urls.set(c, sp.url ?? '');
}
console.log([...urls]);
