import { freshDb } from '../tests/fhir/search/helpers.ts';
const t0 = Date.now();
const t = await freshDb();
console.log('migrate ms', Date.now() - t0);
await t.drop();
