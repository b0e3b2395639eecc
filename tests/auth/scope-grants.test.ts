// What may be granted: never more than the request asks and the client is allowed.
import { describe, expect, it } from 'vitest';
import { grantScopes, isCoveredBy, parseResourceScope } from '../../server/auth/scope-grants.ts';

describe('grantScopes', () => {
  it('keeps requested scopes the client is allowed, v1 and v2 alike', () => {
    expect(grantScopes(['patient/Observation.read', 'user/*.write', 'openid'], ['patient/*.rs', 'user/*.cruds', 'openid'], ['patient', 'user']).sort()).toEqual(
      ['openid', 'patient/Observation.read', 'user/*.write'].sort(),
    );
  });

  it('cuts a broader request down to what is allowed', () => {
    expect(grantScopes(['user/*.cruds'], ['user/Observation.rs', 'user/Patient.r'], ['user']).sort()).toEqual(['user/Observation.rs', 'user/Patient.r']);
    expect(grantScopes(['user/Observation.rs'], ['user/Observation.rs?category=vital-signs'], ['user'])).toEqual(['user/Observation.rs?category=vital-signs']);
  });

  it('grants nothing outside the allowed contexts or lists', () => {
    expect(grantScopes(['system/*.cruds', 'user/*.rs'], ['system/*.cruds', 'user/*.rs'], ['patient'])).toEqual([]);
    expect(grantScopes(['offline_access', 'launch'], ['openid'], ['user'])).toEqual([]);
    expect(grantScopes(['user/Observation.rs?code=x'], ['user/Observation.rs?category=y'], ['user'])).toEqual([]);
  });

  it('parses v2 permissions in cruds order only', () => {
    expect(parseResourceScope('patient/Observation.rs')).toMatchObject({ context: 'patient', type: 'Observation', perms: 'rs' });
    expect(parseResourceScope('patient/Observation.sr')).toBeUndefined();
    expect(parseResourceScope('patient/Observation.read?x=1')).toBeUndefined();
    expect(isCoveredBy(['user/Patient.r'], ['user/*.rs'])).toBe(true);
    expect(isCoveredBy(['user/*.rs'], ['user/Patient.rs'])).toBe(false);
  });
});
