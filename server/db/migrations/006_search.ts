// Search: indexes for the pair rows (token + date, token + reference; search/index-rows.ts
// INDEX_PAIRS), full-text search (_text, _content), and planner statistics for them.
import type { Knex } from 'knex';
import { loadDefinitions } from '../../fhir/definitions.ts';

export const name = '006_search';

export async function up(knex: Knex): Promise<void> {
  // Pair rows for what is already stored, derived from the token, date and reference rows
  // exactly as index-rows.ts pairRows() derives them (from a frozen copy of INDEX_PAIRS as it was
  // when this migration was written; later changes to the list need `npm run reindex`). Before
  // their indexes exist, so those are built once rather than row by row.
  const pairs: [string, string, string, 'date' | 'reference'][] = [
    ['Observation', 'code', 'date', 'date'], ['Observation', 'category', 'date', 'date'], ['Observation', 'code', 'subject', 'reference'],
    ['Condition', 'code', 'onset-date', 'date'], ['Condition', 'code', 'subject', 'reference'],
    ['Procedure', 'code', 'date', 'date'], ['Procedure', 'code', 'subject', 'reference'],
    ['DiagnosticReport', 'code', 'date', 'date'], ['DiagnosticReport', 'category', 'date', 'date'], ['DiagnosticReport', 'code', 'subject', 'reference'],
    ['MedicationRequest', 'code', 'authoredon', 'date'], ['MedicationRequest', 'code', 'subject', 'reference'],
    ['Encounter', 'class', 'date', 'date'], ['Encounter', 'type', 'date', 'date'],
    ['Immunization', 'vaccine-code', 'date', 'date'],
    ['ServiceRequest', 'code', 'authored', 'date'],
  ];
  for (const [type, token, other, kind] of pairs) {
    const [cols, vals, join] =
      kind === 'date'
        ? ['dlow2, dhigh2', 'o.low, o.high', 'idx_date o ON o.resource_type = t.resource_type AND o.resource_id = t.resource_id AND o.param = ?']
        : ['system2, code2', 'o.target_type, o.target_id', 'idx_reference o ON o.resource_type = t.resource_type AND o.resource_id = t.resource_id AND o.param = ? AND o.target_id IS NOT NULL'];
    await knex.raw(
      `INSERT INTO idx_composite (resource_type, resource_id, param, system1, code1, ${cols})
       SELECT DISTINCT t.resource_type, t.resource_id, ?, t.system, t.code, ${vals}
       FROM idx_token t JOIN ${join}
       WHERE t.resource_type = ? AND t.param = ? AND t.display IS NULL`,
      [`${token}+${other}`, other, type, token],
    );
  }
  await knex.raw(`
    -- Token + date pair rows (param "code+date" etc.):
    -- one range scan over (type, pair, code, date bound) finds "Observation?code=X&date=ge..."
    -- and counts it index-only. The date bound that is scanned depends on the prefix (ge / gt /
    -- ap test the high end, le / lt / eq / sa / eb the low end, as in idx_date), hence two.
    -- Partial: only rows with a date (the pairs, and the few real composites with a date).
    CREATE INDEX idx_composite_date_high ON idx_composite (resource_type, param, code1, dhigh2, dlow2, system1, resource_id) WHERE dhigh2 IS NOT NULL;
    CREATE INDEX idx_composite_date_low ON idx_composite (resource_type, param, code1, dlow2, dhigh2, system1, resource_id) WHERE dlow2 IS NOT NULL;
    -- Token + reference pair rows (param "code+subject"): "has an Observation with code X" for
    -- one patient is one probe, and patients in id order are one ordered scan (a merge join).
    CREATE INDEX idx_composite_ref ON idx_composite (resource_type, param, code1, system2, code2, system1, resource_id) WHERE code2 IS NOT NULL;
    -- As for the other index tables (001): without multi-column statistics the planner
    -- multiplies the selectivities of type, pair and code and expects a hundred rows where a
    -- common code has ten thousand (and sorts where it should hash).
    CREATE STATISTICS idx_composite_stats (mcv, dependencies) ON resource_type, param, code1, system1 FROM idx_composite;
  `);
  // _text and _content: GIN indexes over the narrative's words and over every string of the
  // resource. Expression indexes on the resource tables (not index rows): they follow each write
  // with no work in the application, and the expressions must stay exactly those of
  // search/compile.ts fullTextSql() for the planner to use them.
  // One statement list (one round trip): 292 indexes on mostly empty tables.
  await knex.raw(
    loadDefinitions()
      .map(
        (type) => `
      CREATE INDEX "${type}_text" ON "${type}" USING gin (to_tsvector('simple'::regconfig, content #>> '{text,div}'));
      CREATE INDEX "${type}_content" ON "${type}" USING gin (jsonb_to_tsvector('simple'::regconfig, content, '["string"]'));`,
      )
      .join(''),
  );
}

export async function down(): Promise<void> {
  throw new Error('006_search cannot be rolled back');
}
