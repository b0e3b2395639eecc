// The JobQueue behaviour suite (queue-suite.ts) on BullMQ: REDIS_URL when set (CI, where a
// missing Redis fails the run), else a Redis on 127.0.0.1:6379 if one answers, else skipped
// with the reason in the suite's name.
import { bullmqHarness, jobQueueSuite } from './queue-suite.ts';
import { testRedisUrl } from './support.ts';

const redisUrl = await testRedisUrl();
jobQueueSuite(
  'BullMQ queue (Redis)',
  () => bullmqHarness(redisUrl as string),
  redisUrl ? undefined : 'no REDIS_URL and no Redis answering on 127.0.0.1:6379',
);
