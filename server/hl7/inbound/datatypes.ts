// v2 data types -> FHIR data types, after the HL7 v2-to-FHIR IG's data type maps (CX -> Identifier,
// XPN -> HumanName, XAD -> Address, XTN -> ContactPoint, CWE/CE/CNE -> CodeableConcept, XCN ->
// Reference with identifier and display, EI -> Identifier). Codes with a required binding in R4
// (HumanName.use, Address.use, ContactPoint.system/use, gender) are only set from known v2
// values, never copied blindly, so an odd sender value drops the element instead of failing the
// whole message.
import type { Address, CodeableConcept, Coding, ContactPoint, HumanName, Identifier, Practitioner, Reference } from '@medplum/fhirtypes';
import type { Field } from '../message.ts';
import { componentDate, periodFrom } from './dates.ts';

/** Base for identifier systems we have to make up (no assigning authority in the message). */
export const LOCAL_SYSTEM = 'urn:wardlink:hl7v2';
/** Base for the systems of identifiers whose assigning authority is a namespace or universal id (+ that id, URI-encoded). */
export const AUTHORITY_SYSTEM = `${LOCAL_SYSTEM}:authority:`;

const CODE_SYSTEMS: Record<string, string> = {
  LN: 'http://loinc.org',
  LOINC: 'http://loinc.org',
  SCT: 'http://snomed.info/sct',
  SNM: 'http://snomed.info/sct',
  SNOMED: 'http://snomed.info/sct',
  SNOMEDCT: 'http://snomed.info/sct',
  I10: 'http://hl7.org/fhir/sid/icd-10',
  I10C: 'http://hl7.org/fhir/sid/icd-10-cm',
  'ICD10CM': 'http://hl7.org/fhir/sid/icd-10-cm',
  I9: 'http://hl7.org/fhir/sid/icd-9-cm',
  I9C: 'http://hl7.org/fhir/sid/icd-9-cm',
  I9CDX: 'http://hl7.org/fhir/sid/icd-9-cm',
  UCUM: 'http://unitsofmeasure.org',
  C4: 'http://www.ama-assn.org/go/cpt',
  CPT: 'http://www.ama-assn.org/go/cpt',
  RXN: 'http://www.nlm.nih.gov/research/umls/rxnorm',
  RXNORM: 'http://www.nlm.nih.gov/research/umls/rxnorm',
  CVX: 'http://hl7.org/fhir/sid/cvx',
  NDC: 'http://hl7.org/fhir/sid/ndc',
  NPI: 'http://hl7.org/fhir/sid/us-npi',
  CDCREC: 'urn:oid:2.16.840.1.113883.6.238',
};

/** CWE-3 "name of coding system" -> system URI (HL7nnnn -> terminology.hl7.org v2 tables). */
export function codeSystemUri(name: string): string | undefined {
  const n = name.trim();
  if (!n) return undefined;
  const hl7 = /^HL7\s*0*(\d{1,4})$/i.exec(n);
  if (hl7) return `http://terminology.hl7.org/CodeSystem/v2-${hl7[1].padStart(4, '0')}`;
  const known = CODE_SYSTEMS[n.toUpperCase()];
  if (known) return known;
  if (/^\d+(\.\d+)+$/.test(n)) return `urn:oid:${n}`;
  if (/^[a-z][a-z0-9+.-]*:/i.test(n)) return n;
  return `${LOCAL_SYSTEM}:cs:${encodeURIComponent(n)}`;
}

export function v2Table(table: string): string {
  return `http://terminology.hl7.org/CodeSystem/v2-${table}`;
}

/** CWE / CE / CNE -> CodeableConcept (identifier triplet, alternate triplet, original text). */
export function codeableConcept(f: Field | undefined): CodeableConcept | undefined {
  if (!f || f.empty) return undefined;
  const coding: Coding[] = [];
  for (const base of [1, 4]) {
    const code = f.get(base);
    const display = f.get(base + 1);
    const system = codeSystemUri(f.get(base + 2));
    if (code) coding.push(clean({ system, code, display: display || undefined }));
  }
  const text = f.get(9) || f.get(2) || (coding.length === 0 ? f.get(1) : undefined);
  if (coding.length === 0 && !text) return undefined;
  return clean({ coding: coding.length ? coding : undefined, text: text || undefined });
}

/** IS / ID coded value in an HL7 table -> CodeableConcept with that table's system. */
export function tableConcept(code: string, table: string, display?: string): CodeableConcept | undefined {
  if (!code) return undefined;
  return { coding: [clean({ system: v2Table(table), code, display })] };
}

/**
 * The identifier system of an assigning authority given as an HD (namespace, universal id,
 * universal id type): the OID, URI or UUID where the universal id is one, else a system made of
 * the namespace (or the universal id). The one rule for CX, EI, XCN and HD fields.
 */
