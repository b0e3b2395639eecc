// Header checks (what makes a message unsupported: AR) and the message-type dispatch to the
// segment mappers. mapMessage is pure: it returns the plan, nothing is written.
import { toEpochMs } from '../datetime.ts';
import { collectingWarnings } from './dates.ts';
import { ErrorCode, V2Error, type Message } from '../message.ts';
import { ADT_EVENTS, mapAdt } from './adt.ts';
import { scopeOf, senderOf, type MapContext } from './context.ts';
import { mapOrder, mapResults } from './orders.ts';
import { MessagePlan } from './plan.ts';
import { REF_EVENTS, mapReferral } from './referral.ts';
import { SIU_EVENTS, mapSiu } from './siu.ts';

type Mapper = (ctx: MapContext) => void;

/** Supported message code -> trigger events and mapper. */
export const SUPPORTED: Record<string, { events: string[]; map: Mapper }> = {
  ADT: { events: ADT_EVENTS, map: mapAdt },
  SIU: { events: SIU_EVENTS, map: mapSiu },
  ORU: { events: ['R01'], map: mapResults },
  ORM: { events: ['O01'], map: mapOrder },
  OMG: { events: ['O19'], map: mapOrder },
  REF: { events: REF_EVENTS, map: mapReferral },
};

/**
 * v2.3 to v2.8 are supported (the segments we read are stable across them); v2.2 is accepted
 * too because ADT and ORM in 2.2 differ from 2.3 only in fields we do not read.
 */
export const SUPPORTED_VERSIONS = /^2\.(2|3|3\.1|4|5|5\.1|6|7|7\.1|8|8\.1|8\.2)$/;
const PROCESSING_IDS = new Set(['P', 'T', 'D']);

/** Throws V2Error (reject = AR) for what this receiver cannot take at all. */
export function checkHeader(message: Message): void {
  const msh = message.msh;
  const loc = (field: number) => ({ segment: 'MSH', sequence: 1, field });
  if (!message.messageCode) throw new V2Error(ErrorCode.requiredFieldMissing, 'MSH-9 (message type) is required', loc(9), true);
  if (!message.controlId) throw new V2Error(ErrorCode.requiredFieldMissing, 'MSH-10 (message control id) is required', loc(10), true);
  const version = message.version;
  if (!version) throw new V2Error(ErrorCode.requiredFieldMissing, 'MSH-12 (version id) is required', loc(12), true);
  if (!SUPPORTED_VERSIONS.test(version)) {
    throw new V2Error(ErrorCode.unsupportedVersionId, `HL7 version "${version}" is not supported (2.3 to 2.8)`, loc(12), true);
  }
  const processingId = msh.get(11, 1).toUpperCase();
  if (processingId && !PROCESSING_IDS.has(processingId)) {
    throw new V2Error(ErrorCode.unsupportedProcessingId, `Processing id "${processingId}" is not supported (P, T or D)`, loc(11), true);
  }
  const code = message.messageCode;
  const supported = SUPPORTED[code];
  if (!supported) {
    const what = code === 'ACK' ? 'an acknowledgement is not a message this receiver processes' : `message type ${code} is not supported`;
    throw new V2Error(ErrorCode.unsupportedMessageType, `${what} (supported: ${Object.keys(SUPPORTED).join(', ')})`, loc(9), true);
  }
  if (!supported.events.includes(message.triggerEvent)) {
    throw new V2Error(
      ErrorCode.unsupportedEventCode,
      `${code}^${message.triggerEvent || '(none)'} is not supported (supported ${code} events: ${supported.events.join(', ')})`,
      { ...loc(9), component: 2 },
      true,
    );
  }
}

/** Maps a header-checked message to its plan; throws V2Error for bad content (AE). */
export function mapMessage(message: Message): MessagePlan {
  const plan = new MessagePlan();
  const evn = message.segment('EVN');
  plan.eventTime = toEpochMs(evn?.get(2) ?? '') ?? toEpochMs(message.msh.get(7));
  const ctx: MapContext = { message, scope: scopeOf(message), plan, sender: senderOf(message) };
  // Fields that are not valid dates are left out with a warning (dates.ts), kept in the notes.
  const warnings = collectingWarnings(() => SUPPORTED[message.messageCode].map(ctx));
  plan.warnings.push(...warnings);
  plan.notes.push(...warnings.map((w) => w.text));
  return plan;
}
