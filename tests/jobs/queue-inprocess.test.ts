// The JobQueue behaviour suite (queue-suite.ts) on the in-process queue: pending jobs in the
// `job` table of a fresh database (real PostgreSQL with DATABASE_URL, in-memory PGlite without).
import { inProcessHarness, jobQueueSuite } from './queue-suite.ts';

jobQueueSuite('in-process queue (Postgres)', inProcessHarness);