export function authoritySystem(ns: string, universal: string, universalType: string): string | undefined {
  const type = universalType.toUpperCase();
  if (universal && type === 'ISO' && /^\d+(\.\d+)*$/.test(universal)) return `urn:oid:${universal}`;
  if (universal && (type === 'URI' || type === 'URL')) return universal;
  if (universal && type === 'UUID') return `urn:uuid:${universal}`;
  if (ns) return `${AUTHORITY_SYSTEM}${encodeURIComponent(ns)}`;
  if (universal) return `${AUTHORITY_SYSTEM}${encodeURIComponent(universal)}`;
  return undefined;
}

/** HD (namespace^universal id^type, from component `first` on) -> an identifier system URI. */
export function systemFromHd(f: Field, first: number): string | undefined {
  return authoritySystem(f.get(first, 1), f.get(first, 2), f.get(first, 3));
}

export interface IdentifierScope {
  /** Used as the system when the identifier names no assigning authority: the sending facility. */
  fallbackSystem: string;
}

/** CX -> Identifier. CX.4 assigning authority gives the system; CX.5 the type (table 0203). */
export function cxIdentifier(f: Field, scope: IdentifierScope): Identifier | undefined {
  const value = f.get(1);
  if (!value) return undefined;
  // CX.4 is an HD whose parts are subcomponents; without it, the sending facility's scope.
  const system = authoritySystem(f.get(4, 1), f.get(4, 2), f.get(4, 3)) ?? scope.fallbackSystem;
  const typeCode = f.get(5);
  return clean({
    system,
    value,
    type: typeCode ? { coding: [{ system: v2Table('0203'), code: typeCode }] } : undefined,
  });
}

/** EI (entity id^namespace^universal id^type) -> Identifier. */
export function eiIdentifier(f: Field | undefined, scope: IdentifierScope, typeCode?: string): Identifier | undefined {
  if (!f) return undefined;
  const value = f.get(1);
  if (!value) return undefined;
  const system = authoritySystem(f.get(2), f.get(3), f.get(4)) ?? scope.fallbackSystem;
  return clean({ system, value, type: typeCode ? { coding: [{ system: v2Table('0203'), code: typeCode }] } : undefined });
}

const NAME_USE: Record<string, HumanName['use']> = {
  L: 'official',
  D: 'usual',
  M: 'maiden',
  N: 'nickname',
  A: 'anonymous',
  S: 'anonymous',
  C: 'official',
  B: 'official',
  P: 'usual',
  U: undefined,
  T: 'temp',
  TEMP: 'temp',
  R: 'official',
  BAD: 'old',
  NOUSE: 'old',
};

/** XPN (family&...^given^second^suffix^prefix^degree^type) -> HumanName. */
export function xpnName(f: Field): HumanName | undefined {
  const family = f.get(1, 1);
  const given = [f.get(2), f.get(3)].filter(Boolean);
  const suffix = [f.get(4), f.get(6)].filter(Boolean);
  const prefix = f.get(5);
  if (!family && given.length === 0) return undefined;
  return clean({
    use: NAME_USE[f.get(7).toUpperCase()],
    family: family || undefined,
    given: given.length ? given : undefined,
    prefix: prefix ? [prefix] : undefined,
    suffix: suffix.length ? suffix : undefined,
    period: validity(f, 10, 12, 13),
  });
}

/** XCN (id^family^given^second^suffix^prefix^degree^^authority) -> family/given name. */
export function xcnName(f: Field): HumanName | undefined {
  const family = f.get(2, 1);
  const given = [f.get(3), f.get(4)].filter(Boolean);
  if (!family && given.length === 0) return undefined;
  const prefix = f.get(6);
  const suffix = [f.get(5), f.get(7)].filter(Boolean);
  return clean({
    family: family || undefined,
    given: given.length ? given : undefined,
    prefix: prefix ? [prefix] : undefined,
    suffix: suffix.length ? suffix : undefined,
  });
}

export function displayName(name: HumanName | undefined): string | undefined {
  if (!name) return undefined;
  const s = [...(name.prefix ?? []), ...(name.given ?? []), name.family, ...(name.suffix ?? [])].filter(Boolean).join(' ');
  return s || undefined;
}

/** XCN -> Practitioner identifier (XCN.1 in the XCN.9 authority). */
export function xcnIdentifier(f: Field, scope: IdentifierScope): Identifier | undefined {
  const value = f.get(1);
  if (!value) return undefined;
  return { system: authoritySystem(f.get(9, 1), f.get(9, 2), f.get(9, 3)) ?? scope.fallbackSystem, value };
}

