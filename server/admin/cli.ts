// `npm run admin -- <command> ...`: user and client administration from a shell. Uses
// DATABASE_URL, or the embedded database under DATA_DIR (then the server must be stopped: the
// embedded database has one process). Passwords and secrets it generates are printed once.
//
//   create-user --username U --role R [--name "Given Family"] [--fhir-user Practitioner/ID]
//               [--organization Organization/ID] [--password P] [--totp]
//   reset-password USERNAME [--password P]
//   enable-totp USERNAME | disable-totp USERNAME
//   register-client --client-id ID --kind public|confidential --scope "..." [--name N]
//               [--redirect-uri URI]... [--launch-uri URI] [--secret S | --generate-secret]
//               [--jwks FILE | --jwks-uri URL] [--grant-types a,b] [--trusted]
//   list-clients | disable-client ID | rotate-signing-key
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Patient, Practitioner } from '@medplum/fhirtypes';
import type { JWK } from 'jose';
import { describeClient, disableClient, listClients, registerClient, RegistrationError, type GrantType } from '../auth/clients.ts';
import { rotateSigningKey } from '../auth/keys.ts';
import { generatePassword, randomToken } from '../auth/passwords.ts';
import { generateTotpSecret, otpauthUri } from '../auth/totp.ts';
import { checkRole, createUser, findUser, resetPassword, setTotp, UserError } from '../auth/users.ts';
import { loadConfig } from '../config.ts';
import { startEmbeddedPostgres } from '../db/embedded.ts';
import { migrate } from '../db/migrate.ts';
import { createDb, type Db } from '../db/pool.ts';
import { loadDefinitions } from '../fhir/definitions.ts';
import { Repository } from '../fhir/repository.ts';

const USAGE = `Usage: npm run admin -- <command> [options]
  create-user --username U --role R [--name "Given Family"] [--fhir-user Practitioner/ID]
              [--organization Organization/ID] [--password P] [--totp]
  reset-password USERNAME [--password P]
  enable-totp USERNAME            (prints the new key)
  disable-totp USERNAME           (not for administrators)
  register-client --client-id ID --kind public|confidential --scope "..." [--name N]
              [--redirect-uri URI]... [--launch-uri URI] [--secret S | --generate-secret]
              [--jwks FILE | --jwks-uri URL] [--grant-types authorization_code,refresh_token,client_credentials] [--trusted]
  list-clients
  disable-client ID
  rotate-signing-key`;

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    username: { type: 'string' },
    role: { type: 'string' },
    name: { type: 'string' },
    'fhir-user': { type: 'string' },
    organization: { type: 'string' },
    password: { type: 'string' },
    totp: { type: 'boolean' },
    'client-id': { type: 'string' },
    kind: { type: 'string' },
    scope: { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    'launch-uri': { type: 'string' },
    secret: { type: 'string' },
    'generate-secret': { type: 'boolean' },
    jwks: { type: 'string' },
    'jwks-uri': { type: 'string' },
    'grant-types': { type: 'string' },
    trusted: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});

const [command, arg] = positionals;
if (!command || opts.help) {
  console.log(USAGE);
  process.exit(command ? 0 : 1);
}

function fail(message: string): never {
  console.error(message);
  process.exit(1);
}

