// Browser sign-in sessions: a random cookie (httpOnly, SameSite=Lax, Secure on https) whose
// SHA-256 is the row id. A session ends on sign-out or after SESSION_IDLE_MINUTES without use.
import type { Context } from 'koa';
import type { Queryable } from '../db/pool.ts';
import { randomToken, sha256 } from './passwords.ts';
import { getUserById, type UserRecord } from './users.ts';

export const SESSION_COOKIE = 'wl_session';

export interface Session {
  id: string;
  user: UserRecord;
}

export function cookieOptions(ctx: Context, maxAgeMs?: number) {
  return { httpOnly: true, sameSite: 'lax' as const, secure: ctx.secure, path: '/', overwrite: true, maxAge: maxAgeMs, signed: false };
}

export async function startSession(db: Queryable, ctx: Context, userId: string): Promise<string> {
  const token = randomToken();
  const id = sha256(token);
  await db.query('INSERT INTO auth_session (id, user_id) VALUES ($1, $2)', [id, userId]);
  ctx.cookies.set(SESSION_COOKIE, token, cookieOptions(ctx));
  return id;
}

/** The session of this request, if its cookie names one that is live; touching it keeps it alive. */
export async function currentSession(db: Queryable, ctx: Context, idleMinutes: number): Promise<Session | undefined> {
  const token = ctx.cookies.get(SESSION_COOKIE);
  if (!token || token.length > 100) return undefined;
  return sessionById(db, sha256(token), idleMinutes);
}

export async function sessionById(db: Queryable, id: string, idleMinutes: number): Promise<Session | undefined> {
  const { rows } = await db.query<{ user_id: string }>(
    `UPDATE auth_session SET last_seen = now()
     WHERE id = $1 AND ended_at IS NULL AND last_seen > now() - make_interval(mins => $2) RETURNING user_id`,
    [id, idleMinutes],
  );
  if (!rows[0]) return undefined;
  const user = await getUserById(db, rows[0].user_id);
  return user ? { id, user } : undefined;
}

export async function endSession(db: Queryable, ctx: Context): Promise<void> {
  const token = ctx.cookies.get(SESSION_COOKIE);
  if (token && token.length <= 100) await db.query('UPDATE auth_session SET ended_at = now() WHERE id = $1', [sha256(token)]);
  ctx.cookies.set(SESSION_COOKIE, '', { ...cookieOptions(ctx), maxAge: 0 });
}
