// One device: live status, charts from per-second stats differences, the
// guest log and debug text, hot swap, delete, and Exercise on the simulator.

import { get, post, listOf } from '../api.js';
import {
  h, clear, fill, icon, fmtBytes, fmtNum, fmtLatency, fmtCompact, errorBox, loading, busy, field, toast, stateBadge, errorText,
} from '../dom.js';
import { LineChart, deltas } from '../chart.js';
import { deviceModule, indexById, lunText } from './common.js';
import { bindControl, deleteDevice } from './devices.js';

const SENSE_KEYS = ['NO SENSE', 'RECOVERED ERROR', 'NOT READY', 'MEDIUM ERROR', 'HARDWARE ERROR', 'ILLEGAL REQUEST',
  'UNIT ATTENTION', 'DATA PROTECT', 'BLANK CHECK', 'VENDOR SPECIFIC', 'COPY ABORTED', 'ABORTED COMMAND', '0xC',
  'VOLUME OVERFLOW', 'MISCOMPARE', '0xF'];

function tile(label, testid, extra) {
  const value = h('div', { class: 'tile-value', testid }, '—');
  const sub = h('div', { class: 'tile-sub muted small' });
  return { el: h('div', { class: `tile ${extra || ''}` }, h('div', { class: 'tile-label' }, label), value, sub), value, sub };
}

function chartCard(title, testid, series, format, unitNote, minMax) {
  const canvas = h('canvas', { class: 'chart', testid, role: 'img', 'aria-label': `${title} over the last two minutes` });
  const readouts = series.map((s) => {
    const v = h('span', { class: 'legend-value', testid: `${testid}-${s.key}` }, '—');
    return { s, v, el: h('span', { class: 'legend-item' }, h('span', { class: 'swatch', dataset: { color: s.color } }), h('span', null, s.name), v) };
  });
  const card = h('section', { class: 'card chart-card', 'aria-label': title },
    h('div', { class: 'chart-head' }, h('h3', null, title, unitNote ? h('span', { class: 'muted small' }, ` ${unitNote}`) : null),
      h('div', { class: 'legend' }, readouts.map((r) => r.el))),
    h('div', { class: 'chart-box' }, canvas));
  const chart = new LineChart(canvas, { series, format, minMax });
  // Swatch colours follow the same CSS variables as the lines.
  for (const r of readouts) r.el.querySelector('.swatch').style.background = `var(${r.s.color})`;
  return {
    card, chart,
    push(t, values, fmtVal) {
      chart.push(t, values);
      readouts.forEach((r, i) => { r.v.textContent = values[i] === null ? '—' : (fmtVal || format)(values[i]); });
    },
  };
}

