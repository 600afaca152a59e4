// The JSON API client (docs/api.md). Every error becomes an ApiError with the
// server's stable code and message, so pages can show exactly what went wrong.

const TOKEN_KEY = 'wasmtap.token';
const BASE = '/api/v1';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  /** "code: message", the way the UI shows every API error. */
  get text() {
    return this.code ? `${this.code}: ${this.message}` : this.message;
  }
}

export function getToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}
export function setToken(t) {
  try { sessionStorage.setItem(TOKEN_KEY, t); } catch { /* private mode */ }
}
export function clearToken() {
  try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* ignore */ }
}

// Called when any request answers 401 (token revoked or expired).
let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

async function errorFrom(res) {
  let code = '';
  let message = `${res.status} ${res.statusText || 'error'}`;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || '';
      message = body.error.message || message;
    }
  } catch { /* not JSON */ }
  return new ApiError(res.status, code || `http_${res.status}`, message);
}

/** One API call. `body` is sent as JSON. Resolves to the parsed JSON (or null for 204). */
export async function api(method, path, body, { token } = {}) {
  const headers = { Accept: 'application/json' };
  const tok = token ?? getToken();
  if (tok) headers.Authorization = `Bearer ${tok}`;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(BASE + path, { method, headers, body: payload, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'network', `cannot reach the daemon (${e.message || e})`);
  }
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 401 && token === undefined) onUnauthorized(err);
    throw err;
  }
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch {
    throw new ApiError(res.status, 'bad_response', 'the daemon answered something that is not JSON');
  }
}

export const get = (p) => api('GET', p);
export const post = (p, b) => api('POST', p, b ?? {});
export const put = (p, b) => api('PUT', p, b ?? {});
export const patch = (p, b) => api('PATCH', p, b ?? {});
export const del = (p) => api('DELETE', p);

/** Lists may come bare or wrapped ({"modules": [...]}, {"items": [...]}). */
export function listOf(x, key) {
  if (Array.isArray(x)) return x;
  if (x && Array.isArray(x[key])) return x[key];
  if (x && Array.isArray(x.items)) return x.items;
  return [];
}

/**
 * Multipart module upload with progress (fetch cannot report upload progress,
 * so this uses XMLHttpRequest). `onProgress(fraction)`; resolves to the module.
 */
export function uploadModule({ file, name, version, tenant }, onProgress) {
  return new Promise((resolve, reject) => {
    const fd = new FormData();
    fd.append('name', name);
    if (version) fd.append('version', version);
    fd.append('file', file, file.name);
    const xhr = new XMLHttpRequest();
    const q = tenant ? `?tenant=${encodeURIComponent(tenant)}` : '';
    xhr.open('POST', `${BASE}/modules${q}`);
    xhr.setRequestHeader('Authorization', `Bearer ${getToken()}`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    };
    xhr.upload.onload = () => onProgress && onProgress(1);
    xhr.onerror = () => reject(new ApiError(0, 'network', 'the upload was interrupted (cannot reach the daemon)'));
    xhr.onload = () => {
      let body = null;
      try { body = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) { resolve(body); return; }
      const e = body && body.error;
      const err = new ApiError(xhr.status, (e && e.code) || `http_${xhr.status}`,
        (e && e.message) || `${xhr.status} ${xhr.statusText || 'error'}`);
      if (xhr.status === 401) onUnauthorized(err);
      reject(err);
    };
    xhr.send(fd);
  });
}
