// Acknowledgements (v2 chapter 2): ACK^<event>^ACK whose MSH mirrors the sender (sending and
// receiving application / facility swapped), MSA-1 the code, MSA-2 the original MSH-10, and ERR
// segments saying what was wrong: ERR-2 location / ERR-3 HL7 table 0357 code / ERR-4 severity /
// ERR-8 text in v2.5+, and the v2.3-2.4 ERR-1 (ELD: segment^sequence^field^code&text&HL70357).
import { randomUUID } from 'node:crypto';
import { nowDtm } from './datetime.ts';
import { ERROR_TEXT, STANDARD_DELIMITERS, escape, type ErrorCode, type ErrorLocation, type Field, type Message, type Segment } from './message.ts';

export type AckCode = 'AA' | 'AE' | 'AR' | 'CA' | 'CE' | 'CR';

export interface AckError {
  code: ErrorCode;
  text: string;
  location?: ErrorLocation;
  /** E error (default), W warning, I information. */
  severity?: 'E' | 'W' | 'I';
}

/** What we know of the message being acknowledged (possibly very little, for garbage). */
export interface AckTarget {
  msh?: Segment;
  controlId?: string;
  version?: string;
  event?: string;
}

export function ackTargetOf(message: Message | undefined): AckTarget {
  if (!message) return {};
  return { msh: message.msh, controlId: message.controlId, version: message.version, event: message.triggerEvent };
}

/** Our own MSH-3 / MSH-4 when the sender named no receiver. */
export const DEFAULT_RECEIVER = { application: 'WARDLINK', facility: 'WARDLINK' };

/** Re-encodes a field written with the sender's delimiters into standard delimiters. */
function reencode(field: Field | undefined): string {
  if (!field || field.empty) return '';
  const d = field.delimiters;
  return field
    .components()
    .map((comp, ci) =>
      comp
        .split(d.subcomponent)
        .map((_, si) => escape(field.get(ci + 1, si + 1)))
        .join(STANDARD_DELIMITERS.subcomponent),
    )
    .join(STANDARD_DELIMITERS.component);
}

/**
 * The ACK of a message. ackTypes sets MSH-15 / MSH-16 of the ACK itself: an application ACK
 * sent as its own message in enhanced mode asks for a commit ACK back (AL / NE).
 */
export function buildAck(target: AckTarget, code: AckCode, errors: AckError[] = [], receiver = DEFAULT_RECEIVER, ackTypes?: { accept: string; application: string }): string {
  const { msh } = target;
  const version = target.version && /^2\.\d(\.\d)?$/.test(target.version) ? target.version : '2.5.1';
  const modern = !/^2\.(1|2|3|3\.1|4)$/.test(version);
  const d = STANDARD_DELIMITERS;
  const f = (n: number) => (msh ? reencode(msh.field(n)) : '');
  const sendingApp = f(5) || DEFAULT_RECEIVER.application;
  const sendingFac = f(6) || receiver.facility;
  const event = target.event && /^[A-Z0-9]{3}$/.test(target.event) ? target.event : '';
  const processingId = msh ? reencode(msh.field(11)) || 'P' : 'P';
  const fields = [
    'MSH',
    `${d.component}${d.repetition}${d.escape}${d.subcomponent}`,
    sendingApp,
    sendingFac,
    f(3),
    f(4),
    nowDtm(),
    '',
    event ? `ACK^${event}^ACK` : 'ACK',
    randomUUID().replace(/-/g, '').slice(0, 20),
    processingId,
    version,
  ];
  if (ackTypes) fields.push('', '', ackTypes.accept, ackTypes.application);
  const segments = [fields.join(d.field)];
  const firstText = errors[0]?.text;
  // MSA-3 (text message) was deprecated in 2.4 and withdrawn later: send it only to older versions.
  const msa = ['MSA', code, escape(target.controlId ?? '')];
  if (!modern && firstText) msa.push(escape(firstText.slice(0, 80)));
  segments.push(msa.join(d.field));
  for (const err of errors) segments.push(errSegment(err, modern));
  return segments.join('\r');
}

function errSegment(err: AckError, modern: boolean): string {
  const loc = err.location;
  const codeText = ERROR_TEXT[err.code];
  if (modern) {
    const location = loc ? [loc.segment, loc.sequence ?? '', loc.field ?? '', loc.field ? (loc.repetition ?? 1) : '', loc.component ?? '', loc.subcomponent ?? ''].join('^').replace(/\^+$/, '') : '';
    return ['ERR', '', location, `${err.code}^${codeText}^HL70357`, err.severity ?? 'E', '', '', '', escape(err.text)].join('|');
  }
  const eld = [loc?.segment ?? '', loc?.sequence ?? '', loc?.field ?? '', `${err.code}&${codeText}&HL70357`].join('^');
  return ['ERR', eld].join('|');
}

/** MSA-1 of an ACK text (for outbound ACK checking and tests). */
export function ackCodeOf(ack: string): string | undefined {
  const msa = ack.split(/\r|\n/).find((l) => l.startsWith('MSA'));
  return msa?.split('|')[1];
}
