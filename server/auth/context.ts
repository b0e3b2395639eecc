// Who is calling: what a verified access token says, in one shape that every door (FHIR REST,
// operations, websocket, HL7 HTTP endpoint) passes to the access rules (server/auth/access.ts).

/** Staff and patient roles; what each may see and do is decided in access.ts only. */
export const ROLES = [
  'admin',
  'clinician',
  'nurse',
  'department-head',
  'dispatcher',
  'ambulance-crew',
  'receptionist',
  'patient',
] as const;
export type Role = (typeof ROLES)[number];

export interface AuthContext {
  /** Token subject: the user's id, or the client id for backend services. */
  subject: string;
  clientId: string;
  /** The scopes granted in the token (SMART v1 and/or v2 syntax). */
  scopes: string[];
  /** The user's FHIR resource (Practitioner/123, Patient/456, RelatedPerson/789). */
  fhirUser?: string;
  role?: Role;
  /** The organisation the user belongs to (Organization/abc). */
  organization?: string;
  /** Launch context: the patient id in context (patient/ scopes are limited to its compartment). */
  patient?: string;
  encounter?: string;
  /** Token id, for audit and revocation. */
  jti: string;
}
