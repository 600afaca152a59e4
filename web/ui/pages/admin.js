// Admin: tenants (with quotas), their tokens, and exporting devices as kernel LUNs.

import { get, post, del, api, listOf } from '../api.js';
import {
  h, clear, fill, icon, fmtBytes, fmtNum, fmtDate, errorBox, emptyState, loading, confirmDialog, busy, field, toast,
  stateBadge, copyText, UNIT_BYTES,
} from '../dom.js';
import { lunText } from './common.js';

function quota(t, k) {
  if (t[k] !== undefined) return t[k];
  if (t.quota && t.quota[k] !== undefined) return t.quota[k];
  if (t.quotas && t.quotas[k] !== undefined) return t.quotas[k];
  return null;
}
function usage(t, k) {
  if (t.usage && t.usage[k] !== undefined) return t.usage[k];
  if (t[`used_${k}`] !== undefined) return t[`used_${k}`];
  return null;
}

function meter(used, max, fmt) {
  const pct = max ? Math.min(100, Math.round((used / max) * 100)) : 0;
  const bar = h('div', { class: `meter-bar${pct >= 90 ? ' meter-high' : ''}` });
  bar.style.width = `${pct}%`;
  return h('div', { class: 'meter-cell' },
    h('span', { class: 'small' }, `${used === null ? '—' : fmt(used)} / ${max === null ? '—' : fmt(max)}`),
    h('div', { class: 'meter', role: 'meter', 'aria-valuenow': String(used ?? 0), 'aria-valuemin': '0', 'aria-valuemax': String(max ?? 0) }, bar));
}

function sizeInput(testid, label, placeholder) {
  const n = h('input', { type: 'number', min: '0', step: 'any', testid, placeholder, 'aria-label': label });
  const u = h('select', { testid: `${testid}-unit`, 'aria-label': `${label} unit` },
    ['MiB', 'GiB', 'TiB'].map((x) => h('option', { value: x, selected: x === 'GiB' }, x)));
  const id = `in-${testid}`;
  n.id = id;
  return {
    el: h('div', { class: 'field' }, h('label', { for: id }, label), h('div', { class: 'input-row' }, n, u), h('small', { class: 'hint' }, `empty: default (${placeholder})`)),
    bytes: () => (n.value.trim() === '' ? undefined : Math.round(Number(n.value) * UNIT_BYTES[u.value])),
    reset: () => { n.value = ''; },
  };
}

