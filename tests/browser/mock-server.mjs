#!/usr/bin/env node
// A throw-away stand-in for the daemon's control plane, for working on the UI
// without building the daemon: serves web/ui/ and fakes the JSON API of
// docs/api.md in memory (tenants, tokens, modules with a magic-number check,
// devices whose counters grow while "exercised"). Not used by the real test.
//
//   node tests/browser/mock-server.mjs [--port 8471] [--admin-token wt_...] [--frontend sim|tcmu] [--seed]
//
// --seed adds a tenant "demo" (token wt_demo…), an uploaded module and two devices.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const UI = path.resolve(here, '../../web/ui');

const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def; };
const PORT = Number(opt('port', process.env.PORT || 8471));
const ADMIN = opt('admin-token', process.env.ADMIN_TOKEN || `wt_${'a'.repeat(40)}`);
const FRONTEND = opt('frontend', 'sim');
const SEED = args.includes('--seed');
const MAX_UPLOAD = 32 * 1024 * 1024;

const now = () => new Date().toISOString();
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');
const newToken = () => `wt_${crypto.randomBytes(20).toString('hex')}`;

// ---- state ----
const tenants = new Map(); // name -> {name, max_devices, max_total_bytes, max_guest_memory, created_at}
const tokens = new Map(); // token -> {id, tenant, label, created_at}
let nextTokenId = 1;
let nextModuleId = 1;
let nextDeviceId = 1;
const modules = new Map(); // id -> module
const devices = new Map(); // id -> device (+ live)

for (const [name, size] of [['null', 41230], ['ram', 98765], ['raw-file', 123456]]) {
  const id = nextModuleId++;
  modules.set(id, {
    id, name, version: '0.1.0', sha256: sha256(name), size, owner: null, uploaded_by: null, created_at: null, builtin: true,
    imports: ['wasmtap:backstore/host@0.1.0', 'wasi:io/streams@0.2.0'], exports: ['wasmtap:backstore/backstore@0.1.0'],
  });
}

const BOUNDS = [50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];
function newLive() {
  return {
    state: 'running', reason: null, restarts: 0, exercising_until: 0,
    counters: {
      commands: 7, reads: 3, writes: 0, read_bytes: 3 * 4096, write_bytes: 0, errors_by_sense_key: new Array(16).fill(0),
      in_flight: 0, latency: { bounds_us: BOUNDS, counts: [5, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], sum_us: 300 },
    },
    log: ['[info] opened: size=67108864 sector=512'],
  };
}

// Advance a device's counters for the time since the last tick.
function tick(d) {
  const t = Date.now();
  const dt = (t - (d.lastTick || t)) / 1000;
  d.lastTick = t;
  const c = d.live.counters;
  if (d.live.exercising_until > t && dt > 0) {
    const qd = d.qd || 8;
    const iops = (2500 + 1500 * Math.sin(t / 7000)) * Math.min(qd, 16) / 8 * (0.9 + Math.random() * 0.2);
    const n = Math.round(iops * dt);
    const reads = Math.round(n * 0.6);
    const writes = n - reads;
    c.commands += n; c.reads += reads; c.writes += writes;
    c.read_bytes += reads * 34 * 1024; c.write_bytes += writes * 34 * 1024;
    c.in_flight = qd;
    for (let i = 0; i < n; i++) {
      const r = Math.random();
      const us = r < 0.5 ? 80 + Math.random() * 100 : r < 0.9 ? 200 + Math.random() * 300 : r < 0.99 ? 500 + Math.random() * 1500 : 2000 + Math.random() * 9000;
      let k = BOUNDS.findIndex((b) => us <= b);
      if (k < 0) k = BOUNDS.length;
      c.latency.counts[k]++;
      c.latency.sum_us += Math.round(us);
    }
  } else {
    c.in_flight = 0;
    if (d.live.exercising_until && d.live.exercising_until <= t) {
      d.live.exercising_until = 0;
      d.live.log.push('[info] exercise finished: all reads verified');
    }
  }
}

function deviceJson(d) {
  tick(d);
  const m = modules.get(d.module);
  return {
    id: d.id, name: d.name, tenant: d.tenant, size: d.size, block_size: d.block_size,
    module: { id: d.module, name: m ? m.name : null, version: m ? m.version : null, sha256: m ? m.sha256 : null }, config: d.config,
    created_at: d.created_at, state: d.live.state, reason: d.live.reason, restarts: d.live.restarts,
    exercising: d.live.exercising_until > Date.now(), counters: d.live.counters, lun: d.lun,
  };
}

