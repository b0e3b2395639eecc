// Build of the web UI (lit + vite): sources in ui/src, output in ui/dist, served by the server
// under /app (server/http/ui-static.ts). Hashed file names under assets/ get a long cache.
import { fileURLToPath } from 'node:url';
import type { InlineConfig } from 'vite';

export const uiRoot = fileURLToPath(new URL('.', import.meta.url));

export const uiConfig: InlineConfig = {
  root: uiRoot,
  base: '/app/',
  configFile: false,
  logLevel: 'warn',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: false,
  },
};

export default uiConfig;
