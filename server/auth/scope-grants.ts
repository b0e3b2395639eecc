// Granting SMART scopes (the authorization server side; access.ts reuses parseResourceScope):
// parsing v1 (patient/Observation.read) and v2 (patient/Observation.rs?category=x) resource
// scopes, and what may be granted: the part of each requested scope that the client (and the
// user's kind) allow, never more than both ask and allow. Pure functions.

export type ScopeContext = 'patient' | 'user' | 'system';

export interface ResourceScope {
  context: ScopeContext;
  /** A resource type, or '*'. */
  type: string;
  /** Permissions as a subset of 'cruds', in that order. */
  perms: string;
  /** Search-parameter restriction (v2), e.g. "category=vital-signs"; '' for none. */
  query: string;
  /** The request was written in v1 syntax (read / write / *). */
  v1: boolean;
}

/** Non-resource scopes a SMART server understands. */
export const CONTEXT_SCOPES = ['openid', 'fhirUser', 'profile', 'launch', 'launch/patient', 'launch/encounter', 'offline_access', 'online_access'];

const RESOURCE_SCOPE = /^(patient|user|system)\/(\*|[A-Z][A-Za-z]{0,63})\.(read|write|\*|c?r?u?d?s?)(\?[^\s]*)?$/;

export function parseResourceScope(scope: string): ResourceScope | undefined {
  const m = RESOURCE_SCOPE.exec(scope);
  if (!m || m[3] === '') return undefined;
  const [, context, type, action, query] = m;
  const v1 = action === 'read' || action === 'write' || action === '*';
  const perms = action === 'read' ? 'rs' : action === 'write' ? 'cud' : action === '*' ? 'cruds' : action;
  if (v1 && query) return undefined; // v1 has no query restrictions
  return { context: context as ScopeContext, type, perms, query: query ? query.slice(1) : '', v1 };
}

export function formatResourceScope(s: ResourceScope): string {
  let action = s.perms;
  if (s.v1 && !s.query) {
    if (s.perms === 'rs') action = 'read';
    else if (s.perms === 'cud') action = 'write';
    else if (s.perms === 'cruds') action = '*';
  }
  return `${s.context}/${s.type}.${action}${s.query ? '?' + s.query : ''}`;
}

export function splitScopes(scope: string | undefined | null): string[] {
  return [...new Set((scope ?? '').split(/\s+/).filter(Boolean))];
}

function intersectPerms(a: string, b: string): string {
  return [...'cruds'].filter((p) => a.includes(p) && b.includes(p)).join('');
}

/** The part of `requested` that `allowed` covers, or undefined when nothing is left. */
export function intersectScope(requested: ResourceScope, allowed: ResourceScope): ResourceScope | undefined {
  if (requested.context !== allowed.context) return undefined;
  let type: string;
  if (requested.type === '*') type = allowed.type;
  else if (allowed.type === '*' || allowed.type === requested.type) type = requested.type;
  else return undefined;
  const perms = intersectPerms(requested.perms, allowed.perms);
  if (!perms) return undefined;
  let query: string;
  if (!allowed.query) query = requested.query;
  else if (!requested.query || requested.query === allowed.query) query = allowed.query;
  else return undefined;
  return { context: requested.context, type, perms, query, v1: requested.v1 && !query };
}

/**
 * The scopes to grant: every requested context scope the allowed list names, and for each
 * requested resource scope its intersections with the allowed resource scopes. Never more than
 * both ask and allow. `contexts` limits which scope contexts may be granted at all (a patient
 * user gets patient/ scopes only; client_credentials gets system/ only).
 */
export function grantScopes(requested: string[], allowed: string[], contexts: ScopeContext[]): string[] {
  const allowedResource = allowed.map(parseResourceScope).filter((s): s is ResourceScope => !!s);
  const allowedPlain = new Set(allowed.filter((s) => !parseResourceScope(s)));
  const out = new Set<string>();
  for (const scope of requested) {
    const parsed = parseResourceScope(scope);
    if (!parsed) {
      if (allowedPlain.has(scope) && CONTEXT_SCOPES.includes(scope)) out.add(scope);
      continue;
    }
    if (!contexts.includes(parsed.context)) continue;
    for (const a of allowedResource) {
      const i = intersectScope(parsed, a);
      if (i) out.add(formatResourceScope(i));
    }
  }
  // Drop what another granted scope already covers (patient/Observation.rs beside patient/*.rs).
  const all = [...out];
  return all.filter((s) => !all.some((t) => t !== s && parseResourceScope(s) && isCoveredBy([s], [t]) && !isCoveredBy([t], [s])));
}

/** True when every scope in `subset` is covered by some scope of `superset` (refresh down-scoping). */
export function isCoveredBy(subset: string[], superset: string[]): boolean {
  return subset.every((s) => {
    if (superset.includes(s)) return true;
    const p = parseResourceScope(s);
    if (!p) return false;
    return superset.some((t) => {
      const q = parseResourceScope(t);
      if (!q) return false;
      const i = intersectScope(p, q);
      return !!i && i.type === p.type && i.perms === p.perms && i.query === p.query;
    });
  });
}
