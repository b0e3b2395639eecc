// A small, strict HL7 v2 ER7 ("pipe") parser and writer. We do not use @medplum/core's Hl7Message
// here because it neither unescapes (\F\ \S\ \T\ \R\ \E\ \.br\ \Xhh\) nor reports where a message
// is malformed; both matter for ACK ERR segments and for clean FHIR values.
//
// Positions are 1-based as in HL7 (PID-3.4.2 = field 3, component 4, subcomponent 2); for MSH,
// field 1 is the field separator and field 2 the encoding characters, like the standard counts.

export interface Delimiters {
  field: string;
  component: string;
  repetition: string;
  escape: string;
  subcomponent: string;
  /** v2.7+ truncation character (fifth encoding character), when present. */
  truncation?: string;
}

export const STANDARD_DELIMITERS: Delimiters = { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&' };

/** HL7 table 0357 error codes used in ERR-3 / ERR-1.4. */
export const ErrorCode = {
  segmentSequence: '100',
  requiredFieldMissing: '101',
  dataType: '102',
  tableValueNotFound: '103',
  unsupportedMessageType: '200',
  unsupportedEventCode: '201',
  unsupportedProcessingId: '202',
  unsupportedVersionId: '203',
  unknownKey: '204',
  duplicateKey: '205',
  recordLocked: '206',
  internalError: '207',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const ERROR_TEXT: Record<ErrorCode, string> = {
  '100': 'Segment sequence error',
  '101': 'Required field missing',
  '102': 'Data type error',
  '103': 'Table value not found',
  '200': 'Unsupported message type',
  '201': 'Unsupported event code',
  '202': 'Unsupported processing id',
  '203': 'Unsupported version id',
  '204': 'Unknown key identifier',
  '205': 'Duplicate key identifier',
  '206': 'Application record locked',
  '207': 'Application internal error',
};

/** Where an error is: segment name, its 1-based sequence among all segments, and field/component. */
export interface ErrorLocation {
  segment: string;
  /** 1-based position of the segment in the message. */
  sequence?: number;
  field?: number;
  /** 1-based repetition of the field (1 when not given). */
  repetition?: number;
  component?: number;
  subcomponent?: number;
}

/**
 * A problem with a message's content, answered with an ACK: `reject` gives AR / CR (the message
 * cannot be handled at all: type, version, processing id), otherwise AE / CE.
 */
export class V2Error extends Error {
  readonly code: ErrorCode;
  readonly location?: ErrorLocation;
  readonly reject: boolean;
  /** What could be parsed before the error (at least MSH), for the ACK header. */
  partial?: Message;
  constructor(code: ErrorCode, message: string, location?: ErrorLocation, reject = false) {
    super(message);
    this.code = code;
    this.location = location;
    this.reject = reject;
  }
}

export class Segment {
  readonly name: string;
  /** Raw (escaped) field strings; index 0 is the name; for MSH, 1 = field separator, 2 = encoding characters. */
  readonly fields: string[];
  /** 1-based position in the message. */
  readonly sequence: number;
  readonly delimiters: Delimiters;

  constructor(name: string, fields: string[], sequence: number, delimiters: Delimiters) {
    this.name = name;
    this.fields = fields;
    this.sequence = sequence;
    this.delimiters = delimiters;
  }

  /** Raw text of field n (escaped, with its repetitions). */
  raw(n: number): string {
    return this.fields[n] ?? '';
  }

  /** Field n split into repetitions (raw). Empty field -> []. */
  repetitions(n: number): Field[] {
    const raw = this.raw(n);
    if (raw === '') return [];
    if (this.name === 'MSH' && n <= 2) return [new Field(raw, this.delimiters)];
    return raw.split(this.delimiters.repetition).map((r, i) => new Field(r, this.delimiters, false, this, n, i + 1));
  }

  /** First repetition of field n. */
  field(n: number): Field {
    if (this.name === 'MSH' && n <= 2) return new Field(this.raw(n), this.delimiters, true);
    const raw = this.raw(n);
    const i = raw.indexOf(this.delimiters.repetition);
    return new Field(i < 0 ? raw : raw.slice(0, i), this.delimiters, false, this, n, 1);
  }

  /** Where field n (repetition r) is, for an ERR segment. */
  locate(n: number, r: number): ErrorLocation {
    return { segment: this.name, sequence: this.sequence, field: n, ...(r > 1 ? { repetition: r } : {}) };
  }

  /** Unescaped value of field n, component c, subcomponent s (first repetition). */
  get(n: number, c = 1, s = 1): string {
    return this.field(n).get(c, s);
  }
}

/** One repetition of a field. */
export class Field {
  readonly raw: string;
  readonly delimiters: Delimiters;
  private readonly verbatim: boolean;
  // The segment, field number and repetition it was read from (for `at`).
  private readonly segment?: Segment;
  private readonly n: number;
  private readonly repetition: number;
  constructor(raw: string, delimiters: Delimiters, verbatim = false, segment?: Segment, n = 0, repetition = 1) {
    this.raw = raw;
    this.delimiters = delimiters;
    this.verbatim = verbatim;
    this.segment = segment;
    this.n = n;
    this.repetition = repetition;
  }
  /** Where the field is in its message (a field read from a segment), for warnings about it. */
  get at(): ErrorLocation | undefined {
    return this.segment?.locate(this.n, this.repetition);
  }
  get empty(): boolean {
    return this.raw === '' || this.raw === '""';
  }
  /** The HL7 explicit null "" (delete the value at the receiver). */
  get isNull(): boolean {
    return this.raw === '""';
  }
  components(): string[] {
    return this.verbatim ? [this.raw] : this.raw.split(this.delimiters.component);
  }
  /** Raw text of component c (with its subcomponents). */
  component(c: number): Field {
    if (this.verbatim) return this;
    return new Field(this.components()[c - 1] ?? '', this.delimiters);
  }
  /** Unescaped value of component c, subcomponent s. `""` reads as empty. */
  get(c = 1, s = 1): string {
    if (this.verbatim) return c === 1 && s === 1 ? this.raw : '';
    const comp = this.components()[c - 1] ?? '';
    const sub = comp.split(this.delimiters.subcomponent)[s - 1] ?? '';
    if (sub === '""') return '';
    return unescape(sub, this.delimiters).trim();
  }
  /** Unescaped text of the whole repetition (components joined by the component separator). */
  text(): string {
    return unescape(this.raw, this.delimiters).trim();
  }
}

/** Resolves HL7 escape sequences; \.br\ and \X0D0A\-style hex become line breaks / characters. */
export function unescape(value: string, d: Delimiters): string {
  const e = d.escape;
  if (!e || !value.includes(e)) return value;
  let out = '';
  let i = 0;
  while (i < value.length) {
    const ch = value[i];
    if (ch !== e) {
      out += ch;
      i++;
      continue;
    }
    const end = value.indexOf(e, i + 1);
    if (end < 0) {
      out += value.slice(i);
      break;
    }
    const seq = value.slice(i + 1, end);
    i = end + 1;
    switch (seq) {
      case 'F':
        out += d.field;
        continue;
      case 'S':
        out += d.component;
        continue;
      case 'T':
        out += d.subcomponent;
        continue;
      case 'R':
        out += d.repetition;
        continue;
      case 'E':
        out += e;
        continue;
      case 'P':
        out += d.truncation ?? '#';
        continue;
      case '.br':
        out += '\n';
        continue;
      case 'H':
      case 'N':
        continue; // highlighting on/off: no plain-text equivalent
    }
    if (/^X([0-9A-Fa-f]{2})+$/.test(seq)) {
      const bytes = Buffer.from(seq.slice(1), 'hex');
      out += bytes.toString('latin1').replace(/\r\n?/g, '\n');
      continue;
    }
    if (/^\.(sp|in|ti|sk|ce|fi|nf)/.test(seq)) {
      if (seq.startsWith('.sp')) out += '\n';
      continue;
    }
    // Unknown sequence (\Z..\ and others): keep the text between the escapes.
    out += seq;
  }
  return out;
}

/** Escapes text for a field value with the given delimiters. */
export function escape(value: string, d: Delimiters = STANDARD_DELIMITERS): string {
  let out = '';
  for (const ch of value) {
    if (ch === d.escape) out += `${d.escape}E${d.escape}`;
    else if (ch === d.field) out += `${d.escape}F${d.escape}`;
    else if (ch === d.component) out += `${d.escape}S${d.escape}`;
    else if (ch === d.subcomponent) out += `${d.escape}T${d.escape}`;
    else if (ch === d.repetition) out += `${d.escape}R${d.escape}`;
    else if (ch === '\n') out += `${d.escape}.br${d.escape}`;
    else if (ch === '\r') continue;
    else out += ch;
  }
  return out;
}

export class Message {
  readonly segments: Segment[];
  readonly delimiters: Delimiters;
  readonly text: string;
  constructor(segments: Segment[], delimiters: Delimiters, text: string) {
    this.segments = segments;
    this.delimiters = delimiters;
    this.text = text;
  }
  get msh(): Segment {
    return this.segments[0];
  }
  segment(name: string): Segment | undefined {
    return this.segments.find((s) => s.name === name);
  }
  all(name: string): Segment[] {
    return this.segments.filter((s) => s.name === name);
  }
  /** MSH-9.1 / 9.2 / 9.3 */
  get messageCode(): string {
    return this.msh.get(9, 1).toUpperCase();
  }
  get triggerEvent(): string {
    return this.msh.get(9, 2).toUpperCase();
  }
  get structure(): string {
    return this.msh.get(9, 3).toUpperCase();
  }
  get controlId(): string {
    return this.msh.get(10);
  }
  get version(): string {
    return this.msh.get(12, 1);
  }
}

const SEGMENT_NAME = /^[A-Z][A-Z0-9]{2}$/;

/**
 * Parses one message. Segments end with CR (LF and CRLF are accepted too); blank lines are
 * skipped. Throws V2Error on anything that cannot be a message: no MSH, bad encoding
 * characters, a line that is not a segment (a hard-wrapped field, for example).
 */
export function parseMessage(text: string): Message {
  const body = text.replace(/^\uFEFF/, '');
  if (!body.startsWith('MSH')) {
    throw new V2Error(ErrorCode.segmentSequence, 'The message does not start with an MSH segment', { segment: 'MSH', sequence: 1 }, true);
  }
  const fieldSep = body[3];
  if (!fieldSep || /[A-Za-z0-9\r\n ]/.test(fieldSep)) {
    throw new V2Error(ErrorCode.dataType, 'MSH-1 (field separator) is missing or not a valid separator', { segment: 'MSH', sequence: 1, field: 1 }, true);
  }
  const lines = body.split(/\r\n|\r|\n/);
  const mshFields = lines[0].split(fieldSep);
  const enc = mshFields[1] ?? '';
  const encChars = [...enc];
  const distinct = new Set([fieldSep, ...encChars]);
  if (
    encChars.length < 4 ||
    encChars.length > 5 ||
    distinct.size !== encChars.length + 1 ||
    encChars.some((c) => /[A-Za-z0-9\s]/.test(c))
  ) {
    throw new V2Error(
      ErrorCode.dataType,
      `MSH-2 (encoding characters) must be 4 or 5 distinct separator characters, got "${enc}"`,
      { segment: 'MSH', sequence: 1, field: 2 },
      true,
    );
  }
  const delimiters: Delimiters = {
    field: fieldSep,
    component: encChars[0],
    repetition: encChars[1],
    escape: encChars[2],
    subcomponent: encChars[3],
    truncation: encChars[4],
  };
  const segments: Segment[] = [];
  for (const line of lines) {
    if (line.trim() === '') continue;
    const sequence = segments.length + 1;
    const name = line.slice(0, 3);
    if (!SEGMENT_NAME.test(name) || (line.length > 3 && line[3] !== fieldSep)) {
      const shown = line.length > 20 ? `${line.slice(0, 20)}...` : line;
      throw withPartial(new V2Error(ErrorCode.segmentSequence, `Segment ${sequence} ("${shown}") is not a valid segment: a segment starts with a 3-character name and the field separator`, {
        segment: SEGMENT_NAME.test(name) ? name : 'UNK',
        sequence,
      }), segments, delimiters, body);
    }
    let fields: string[];
    if (name === 'MSH') {
      if (segments.length > 0) {
        throw withPartial(new V2Error(ErrorCode.segmentSequence, `A second MSH segment at position ${sequence}: send one message per MLLP frame (or a batch with BHS/BTS)`, { segment: 'MSH', sequence }), segments, delimiters, body);
      }
      const rest = line.split(fieldSep);
      // rest[0]="MSH", rest[1]=encoding chars -> fields[1]=field sep, fields[2]=encoding chars
      fields = ['MSH', fieldSep, ...rest.slice(1)];
    } else {
      fields = line.split(fieldSep);
    }
    segments.push(new Segment(name, fields, sequence, delimiters));
  }
  return new Message(segments, delimiters, body);
}

function withPartial(err: V2Error, segments: Segment[], delimiters: Delimiters, body: string): V2Error {
  if (segments.length > 0) err.partial = new Message(segments, delimiters, body);
  return err;
}

/** Splits a batch (FHS/BHS ... BTS/FTS) into its messages' texts; a single message gives itself. */
export function splitBatch(text: string): { batch: boolean; messages: string[]; header?: string } {
  const lines = text.split(/\r\n|\r|\n/).filter((l) => l.trim() !== '');
  const first = lines[0]?.slice(0, 3);
  if (first !== 'FHS' && first !== 'BHS') return { batch: false, messages: [text] };
  const messages: string[] = [];
  let current: string[] | undefined;
  let header: string | undefined;
  for (const line of lines) {
    const name = line.slice(0, 3);
    if (name === 'FHS' || name === 'FTS' || name === 'BTS') continue;
    if (name === 'BHS') {
      header ??= line;
      continue;
    }
    if (name === 'MSH') {
      if (current) messages.push(current.join('\r'));
      current = [line];
    } else if (current) current.push(line);
  }
  if (current) messages.push(current.join('\r'));
  return { batch: true, messages, header };
}
