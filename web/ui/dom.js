// Small DOM helpers: element builder (text is always text, never HTML),
// icons, formatting, toasts, confirmation dialog, and the shared bits of the
// UI (error boxes, empty states, state badges).

import { ApiError } from './api.js';

/**
 * h('div', {class: 'x', testid: 'y', onclick: f}, child, ...)
 * Children may be strings, numbers, nodes, arrays, null/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'testid') el.dataset.testid = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else if (k === 'checked' || k === 'disabled' || k === 'selected' || k === 'required') el[k] = !!v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// Inline SVG icons (24x24 stroke paths); constant strings, never user data.
const ICONS = {
  logo: '<rect x="3" y="3" width="18" height="18" rx="4"/><path d="M7 9h10M7 12h10M7 15h6"/>',
  module: '<path d="M12 3l8 4.5v9L12 21l-8-4.5v-9z"/><path d="M12 12l8-4.5M12 12v9M12 12L4 7.5"/>',
  disk: '<ellipse cx="12" cy="6" rx="8" ry="3"/><path d="M4 6v12c0 1.7 3.6 3 8 3s8-1.3 8-3V6"/><path d="M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3"/>',
  shield: '<path d="M12 3l8 3v6c0 4.5-3.4 8.3-8 9-4.6-.7-8-4.5-8-9V6z"/>',
  logout: '<path d="M15 4h3a2 2 0 012 2v12a2 2 0 01-2 2h-3"/><path d="M10 17l-5-5 5-5M5 12h11"/>',
  upload: '<path d="M12 16V4M7 9l5-5 5 5"/><path d="M4 16v3a2 2 0 002 2h12a2 2 0 002-2v-3"/>',
  trash: '<path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3"/>',
  plus: '<path d="M12 5v14M5 12h14"/>',
  swap: '<path d="M7 7h13l-4-4M17 17H4l4 4"/>',
  play: '<path d="M7 4l13 8-13 8z"/>',
  copy: '<rect x="8" y="8" width="12" height="12" rx="2"/><path d="M16 8V6a2 2 0 00-2-2H6a2 2 0 00-2 2v8a2 2 0 002 2h2"/>',
  info: '<circle cx="12" cy="12" r="9"/><path d="M12 11v6M12 7.5v.5"/>',
  alert: '<path d="M12 3l10 18H2z"/><path d="M12 10v5M12 18v.5"/>',
  key: '<circle cx="8" cy="15" r="4"/><path d="M11 12l9-9M16 7l3 3"/>',
  users: '<circle cx="9" cy="8" r="4"/><path d="M2 21c0-4 3-7 7-7s7 3 7 7M16 4a4 4 0 010 8M22 21c0-3-1.5-5.5-4-6.5"/>',
  lun: '<rect x="3" y="5" width="18" height="14" rx="2"/><path d="M7 15h.01M11 15h6"/>',
  back: '<path d="M15 6l-6 6 6 6"/>',
  refresh: '<path d="M20 12a8 8 0 11-2.3-5.7M20 4v5h-5"/>',
  cpu: '<rect x="6" y="6" width="12" height="12" rx="2"/><path d="M9 2v4M15 2v4M9 18v4M15 18v4M2 9h4M2 15h4M18 9h4M18 15h4"/>',
};

export function icon(name, cls = 'icon') {
  const span = document.createElement('span');
  span.className = cls;
  span.setAttribute('aria-hidden', 'true');
  span.innerHTML = `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round">${ICONS[name] || ''}</svg>`;
  return span;
}

// ---- formatting ----

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
export function fmtBytes(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return '—';
  n = Number(n);
  let i = 0;
  while (Math.abs(n) >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
  const s = i === 0 ? String(n) : n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2).replace(/\.0+$/, '').replace(/(\.\d*?)0+$/, '$1');
  return `${s} ${UNITS[i]}`;
}

export function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return '—';
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** Compact number for chart axes: 1.2k, 3.4M. */
export function fmtCompact(n) {
  const a = Math.abs(n);
  if (a >= 1e9) return `${+(n / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${+(n / 1e3).toFixed(0)}k`;
  if (a >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  if (a >= 10 || a === 0) return `${Math.round(n)}`;
  return `${+n.toFixed(2)}`;
}

export function fmtLatency(us) {
  if (us === null || us === undefined || !Number.isFinite(us)) return '—';
  if (us >= 1e6) return `${+(us / 1e6).toFixed(2)} s`;
  if (us >= 1e3) return `${+(us / 1e3).toFixed(us >= 1e4 ? 0 : 1)} ms`;
  return `${Math.round(us)} µs`;
}

/** Dates arrive as RFC 3339 strings or unix seconds/milliseconds. */
export function fmtDate(v) {
  if (v === null || v === undefined || v === '') return '—';
  let d;
  if (typeof v === 'number') d = new Date(v < 1e12 ? v * 1000 : v);
  else d = new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

export function shortHash(s) {
  return s ? String(s).slice(0, 12) : '—';
}

/** "64", "MiB" -> bytes. */
export const UNIT_BYTES = { KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

// ---- shared widgets ----

export function errorText(e) {
  if (e instanceof ApiError) return e.text;
  return (e && e.message) ? e.message : String(e);
}

/** A red box with the API error's code and message. */
export function errorBox(e, testid = 'error') {
  const box = h('div', { class: 'alert alert-error', role: 'alert', testid },
    icon('alert'),
    h('div', null,
      e instanceof ApiError && e.code ? h('code', { class: 'err-code' }, e.code) : null,
      e instanceof ApiError && e.code ? ': ' : null,
      h('span', { class: 'err-msg' }, e instanceof ApiError ? e.message : errorText(e))));
  return box;
}

/** Fill `slot` with an error box (or empty it when e is null). */
export function showError(slot, e) {
  clear(slot);
  if (e) slot.append(errorBox(e, slot.dataset.errTestid || 'error'));
}

export function emptyState(iconName, title, text, testid) {
  return h('div', { class: 'empty', testid },
    icon(iconName, 'icon icon-xl'),
    h('p', { class: 'empty-title' }, title),
    text ? h('p', { class: 'muted' }, text) : null);
}

export function loading(text = 'Loading…', testid = 'loading') {
  return h('div', { class: 'loading', testid, role: 'status' },
    h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

const STATE_HELP = {
  running: 'Serving I/O',
  degraded: 'The guest failed and is being restarted',
  offline: 'The backstore cannot run; I/O answers NOT READY',
  stopped: 'Not being served',
  restoring: 'Being started again after the daemon started',
};
export function stateBadge(state, testid = 'state-badge') {
  const s = state || 'unknown';
  return h('span', { class: `badge badge-${s}`, title: STATE_HELP[s] || '', testid, dataset: { state: s } },
    h('span', { class: 'dot', 'aria-hidden': 'true' }), s);
}

// ---- toasts ----

export function toast(message, kind = 'ok') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const t = h('div', { class: `toast toast-${kind}`, testid: `toast-${kind}` },
    icon(kind === 'error' ? 'alert' : 'info'), h('span', null, message));
  box.append(t);
  setTimeout(() => { t.classList.add('leaving'); setTimeout(() => t.remove(), 300); }, kind === 'error' ? 7000 : 3500);
}

// ---- confirmation dialog (returns a promise of true/false) ----

export function confirmDialog({ title, body, ok = 'Delete', danger = true }) {
  return new Promise((resolve) => {
    const okBtn = h('button', { class: danger ? 'btn btn-danger' : 'btn btn-primary', testid: 'confirm-ok', value: 'ok' }, ok);
    const cancel = h('button', { class: 'btn', testid: 'confirm-cancel', value: 'cancel', type: 'button' }, 'Cancel');
    const dlg = h('dialog', { class: 'dialog', testid: 'confirm-dialog', 'aria-labelledby': 'dlg-title' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'dlg-title' }, title),
        h('p', null, body),
        h('div', { class: 'dialog-actions' }, cancel, okBtn)));
    cancel.addEventListener('click', () => dlg.close('cancel'));
    dlg.addEventListener('close', () => { resolve(dlg.returnValue === 'ok'); dlg.remove(); });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

/** Disable a button while `f` runs, with a spinner. */
export async function busy(btn, f) {
  const was = btn.disabled;
  btn.disabled = true;
  btn.classList.add('is-busy');
  try { return await f(); } finally {
    btn.disabled = was;
    btn.classList.remove('is-busy');
  }
}

/** A labelled form field. */
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint ? h('small', { class: 'hint' }, hint) : null);
}

export function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const ta = h('textarea', { class: 'sr-only' });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  try { document.execCommand('copy'); } finally { ta.remove(); }
  return Promise.resolve();
}

/** Replace the children of `el` (same child rules as h()). */
export function fill(el, ...children) {
  return append(clear(el), children);
}
