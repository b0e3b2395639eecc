// Attachments: raw upload to Binary with progress (XMLHttpRequest: fetch reports no upload
// progress), then a DocumentReference pointing at it; download with the bearer token into a
// blob URL the browser can open or save.
import { FHIR_BASE } from '../config.ts';
import { session } from '../auth/session.ts';
import { t } from '../i18n/index.ts';
import { FhirError, fhir, outcomeMessage, type Resource } from './fhir.ts';

export function uploadBinary(file: File, onProgress: (fraction: number) => void): Promise<Resource> {
  return postWithProgress('Binary', file, file.type || 'application/octet-stream', onProgress);
}

/** POST with upload progress (a file, or a FHIR resource as JSON); errors as FhirError in words. */
export async function postWithProgress(path: string, body: Blob | object, contentType: string, onProgress: (fraction: number) => void): Promise<Resource> {
  const token = await session.accessToken();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${FHIR_BASE}/${path}`);
    xhr.setRequestHeader('authorization', `Bearer ${token}`);
    xhr.setRequestHeader('content-type', contentType);
    xhr.setRequestHeader('accept', 'application/fhir+json');
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new FhirError(0, t('error.network')));
    xhr.onload = () => {
      let body: Resource | undefined;
      try {
        body = JSON.parse(xhr.responseText) as Resource;
      } catch {
        body = undefined;
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) return resolve(body);
      const outcome = body?.resourceType === 'OperationOutcome' ? (body as Parameters<typeof outcomeMessage>[0]) : undefined;
      reject(new FhirError(xhr.status, outcomeMessage(outcome) ?? t('error.other', { status: xhr.status }), outcome));
    };
    xhr.send(body instanceof Blob ? body : JSON.stringify(body));
  });
}

/** Uploads a file and files it with the request (DocumentReference.context.related). */
export async function attachToRequest(file: File, patient: string, serviceRequest: string, author: string, onProgress: (f: number) => void): Promise<Resource> {
  const binary = await uploadBinary(file, onProgress);
  return fhir<Resource>('DocumentReference', {
    method: 'POST',
    body: {
      resourceType: 'DocumentReference',
      status: 'current',
      subject: { reference: patient },
      date: new Date().toISOString(),
      author: [{ reference: author }],
      description: file.name,
      content: [{ attachment: { contentType: file.type || 'application/octet-stream', url: `Binary/${binary.id}`, title: file.name, size: file.size } }],
      context: { related: [{ reference: serviceRequest }] },
    },
  });
}

/** The bytes of an attachment (Binary/... or an absolute URL on this server) as a blob URL. */
export async function blobUrl(url: string, contentType = '*/*'): Promise<string> {
  const full = /^https?:/.test(url) ? url : `${FHIR_BASE}/${url}`;
  const res = await fetch(full, { headers: { accept: contentType, authorization: `Bearer ${await session.accessToken()}` } });
  if (!res.ok) throw new FhirError(res.status, t('error.other', { status: res.status }));
  return URL.createObjectURL(await res.blob());
}

/** A file as base64 (for an Attachment's data). */
export function base64Of(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(',')[1] ?? '');
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}
