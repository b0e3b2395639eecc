// The public client of the bundled web UI (/app): trusted (no consent page), PKCE, the UI's
// callback at this server's address.
import { registerClient } from './clients.ts';
import type { AuthServices } from './service.ts';

export const UI_CLIENT_ID = 'wardlink-ui';
export const UI_SCOPES =
  'openid fhirUser launch launch/patient launch/encounter offline_access online_access patient/*.cruds user/*.cruds patient/*.read patient/*.write user/*.read user/*.write';

export async function registerUiClient(s: Pick<AuthServices, 'db'>, redirectUris: string[]): Promise<void> {
  const { rows } = await s.db.query<{ redirect_uris: string[] }>('SELECT redirect_uris FROM auth_client WHERE client_id = $1', [UI_CLIENT_ID]);
  const uris = [...new Set([...(rows[0]?.redirect_uris ?? []), ...redirectUris])];
  await registerClient(s.db, { clientId: UI_CLIENT_ID, name: 'Wardlink', kind: 'public', redirectUris: uris, scopes: UI_SCOPES, trusted: true });
}

