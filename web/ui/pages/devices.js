// Devices: list with state badges, create form, per-device hot swap and delete.

import { get, post, put, del, listOf } from '../api.js';
import {
  h, clear, fill, icon, fmtBytes, errorBox, emptyState, loading, confirmDialog, busy, field, toast, stateBadge, UNIT_BYTES,
} from '../dom.js';
import { deviceModule, moduleLabel, indexById, lunText, isBuiltin } from './common.js';

/** A module <select>; `current` is preselected. */
export function moduleSelect(mods, current, attrs) {
  const sel = h('select', attrs);
  const builtins = mods.filter(isBuiltin);
  const own = mods.filter((m) => !isBuiltin(m));
  const opt = (m) => h('option', { value: m.id, dataset: { name: m.name, builtin: String(isBuiltin(m)) }, selected: current !== null && current !== undefined && String(m.id) === String(current) }, moduleLabel(m));
  if (own.length) sel.append(h('optgroup', { label: 'Uploaded' }, own.map(opt)));
  if (builtins.length) sel.append(h('optgroup', { label: 'Built-in' }, builtins.map(opt)));
  if (!mods.length) sel.append(h('option', { value: '' }, 'No modules'));
  return sel;
}

/**
 * Hot-swap control: select + button. `onDone(device)` after a successful swap;
 * errors go to `errSlot`.
 */
export function bindControl(dev, mods, errSlot, onDone, pending) {
  const cur = deviceModule(dev, indexById(mods)).id;
  // `pending` (device id -> chosen module id) keeps a choice not yet bound
  // across the list's periodic re-rendering.
  const key = String(dev.id);
  const chosen = pending && pending.has(key) && mods.some((m) => String(m.id) === pending.get(key)) ? pending.get(key) : cur;
  const sel = moduleSelect(mods, chosen, { testid: 'device-bind-select', 'aria-label': `Module for ${dev.name}`, class: 'select-sm' });
  const btn = h('button', { class: 'btn btn-sm', testid: 'device-bind-submit', title: 'Hot swap: in-flight commands drain, none fail' }, icon('swap'), h('span', null, 'Bind'));
  const syncBtn = () => { btn.disabled = !sel.value || String(sel.value) === String(cur); };
  sel.addEventListener('change', () => {
    if (pending) { if (String(sel.value) === String(cur)) pending.delete(key); else pending.set(key, String(sel.value)); }
    syncBtn();
  });
  syncBtn();
  btn.addEventListener('click', async () => {
    clear(errSlot);
    await busy(btn, async () => {
      try {
        const idNum = Number(sel.value);
        const d = await put(`/devices/${encodeURIComponent(dev.id)}/module`, { module: Number.isFinite(idNum) && String(idNum) === sel.value ? idNum : sel.value });
        toast(`${dev.name} now runs ${sel.selectedOptions[0] ? sel.selectedOptions[0].textContent : 'the new module'}`);
        if (pending) pending.delete(key);
        if (onDone) await onDone(d);
      } catch (e) {
        errSlot.append(errorBox(e, 'device-bind-error'));
      }
    });
  });
  return h('div', { class: 'bind-control' }, sel, btn);
}

export async function deleteDevice(dev, errSlot) {
  const ok = await confirmDialog({
    title: `Delete device ${dev.name}?`,
    body: 'The device is stopped, its LUN removed if exported, and its storage directory deleted. This cannot be undone.',
  });
  if (!ok) return false;
  try {
    await del(`/devices/${encodeURIComponent(dev.id)}`);
    toast(`Device ${dev.name} deleted`);
    return true;
  } catch (e) {
    fill(errSlot, errorBox(e, 'device-delete-error'));
    return false;
  }
}

