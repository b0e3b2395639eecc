// What every segment mapper gets: the message, where made-up identifiers live (the sending
// facility), the plan being built, and the resources already planned (patient, encounter).
import { createHash } from 'node:crypto';
import type { Identifier } from '@medplum/fhirtypes';
import { ErrorCode, V2Error, type Message, type Segment } from '../message.ts';
import { LOCAL_SYSTEM, type IdentifierScope } from './datatypes.ts';
import type { MessagePlan } from './plan.ts';

export interface MapContext {
  message: Message;
  scope: IdentifierScope;
  plan: MessagePlan;
  /** Sender key: MSH-3 ^ MSH-4 as received. */
  sender: string;
  patientRef?: string;
  patientKey?: Identifier;
  encounterRef?: string;
}

export function senderOf(message: Message): string {
  return `${message.msh.field(3).text()}|${message.msh.field(4).text()}`;
}

export function scopeOf(message: Message): IdentifierScope {
  const fac = message.msh.get(4, 1) || message.msh.get(4, 2) || message.msh.get(3, 1) || 'unknown';
  return { fallbackSystem: `${LOCAL_SYSTEM}:facility:${encodeURIComponent(fac)}` };
}

/** The segment or an AE naming it as missing. */
export function required(message: Message, name: string, why: string): Segment {
  const seg = message.segment(name);
  if (!seg) throw new V2Error(ErrorCode.segmentSequence, `Required segment ${name} is missing: ${why}`, { segment: name });
  return seg;
}

export function missingField(seg: Segment, field: number, what: string): V2Error {
  return new V2Error(ErrorCode.requiredFieldMissing, `${seg.name}-${field} (${what}) is required`, { segment: seg.name, sequence: seg.sequence, field });
}

/** A stable identifier we make up from parts (for segments that carry no id of their own). */
export function derivedKey(kind: string, ...parts: (string | undefined)[]): Identifier {
  const value = createHash('sha256').update(parts.map((p) => p ?? '').join('\u0000')).digest('hex').slice(0, 32);
  return { system: `${LOCAL_SYSTEM}:${kind}`, value };
}

export function keyText(id: Identifier | undefined): string {
  return id ? `${id.system ?? ''}|${id.value ?? ''}` : '';
}