async function run(db: Db, baseUrl: string): Promise<void> {
  switch (command) {
    case 'create-user': {
      if (!opts.username || !opts.role) fail('create-user needs --username and --role');
      const role = checkRole(opts.role);
      let fhirUser = opts['fhir-user'];
      if (!fhirUser) {
        const [given, ...rest] = (opts.name ?? opts.username).split(' ');
        const name = [{ given: [given], family: rest.join(' ') || undefined }];
        const repo = new Repository(db, { baseUrl: `${baseUrl}/fhir` }, db);
        const created =
          role === 'patient'
            ? await repo.create<Patient>({ resourceType: 'Patient', active: true, name })
            : await repo.create<Practitioner>({ resourceType: 'Practitioner', active: true, name });
        fhirUser = `${created.resourceType}/${created.id}`;
      } else {
        const [type, id] = fhirUser.split('/');
        await new Repository(db, { baseUrl: `${baseUrl}/fhir` }, db).read(type, id).catch(() => fail(`${fhirUser} does not exist`));
      }
      const password = opts.password ?? generatePassword();
      const totpSecret = opts.totp || role === 'admin' ? generateTotpSecret() : undefined;
      const user = await createUser(db, { username: opts.username, password, fhirUser, role, organization: opts.organization, totpSecret });
      console.log(`Created ${user.username} (${role}) linked to ${fhirUser}`);
      if (!opts.password) console.log(`Password: ${password}`);
      if (totpSecret) console.log(`Two-factor key: ${totpSecret}\n  ${otpauthUri(totpSecret, user.username)}`);
      return;
    }
    case 'reset-password': {
      if (!arg) fail('reset-password needs a username');
      const password = opts.password ?? generatePassword();
      if (!(await resetPassword(db, arg, password))) fail(`No user ${arg}`);
      console.log(`Password of ${arg} reset; lockout cleared.${opts.password ? '' : `\nPassword: ${password}`}`);
      return;
    }
    case 'enable-totp':
    case 'disable-totp': {
      if (!arg) fail(`${command} needs a username`);
      const user = await findUser(db, arg);
      if (!user) fail(`No user ${arg}`);
      const secret = command === 'enable-totp' ? generateTotpSecret() : null;
      await setTotp(db, user.id, secret);
      console.log(secret ? `Two-factor key for ${user.username}: ${secret}\n  ${otpauthUri(secret, user.username)}` : `Two-factor sign-in off for ${user.username}`);
      return;
    }
    case 'register-client': {
      if (!opts['client-id'] || !opts.kind || !opts.scope) fail('register-client needs --client-id, --kind and --scope');
      if (opts.kind !== 'public' && opts.kind !== 'confidential') fail('--kind is public or confidential');
      const secret = opts.secret ?? (opts['generate-secret'] ? randomToken(24) : undefined);
      const jwks = opts.jwks ? (JSON.parse(readFileSync(opts.jwks, 'utf8')) as { keys: JWK[] }) : undefined;
      const client = await registerClient(db, {
        clientId: opts['client-id'],
        name: opts.name,
        kind: opts.kind,
        secret,
        jwks,
        jwksUri: opts['jwks-uri'],
        redirectUris: opts['redirect-uri'],
        launchUri: opts['launch-uri'],
        scopes: opts.scope,
        grantTypes: opts['grant-types']?.split(',').map((g) => g.trim()) as GrantType[] | undefined,
        trusted: opts.trusted,
      });
      console.log(JSON.stringify(describeClient(client), null, 2));
      if (secret && !opts.secret) console.log(`Client secret: ${secret}`);
      return;
    }
    case 'list-clients':
      for (const c of await listClients(db)) console.log(`${c.clientId}\t${c.kind}\t${c.disabled ? 'disabled' : 'active'}\t${c.scopes.join(' ')}`);
      return;
    case 'disable-client':
      if (!arg) fail('disable-client needs a client id');
      console.log((await disableClient(db, arg)) ? `Disabled ${arg}` : `No client ${arg}`);
      return;
    case 'rotate-signing-key':
      console.log(`New signing key ${await rotateSigningKey(db)}; the old one keeps verifying for 2 days.`);
      return;
    default:
      fail(`Unknown command ${command}\n${USAGE}`);
  }
}

const config = loadConfig();
loadDefinitions();
const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres(config.dataDir);
const connectionString = config.databaseUrl ?? (embedded?.connectionString as string);
await migrate(connectionString);
const db = createDb(connectionString, 1, { namedStatements: !embedded });
try {
  await run(db, config.baseUrl);
} catch (e) {
  if (e instanceof UserError || e instanceof RegistrationError) fail(e.message);
  throw e;
} finally {
  await db.close();
  await embedded?.stop();
}
