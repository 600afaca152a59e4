// wasmtap console: session, shell (header, frontend banner, navigation) and
// hash routing. Pages live in pages/*.js; each renders into <main> and may
// return a cleanup function (timers) that runs when the route changes.

import { api, getToken, setToken, clearToken, setUnauthorizedHandler } from './api.js';
import { h, clear, fill, icon, errorBox, loading, toast } from './dom.js';
import { modulesPage } from './pages/modules.js';
import { devicesPage } from './pages/devices.js';
import { devicePage } from './pages/device.js';
import { adminPage } from './pages/admin.js';

const app = document.getElementById('app');

const session = {
  whoami: null, // {role, tenant, frontend: {kind, note}, version}
  get isAdmin() { return this.whoami && this.whoami.role === 'admin'; },
  get isSim() { return this.whoami && this.whoami.frontend && this.whoami.frontend.kind === 'sim'; },
};

let cleanup = null;
let loginMessage = null;

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function logout(message) {
  clearToken();
  session.whoami = null;
  loginMessage = message || null;
  if (location.hash !== '#/login') location.hash = '#/login';
  else route();
}

setUnauthorizedHandler((err) => {
  if (session.whoami) logout(`Signed out: ${err.message || 'the token is no longer valid'}`);
});

// ---- login ----

function loginView() {
  const input = h('input', {
    id: 'login-token', type: 'password', testid: 'login-token', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'wt_…', required: true, 'aria-describedby': 'login-help',
  });
  const show = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', testid: 'login-show', 'aria-pressed': 'false' }, 'Show');
  show.addEventListener('click', () => {
    const on = input.type === 'password';
    input.type = on ? 'text' : 'password';
    show.textContent = on ? 'Hide' : 'Show';
    show.setAttribute('aria-pressed', String(on));
  });
  const errSlot = h('div', { class: 'slot', testid: 'login-error-slot' });
  if (loginMessage) errSlot.append(h('div', { class: 'alert alert-info', testid: 'login-message' }, icon('info'), h('div', null, loginMessage)));
  const submit = h('button', { class: 'btn btn-primary btn-block', type: 'submit', testid: 'login-submit' }, 'Sign in');
  const form = h('form', { class: 'login-form', testid: 'login-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'login-token' }, 'Access token'),
      h('div', { class: 'input-row' }, input, show),
      h('small', { class: 'hint', id: 'login-help' },
        'Paste an admin or tenant token. The admin token is printed once when the daemon first starts; tenant tokens are made on the Admin page. It is kept only in this browser tab.')),
    errSlot,
    submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const tok = input.value.trim();
    clear(errSlot);
    if (!tok) {
      errSlot.append(errorBox(new Error('Paste a token first.'), 'login-error'));
      input.focus();
      return;
    }
    submit.disabled = true;
    submit.classList.add('is-busy');
    try {
      const who = await api('GET', '/whoami', undefined, { token: tok });
      setToken(tok);
      session.whoami = who;
      loginMessage = null;
      navigate(who.role === 'admin' ? '#/admin' : '#/devices');
    } catch (e) {
      errSlot.append(errorBox(e, 'login-error'));
      input.select();
    } finally {
      submit.disabled = false;
      submit.classList.remove('is-busy');
    }
  });
  fill(app, 
    h('div', { class: 'login-page' },
      h('div', { class: 'login-card card' },
        h('div', { class: 'brand brand-lg' }, icon('logo', 'icon brand-mark'), h('span', null, 'wasmtap')),
        h('p', { class: 'muted' }, 'Storage backstores as sandboxed WebAssembly components.'),
        form)));
  input.focus();
}

// ---- shell ----

function banner(fe) {
  if (!fe) return null;
  const sim = fe.kind === 'sim';
  return h('div', { class: `banner ${sim ? 'banner-sim' : 'banner-tcmu'}`, testid: 'frontend-banner', role: 'note', dataset: { kind: fe.kind } },
    icon(sim ? 'cpu' : 'lun'),
    h('strong', { testid: 'frontend-kind' }, sim ? 'Simulator' : 'LIO / TCMU'),
    // The daemon's note is shown as it is; on sim it is preceded by the plain
    // statement unless the note already says so.
    sim && !/simulat/i.test(fe.note || '') ? h('span', { class: 'banner-text' }, 'No LIO on this host: devices run on the built-in simulator.') : null,
    !sim && !fe.note ? h('span', { class: 'banner-text' }, 'Devices are served to the Linux SCSI target.') : null,
    fe.note ? h('span', { testid: 'frontend-note', class: 'banner-note' }, fe.note) : null);
}

