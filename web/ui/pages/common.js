// Helpers shared by pages: tolerant accessors for API objects.

/** A module's owner: null for built-ins. */
export function isBuiltin(m) {
  if (!m) return false;
  if (typeof m.builtin === 'boolean') return m.builtin;
  return m.owner === null;
}

/** bound_devices may be ids, names or {id, name} objects. */
export function boundList(m) {
  const b = m && m.bound_devices;
  if (Array.isArray(b)) return b;
  if (typeof b === 'number') return Array.from({ length: b }, () => null);
  return [];
}

/** The module a device is bound to: id and display name. */
export function deviceModule(d, modulesById) {
  let id = null;
  let name = null;
  const m = d.module;
  if (m && typeof m === 'object') { id = m.id ?? null; name = m.name ?? null; }
  else if (m !== undefined && m !== null) id = m;
  if (id === null && d.module_id !== undefined) id = d.module_id;
  if (!name && d.module_name) name = d.module_name;
  if (!name && id !== null && modulesById && modulesById.get(String(id))) name = modulesById.get(String(id)).name;
  if (!name && typeof m === 'string') name = m;
  const version = (m && typeof m === 'object' && m.version) || d.module_version || (id !== null && modulesById && modulesById.get(String(id)) ? modulesById.get(String(id)).version : null);
  const sha = (m && typeof m === 'object' && m.sha256) || (id !== null && modulesById && modulesById.get(String(id)) ? modulesById.get(String(id)).sha256 : null);
  return { id, name: name || (id !== null ? `#${id}` : '—'), version: shownVersion({ version, sha256: sha }) || null };
}

/** The version worth showing (built-ins are versioned by their hash prefix). */
export function shownVersion(m) {
  if (!m || !m.version) return '';
  if (m.sha256 && /^[0-9a-f]{8,}$/.test(m.version) && m.sha256.startsWith(m.version)) return '';
  return m.version;
}

export function moduleLabel(m) {
  const v = shownVersion(m) ? ` ${m.version}` : '';
  const who = isBuiltin(m) ? ' (built-in)' : m.owner ? ` (${m.owner})` : '';
  return `${m.name}${v}${who}`;
}

/** "user_3/disk1 · naa.500… LUN 0" */
export function lunText(lun) {
  if (!lun) return null;
  if (typeof lun !== 'object') return String(lun);
  const parts = [];
  if (lun.backstore) parts.push(lun.backstore);
  if (lun.wwn) parts.push(lun.wwn);
  if (lun.lun !== undefined) parts.push(`LUN ${lun.lun}`);
  return parts.join(' · ') || JSON.stringify(lun);
}

export function indexById(list) {
  const m = new Map();
  for (const x of list) m.set(String(x.id), x);
  return m;
}
