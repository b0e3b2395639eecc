// Shared styles: colours chosen for WCAG AA contrast on white (text ≥ 4.5:1), visible focus,
// a layout that stacks to one column at phone width.
import { css } from 'lit';

export const base = css`
  :host {
    --wl-fg: #1b1f24;
    --wl-muted: #4a5360;
    --wl-bg: #f4f6f8;
    --wl-card: #ffffff;
    --wl-line: #c9d1da;
    --wl-accent: #0b5cad;
    --wl-accent-fg: #ffffff;
    --wl-ok: #1d6b35;
    --wl-amber: #8a5300;
    --wl-amber-bg: #fff4de;
    --wl-red: #a3161b;
    --wl-red-bg: #fde8e8;
    font-family: system-ui, -apple-system, 'Segoe UI', sans-serif;
    color: var(--wl-fg);
    line-height: 1.45;
  }
  *, *::before, *::after { box-sizing: border-box; }
  a { color: var(--wl-accent); }
  button, select, input, textarea { font: inherit; }
  button {
    border: 1px solid var(--wl-accent);
    background: var(--wl-card);
    color: var(--wl-accent);
    border-radius: 6px;
    padding: 0.35rem 0.8rem;
    cursor: pointer;
    min-height: 2.25rem;
  }
  button.primary { background: var(--wl-accent); color: var(--wl-accent-fg); }
  button:disabled { opacity: 0.6; cursor: default; }
  :focus-visible { outline: 3px solid #f5b400; outline-offset: 2px; }
  input, select, textarea {
    border: 1px solid #7b8794;
    border-radius: 6px;
    padding: 0.4rem 0.5rem;
    background: #fff;
    color: var(--wl-fg);
    min-height: 2.25rem;
  }
  label { font-weight: 600; }
  .muted { color: var(--wl-muted); }
  .error { color: var(--wl-red); background: var(--wl-red-bg); border-left: 4px solid var(--wl-red); padding: 0.5rem 0.75rem; border-radius: 4px; }
  .notice { background: #e7f1fb; border-left: 4px solid var(--wl-accent); padding: 0.5rem 0.75rem; border-radius: 4px; }
  .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
  .spinner { display: inline-block; width: 1rem; height: 1rem; border: 2px solid var(--wl-line); border-top-color: var(--wl-accent); border-radius: 50%; animation: spin 0.8s linear infinite; vertical-align: middle; }
  @keyframes spin { to { transform: rotate(360deg); } }
  @media (prefers-reduced-motion: reduce) { .spinner { animation: none; } }
`;

/** Tables that become one block per row at phone width, each cell labelled by its data-label. */
export const stackedTable = css`
  @media (max-width: 760px) {
    thead { display: none; }
    tr { display: block; border-bottom: 2px solid var(--wl-line); }
    td { display: block; border: none; padding: 0.2rem 0.6rem; }
    td::before { content: attr(data-label) ': '; color: var(--wl-muted); }
  }
`;
