// Credentials of the people who sign in. The person is a FHIR resource (Practitioner, Patient
// or RelatedPerson); this record only links a username, a scrypt password hash, an optional
// TOTP secret, a role and an organisation to it. Nothing here is ever written into FHIR content.
import { randomUUID } from 'node:crypto';
import type { AuthConfig } from '../config.ts';
import type { Queryable } from '../db/pool.ts';
import { ROLES, type Role } from './context.ts';
import { hashSecret, passwordProblem, verifySecret } from './passwords.ts';
import { matchTotp } from './totp.ts';

export interface UserRecord {
  id: string;
  username: string;
  fhirUser: string;
  role: Role;
  organization?: string;
  hasTotp: boolean;
  disabled: boolean;
}

interface UserRow {
  id: string;
  username: string;
  password_hash: string;
  fhir_user: string;
  role: Role;
  organization: string | null;
  totp_secret: string | null;
  totp_last_step: string | null;
  failed_attempts: number;
  locked: boolean;
  disabled: boolean;
}

function fromRow(r: UserRow): UserRecord {
  return {
    id: r.id,
    username: r.username,
    fhirUser: r.fhir_user,
    role: r.role,
    organization: r.organization ?? undefined,
    hasTotp: !!r.totp_secret,
    disabled: r.disabled,
  };
}

const SELECT = `SELECT id, username, password_hash, fhir_user, role, organization, totp_secret, totp_last_step::text,
  failed_attempts, (locked_until IS NOT NULL AND locked_until > now()) AS locked, disabled FROM auth_user`;

export class UserError extends Error {}

export function checkRole(role: string): Role {
  if (!(ROLES as readonly string[]).includes(role)) throw new UserError(`role must be one of ${ROLES.join(', ')}`);
  return role as Role;
}

export interface NewUser {
  username: string;
  password: string;
  fhirUser: string;
  role: Role;
  organization?: string;
  totpSecret?: string;
}

export async function createUser(db: Queryable, u: NewUser): Promise<UserRecord> {
  const username = u.username.trim().toLowerCase();
  if (!/^[a-z0-9][a-z0-9._@-]{1,63}$/.test(username)) throw new UserError('username: 2-64 letters, digits or . _ @ -');
  const problem = passwordProblem(u.password, username);
  if (problem) throw new UserError(problem);
  if (!/^(Practitioner|Patient|RelatedPerson)\/[A-Za-z0-9\-.]{1,64}$/.test(u.fhirUser)) {
    throw new UserError('the user must be a Practitioner, Patient or RelatedPerson reference');
  }
  checkRole(u.role);
  if ((u.role === 'patient') !== !u.fhirUser.startsWith('Practitioner/')) {
    throw new UserError('staff users are Practitioners; patient-role users are Patients or RelatedPersons');
  }
  const existing = await db.query('SELECT 1 FROM auth_user WHERE username = $1', [username]);
  if (existing.rowCount) throw new UserError(`username "${username}" is taken`);
  const { rows } = await db.query<UserRow>(
    `INSERT INTO auth_user (id, username, password_hash, fhir_user, role, organization, totp_secret)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     RETURNING id, username, password_hash, fhir_user, role, organization, totp_secret, null AS totp_last_step, 0 AS failed_attempts, false AS locked, disabled`,
    [randomUUID(), username, await hashSecret(u.password), u.fhirUser, u.role, u.organization ?? null, u.totpSecret ?? null],
  );
  return fromRow(rows[0]);
}