function moduleJson(m) {
  return { ...m, bound_devices: [...devices.values()].filter((d) => d.module === m.id).map((d) => ({ id: d.id, name: d.name, tenant: d.tenant })) };
}

function tenantJson(t) {
  const devs = [...devices.values()].filter((d) => d.tenant === t.name);
  return { ...t, usage: { devices: devs.length, total_bytes: devs.reduce((a, d) => a + d.size, 0), modules: [...modules.values()].filter((m) => m.owner === t.name).length } };
}

// ---- helpers ----
class E extends Error { constructor(status, code, message) { super(message); this.status = status; this.code = code; } }
const send = (res, status, body, headers = {}) => {
  if (body === null) { res.writeHead(status, headers); res.end(); return; }
  const s = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
  res.end(s);
};
function readBody(req, limit = MAX_UPLOAD + 1024 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let n = 0;
    req.on('data', (c) => { n += c.length; if (n > limit) { reject(new E(413, 'too_large', `the upload is larger than the limit of ${MAX_UPLOAD} bytes`)); req.destroy(); } else chunks.push(c); });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
async function json(req) {
  const b = await readBody(req, 1024 * 1024);
  if (!b.length) return {};
  try { return JSON.parse(b.toString('utf8')); } catch (e) { throw new E(400, 'invalid_request', `bad JSON: ${e.message}`); }
}
function multipart(req, buf) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/.exec(req.headers['content-type'] || '');
  if (!m) throw new E(400, 'invalid_request', 'expected multipart/form-data');
  const boundary = Buffer.from(`--${m[1] || m[2]}`);
  const parts = {};
  let pos = buf.indexOf(boundary);
  while (pos >= 0) {
    const start = pos + boundary.length;
    if (buf.slice(start, start + 2).toString() === '--') break;
    const headEnd = buf.indexOf('\r\n\r\n', start);
    if (headEnd < 0) break;
    const head = buf.slice(start + 2, headEnd).toString();
    const next = buf.indexOf(boundary, headEnd);
    const body = buf.slice(headEnd + 4, next - 2);
    const name = /name="([^"]*)"/.exec(head);
    const filename = /filename="([^"]*)"/.exec(head);
    if (name) parts[name[1]] = filename ? { filename: filename[1], data: body } : body.toString('utf8');
    pos = next;
  }
  return parts;
}
const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;
function parseSize(v) {
  if (typeof v === 'number') return v;
  const m = /^(\d+)([KMGT]?)$/i.exec(String(v));
  if (!m) throw new E(400, 'invalid_request', `size: cannot parse ${JSON.stringify(v)}`);
  return Number(m[1]) * 1024 ** ('.KMGT'.indexOf((m[2] || '.').toUpperCase()) || 0);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function auth(req) {
  const h = req.headers.authorization || '';
  const m = /^Bearer (\S+)$/.exec(h);
  if (!m) throw new E(401, 'unauthorized', 'missing or malformed Authorization: Bearer header');
  if (m[1] === ADMIN) return { role: 'admin', tenant: null };
  const t = tokens.get(m[1]);
  if (!t) throw new E(401, 'unauthorized', 'unknown token');
  return { role: 'tenant', tenant: t.tenant };
}
const admin = (who) => { if (who.role !== 'admin') throw new E(403, 'forbidden', 'this route needs the admin token'); };
function visibleDevice(who, id) {
  const d = devices.get(Number(id));
  if (!d || (who.role !== 'admin' && d.tenant !== who.tenant)) throw new E(404, 'not_found', `no device ${id}`);
  return d;
}
function visibleModule(who, id) {
  const m = modules.get(Number(id));
  if (!m || (who.role !== 'admin' && m.owner !== null && m.owner !== who.tenant)) throw new E(404, 'not_found', `no module ${id}`);
  return m;
}
function tenantOr404(name) {
  const t = tenants.get(name);
  if (!t) throw new E(404, 'not_found', `no tenant ${name}`);
  return t;
}

// ---- API ----
async function apiRoute(req, res, url) {
  const p = url.pathname.replace(/^\/api\/v1/, '');
  const seg = p.split('/').filter(Boolean).map(decodeURIComponent);
  const M = req.method;
  if (p === '/openapi.json') return send(res, 200, { openapi: '3.1.0', info: { title: 'wasmtap (mock)', version: '0' }, paths: {} });
  const who = auth(req);
  await sleep(60 + Math.random() * 80); // feel the loading states

  if (p === '/whoami' && M === 'GET') {
    return send(res, 200, {
      role: who.role, tenant: who.tenant, version: '0.1.0-mock',
      frontend: FRONTEND === 'sim'
        ? { kind: 'sim', note: 'No LIO on this host: devices run on the built-in simulator; use Exercise to send I/O.' }
        : { kind: 'tcmu', note: 'Serving LIO TCMU devices; export a device to get a kernel LUN.' },
    });
  }

  if (seg[0] === 'tenants') {
    admin(who);
    if (seg.length === 1 && M === 'GET') return send(res, 200, [...tenants.values()].map(tenantJson));
    if (seg.length === 1 && M === 'POST') {
      const b = await json(req);
      if (typeof b.name !== 'string' || !NAME_RE.test(b.name)) throw new E(400, 'invalid_request', `${JSON.stringify(b.name)} is not a valid name ([a-z0-9][a-z0-9_-]{0,31})`);
      if (tenants.has(b.name)) throw new E(409, 'conflict', `tenant ${b.name} already exists`);
      const t = {
        name: b.name, max_devices: b.max_devices ?? 16, max_total_bytes: b.max_total_bytes ?? 64 * 1024 ** 3,
        max_guest_memory: b.max_guest_memory ?? 1024 ** 3, created_at: now(),
      };
      tenants.set(t.name, t);
      return send(res, 201, tenantJson(t));
    }
    const t = tenantOr404(seg[1]);
    if (seg.length === 2 && M === 'GET') return send(res, 200, tenantJson(t));
    if (seg.length === 2 && M === 'PATCH') { Object.assign(t, await json(req), { name: t.name }); return send(res, 200, tenantJson(t)); }
    if (seg.length === 2 && M === 'DELETE') {
      const nd = [...devices.values()].filter((d) => d.tenant === t.name).length;
      const nm = [...modules.values()].filter((m) => m.owner === t.name).length;
      if (nd || nm) throw new E(409, 'conflict', `tenant ${t.name} still owns ${nd} device(s) and ${nm} module(s)`);
      tenants.delete(t.name);
      for (const [k, v] of tokens) if (v.tenant === t.name) tokens.delete(k);
      return send(res, 204, null);
    }
    if (seg[2] === 'tokens') {
      if (seg.length === 3 && M === 'GET') return send(res, 200, [...tokens.values()].filter((x) => x.tenant === t.name).map(({ id, label, created_at }) => ({ id, label, created_at })));
      if (seg.length === 3 && M === 'POST') {
        const b = await json(req);
        const label = String(b.label || '').trim();
        if (!label || label.length > 64) throw new E(400, 'invalid_request', 'label: must be 1 to 64 characters');
        const tok = newToken();
        const rec = { id: nextTokenId++, tenant: t.name, label, created_at: now() };
        tokens.set(tok, rec);
        return send(res, 201, { id: rec.id, label: rec.label, token: tok, created_at: rec.created_at });
      }
      if (seg.length === 4 && M === 'DELETE') {
        for (const [k, v] of tokens) if (v.tenant === t.name && String(v.id) === seg[3]) { tokens.delete(k); return send(res, 204, null); }
        throw new E(404, 'not_found', `no token ${seg[3]}`);
      }
    }
  }

  if (seg[0] === 'modules') {
    if (seg.length === 1 && M === 'GET') {
      return send(res, 200, [...modules.values()].filter((m) => who.role === 'admin' || m.owner === null || m.owner === who.tenant).map(moduleJson));
    }
    if (seg.length === 1 && M === 'POST') {
      let tenant = who.tenant;
      if (who.role === 'admin') { tenant = url.searchParams.get('tenant'); if (!tenant) throw new E(400, 'invalid_request', 'tenant: admins upload with ?tenant=<name>'); tenantOr404(tenant); }
      const parts = multipart(req, await readBody(req));
      const name = parts.name;
      if (typeof name !== 'string' || !NAME_RE.test(name)) throw new E(400, 'invalid_request', 'name: not a valid name ([a-z0-9][a-z0-9_-]{0,31})');
      if (!parts.file || typeof parts.file !== 'object') throw new E(400, 'invalid_request', 'file: missing');
      if ([...modules.values()].some((m) => m.name === name && (m.owner === tenant || m.owner === null))) throw new E(409, 'conflict', `module name ${name} is taken`);
      const data = parts.file.data;
      if (data.length > MAX_UPLOAD) throw new E(413, 'too_large', `the module is ${data.length} bytes, more than the limit of ${MAX_UPLOAD}`);
      await sleep(400); // "compiling"
      if (data.length < 8 || data.readUInt32BE(0) !== 0x0061736d) throw new E(422, 'not_wasm', 'not a WebAssembly binary (it does not start with the \\0asm header)');
      if (data[4] === 1 && data[5] === 0 && data[6] === 0 && data[7] === 0) throw new E(422, 'core_module', 'a core WebAssembly module, not a component: build for wasm32-wasip2');
      const m = {
        id: nextModuleId++, name, version: parts.version || null, sha256: sha256(data), size: data.length, owner: tenant,
        uploaded_by: who.role === 'admin' ? 'admin' : tenant, created_at: now(), builtin: false,
        imports: ['wasmtap:backstore/host@0.1.0'], exports: ['wasmtap:backstore/backstore@0.1.0'],
      };
      modules.set(m.id, m);
      return send(res, 201, moduleJson(m));
    }
    const m = visibleModule(who, seg[1]);
    if (seg.length === 2 && M === 'GET') return send(res, 200, moduleJson(m));
    if (seg.length === 2 && M === 'DELETE') {
      if (m.builtin) throw new E(409, 'conflict', `${m.name} is built in and cannot be deleted`);
      if (who.role !== 'admin' && m.owner !== who.tenant) throw new E(404, 'not_found', `no module ${seg[1]}`);
      const bound = [...devices.values()].filter((d) => d.module === m.id);
      if (bound.length) throw new E(409, 'conflict', `module ${m.name} is bound to ${bound.map((d) => d.name).join(', ')}`);
      modules.delete(m.id);
      return send(res, 204, null);
    }
  }

  if (seg[0] === 'devices') {
    if (seg.length === 1 && M === 'GET') return send(res, 200, [...devices.values()].filter((d) => who.role === 'admin' || d.tenant === who.tenant).map(deviceJson));
    if (seg.length === 1 && M === 'POST') {
      const b = await json(req);
      const tenant = who.role === 'admin' ? b.tenant : who.tenant;
      if (!tenant) throw new E(400, 'invalid_request', 'tenant: admins name the tenant');
      const t = tenantOr404(tenant);
      if (typeof b.name !== 'string' || !NAME_RE.test(b.name)) throw new E(400, 'invalid_request', 'name: not a valid name ([a-z0-9][a-z0-9_-]{0,31})');
      const size = parseSize(b.size);
      const bs = b.block_size ?? 512;
      if (bs !== 512 && bs !== 4096) throw new E(400, 'invalid_request', 'block_size: 512 or 4096');
      if (!(size > 0) || size % bs) throw new E(400, 'invalid_request', `size: a positive multiple of the block size (${bs})`);
      const m = visibleModule(who.role === 'admin' ? { role: 'tenant', tenant } : who, b.module);
      const mine = [...devices.values()].filter((d) => d.tenant === tenant);
      if (mine.some((d) => d.name === b.name)) throw new E(409, 'conflict', `device ${b.name} already exists`);
      if (mine.length + 1 > t.max_devices) throw new E(409, 'quota_exceeded', `max_devices: ${mine.length} of ${t.max_devices} in use`);
      const total = mine.reduce((a, d) => a + d.size, 0);
      if (total + size > t.max_total_bytes) throw new E(409, 'quota_exceeded', `max_total_bytes: ${total} + ${size} > ${t.max_total_bytes}`);
      const d = { id: nextDeviceId++, name: b.name, tenant, size, block_size: bs, module: m.id, config: b.config || '', created_at: now(), lun: null, live: newLive() };
      if (m.name === 'null') d.live.log.push('[warn] null backstore: reads return zeros, writes are discarded');
      devices.set(d.id, d);
      return send(res, 201, deviceJson(d));
    }
    const d = visibleDevice(who, seg[1]);
    if (seg.length === 2 && M === 'GET') return send(res, 200, deviceJson(d));
    if (seg.length === 2 && M === 'DELETE') { devices.delete(d.id); return send(res, 204, null); }
    if (seg[2] === 'module' && M === 'PUT') {
      const b = await json(req);
      const m = visibleModule(who.role === 'admin' ? { role: 'tenant', tenant: d.tenant } : who, b.module);
      await sleep(300);
      d.module = m.id;
      if (b.config !== undefined) d.config = b.config;
      d.live.log.push(`[info] hot swap to ${m.name} ${m.version || ''}: drained ${d.live.counters.in_flight} in-flight command(s)`);
      return send(res, 200, deviceJson(d));
    }
    if (seg[2] === 'stats' && M === 'GET') { tick(d); return send(res, 200, { at_ms: Date.now(), state: d.live.state, counters: d.live.counters }); }
    if (seg[2] === 'log' && M === 'GET') {
      const m = modules.get(d.module);
      return send(res, 200, { log: d.live.log.slice(-200), debug: `${m ? m.name : '?'} backstore\nsize=${d.size} sector=${d.block_size}\nblocks allocated: ${Math.floor(d.live.counters.write_bytes / 4096)}` });
    }
    if (seg[2] === 'exercise' && M === 'POST') {
      if (FRONTEND !== 'sim') throw new E(409, 'unsupported', 'exercise runs only on the sim frontend; send I/O with a real initiator');
      const b = await json(req);
      if (!(Number.isInteger(b.seconds) && b.seconds >= 1 && b.seconds <= 600)) throw new E(400, 'invalid_request', 'seconds: 1..=600');
      if (!(Number.isInteger(b.queue_depth) && b.queue_depth >= 1 && b.queue_depth <= 128)) throw new E(400, 'invalid_request', 'queue_depth: 1..=128');
      tick(d);
      d.live.exercising_until = Date.now() + b.seconds * 1000;
      d.qd = b.queue_depth;
      d.live.log.push(`[info] exercise: ${b.seconds} s at queue depth ${b.queue_depth}`);
      return send(res, 202, { seconds: b.seconds, queue_depth: b.queue_depth });
    }
    if (seg[2] === 'export') {
      admin(who);
      if (FRONTEND === 'sim') throw new E(409, 'unsupported', 'no LIO on this host (sim frontend): devices cannot be exported as kernel LUNs');
      if (M === 'POST') { d.lun = { backstore: `user_1/${d.tenant}-${d.name}`, wwn: 'naa.5001405c0ffee000', lun: d.id - 1 }; return send(res, 200, { lun: d.lun }); }
      if (M === 'DELETE') { d.lun = null; return send(res, 204, null); }
    }
  }
  throw new E(404, 'not_found', `no route ${M} ${url.pathname}`);
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml' };

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  try {
    if (url.pathname.startsWith('/api/')) return await apiRoute(req, res, url);
    if (url.pathname === '/metrics') { admin(auth(req)); res.writeHead(200, { 'Content-Type': 'text/plain' }); return res.end('# mock\n'); }
    // Like the daemon: `/` is the page, assets live under /ui/.
    let rel;
    if (url.pathname === '/') rel = 'index.html';
    else if (url.pathname.startsWith('/ui/')) rel = decodeURIComponent(url.pathname.slice(4));
    else throw new E(404, 'not_found', 'no such route');
    const file = path.resolve(UI, rel);
    if (!file.startsWith(UI + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) { res.writeHead(404); return res.end('not found'); }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
    fs.createReadStream(file).pipe(res);
  } catch (e) {
    if (e instanceof E) send(res, e.status, { error: { code: e.code, message: e.message } });
    else { console.error(e); send(res, 500, { error: { code: 'host_error', message: String(e.message || e) } }); }
  }
});

if (SEED) {
  tenants.set('demo', { name: 'demo', max_devices: 16, max_total_bytes: 64 * 1024 ** 3, max_guest_memory: 1024 ** 3, created_at: now() });
  const tok = `wt_${'d'.repeat(40)}`;
  tokens.set(tok, { id: nextTokenId++, tenant: 'demo', label: 'seed', created_at: now() });
  const m = { id: nextModuleId++, name: 'my-ram', version: '1.2.0', sha256: sha256('my-ram'), size: 204800, owner: 'demo', uploaded_by: 'demo', created_at: now(), builtin: false, imports: ['wasmtap:backstore/host@0.1.0'], exports: ['wasmtap:backstore/backstore@0.1.0'] };
  modules.set(m.id, m);
  for (const [name, mod, state, reason] of [['disk1', 2, 'running', null], ['scratch', m.id, 'running', null], ['broken', 3, 'offline', 'the guest refused its configuration: file= is required']]) {
    const d = { id: nextDeviceId++, name, tenant: 'demo', size: 64 * 1024 ** 2, block_size: 512, module: mod, config: '', created_at: now(), lun: null, live: newLive() };
    d.live.state = state;
    d.live.reason = reason;
    devices.set(d.id, d);
  }
  console.log(`seeded tenant demo, token ${tok}`);
}

server.listen(PORT, '127.0.0.1', () => {
  console.log(`mock wasmtap API on http://127.0.0.1:${PORT}/ (frontend ${FRONTEND}); admin token ${ADMIN}`);
});
