// Discovery: /.well-known/smart-configuration (SMART App Launch 2.2 §Conformance), the OpenID
// provider metadata, and the SMART oauth-uris extension on the CapabilityStatement.
import type { CapabilityStatement } from '@medplum/fhirtypes';
import { ASSERTION_ALGS } from './client-auth.ts';

export const CAPABILITIES = [
  'launch-ehr',
  'launch-standalone',
  'authorize-post',
  'client-public',
  'client-confidential-symmetric',
  'client-confidential-asymmetric',
  'sso-openid-connect',
  'context-passthrough-banner',
  'context-ehr-patient',
  'context-ehr-encounter',
  'context-standalone-patient',
  'permission-offline',
  'permission-online',
  'permission-patient',
  'permission-user',
  'permission-v1',
  'permission-v2',
];

export const SCOPES_SUPPORTED = [
  'openid',
  'fhirUser',
  'launch',
  'launch/patient',
  'launch/encounter',
  'offline_access',
  'online_access',
  'patient/*.cruds',
  'patient/*.rs',
  'patient/*.read',
  'patient/*.write',
  'user/*.cruds',
  'user/*.rs',
  'user/*.read',
  'user/*.write',
  'system/*.cruds',
  'system/*.rs',
  'system/*.read',
  'system/*.write',
];

export function endpoints(baseUrl: string) {
  return {
    authorize: `${baseUrl}/oauth2/authorize`,
    token: `${baseUrl}/oauth2/token`,
    introspect: `${baseUrl}/oauth2/introspect`,
    revoke: `${baseUrl}/oauth2/revoke`,
    jwks: `${baseUrl}/oauth2/jwks`,
    account: `${baseUrl}/oauth2/account`,
    logout: `${baseUrl}/oauth2/logout`,
  };
}

export function smartConfiguration(baseUrl: string, issuer: string): Record<string, unknown> {
  const e = endpoints(baseUrl);
  return {
    issuer,
    jwks_uri: e.jwks,
    authorization_endpoint: e.authorize,
    token_endpoint: e.token,
    introspection_endpoint: e.introspect,
    revocation_endpoint: e.revoke,
    grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGS,
    scopes_supported: SCOPES_SUPPORTED,
    response_types_supported: ['code'],
    capabilities: CAPABILITIES,
    code_challenge_methods_supported: ['S256'],
  };
}

export function openidConfiguration(baseUrl: string, issuer: string): Record<string, unknown> {
  const e = endpoints(baseUrl);
  return {
    issuer,
    authorization_endpoint: e.authorize,
    token_endpoint: e.token,
    jwks_uri: e.jwks,
    introspection_endpoint: e.introspect,
    revocation_endpoint: e.revoke,
    end_session_endpoint: e.logout,
    response_types_supported: ['code'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256', 'ES256', 'ES384'],
    grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'private_key_jwt'],
    scopes_supported: SCOPES_SUPPORTED,
    claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'fhirUser'],
    code_challenge_methods_supported: ['S256'],
  };
}

/** Adds the SMART security section to the CapabilityStatement (server/fhir/capability.ts). */
export function addSmartSecurity(cs: CapabilityStatement): void {
  const fhirBase = cs.implementation?.url ?? '';
  const baseUrl = fhirBase.replace(/\/fhir\/?$/, '');
  const e = endpoints(baseUrl);
  for (const rest of cs.rest ?? []) {
    rest.security = {
      cors: true,
      service: [
        {
          coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }],
          text: 'OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)',
        },
      ],
      extension: [
        {
          url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
          extension: [
            { url: 'authorize', valueUri: e.authorize },
            { url: 'token', valueUri: e.token },
            { url: 'introspect', valueUri: e.introspect },
            { url: 'revoke', valueUri: e.revoke },
          ],
        },
      ],
    };
  }
}
