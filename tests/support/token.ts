// Tokens for tests and benchmarks: the bootstrap confidential client (BOOTSTRAP_CLIENT_ID /
// BOOTSTRAP_CLIENT_SECRET) gets a system/*.cruds token with one standard token request.
import { randomBytes } from 'node:crypto';

export const TEST_CLIENT_ID = 'wardlink-tests';
export const TEST_CLIENT_SECRET = process.env.TEST_CLIENT_SECRET ?? randomBytes(24).toString('hex');

export async function systemToken(baseUrl: string, clientId: string, secret: string, scope = 'system/*.cruds'): Promise<string> {
  const res = await fetch(`${baseUrl}/oauth2/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope }).toString(),
  });
  const body = (await res.json()) as { access_token?: string; error?: string };
  if (!res.ok || !body.access_token) throw new Error(`token request failed: ${res.status} ${JSON.stringify(body)}`);
  return body.access_token;
}