export async function devicesPage(main, { session }) {
  const listSlot = h('div', { class: 'slot', testid: 'devices-list' }, loading('Loading devices…'));
  const listErr = h('div', { class: 'slot' });
  const formSlot = h('div', { class: 'slot' }, loading('Loading modules…'));
  let mods = [];
  let tenants = [];
  const pendingBind = new Map();

  fill(main, 
    h('div', { class: 'page-head' },
      h('div', null, h('h1', null, 'Devices'),
        h('p', { class: 'muted' }, 'Block devices, each served by a WebAssembly backstore module.'))),
    h('section', { class: 'card', 'aria-labelledby': 'devlist-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'devlist-h' }, 'Your devices'),
        h('button', { class: 'btn btn-ghost btn-sm', testid: 'devices-refresh', onclick: () => refresh() }, icon('refresh'), 'Refresh')),
      listErr, listSlot),
    h('section', { class: 'card', 'aria-labelledby': 'create-h' },
      h('h2', { id: 'create-h' }, 'Create a device'),
      formSlot));

  async function loadMods() {
    mods = listOf(await get('/modules'), 'modules');
    mods.sort((a, b) => (isBuiltin(a) - isBuiltin(b)) || String(a.name).localeCompare(String(b.name)));
  }

  function createForm() {
    const name = h('input', { type: 'text', testid: 'device-create-name', placeholder: 'e.g. disk1', autocomplete: 'off', required: true, maxlength: '32' });
    const size = h('input', { type: 'number', testid: 'device-create-size', min: '1', step: 'any', value: '64', required: true, 'aria-label': 'Size' });
    const unit = h('select', { testid: 'device-create-unit', 'aria-label': 'Size unit' },
      ['MiB', 'GiB', 'TiB'].map((u) => h('option', { value: u, selected: u === 'MiB' }, u)));
    const bs = h('select', { testid: 'device-create-block-size' },
      h('option', { value: '512', selected: true }, '512 bytes'), h('option', { value: '4096' }, '4096 bytes'));
    const ramDefault = mods.find((m) => isBuiltin(m) && m.name === 'ram');
    const modSel = moduleSelect(mods, ramDefault ? ramDefault.id : null, { testid: 'device-create-module', required: true });
    const config = h('input', { type: 'text', testid: 'device-create-config', placeholder: 'optional, passed to the guest\'s open()', autocomplete: 'off' });
    const tenantSel = h('select', { testid: 'device-create-tenant' },
      tenants.length ? null : h('option', { value: '' }, 'No tenants yet'),
      tenants.map((t) => h('option', { value: t.name }, t.name)));
    const err = h('div', { class: 'slot' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', testid: 'device-create-submit' }, icon('plus'), h('span', null, 'Create device'));
    const sizeId = 'dev-size';
    size.id = sizeId;
    const form = h('form', { class: 'form-grid', testid: 'device-create-form', novalidate: true },
      field('Name', name),
      h('div', { class: 'field' }, h('label', { for: sizeId }, 'Size'), h('div', { class: 'input-row' }, size, unit)),
      field('Block size', bs),
      field('Module', modSel),
      h('div', { class: 'field span-2' }, h('label', { for: 'dev-config' }, 'Configuration'), (config.id = 'dev-config', config),
        h('small', { class: 'hint' }, 'A string handed to the module, e.g. key=value pairs. Leave empty for defaults.')),
      session.isAdmin ? field('Tenant', tenantSel, 'Admins create devices on behalf of a tenant.') : null,
      h('div', { class: 'span-all' }, err),
      h('div', { class: 'span-all row' }, submit));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clear(err);
      const n = name.value.trim();
      const s = Number(size.value);
      if (!n) { err.append(errorBox(new Error('Give the device a name.'), 'device-create-error')); name.focus(); return; }
      if (!(s > 0)) { err.append(errorBox(new Error('The size must be a positive number.'), 'device-create-error')); size.focus(); return; }
      if (!modSel.value) { err.append(errorBox(new Error('Choose a module (upload one on the Modules page).'), 'device-create-error')); return; }
      const bytes = Math.round(s * UNIT_BYTES[unit.value]);
      const idNum = Number(modSel.value);
      const body = {
        name: n, size: bytes, block_size: Number(bs.value),
        module: Number.isFinite(idNum) && String(idNum) === modSel.value ? idNum : modSel.value,
        config: config.value,
      };
      if (session.isAdmin) body.tenant = tenantSel.value;
      await busy(submit, async () => {
        try {
          const d = await post('/devices', body);
          toast(`Device ${d && d.name ? d.name : n} created`);
          name.value = '';
          config.value = '';
          await refresh();
        } catch (ex) {
          err.append(errorBox(ex, 'device-create-error'));
        }
      });
    });
    return form;
  }

  async function refresh() {
    let devs;
    try {
      [devs] = await Promise.all([get('/devices').then((x) => listOf(x, 'devices')), loadMods()]);
    } catch (e) {
      fill(listSlot, errorBox(e, 'devices-error'));
      return;
    }
    const byId = indexById(mods);
    clear(listSlot);
    if (!devs.length) {
      listSlot.append(emptyState('disk', 'No devices yet', 'Create one below: pick a size and a module.', 'devices-empty'));
      return;
    }
    devs.sort((a, b) => String(a.name).localeCompare(String(b.name)));
    listSlot.append(h('div', { class: 'table-wrap' }, h('table', { class: 'table', testid: 'devices-table' },
      h('thead', null, h('tr', null,
        ['Name', 'State', 'Size', 'Module', session.isAdmin ? 'Tenant' : null, 'LUN', 'Hot swap', ''].filter((x) => x !== null).map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, devs.map((d) => {
        const m = deviceModule(d, byId);
        const rowErr = listErr;
        const delBtn = h('button', { class: 'btn btn-ghost btn-sm btn-danger-text', testid: 'device-delete', 'aria-label': `Delete device ${d.name}` }, icon('trash'), h('span', null, 'Delete'));
        delBtn.addEventListener('click', () => busy(delBtn, async () => { if (await deleteDevice(d, rowErr)) await refresh(); }));
        return h('tr', { testid: 'device-row', dataset: { name: d.name, id: d.id, state: d.state || '' } },
          h('td', { 'data-label': 'Name' }, h('a', { class: 'cell-title', href: `#/devices/${encodeURIComponent(d.id)}`, testid: 'device-link' }, icon('disk'), h('strong', null, d.name)),
            d.reason && d.state !== 'running' ? h('div', { class: 'small muted reason' }, d.reason) : null),
          h('td', { 'data-label': 'State' }, stateBadge(d.state)),
          h('td', { 'data-label': 'Size', class: 'nowrap' }, fmtBytes(d.size), h('div', { class: 'small muted' }, `${d.block_size || '?'} B blocks`)),
          h('td', { 'data-label': 'Module', testid: 'device-module' }, m.name, m.version ? h('span', { class: 'muted small' }, ` ${m.version}`) : null),
          session.isAdmin ? h('td', { 'data-label': 'Tenant' }, d.tenant || '—') : null,
          h('td', { 'data-label': 'LUN', class: 'nowrap' }, d.lun ? h('span', { class: 'small' }, lunText(d.lun)) : h('span', { class: 'muted' }, 'not exported')),
          h('td', { 'data-label': 'Hot swap' }, bindControl(d, mods, rowErr, refresh, pendingBind)),
          h('td', { class: 'actions' }, delBtn));
      })))));
  }

  try {
    if (session.isAdmin) tenants = listOf(await get('/tenants'), 'tenants');
    await refresh();
    fill(formSlot, createForm());
  } catch (e) {
    fill(formSlot, errorBox(e, 'devices-error'));
  }
  // Keep states fresh while the page is open.
  const timer = setInterval(() => {
    if (!document.hidden && !document.querySelector('dialog[open]') && !listSlot.contains(document.activeElement)) refresh();
  }, 5000);
  return () => clearInterval(timer);
}