export async function devicePage(main, id, { session, navigate }) {
  fill(main, loading('Loading device…'));
  let dev;
  let mods = [];
  try {
    [dev, mods] = await Promise.all([
      get(`/devices/${encodeURIComponent(id)}`),
      get('/modules').then((x) => listOf(x, 'modules')).catch(() => []),
    ]);
  } catch (e) {
    fill(main, 
      h('a', { class: 'back', href: '#/devices' }, icon('back'), 'Devices'),
      h('div', { class: 'card' }, errorBox(e, 'device-error')));
    return null;
  }

  let stopped = false;
  const timers = [];
  const later = (f, ms) => { const t = setTimeout(f, ms); timers.push(t); return t; };

  // ---- head ----
  const badgeSlot = h('span', { testid: 'device-state' });
  const exercisingChip = h('span', { class: 'chip chip-live', testid: 'device-exercising', hidden: true }, h('span', { class: 'pulse', 'aria-hidden': 'true' }), 'exercising');
  const reasonSlot = h('div', { class: 'slot', testid: 'device-reason-slot' });
  const pageErr = h('div', { class: 'slot' });
  const liveStatus = h('span', { class: 'small muted live-status', testid: 'live-status', role: 'status' }, 'connecting…');

  const tState = tile('State', 'stat-state');
  const tRestarts = tile('Restarts', 'stat-restarts');
  const tModule = tile('Module', 'stat-module');
  const tLun = tile('LUN', 'stat-lun');
  const tCommands = tile('Commands', 'stat-commands', 'tile-accent');
  const tInFlight = tile('In flight', 'stat-in-flight');
  const tData = tile('Data read / written', 'stat-bytes');
  const tErrors = tile('Check conditions', 'stat-errors');
  // What the guest holds of what the host shares (docs/limits.md).
  const tMemory = tile('Guest memory', 'stat-guest-memory');
  const tFiles = tile('Open files', 'stat-open-files');
  const tStored = tile('Stored', 'stat-stored');
  const tIoQueued = tile('I/O queued', 'stat-io-pending');

  const swapErr = h('div', { class: 'slot' });
  const swapSlot = h('div', { class: 'slot' });
  const delBtn = h('button', { class: 'btn btn-danger', testid: 'device-delete' }, icon('trash'), h('span', null, 'Delete device'));
  delBtn.addEventListener('click', () => busy(delBtn, async () => {
    if (await deleteDevice(dev, swapErr)) navigate('#/devices');
  }));

  // ---- exercise (sim only) ----
  let exerciseCard = null;
  let exerciseUntil = 0;
  const exStatus = h('span', { class: 'small muted', testid: 'exercise-status', role: 'status' });
  const exStart = h('button', { class: 'btn btn-primary', type: 'submit', testid: 'exercise-start' }, icon('play'), h('span', null, 'Exercise'));
  if (session.isSim) {
    const secs = h('input', { type: 'number', testid: 'exercise-seconds', min: '1', max: '600', value: '30', required: true });
    const qd = h('input', { type: 'number', testid: 'exercise-queue-depth', min: '1', max: '128', value: '8', required: true });
    const exErr = h('div', { class: 'slot' });
    const form = h('form', { class: 'exercise-form', testid: 'exercise-form', novalidate: true },
      field('Seconds', secs), field('Queue depth', qd), h('div', { class: 'field field-btn' }, exStart));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clear(exErr);
      const s = Number(secs.value);
      const q = Number(qd.value);
      if (!(Number.isInteger(s) && s >= 1 && s <= 600)) { exErr.append(errorBox(new Error('Seconds must be a whole number from 1 to 600.'), 'exercise-error')); return; }
      if (!(Number.isInteger(q) && q >= 1 && q <= 128)) { exErr.append(errorBox(new Error('Queue depth must be a whole number from 1 to 128.'), 'exercise-error')); return; }
      await busy(exStart, async () => {
        try {
          await post(`/devices/${encodeURIComponent(dev.id)}/exercise`, { seconds: s, queue_depth: q });
          exerciseUntil = Date.now() + s * 1000;
          toast(`Exercising ${dev.name} for ${s} s at queue depth ${q}`);
          tickExercise();
        } catch (ex) {
          exErr.append(errorBox(ex, 'exercise-error'));
        }
      });
    });
    exerciseCard = h('section', { class: 'card', 'aria-labelledby': 'ex-h' },
      h('h2', { id: 'ex-h' }, icon('play'), ' Exercise'),
      h('p', { class: 'muted' }, 'Runs the built-in verifying initiator against this simulated device: the whole command mix (reads, writes, FUA writes, cache flushes, UNMAP, WRITE SAME, COMPARE AND WRITE, VERIFY), each checked as it completes. Some COMPARE AND WRITEs carry wrong data on purpose: they must end in MISCOMPARE, which the check-condition tile counts. Watch the charts below.'),
      form, h('div', { class: 'row' }, exStatus), exErr);
  }
  function tickExercise() {
    const left = Math.ceil((exerciseUntil - Date.now()) / 1000);
    if (left > 0) {
      exStatus.textContent = `Running: ${left} s left`;
      later(tickExercise, 500);
    } else if (exerciseUntil) {
      exStatus.textContent = 'Finished.';
      exerciseUntil = 0;
    }
  }

  // ---- charts ----
  const cIops = chartCard('IOPS', 'chart-iops',
    [{ name: 'read', key: 'read', color: '--series-read' }, { name: 'write', key: 'write', color: '--series-write' }], fmtCompact, 'commands/s', 10);
  const cTput = chartCard('Throughput', 'chart-throughput',
    [{ name: 'read', key: 'read', color: '--series-read' }, { name: 'write', key: 'write', color: '--series-write' }],
    (v) => (v >= 100 ? fmtCompact(v) : `${+v.toFixed(v >= 10 ? 1 : 2)}`), 'MB/s', 1);
  const cLat = chartCard('Latency', 'chart-latency',
    [{ name: 'average', key: 'avg', color: '--series-avg' }, { name: 'p99 ≈', key: 'p99', color: '--series-p99' }], fmtLatency, 'per command', 100);

  // ---- log ----
  const logPre = h('pre', { class: 'log', testid: 'device-log', tabindex: '0', 'aria-label': 'Guest log' });
  const debugPre = h('pre', { class: 'log', testid: 'device-debug', tabindex: '0', 'aria-label': 'Guest debug text' });
  const guestStats = h('p', { class: 'small', testid: 'device-guest-stats' });
  const logErr = h('div', { class: 'slot' });

  fill(main, 
    h('a', { class: 'back', href: '#/devices', testid: 'back-devices' }, icon('back'), 'Devices'),
    h('div', { class: 'page-head' },
      h('div', null,
        h('h1', { class: 'title-row' }, icon('disk'), h('span', { testid: 'device-name' }, dev.name), badgeSlot, exercisingChip),
        h('p', { class: 'muted' }, `${fmtBytes(dev.size)} · ${dev.block_size || '?'}-byte blocks`, dev.tenant && session.isAdmin ? ` · tenant ${dev.tenant}` : '', ' · ', liveStatus)),
      delBtn),
    pageErr,
    reasonSlot,
    h('div', { class: 'tiles' }, [tState, tRestarts, tModule, tLun, tCommands, tInFlight, tData, tErrors].map((t) => t.el)),
    h('div', { class: 'tiles', testid: 'device-resources', 'aria-label': 'Resources held' }, [tMemory, tFiles, tStored, tIoQueued].map((t) => t.el)),
    h('div', { class: 'grid-2' },
      h('section', { class: 'card', 'aria-labelledby': 'swap-h' },
        h('h2', { id: 'swap-h' }, icon('swap'), ' Module'),
        h('p', { class: 'muted' }, 'Hot swap to another module: in-flight commands drain, none fail. The storage directory stays.'),
        swapSlot, swapErr),
      exerciseCard || h('section', { class: 'card' },
        h('h2', null, icon('lun'), ' I/O'),
        h('p', { class: 'muted' }, 'This host serves devices through LIO: send I/O with a real initiator once the device is exported as a LUN (Admin page).'))),
    h('div', { class: 'charts' }, cIops.card, cTput.card, cLat.card),
    h('div', { class: 'grid-2' },
      h('section', { class: 'card', 'aria-labelledby': 'log-h' },
        h('div', { class: 'card-head' }, h('h2', { id: 'log-h' }, 'Guest log'), h('span', { class: 'small muted' }, 'refreshed every 3 s')),
        logErr, logPre),
      h('section', { class: 'card', 'aria-labelledby': 'dbg-h' },
        h('div', { class: 'card-head' }, h('h2', { id: 'dbg-h' }, 'Debug'), h('span', { class: 'small muted' }, 'the guest\'s own description of its state')),
        guestStats, debugPre)));

  function renderDevice(d) {
    dev = { ...dev, ...d };
    fill(badgeSlot, stateBadge(dev.state, 'device-state-badge'));
    tState.value.textContent = dev.state || '—';
    tState.value.dataset.state = dev.state || '';
    tRestarts.value.textContent = fmtNum(dev.restarts ?? 0);
    const m = deviceModule(dev, indexById(mods));
    tModule.value.textContent = m.name;
    tModule.sub.textContent = m.version ? `version ${m.version}` : (dev.config ? `config: ${dev.config}` : '');
    tLun.value.textContent = dev.lun ? (dev.lun.lun !== undefined ? `LUN ${dev.lun.lun}` : 'exported') : 'not exported';
    tLun.sub.textContent = dev.lun ? lunText(dev.lun) : (session.isSim ? 'simulator: no LIO' : '');
    exercisingChip.hidden = !(dev.exercising || exerciseUntil > Date.now());
    clear(reasonSlot);
    if (dev.reason) {
      const bad = dev.state === 'offline' || dev.state === 'degraded';
      reasonSlot.append(h('div', { class: `alert ${bad ? 'alert-error' : 'alert-info'}`, testid: 'device-reason', role: bad ? 'alert' : null },
        icon(bad ? 'alert' : 'info'), h('div', null, h('strong', null, bad ? `${dev.state}: ` : 'Last guest failure: '), dev.reason)));
    }
    if (dev.counters) renderCounters(dev.counters);
    renderResources(dev.resources);
  }

  function renderResources(r) {
    if (!r) {
      for (const t of [tMemory, tFiles, tStored, tIoQueued]) { t.value.textContent = '—'; t.sub.textContent = 'no guest running'; }
      return;
    }
    tMemory.value.textContent = fmtBytes(r.memory ?? 0);
    tMemory.sub.textContent = 'linear memory of the instance';
    tFiles.value.textContent = fmtNum(r.open_files ?? 0);
    tFiles.sub.textContent = `of ${fmtNum(r.open_files_limit ?? 0)} allowed`;
    tStored.value.textContent = fmtBytes(r.storage_bytes ?? 0);
    tStored.sub.textContent = `of ${fmtBytes(r.storage_bytes_limit ?? 0)} · ${fmtNum(r.storage_files ?? 0)} of ${fmtNum(r.storage_files_limit ?? 0)} files`;
    tIoQueued.value.textContent = fmtNum(r.io_pending ?? 0);
    tIoQueued.sub.textContent = 'jobs on the shared I/O threads';
  }

  function renderCounters(c) {
    tCommands.value.textContent = fmtNum(c.commands ?? 0);
    tCommands.value.dataset.value = String(c.commands ?? 0);
    tCommands.sub.textContent = `${fmtNum(c.reads ?? 0)} reads · ${fmtNum(c.writes ?? 0)} writes`;
    tInFlight.value.textContent = fmtNum(c.in_flight ?? 0);
    tData.value.textContent = `${fmtBytes(c.read_bytes ?? 0)} / ${fmtBytes(c.write_bytes ?? 0)}`;
    const errs = (c.errors_by_sense_key || []).map((n, k) => [n, k]).filter(([n]) => n > 0);
    const total = errs.reduce((a, [n]) => a + n, 0);
    tErrors.value.textContent = fmtNum(total);
    // UNIT ATTENTION (6) is an initiator being told of a change (power on,
    // capacity, hot swap): normal, so only other sense keys turn the tile red.
    tErrors.el.classList.toggle('tile-bad', errs.some(([n, k]) => n > 0 && k !== 6));
    tErrors.sub.textContent = errs.length ? errs.map(([n, k]) => `${SENSE_KEYS[k] || k}: ${fmtNum(n)}`).join(' · ') : 'none';
  }

  function renderSwap() {
    fill(swapSlot, bindControl(dev, mods, swapErr, async (d) => {
      if (d && typeof d === 'object') renderDevice(d);
      try { mods = listOf(await get('/modules'), 'modules'); } catch { /* keep */ }
      await refreshDevice();
      renderSwap();
    }));
  }

  renderDevice(dev);
  renderSwap();

  // ---- polling ----
  let prev = null;
  let lastOk = 0;
  async function pollStats() {
    if (stopped) return;
    const started = Date.now();
    try {
      const s = await get(`/devices/${encodeURIComponent(dev.id)}/stats`);
      if (stopped) return;
      lastOk = Date.now();
      clear(pageErr);
      if (s.state && s.state !== dev.state) { dev.state = s.state; fill(badgeSlot, stateBadge(dev.state, 'device-state-badge')); tState.value.textContent = dev.state; tState.value.dataset.state = dev.state; }
      if (s.counters) renderCounters(s.counters);
      renderResources(s.resources);
      const at = Number(s.at_ms) || Date.now();
      const cur = { at_ms: at, counters: s.counters || {} };
      const d = prev ? deltas(prev, cur) : null;
      if (d) {
        cIops.push(at, [d.readIops, d.writeIops]);
        cTput.push(at, [d.readMBs, d.writeMBs]);
        cLat.push(at, [d.avgUs, d.p99Us], (v) => fmtLatency(v));
        if (d.p99Overflow) cLat.card.querySelector('[data-testid="chart-latency-p99"]').textContent = `> ${fmtLatency(d.p99Us)}`;
      }
      if (!prev || at > prev.at_ms) prev = cur;
      liveStatus.textContent = 'live, sampled every second';
      liveStatus.classList.remove('text-bad');
    } catch (e) {
      if (stopped) return;
      if (e.status === 404) {
        stopped = true;
        fill(pageErr, errorBox(e, 'device-gone'));
        liveStatus.textContent = 'gone';
        return;
      }
      liveStatus.textContent = `stats unavailable (${errorText(e)})`;
      liveStatus.classList.add('text-bad');
      if (Date.now() - lastOk > 5000) fill(pageErr, errorBox(e, 'stats-error'));
    }
    later(pollStats, Math.max(100, 1000 - (Date.now() - started)));
  }

  async function refreshDevice() {
    try {
      const d = await get(`/devices/${encodeURIComponent(dev.id)}`);
      if (!stopped) renderDevice(d);
    } catch { /* pollStats reports */ }
  }

  async function pollLog() {
    if (stopped) return;
    try {
      const [l] = await Promise.all([get(`/devices/${encodeURIComponent(dev.id)}/log`), refreshDevice()]);
      if (stopped) return;
      clear(logErr);
      const lines = (l && Array.isArray(l.log)) ? l.log : [];
      const atBottom = logPre.scrollTop + logPre.clientHeight >= logPre.scrollHeight - 4;
      clear(logPre);
      if (lines.length) {
        for (const line of lines) {
          const m = /^\[(\w+)\]/.exec(line);
          logPre.append(h('span', { class: `log-line${m ? ` log-${m[1].toLowerCase()}` : ''}` }, line), '\n');
        }
      } else logPre.append(h('span', { class: 'muted' }, 'The guest has not logged anything yet.'));
      if (atBottom) logPre.scrollTop = logPre.scrollHeight;
      debugPre.textContent = (l && l.debug) ? l.debug : '';
      if (!debugPre.textContent) debugPre.append(h('span', { class: 'muted' }, 'No debug text.'));
      const g = l && l.guest_stats;
      clear(guestStats);
      if (g) {
        guestStats.append(`The backstore counts: ${g.reads} reads (${fmtBytes(g.bytes_read)}), ${g.writes} writes (${fmtBytes(g.bytes_written)}), ${g.flushes} flushes, ${g.discards} discards, ${g.errors} errors`);
      }
    } catch (e) {
      if (stopped) return;
      fill(logErr, errorBox(e, 'log-error'));
    }
    later(pollLog, 3000);
  }

  pollStats();
  pollLog();

  return () => {
    stopped = true;
    for (const t of timers) clearTimeout(t);
    cIops.chart.destroy();
    cTput.chart.destroy();
    cLat.chart.destroy();
  };
}
