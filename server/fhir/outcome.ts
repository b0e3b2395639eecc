// Errors are values of one type carrying an OperationOutcome and an HTTP status; the HTTP layer
// (and the batch processor, per entry) turns them into responses in one place.
import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';

type IssueType = OperationOutcomeIssue['code'];

export class FhirError extends Error {
  readonly status: number;
  readonly outcome: OperationOutcome;
  constructor(status: number, outcome: OperationOutcome) {
    super(outcome.issue?.map((i) => i.diagnostics ?? i.details?.text ?? i.code).join('; ') ?? 'error');
    this.status = status;
    this.outcome = outcome;
  }
}

export function outcome(
  severity: OperationOutcomeIssue['severity'],
  code: IssueType,
  diagnostics: string,
  expression?: string[],
): OperationOutcome {
  const issue: OperationOutcomeIssue = { severity, code, diagnostics };
  if (expression?.length) issue.expression = expression;
  return { resourceType: 'OperationOutcome', issue: [issue] };
}

function err(status: number, code: IssueType, message: string, expression?: string[]): FhirError {
  return new FhirError(status, outcome('error', code, message, expression));
}

export const badRequest = (msg: string, expression?: string[]) => err(400, 'invalid', msg, expression);
export const notFound = (msg: string) => err(404, 'not-found', msg);
export const gone = (msg: string) => err(410, 'deleted', msg);
export const conflict = (msg: string) => err(409, 'conflict', msg);
export const preconditionFailed = (msg: string) => err(412, 'conflict', msg);
export const methodNotAllowed = (msg: string) => err(405, 'not-supported', msg);
export const notSupported = (msg: string) => err(501, 'not-supported', msg);
export const tooLarge = (msg: string) => err(413, 'too-costly', msg);
export const unsupportedMediaType = (msg: string) => err(415, 'not-supported', msg);
export const notAcceptable = (msg: string) => err(406, 'not-supported', msg);
export const multipleMatches = (msg: string) => err(412, 'multiple-matches', msg);
export const forbidden = (msg: string) => err(403, 'forbidden', msg);

/** 422 with every validation issue (each with its expression). */
export function unprocessable(issues: OperationOutcomeIssue[]): FhirError {
  return new FhirError(422, { resourceType: 'OperationOutcome', issue: issues });
}

export function informational(diagnostics: string): OperationOutcome {
  return outcome('information', 'informational', diagnostics);
}

/** Any thrown value -> FhirError; unknown errors become a 500 with no internals. */
export function toFhirError(e: unknown): FhirError {
  if (e instanceof FhirError) return e;
  return err(500, 'exception', 'Internal server error');
}
