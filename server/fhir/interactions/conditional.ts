// Matching for conditional create / update / delete / patch. The match and the write that
// follows run in one SQL transaction holding an advisory lock on (type, criteria), so two
// concurrent conditional creates with the same criteria cannot both create: the database
// serialises them, and the second one sees the first one's row.
import type { Repository } from '../repository.ts';
import { badRequest } from '../outcome.ts';
import { findMatches } from '../search/search.ts';
import type { Match } from '../search/search.ts';
import type { FhirRequest } from '../request.ts';

/** "identifier=a|b&active=true" -> ordered pairs; refuses an empty criterion. */
export function parseCriteria(criteria: string): [string, string][] {
  const q = criteria.startsWith('?') ? criteria.slice(1) : criteria;
  const pairs = [...new URLSearchParams(q).entries()];
  if (pairs.length === 0) throw badRequest('A conditional interaction needs search criteria');
  return pairs;
}

/** The criteria of a conditional update / delete / patch: the request's own query (PUT Type?...). */
export function criteriaOf(req: FhirRequest): [string, string][] {
  if (req.query.length === 0) throw badRequest('A conditional interaction needs search criteria');
  return req.query;
}

/** Criteria in a canonical order, so the same search always takes the same lock. */
export function lockKey(type: string, params: [string, string][]): string {
  return type + '?' + [...params].sort((a, b) => (a[0] + '=' + a[1]).localeCompare(b[0] + '=' + b[1])).map(([k, v]) => `${k}=${v}`).join('&');
}

/**
 * Locks the criteria for the rest of the current transaction and returns up to two matches
 * (enough to tell none / one / many). Must be called inside repo.transaction.
 */
export async function lockAndMatch(repo: Repository, type: string, params: [string, string][]): Promise<Match[]> {
  await repo.db.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [lockKey(type, params)]);
  return findMatches(repo.db, type, params, 2);
}
