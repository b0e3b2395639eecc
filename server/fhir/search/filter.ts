// _filter (http://hl7.org/fhir/R4/search_filter.html): a parser for the basic grammar, pure
// (no SQL). compile.ts turns each comparison into the same conditions the plain parameters
// compile to, and the logic into AND / OR / NOT around them.
//
//   filter     = orExpr
//   orExpr     = andExpr ("or" andExpr)*
//   andExpr    = unary ("and" unary)*
//   unary      = "not" "(" filter ")" | "(" filter ")" | comparison
//   comparison = paramPath SP op SP value       (paramPath: name or chain, e.g. subject.name)
//   op         = eq | ne | co | sw | ew | gt | lt | ge | le | sa | eb | ap | pr
//   value      = "quoted \"string\"" | token (up to a space or parenthesis)
import { ParamError } from './values.ts';

export const FILTER_OPS = ['eq', 'ne', 'co', 'sw', 'ew', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap', 'pr'] as const;
export type FilterOp = (typeof FILTER_OPS)[number];
/** Operators of the grammar this server does not evaluate (terminology and regex). */
const UNSUPPORTED_OPS = new Set(['po', 'ss', 'sb', 'in', 'ni', 're']);

export type FilterNode =
  | { kind: 'and' | 'or'; left: FilterNode; right: FilterNode }
  | { kind: 'not'; expr: FilterNode }
  | { kind: 'cmp'; path: string; op: FilterOp; value: string };

interface Token {
  text: string;
  quoted: boolean;
  pos: number;
}

function tokenize(input: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < input.length) {
    const ch = input[i];
    if (/\s/.test(ch)) {
      i++;
    } else if (ch === '(' || ch === ')') {
      out.push({ text: ch, quoted: false, pos: i });
      i++;
    } else if (ch === '"') {
      const start = i++;
      let text = '';
      for (;;) {
        if (i >= input.length) throw new ParamError('_filter', `Unterminated string starting at position ${start + 1}`);
        const c = input[i++];
        if (c === '\\' && i < input.length) text += input[i++];
        else if (c === '"') break;
        else text += c;
      }
      out.push({ text, quoted: true, pos: start });
    } else {
      const start = i;
      while (i < input.length && !/[\s()"]/.test(input[i])) i++;
      out.push({ text: input.slice(start, i), quoted: false, pos: start });
    }
  }
  return out;
}

export function parseFilter(input: string): FilterNode {
  const tokens = tokenize(input);
  let k = 0;
  const peek = () => tokens[k];
  const word = (t: Token | undefined, w: string) => t !== undefined && !t.quoted && t.text.toLowerCase() === w;
  const expect = (w: string) => {
    if (!word(peek(), w)) throw new ParamError('_filter', `Expected "${w}" ${peek() ? `at position ${peek().pos + 1}` : 'at the end'}`);
    k++;
  };
  const orExpr = (): FilterNode => {
    let left = andExpr();
    while (word(peek(), 'or')) {
      k++;
      left = { kind: 'or', left, right: andExpr() };
    }
    return left;
  };
  const andExpr = (): FilterNode => {
    let left = unary();
    while (word(peek(), 'and')) {
      k++;
      left = { kind: 'and', left, right: unary() };
    }
    return left;
  };
  const unary = (): FilterNode => {
    if (word(peek(), 'not')) {
      k++;
      expect('(');
      const expr = orExpr();
      expect(')');
      return { kind: 'not', expr };
    }
    if (word(peek(), '(')) {
      k++;
      const expr = orExpr();
      expect(')');
      return expr;
    }
    const path = tokens[k++];
    const op = tokens[k++];
    const value = tokens[k++];
    if (!path || path.quoted || !/^[A-Za-z_][A-Za-z0-9_\-.:]*$/.test(path.text)) {
      throw new ParamError('_filter', `Expected a parameter name ${path ? `at position ${path.pos + 1}` : 'at the end'}`);
    }
    if (!op || op.quoted) throw new ParamError('_filter', `Expected an operator after "${path.text}"`);
    const o = op.text.toLowerCase();
    if (UNSUPPORTED_OPS.has(o)) throw new ParamError('_filter', `The _filter operator "${o}" is not supported`);
    if (!(FILTER_OPS as readonly string[]).includes(o)) throw new ParamError('_filter', `Unknown _filter operator "${op.text}" at position ${op.pos + 1}`);
    if (!value || (!value.quoted && (value.text === '(' || value.text === ')'))) throw new ParamError('_filter', `Expected a value after "${path.text} ${o}"`);
    return { kind: 'cmp', path: path.text, op: o as FilterOp, value: value.text };
  };
  if (!tokens.length) throw new ParamError('_filter', '_filter is empty');
  const tree = orExpr();
  if (k < tokens.length) throw new ParamError('_filter', `Unexpected "${tokens[k].text}" at position ${tokens[k].pos + 1}`);
  return tree;
}
