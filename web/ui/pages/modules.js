// Modules: list, upload (drop zone or file picker, with progress and the
// server's validation error shown next to the drop zone), delete.

import { get, del, listOf, uploadModule } from '../api.js';
import {
  h, clear, fill, icon, fmtBytes, fmtDate, shortHash, errorBox, emptyState, loading, confirmDialog, busy, field, toast,
} from '../dom.js';
import { isBuiltin, boundList, indexById, shownVersion } from './common.js';

/** "wasmtap_guest_ram.wasm" -> "wasmtap_guest_ram" */
export function nameFromFile(fname) {
  return fname.replace(/\.[^.]*$/, '').toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 32).replace(/^[-_]+/, '') || 'module';
}

export async function modulesPage(main, { session }) {
  const listSlot = h('div', { class: 'slot', testid: 'modules-list' }, loading('Loading modules…'));
  const listErr = h('div', { class: 'slot', testid: 'modules-error-slot' });
  let tenants = [];

  // ---- upload card ----
  const fileInput = h('input', {
    type: 'file', id: 'upload-file-input', class: 'sr-only', testid: 'upload-file-input',
    accept: '.wasm,application/wasm',
  });
  const fileInfo = h('div', { class: 'drop-file muted', testid: 'upload-file-info' }, 'No file chosen');
  const drop = h('label', { class: 'dropzone', for: 'upload-file-input', testid: 'upload-drop', tabindex: '0', role: 'button', 'aria-describedby': 'drop-help' },
    icon('upload', 'icon icon-xl'),
    h('span', { class: 'drop-title' }, 'Drop a WebAssembly component here'),
    h('span', { class: 'muted', id: 'drop-help' }, 'or ', h('span', { class: 'linkish' }, 'choose a file'), ' (.wasm, up to 32 MiB)'),
    fileInfo);
  const nameIn = h('input', { type: 'text', testid: 'upload-name', placeholder: 'e.g. my-backstore', autocomplete: 'off', required: true, maxlength: '32', pattern: '[a-z0-9][a-z0-9_-]{0,31}' });
  const versionIn = h('input', { type: 'text', testid: 'upload-version', placeholder: 'optional, e.g. 1.0.0', autocomplete: 'off', maxlength: '64' });
  const tenantSel = h('select', { testid: 'upload-tenant' });
  const submit = h('button', { class: 'btn btn-primary', type: 'submit', testid: 'upload-submit', disabled: true }, icon('upload'), h('span', null, 'Upload'));
  const bar = h('div', { class: 'progress-bar' });
  const progressText = h('span', { class: 'small muted', testid: 'upload-progress-text' });
  const progress = h('div', { class: 'progress', testid: 'upload-progress', hidden: true, role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-label': 'Upload progress' }, bar);
  const errSlot = h('div', { class: 'slot upload-error-slot', dataset: { errTestid: 'upload-error' } });

  let file = null;
  let nameTouched = false;
  nameIn.addEventListener('input', () => { nameTouched = true; sync(); });

  function sync() { submit.disabled = !file || !nameIn.value.trim() || (session.isAdmin && !tenantSel.value); }

  function choose(f) {
    if (!f) return;
    file = f;
    clear(errSlot);
    fill(fileInfo, icon('module'), h('strong', { testid: 'upload-file-name' }, f.name), ` · ${fmtBytes(f.size)}`);
    fileInfo.classList.remove('muted');
    drop.classList.add('has-file');
    if (!nameTouched || !nameIn.value.trim()) { nameIn.value = nameFromFile(f.name); nameTouched = false; }
    progress.hidden = true;
    progressText.textContent = '';
    sync();
    nameIn.focus();
  }

  fileInput.addEventListener('change', () => choose(fileInput.files && fileInput.files[0]));
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); fileInput.click(); } });
  for (const ev of ['dragenter', 'dragover']) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; drop.classList.add('dragging'); });
  }
  for (const ev of ['dragleave', 'dragend']) drop.addEventListener(ev, () => drop.classList.remove('dragging'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('dragging');
    const f = e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) choose(f);
  });

  const form = h('form', { class: 'upload-form', testid: 'upload-form', novalidate: true },
    h('div', { class: 'upload-grid' },
      h('div', { class: 'upload-left' }, drop, fileInput, errSlot),
      h('div', { class: 'upload-right' },
        field('Name', nameIn, 'Lower-case letters, digits, _ and - (up to 32).'),
        field('Version', versionIn),
        session.isAdmin ? field('Tenant', tenantSel, 'Admins upload on behalf of a tenant.') : null,
        h('div', { class: 'row' }, submit, progressText),
        progress)));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!file) return;
    clear(errSlot);
    progress.hidden = false;
    bar.style.width = '0%';
    progressText.textContent = 'Uploading… 0%';
    await busy(submit, async () => {
      try {
        const m = await uploadModule({
          file, name: nameIn.value.trim(), version: versionIn.value.trim(), tenant: session.isAdmin ? tenantSel.value : null,
        }, (f) => {
          const pct = Math.round(f * 100);
          bar.style.width = `${pct}%`;
          progress.setAttribute('aria-valuenow', String(pct));
          progressText.textContent = pct < 100 ? `Uploading… ${pct}%` : 'Validating and compiling…';
        });
        progressText.textContent = '';
        progress.hidden = true;
        toast(`Module ${m && m.name ? m.name : nameIn.value} uploaded`);
        file = null;
        fileInput.value = '';
        nameIn.value = '';
        versionIn.value = '';
        nameTouched = false;
        drop.classList.remove('has-file');
        fill(fileInfo, 'No file chosen');
        fileInfo.classList.add('muted');
        sync();
        await refresh();
      } catch (err) {
        progress.hidden = true;
        progressText.textContent = '';
        errSlot.append(errorBox(err, 'upload-error'));
      }
    });
  });

  fill(main, 
    h('div', { class: 'page-head' },
      h('div', null, h('h1', null, 'Modules'),
        h('p', { class: 'muted' }, 'WebAssembly components that implement a backstore. Built-in modules are available to everyone.'))),
    h('section', { class: 'card', 'aria-labelledby': 'upload-h' },
      h('h2', { id: 'upload-h' }, 'Upload a module'),
      form),
    h('section', { class: 'card', 'aria-labelledby': 'list-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'list-h' }, 'Available modules'),
        h('button', { class: 'btn btn-ghost btn-sm', testid: 'modules-refresh', onclick: () => refresh() }, icon('refresh'), 'Refresh')),
      listErr,
      listSlot));

  if (session.isAdmin) {
    try {
      tenants = listOf(await get('/tenants'), 'tenants');
    } catch (e) { errSlot.append(errorBox(e, 'upload-error')); }
    fill(tenantSel, 
      tenants.length ? null : h('option', { value: '' }, 'No tenants yet: create one on the Admin page'),
      tenants.map((t) => h('option', { value: t.name }, t.name)));
    sync();
  }

  async function refresh() {
    let mods;
    let devs = [];
    try {
      [mods, devs] = await Promise.all([
        get('/modules').then((x) => listOf(x, 'modules')),
        get('/devices').then((x) => listOf(x, 'devices')).catch(() => []),
      ]);
    } catch (e) {
      fill(listSlot, errorBox(e, 'modules-error'));
      return;
    }
    const devById = indexById(devs);
    clear(listSlot);
    if (!mods.length) {
      listSlot.append(emptyState('module', 'No modules yet', 'Upload a .wasm component above.', 'modules-empty'));
      return;
    }
    mods.sort((a, b) => (isBuiltin(b) - isBuiltin(a)) || String(a.name).localeCompare(String(b.name)));
    const rows = mods.map((m) => row(m, devById));
    listSlot.append(h('div', { class: 'table-wrap' }, h('table', { class: 'table', testid: 'modules-table' },
      h('thead', null, h('tr', null,
        ['Name', 'Version', 'SHA-256', 'Size', 'Owner', 'Bound devices', 'Uploaded', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rows))));
  }

  function row(m, devById) {
    const builtin = isBuiltin(m);
    const bound = boundList(m);
    const delBtn = h('button', { class: 'btn btn-ghost btn-sm btn-danger-text', testid: 'module-delete', 'aria-label': `Delete module ${m.name}` }, icon('trash'), h('span', null, 'Delete'));
    let why = null;
    if (builtin) why = 'Built-in modules are part of the daemon and cannot be deleted.';
    else if (bound.length) why = `In use by ${bound.length} device${bound.length > 1 ? 's' : ''}: bind ${bound.length > 1 ? 'them' : 'it'} to another module or delete ${bound.length > 1 ? 'them' : 'it'} first.`;
    if (why) { delBtn.disabled = true; delBtn.title = why; }
    delBtn.addEventListener('click', async () => {
      const ok = await confirmDialog({ title: `Delete module ${m.name}?`, body: 'Its stored component is removed. Devices cannot be bound to it afterwards.' });
      if (!ok) return;
      clear(listErr);
      await busy(delBtn, async () => {
        try {
          await del(`/modules/${encodeURIComponent(m.id)}`);
          toast(`Module ${m.name} deleted`);
          await refresh();
        } catch (e) {
          listErr.append(errorBox(e, 'module-delete-error'));
        }
      });
    });
    const boundCell = bound.length
      ? h('div', { class: 'tags' }, bound.map((b) => {
        const id = b && typeof b === 'object' ? b.id : b;
        const dev = id !== null && id !== undefined ? devById.get(String(id)) : null;
        const name = (b && typeof b === 'object' && b.name) || (dev && dev.name) || (typeof b === 'string' ? b : id !== null && id !== undefined ? `#${id}` : 'device');
        return id !== null && id !== undefined && (typeof id === 'number' || dev) ? h('a', { class: 'tag', href: `#/devices/${encodeURIComponent(id)}` }, name) : h('span', { class: 'tag' }, name);
      }))
      : h('span', { class: 'muted' }, 'none');
    const io = (m.imports && m.imports.length) || (m.exports && m.exports.length)
      ? h('details', { class: 'mod-details' }, h('summary', null, 'interfaces'),
        m.exports && m.exports.length ? h('div', null, h('span', { class: 'muted small' }, 'exports '), m.exports.map((x) => h('code', { class: 'iface' }, x))) : null,
        m.imports && m.imports.length ? h('div', null, h('span', { class: 'muted small' }, 'imports '), m.imports.map((x) => h('code', { class: 'iface' }, x))) : null)
      : null;
    return h('tr', { testid: 'module-row', dataset: { name: m.name, id: m.id, builtin: String(builtin) } },
      h('td', { 'data-label': 'Name' }, h('div', { class: 'cell-title' }, icon('module'), h('strong', { testid: 'module-name' }, m.name)), io),
      h('td', { 'data-label': 'Version' }, shownVersion(m) || h('span', { class: 'muted' }, '—')),
      h('td', { 'data-label': 'SHA-256' }, m.sha256 ? h('code', { title: m.sha256, testid: 'module-sha' }, shortHash(m.sha256)) : '—'),
      h('td', { 'data-label': 'Size' }, fmtBytes(m.size)),
      h('td', { 'data-label': 'Owner' }, builtin ? h('span', { class: 'chip chip-builtin' }, 'built-in') : h('span', null, m.owner || '—')),
      h('td', { 'data-label': 'Bound devices', testid: 'module-bound' }, boundCell),
      h('td', { 'data-label': 'Uploaded' }, builtin ? h('span', { class: 'muted' }, '—') : fmtDate(m.created_at)),
      h('td', { class: 'actions' }, delBtn, why ? h('span', { class: 'sr-only' }, why) : null));
  }

  await refresh();
  return null;
}
