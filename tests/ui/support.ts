// Browser-test helpers over the UI test world (tests/ui/world.ts).
import { expect } from 'vitest';
import { hasChromium } from './world.ts';

export * from './world.ts';
export { signInAs as signIn } from './world.ts';

if (!hasChromium) console.warn('tests/ui: browser tests SKIPPED: /usr/bin/chromium is missing (apt-get install -y --no-install-recommends chromium)');

/** expect.poll with a timeout that holds on a loaded 2-core machine (the default is 1 s). */
export function poll<T>(fn: () => T | Promise<T>, options: { timeout?: number; interval?: number } = {}) {
  return expect.poll(fn, { timeout: 20_000, interval: 100, ...options });
}