function shell(active) {
  const who = session.whoami;
  const link = (hash, label, ic, id) => h('a', {
    href: hash, class: `nav-link${active === id ? ' active' : ''}`, testid: `nav-${id}`,
    'aria-current': active === id ? 'page' : null,
  }, icon(ic), h('span', null, label));
  const main = h('main', { id: 'main', class: 'main', tabindex: '-1' });
  fill(app, 
    h('header', { class: 'topbar' },
      h('a', { class: 'brand', href: '#/devices', 'aria-label': 'wasmtap home' }, icon('logo', 'icon brand-mark'), h('span', null, 'wasmtap')),
      h('nav', { class: 'nav', 'aria-label': 'Main' },
        link('#/devices', 'Devices', 'disk', 'devices'),
        link('#/modules', 'Modules', 'module', 'modules'),
        session.isAdmin ? link('#/admin', 'Admin', 'shield', 'admin') : null),
      h('div', { class: 'who' },
        h('span', { class: `chip ${session.isAdmin ? 'chip-admin' : ''}`, testid: 'whoami', dataset: { role: who.role } },
          session.isAdmin ? 'admin' : `tenant: ${who.tenant}`),
        who.version ? h('span', { class: 'muted small version', title: 'daemon version' }, `v${who.version}`) : null,
        h('button', { class: 'btn btn-ghost btn-sm', testid: 'logout', onclick: () => logout('Signed out.') }, icon('logout'), h('span', null, 'Sign out')))),
    banner(who.frontend),
    main);
  return main;
}

// ---- routing ----

async function route() {
  if (cleanup) { try { cleanup(); } catch { /* ignore */ } cleanup = null; }
  const hash = location.hash || '#/';
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);

  if (!getToken()) { if (parts[0] !== 'login') { location.hash = '#/login'; return; } loginView(); return; }
  if (parts[0] === 'login') { if (session.whoami) { navigate('#/devices'); return; } }

  if (!session.whoami) {
    fill(app, h('div', { class: 'boot' }, loading('Checking your token…')));
    try {
      session.whoami = await api('GET', '/whoami');
    } catch (e) {
      if (e.status === 401) { logout(`Signed out: ${e.message}`); return; }
      fill(app, h('div', { class: 'boot' }, h('div', { class: 'card narrow' },
        errorBox(e, 'boot-error'),
        h('div', { class: 'row' },
          h('button', { class: 'btn', onclick: () => route() }, icon('refresh'), 'Retry'),
          h('button', { class: 'btn btn-ghost', onclick: () => logout() }, 'Use another token')))));
      return;
    }
    if (parts[0] === 'login') { navigate(session.isAdmin ? '#/admin' : '#/devices'); return; }
  }

  const ctx = { session, navigate, toast };
  let page = parts[0] || 'devices';
  if (page === 'admin' && !session.isAdmin) page = 'forbidden';
  const main = shell(page === 'devices' && parts[1] ? 'devices' : page);
  try {
    if (page === 'devices' && parts[1]) cleanup = await devicePage(main, parts[1], ctx);
    else if (page === 'devices') cleanup = await devicesPage(main, ctx);
    else if (page === 'modules') cleanup = await modulesPage(main, ctx);
    else if (page === 'admin') cleanup = await adminPage(main, ctx);
    else if (page === 'forbidden') main.append(h('div', { class: 'card' }, errorBox(new Error('The Admin page needs the admin token.'), 'forbidden')));
    else main.append(h('div', { class: 'card' }, h('h1', null, 'Not found'), h('p', null, 'No such page. ', h('a', { href: '#/devices' }, 'Go to devices'), '.')));
  } catch (e) {
    main.append(errorBox(e, 'page-error'));
  }
}

window.addEventListener('hashchange', route);
route();
