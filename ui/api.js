// The one way the dashboard talks to Meterplane: the public REST API, same origin.
//
// The access token lives in this module's memory only: not in localStorage or
// sessionStorage (which any injected script could read and which outlive the tab),
// not in a cookie (the API takes bearer tokens, and a cookie would need CSRF
// defences) and never in a URL. Reloading the page signs out; the token also ends
// when it expires (MP_JWT_TTL_SECS), and the next call that answers 401 brings the
// sign-in form back.

let token = null;
let onSessionEnd = () => {};

export function setToken(value) {
  token = value;
}

export function hasToken() {
  return token !== null;
}

/** Called once with a function to run when the server refuses the token (401). */
export function whenSessionEnds(callback) {
  onSessionEnd = callback;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(describe(status, problem));
    this.status = status;
    this.problem = problem || {};
    this.code = this.problem.code;
  }
}

function describe(status, problem) {
  if (status === 0) return 'Meterplane could not be reached. Check your connection and try again.';
  if (problem && problem.code === 'retention_exceeded') {
    const day = problem.earliestAllowedDate ? ` (${problem.earliestAllowedDate})` : '';
    return `This window reaches before the oldest day your plan keeps${day}. Choose a shorter window.`;
  }
  if (problem && problem.detail) return problem.detail;
  if (problem && problem.title) return `${problem.title} (${status})`;
  if (status === 503) return 'Meterplane is busy or a dependency is down. Try again in a moment.';
  return `The server answered ${status}.`;
}

/** Query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * A file the API makes (an invoice's HTML or CSV): the same bearer token, the answer
 * kept as a Blob with the name the server gives it. Errors as for `api`.
 */
export async function fetchFile(path) {
  let res;
  try {
    res = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, credentials: 'omit', cache: 'no-store' });
  } catch {
    throw new ApiError(0, null);
  }
  if (!res.ok) {
    let problem = null;
    try { problem = await res.json(); } catch { /* no problem document */ }
    if (res.status === 401 && token) {
      token = null;
      onSessionEnd();
    }
    throw new ApiError(res.status, problem);
  }
  const disposition = res.headers.get('content-disposition') || '';
  const name = /filename="([^"]+)"/.exec(disposition);
  return { blob: await res.blob(), name: name ? name[1] : null };
}

export async function api(path, { method = 'GET', body, params, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path + query(params), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, null);
  }
  if (res.status === 204) return null;
  let data = null;
  const type = res.headers.get('content-type') || '';
  if (type.includes('json')) {
    try {
      data = await res.json();
    } catch (e) {
      // A request cancelled while its body was arriving is cancelled, not empty.
      if (e.name === 'AbortError') throw e;
      if (res.ok) throw new ApiError(res.status, { detail: 'The server sent an answer that could not be read.' });
      data = null;
    }
  }
  if (!res.ok) {
    if (res.status === 401 && token && !path.startsWith('/v1/auth/')) {
      token = null;
      onSessionEnd();
    }
    throw new ApiError(res.status, data);
  }
  return data;
}

/** Base path of one organization's API. */
export const org = (orgId) => `/v1/orgs/${encodeURIComponent(orgId)}`;
