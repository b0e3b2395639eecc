// Messages by key from the catalogue of the chosen language (en, fr), with {name} placeholders;
// the choice is remembered in localStorage and announced with a 'language-changed' event so
// every screen re-renders. Numbers, dates and durations use Intl in the same language.
import { en, type Catalogue, type MessageKey } from './en.ts';
import { fr } from './fr.ts';

export type { MessageKey };
export const LANGUAGES = { en: 'English', fr: 'Français' } as const;
export type Language = keyof typeof LANGUAGES;

const catalogues: Record<Language, Catalogue> = { en, fr };
const KEY = 'wl.language';

function initial(): Language {
  const saved = localStorage.getItem(KEY);
  if (saved && saved in catalogues) return saved as Language;
  const nav = navigator.language.slice(0, 2);
  return nav in catalogues ? (nav as Language) : 'en';
}

let current: Language = initial();
document.documentElement.lang = current;

export const i18nEvents = new EventTarget();

export function language(): Language {
  return current;
}

export function setLanguage(lang: Language): void {
  if (lang === current || !(lang in catalogues)) return;
  current = lang;
  localStorage.setItem(KEY, lang);
  document.documentElement.lang = lang;
  i18nEvents.dispatchEvent(new Event('language-changed'));
}

export function t(key: MessageKey, vars?: Record<string, string | number>): string {
  const text = catalogues[current][key] ?? en[key] ?? key;
  return vars ? text.replace(/\{(\w+)\}/g, (m, name: string) => (name in vars ? String(vars[name]) : m)) : text;
}

/** "5 min", "2 h 10 min", "3 d" in the current language. */
export function duration(ms: number): string {
  const minutes = Math.max(0, Math.round(Math.abs(ms) / 60_000));
  const fmt = (value: number, unit: 'minute' | 'hour' | 'day') => new Intl.NumberFormat(current, { style: 'unit', unit, unitDisplay: 'short' }).format(value);
  if (minutes < 60) return fmt(minutes, 'minute');
  if (minutes < 48 * 60) {
    const h = Math.floor(minutes / 60);
    const m = minutes % 60;
    return m ? `${fmt(h, 'hour')} ${fmt(m, 'minute')}` : fmt(h, 'hour');
  }
  return fmt(Math.round(minutes / 1440), 'day');
}

export function dateTime(iso: string | undefined): string {
  if (!iso) return '';
  return new Intl.DateTimeFormat(current, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(iso));
}

export function time(iso: string | undefined): string {
  if (!iso) return '';
  return new Intl.DateTimeFormat(current, { hour: '2-digit', minute: '2-digit' }).format(new Date(iso));
}