export async function findUser(db: Queryable, usernameOrId: string): Promise<UserRecord | undefined> {
  const { rows } = await db.query<UserRow>(`${SELECT} WHERE username = $1 OR id = $1`, [usernameOrId.trim().toLowerCase()]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

export async function getUserById(db: Queryable, id: string): Promise<UserRecord | undefined> {
  const { rows } = await db.query<UserRow>(`${SELECT} WHERE id = $1`, [id]);
  return rows[0] && !rows[0].disabled ? fromRow(rows[0]) : undefined;
}

export type SignInResult =
  | { ok: true; user: UserRecord }
  | { ok: false; reason: 'invalid' | 'locked' | 'totp-required' | 'totp-setup-required' | 'disabled'; user?: UserRecord };

/**
 * Checks a username, password and (when the user has one, or is an admin) TOTP code.
 * Every failure counts towards the lockout; a locked account is refused even with the right
 * password; success resets the count.
 */
export async function signIn(db: Queryable, config: AuthConfig, username: string, password: string, totp: string | undefined): Promise<SignInResult> {
  const { rows } = await db.query<UserRow>(`${SELECT} WHERE username = $1`, [username.trim().toLowerCase()]);
  const row = rows[0];
  const passwordOk = await verifySecret(password, row?.password_hash);
  if (!row) return { ok: false, reason: 'invalid' };
  const user = fromRow(row);
  if (row.disabled) return { ok: false, reason: 'disabled', user };
  if (row.locked) return { ok: false, reason: 'locked', user };
  let totpOk = true;
  let step: number | undefined;
  if (passwordOk && row.totp_secret) {
    step = totp ? matchTotp(row.totp_secret, totp) : undefined;
    totpOk = step !== undefined && (row.totp_last_step === null || step > Number(row.totp_last_step));
  }
  if (!passwordOk || !totpOk) {
    const { rows: after } = await db.query<{ locked: boolean }>(
      `UPDATE auth_user SET failed_attempts = failed_attempts + 1,
         locked_until = CASE WHEN failed_attempts + 1 >= $2 THEN now() + make_interval(mins => $3) ELSE locked_until END
       WHERE id = $1 RETURNING (locked_until IS NOT NULL AND locked_until > now()) AS locked`,
      [row.id, config.maxFailedSignIns, config.lockoutMinutes],
    );
    if (after[0]?.locked) return { ok: false, reason: 'locked', user };
    return { ok: false, reason: passwordOk && !totp ? 'totp-required' : 'invalid', user };
  }
  if (row.role === 'admin' && !row.totp_secret) return { ok: false, reason: 'totp-setup-required', user };
  await db.query(`UPDATE auth_user SET failed_attempts = 0, locked_until = NULL, totp_last_step = COALESCE($2, totp_last_step) WHERE id = $1`, [
    row.id,
    step ?? null,
  ]);
  return { ok: true, user };
}

/** Sets a new password after checking the current one (the account page). */
export async function changePassword(db: Queryable, userId: string, current: string, next: string): Promise<string | undefined> {
  const { rows } = await db.query<{ password_hash: string; username: string }>('SELECT password_hash, username FROM auth_user WHERE id = $1', [userId]);
  if (!rows[0] || !(await verifySecret(current, rows[0].password_hash))) return 'The current password is not right.';
  const problem = passwordProblem(next, rows[0].username);
  if (problem) return problem;
  await db.query('UPDATE auth_user SET password_hash = $2, password_changed_at = now() WHERE id = $1', [userId, await hashSecret(next)]);
  return undefined;
}

/** Admin reset: new password, lockout cleared. */
export async function resetPassword(db: Queryable, username: string, password: string): Promise<boolean> {
  const problem = passwordProblem(password, username);
  if (problem) throw new UserError(problem);
  const res = await db.query(
    `UPDATE auth_user SET password_hash = $2, password_changed_at = now(), failed_attempts = 0, locked_until = NULL WHERE username = $1`,
    [username.trim().toLowerCase(), await hashSecret(password)],
  );
  return (res.rowCount ?? 0) > 0;
}

/** Turns TOTP on (with a new secret) or off (null) for a user. Admins cannot turn it off. */
export async function setTotp(db: Queryable, userId: string, secret: string | null): Promise<void> {
  const res = await db.query(`UPDATE auth_user SET totp_secret = $2, totp_last_step = NULL WHERE id = $1 AND ($2::text IS NOT NULL OR role <> 'admin')`, [userId, secret]);
  if (!res.rowCount) throw new UserError('two-factor sign-in is required for administrators and cannot be turned off');
}