/** XCN -> a logical Reference (identifier + display), for participants we do not store. */
export function xcnReference(f: Field | undefined, scope: IdentifierScope): Reference<Practitioner> | undefined {
  if (!f || f.empty) return undefined;
  const identifier = xcnIdentifier(f, scope);
  const display = displayName(xcnName(f));
  if (!identifier && !display) return undefined;
  return clean({ type: 'Practitioner' as const, identifier, display });
}

const ADDRESS_USE: Record<string, Address['use']> = {
  H: 'home',
  P: 'home',
  B: 'work',
  O: 'work',
  C: 'temp',
  BA: 'billing',
  BI: 'billing',
  BDL: 'old',
  BR: 'home',
  TEMP: 'temp',
  OLD: 'old',
};

/** XAD (street&...^other^city^state^zip^country^type) -> Address. */
export function xadAddress(f: Field): Address | undefined {
  const line = [f.get(1, 1), f.get(2)].filter(Boolean);
  const city = f.get(3);
  const state = f.get(4);
  const postalCode = f.get(5);
  const country = f.get(6);
  const district = f.get(9);
  if (line.length === 0 && !city && !state && !postalCode && !country) return undefined;
  const typeCode = f.get(7).toUpperCase();
  return clean({
    use: ADDRESS_USE[typeCode],
    type: typeCode === 'M' ? ('postal' as const) : undefined,
    line: line.length ? line : undefined,
    city: city || undefined,
    district: district || undefined,
    state: state || undefined,
    postalCode: postalCode || undefined,
    country: country || undefined,
    period: validity(f, 12, 13, 14),
  });
}

const TELECOM_USE: Record<string, ContactPoint['use']> = { PRN: 'home', ORN: 'home', VHN: 'home', WPN: 'work', ASN: 'work', EMR: undefined, NET: undefined, BPN: 'work', PRS: 'mobile' };
const TELECOM_SYSTEM: Record<string, ContactPoint['system']> = {
  PH: 'phone',
  FX: 'fax',
  MD: 'other',
  CP: 'phone',
  SAT: 'phone',
  BP: 'pager',
  INTERNET: 'email',
  'X.400': 'email',
  TDD: 'other',
  TTY: 'other',
};

/** XTN -> ContactPoint (XTN.4 email, XTN.12 unformatted, else XTN.5-7 or the legacy XTN.1). */
export function xtnContact(f: Field, defaultUse?: ContactPoint['use']): ContactPoint | undefined {
  const equipment = f.get(3).toUpperCase();
  let system = TELECOM_SYSTEM[equipment];
  let value: string | undefined;
  if (equipment === 'INTERNET' || equipment === 'X.400' || f.get(2).toUpperCase() === 'NET') {
    value = f.get(4) || f.get(1) || undefined;
    if (value) system = 'email';
  }
  if (!value) {
    const parts = [f.get(5) && `+${f.get(5)}`, f.get(6), f.get(7)].filter(Boolean).join(' ');
    const ext = f.get(8) ? ` ext. ${f.get(8)}` : '';
    value = f.get(12) || (f.get(7) ? parts + ext : '') || f.get(1) || undefined;
  }
  if (!value) return undefined;
  const useCode = f.get(2).toUpperCase();
  const use = equipment === 'CP' ? 'mobile' : useCode in TELECOM_USE ? TELECOM_USE[useCode] : defaultUse;
  return clean({ system: system ?? 'phone', value, use });
}

/**
 * The validity period of an XPN / XAD: its effective and expiration date components, or where
 * one is empty the start or end of its older validity range (DR, start&end subcomponents); a
 * date that is no HL7 date is left out with a warning.
 */
function validity(f: Field, range: number, startComponent: number, endComponent: number): { start?: string; end?: string } | undefined {
  const start = f.get(startComponent) ? componentDate(f, startComponent) : componentDate(f, range, 1);
  const end = f.get(endComponent) ? componentDate(f, endComponent) : componentDate(f, range, 2);
  return periodFrom(start, end);
}

/** Drops undefined / empty-array / empty-object members (FHIR forbids empty elements). */
export function clean<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) {
    const v = o[k];
    if (v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0)) delete o[k];
    else if (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0) delete o[k];
  }
  return o;
}

/** Every non-empty repetition of a field, mapped, without undefined results. */
export function each<T>(fields: Field[], map: (f: Field) => T | undefined): T[] {
  const out: T[] = [];
  for (const f of fields) {
    if (f.empty) continue;
    const v = map(f);
    if (v !== undefined) out.push(v);
  }
  return out;
}

/** Escapes a token search value (FHIR search escaping of \ | , $). */
export function tokenParam(system: string | undefined, value: string): string {
  const esc = (s: string) => s.replace(/[\\|,$]/g, (c) => `\\${c}`);
  return system ? `${esc(system)}|${esc(value)}` : esc(value);
}
