// Client-side routing under /app: history.pushState, the back / forward buttons, and links.
// Any <a href="/app/..."> click anywhere (shadow DOM included) is handled without a page load;
// screens are matched by pattern ("/board/:dept") in the app shell.
import { APP_BASE } from './config.ts';

export interface Match {
  params: Record<string, string>;
  query: URLSearchParams;
}

export const routerEvents = new EventTarget();

/** The path inside the app: "/board" for /app/board. */
export function currentPath(): string {
  const p = location.pathname.startsWith(APP_BASE) ? location.pathname.slice(APP_BASE.length) : location.pathname;
  return p === '' ? '/' : p;
}

export function href(path: string): string {
  return APP_BASE + (path.startsWith('/') ? path : `/${path}`);
}

export function navigate(path: string, options: { replace?: boolean } = {}): void {
  const url = path.startsWith(APP_BASE) ? path : href(path);
  if (url === location.pathname + location.search) return;
  if (options.replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  routerEvents.dispatchEvent(new Event('route'));
}

/** Matches "/board/:dept" against a path; undefined when it does not match. */
export function match(pattern: string, path: string = currentPath()): Match | undefined {
  const a = pattern.split('/').filter(Boolean);
  const b = path.split('/').filter(Boolean);
  if (a.length !== b.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < a.length; i++) {
    if (a[i].startsWith(':')) params[a[i].slice(1)] = decodeURIComponent(b[i]);
    else if (a[i] !== b[i]) return undefined;
  }
  return { params, query: new URLSearchParams(location.search) };
}

addEventListener('popstate', () => routerEvents.dispatchEvent(new Event('route')));

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.composedPath().find((n): n is HTMLAnchorElement => n instanceof HTMLAnchorElement);
  if (!a || a.target || a.hasAttribute('download') || a.origin !== location.origin) return;
  if (!a.pathname.startsWith(APP_BASE + '/') && a.pathname !== APP_BASE) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
});