export async function adminPage(main, { session }) {
  const tenantsSlot = h('div', { class: 'slot', testid: 'tenants-list' }, loading('Loading tenants…'));
  const tenantsErr = h('div', { class: 'slot' });
  const tokensSlot = h('div', { class: 'slot', testid: 'tokens-list' });
  const tokensErr = h('div', { class: 'slot' });
  const newTokenSlot = h('div', { class: 'slot' });
  const lunsSlot = h('div', { class: 'slot', testid: 'luns-list' }, loading('Loading devices…'));
  const lunsErr = h('div', { class: 'slot' });
  let tenants = [];

  // ---- tenant create ----
  const tName = h('input', { type: 'text', testid: 'tenant-create-name', placeholder: 'e.g. acme', autocomplete: 'off', required: true, maxlength: '32' });
  const tMaxDev = h('input', { type: 'number', min: '0', step: '1', testid: 'tenant-create-max-devices', placeholder: '16' });
  const tBytes = sizeInput('tenant-create-max-bytes', 'Total device size', '64 GiB');
  const tMem = sizeInput('tenant-create-max-memory', 'Guest memory', '1 GiB');
  const tErr = h('div', { class: 'slot' });
  const tSubmit = h('button', { class: 'btn btn-primary', type: 'submit', testid: 'tenant-create-submit' }, icon('plus'), h('span', null, 'Create tenant'));
  const tForm = h('form', { class: 'form-grid', testid: 'tenant-create-form', novalidate: true },
    field('Name', tName),
    field('Max devices', tMaxDev, 'empty: default (16)'),
    tBytes.el, tMem.el,
    h('div', { class: 'span-all' }, tErr),
    h('div', { class: 'span-all row' }, tSubmit));
  tForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(tErr);
    const name = tName.value.trim();
    if (!name) { tErr.append(errorBox(new Error('Give the tenant a name.'), 'tenant-create-error')); tName.focus(); return; }
    const body = { name };
    if (tMaxDev.value.trim() !== '') body.max_devices = Number(tMaxDev.value);
    const b = tBytes.bytes();
    if (b !== undefined) body.max_total_bytes = b;
    const m = tMem.bytes();
    if (m !== undefined) body.max_guest_memory = m;
    await busy(tSubmit, async () => {
      try {
        await post('/tenants', body);
        toast(`Tenant ${name} created`);
        tName.value = '';
        tMaxDev.value = '';
        tBytes.reset();
        tMem.reset();
        await refreshTenants(name);
      } catch (ex) {
        tErr.append(errorBox(ex, 'tenant-create-error'));
      }
    });
  });

  // ---- tokens ----
  const tokTenant = h('select', { testid: 'token-tenant-select', 'aria-label': 'Tenant' });
  const tokLabel = h('input', { type: 'text', testid: 'token-create-label', placeholder: 'e.g. ci, alice\'s laptop', autocomplete: 'off', maxlength: '64', required: true });
  const tokSubmit = h('button', { class: 'btn btn-primary', type: 'submit', testid: 'token-create-submit' }, icon('key'), h('span', null, 'Create token'));
  const tokForm = h('form', { class: 'token-form', testid: 'token-create-form', novalidate: true },
    field('Tenant', tokTenant), field('Label', tokLabel), h('div', { class: 'field field-btn' }, tokSubmit));
  tokTenant.addEventListener('change', () => { clear(newTokenSlot); refreshTokens(); });
  tokForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(tokensErr);
    clear(newTokenSlot);
    const tenant = tokTenant.value;
    if (!tenant) { tokensErr.append(errorBox(new Error('Create a tenant first.'), 'token-create-error')); return; }
    if (!tokLabel.value.trim()) { tokensErr.append(errorBox(new Error('Give the token a label (who or what uses it).'), 'token-create-error')); tokLabel.focus(); return; }
    await busy(tokSubmit, async () => {
      try {
        const t = await post(`/tenants/${encodeURIComponent(tenant)}/tokens`, { label: tokLabel.value.trim() });
        tokLabel.value = '';
        showNewToken(tenant, t);
        await refreshTokens();
      } catch (ex) {
        tokensErr.append(errorBox(ex, 'token-create-error'));
      }
    });
  });

  function showNewToken(tenant, t) {
    const value = h('code', { class: 'token-value', testid: 'token-new-value' }, t.token);
    const copy = h('button', { class: 'btn btn-sm', type: 'button', testid: 'token-copy' }, icon('copy'), h('span', null, 'Copy'));
    copy.addEventListener('click', async () => {
      try { await copyText(t.token); copy.lastChild.textContent = 'Copied'; toast('Token copied'); } catch (e) { toast(`Copy failed: ${e.message}`, 'error'); }
    });
    const dismiss = h('button', { class: 'btn btn-ghost btn-sm', type: 'button', testid: 'token-dismiss', onclick: () => clear(newTokenSlot) }, 'Done');
    newTokenSlot.append(h('div', { class: 'alert alert-success new-token', testid: 'token-new', role: 'status' },
      icon('key'),
      h('div', { class: 'grow' },
        h('strong', null, `New token for ${tenant}${t.label ? ` (${t.label})` : ''}`),
        h('p', { class: 'small' }, 'Copy it now: it is shown only this once (only its hash is stored).'),
        h('div', { class: 'token-box' }, value, copy, dismiss))));
  }

  async function refreshTokens() {
    const tenant = tokTenant.value;
    clear(tokensSlot);
    if (!tenant) { tokensSlot.append(emptyState('key', 'No tenants yet', 'Tokens belong to a tenant: create one first.', 'tokens-empty')); return; }
    tokensSlot.append(loading('Loading tokens…'));
    let toks;
    try {
      toks = listOf(await get(`/tenants/${encodeURIComponent(tenant)}/tokens`), 'tokens');
    } catch (e) {
      fill(tokensSlot, errorBox(e, 'tokens-error'));
      return;
    }
    clear(tokensSlot);
    if (!toks.length) { tokensSlot.append(emptyState('key', `No tokens for ${tenant}`, 'Create one above and hand it to the tenant.', 'tokens-empty')); return; }
    tokensSlot.append(h('div', { class: 'table-wrap' }, h('table', { class: 'table', testid: 'tokens-table' },
      h('thead', null, h('tr', null, ['Label', 'Id', 'Created', ''].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', null, toks.map((tk) => {
        const revoke = h('button', { class: 'btn btn-ghost btn-sm btn-danger-text', testid: 'token-revoke', 'aria-label': `Revoke token ${tk.label || tk.id}` }, icon('trash'), h('span', null, 'Revoke'));
        revoke.addEventListener('click', async () => {
          const ok = await confirmDialog({ title: 'Revoke this token?', body: `"${tk.label || tk.id}" of ${tenant} stops working at once.`, ok: 'Revoke' });
          if (!ok) return;
          clear(tokensErr);
          await busy(revoke, async () => {
            try {
              await del(`/tenants/${encodeURIComponent(tenant)}/tokens/${encodeURIComponent(tk.id)}`);
              toast('Token revoked');
              await refreshTokens();
            } catch (e) { tokensErr.append(errorBox(e, 'token-revoke-error')); }
          });
        });
        return h('tr', { testid: 'token-row', dataset: { id: tk.id, label: tk.label || '' } },
          h('td', { 'data-label': 'Label' }, tk.label || h('span', { class: 'muted' }, '(no label)')),
          h('td', { 'data-label': 'Id' }, h('code', null, String(tk.id))),
          h('td', { 'data-label': 'Created' }, fmtDate(tk.created_at)),
          h('td', { class: 'actions' }, revoke));
      })))));
  }

  async function refreshTenants(select) {
    try {
      tenants = listOf(await get('/tenants'), 'tenants');
    } catch (e) {
      fill(tenantsSlot, errorBox(e, 'tenants-error'));
      return;
    }
    tenants.sort((a, b) => String(a.name).localeCompare(String(b.name)));
    const keep = select || tokTenant.value;
    fill(tokTenant, tenants.length ? null : h('option', { value: '' }, 'No tenants'),
      tenants.map((t) => h('option', { value: t.name, selected: t.name === keep }, t.name)));
    clear(tenantsSlot);
    if (!tenants.length) {
      tenantsSlot.append(emptyState('users', 'No tenants yet', 'Create one below, then give it a token.', 'tenants-empty'));
    } else {
      tenantsSlot.append(h('div', { class: 'table-wrap' }, h('table', { class: 'table', testid: 'tenants-table' },
        h('thead', null, h('tr', null, ['Tenant', 'Devices', 'Device size', 'Guest memory', ''].map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', null, tenants.map((t) => {
          const delBtn = h('button', { class: 'btn btn-ghost btn-sm btn-danger-text', testid: 'tenant-delete', 'aria-label': `Delete tenant ${t.name}` }, icon('trash'), h('span', null, 'Delete'));
          delBtn.addEventListener('click', async () => {
            const ok = await confirmDialog({ title: `Delete tenant ${t.name}?`, body: 'Its tokens stop working. A tenant that still owns devices or modules cannot be deleted.' });
            if (!ok) return;
            clear(tenantsErr);
            await busy(delBtn, async () => {
              try {
                await del(`/tenants/${encodeURIComponent(t.name)}`);
                toast(`Tenant ${t.name} deleted`);
                await refreshTenants();
              } catch (e) { tenantsErr.append(errorBox(e, 'tenant-delete-error')); }
            });
          });
          return h('tr', { testid: 'tenant-row', dataset: { name: t.name } },
            h('td', { 'data-label': 'Tenant' }, h('div', { class: 'cell-title' }, icon('users'), h('strong', null, t.name)),
              usage(t, 'modules') !== null ? h('div', { class: 'small muted' }, `${fmtNum(usage(t, 'modules'))} uploaded module${usage(t, 'modules') === 1 ? '' : 's'}`) : null),
            h('td', { 'data-label': 'Devices' }, meter(usage(t, 'devices'), quota(t, 'max_devices'), (n) => fmtNum(n))),
            h('td', { 'data-label': 'Device size' }, meter(usage(t, 'total_bytes'), quota(t, 'max_total_bytes'), fmtBytes)),
            h('td', { 'data-label': 'Guest memory' }, fmtBytes(quota(t, 'max_guest_memory'))),
            h('td', { class: 'actions' }, delBtn));
        })))));
    }
    await refreshTokens();
  }

  async function refreshLuns() {
    let devs;
    try {
      devs = listOf(await get('/devices'), 'devices');
    } catch (e) {
      fill(lunsSlot, errorBox(e, 'luns-error'));
      return;
    }
    clear(lunsSlot);
    if (!devs.length) { lunsSlot.append(emptyState('lun', 'No devices', 'Tenants create devices on their Devices page.', 'luns-empty')); return; }
    devs.sort((a, b) => String(a.tenant || '').localeCompare(String(b.tenant || '')) || String(a.name).localeCompare(String(b.name)));
    lunsSlot.append(h('div', { class: 'table-wrap' }, h('table', { class: 'table', testid: 'luns-table' },
      h('thead', null, h('tr', null, ['Device', 'Tenant', 'State', 'LUN', ''].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', null, devs.map((d) => {
        const exp = h('button', { class: 'btn btn-sm', testid: 'lun-export' }, icon('lun'), h('span', null, 'Export'));
        const unexp = h('button', { class: 'btn btn-ghost btn-sm', testid: 'lun-unexport' }, h('span', null, 'Unexport'));
        if (session.isSim) exp.title = 'No LIO on this host: the daemon will refuse (simulator)';
        exp.addEventListener('click', () => busy(exp, async () => {
          clear(lunsErr);
          try {
            const r = await post(`/devices/${encodeURIComponent(d.id)}/export`, {});
            toast(`${d.name} exported${r && r.lun ? `: ${lunText(r.lun)}` : ''}`);
            await refreshLuns();
          } catch (e) { lunsErr.append(errorBox(e, 'lun-error')); }
        }));
        unexp.addEventListener('click', () => busy(unexp, async () => {
          clear(lunsErr);
          try {
            await api('DELETE', `/devices/${encodeURIComponent(d.id)}/export`);
            toast(`${d.name} unexported`);
            await refreshLuns();
          } catch (e) { lunsErr.append(errorBox(e, 'lun-error')); }
        }));
        return h('tr', { testid: 'lun-row', dataset: { name: d.name, id: d.id } },
          h('td', { 'data-label': 'Device' }, h('a', { class: 'cell-title', href: `#/devices/${encodeURIComponent(d.id)}` }, icon('disk'), h('strong', null, d.name))),
          h('td', { 'data-label': 'Tenant' }, d.tenant || '—'),
          h('td', { 'data-label': 'State' }, stateBadge(d.state)),
          h('td', { 'data-label': 'LUN', testid: 'lun-info' }, d.lun ? h('code', null, lunText(d.lun)) : h('span', { class: 'muted' }, 'not exported')),
          h('td', { class: 'actions' }, d.lun ? unexp : exp));
      })))));
  }

  fill(main, 
    h('div', { class: 'page-head' },
      h('div', null, h('h1', null, 'Administration'),
        h('p', { class: 'muted' }, 'Tenants, their quotas and access tokens, and kernel LUN exports.'))),
    h('section', { class: 'card', 'aria-labelledby': 'ten-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'ten-h' }, icon('users'), ' Tenants')),
      tenantsErr, tenantsSlot,
      h('h3', { class: 'sub-h' }, 'New tenant'),
      tForm),
    h('section', { class: 'card', 'aria-labelledby': 'tok-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'tok-h' }, icon('key'), ' Tokens')),
      h('p', { class: 'muted' }, 'A tenant token sees and changes only that tenant\'s modules and devices.'),
      tokForm, newTokenSlot, tokensErr, tokensSlot),
    h('section', { class: 'card', 'aria-labelledby': 'lun-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'lun-h' }, icon('lun'), ' LUN exports'),
        h('button', { class: 'btn btn-ghost btn-sm', testid: 'luns-refresh', onclick: () => refreshLuns() }, icon('refresh'), 'Refresh')),
      h('p', { class: 'muted' }, session.isSim
        ? 'This host has no LIO (simulator frontend): exporting is refused, and the daemon\'s reason is shown here.'
        : 'Export a device as a kernel LUN (a TCMU backstore with a tcm_loop LUN); the kernel then shows a new SCSI disk.'),
      lunsErr, lunsSlot));

  await Promise.all([refreshTenants(), refreshLuns()]);
  return null;
}
