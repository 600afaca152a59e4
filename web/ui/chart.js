// A small time-series line chart on <canvas> (no library). Holds the last
// `windowSec` seconds of samples, draws a y grid with nice ticks, relative
// time labels, one line per series (the first with a soft fill), and a hover
// read-out. Colours come from CSS custom properties so the chart follows the
// light/dark theme.

import { fmtCompact } from './dom.js';

function niceStep(max, ticks) {
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const n = raw / mag;
  const step = n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10;
  return step * mag;
}

export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{series: {name: string, color: string}[], format?: (v:number)=>string, windowSec?: number, minMax?: number}} opts
   *   `color` is a CSS custom property name (e.g. '--series-read') or a colour.
   */
  constructor(canvas, opts) {
    this.canvas = canvas;
    this.series = opts.series;
    this.format = opts.format || fmtCompact;
    this.windowSec = opts.windowSec || 120;
    this.minMax = opts.minMax || 1;
    this.points = []; // {t: ms, v: [numbers or null]}
    this.hoverX = null;
    this.ctx = canvas.getContext('2d');
    this.resizeObs = new ResizeObserver(() => this.draw());
    this.resizeObs.observe(canvas);
    canvas.addEventListener('mousemove', (e) => {
      const r = canvas.getBoundingClientRect();
      this.hoverX = e.clientX - r.left;
      this.draw();
    });
    canvas.addEventListener('mouseleave', () => { this.hoverX = null; this.draw(); });
  }

  destroy() { this.resizeObs.disconnect(); }

  push(t, values) {
    this.points.push({ t, v: values });
    const cutoff = t - (this.windowSec + 5) * 1000;
    while (this.points.length && this.points[0].t < cutoff) this.points.shift();
    this.draw();
  }

  /** The latest non-null value of every series. */
  latest() {
    const p = this.points[this.points.length - 1];
    return p ? p.v : this.series.map(() => null);
  }

  color(c) {
    if (c.startsWith('--')) return getComputedStyle(this.canvas).getPropertyValue(c).trim() || '#888';
    return c;
  }

  draw() {
    const { canvas, ctx } = this;
    const dpr = window.devicePixelRatio || 1;
    const cssW = canvas.clientWidth;
    const cssH = canvas.clientHeight;
    if (!cssW || !cssH) return;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);

    const grid = this.color('--chart-grid');
    const label = this.color('--chart-label');
    const font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    ctx.font = font;

    const pts = this.points;
    const now = pts.length ? pts[pts.length - 1].t : Date.now();
    const t0 = now - this.windowSec * 1000;

    let max = 0;
    for (const p of pts) for (const v of p.v) if (v !== null && Number.isFinite(v) && v > max) max = v;
    max = Math.max(max, this.minMax);
    const step = niceStep(max, 4);
    const top = Math.ceil(max / step) * step;

    // Layout: y labels on the left, time labels at the bottom.
    let labelW = 0;
    for (let y = 0; y <= top + step / 2; y += step) labelW = Math.max(labelW, ctx.measureText(this.format(y)).width);
    const padL = Math.ceil(labelW) + 10;
    const padR = 8;
    const padT = 8;
    const padB = 20;
    const w = cssW - padL - padR;
    const hgt = cssH - padT - padB;
    const X = (t) => padL + ((t - t0) / (this.windowSec * 1000)) * w;
    const Y = (v) => padT + hgt - (v / top) * hgt;

    // Grid and y labels.
    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = label;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let y = 0; y <= top + step / 2; y += step) {
      const py = Math.round(Y(y)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(padL, py);
      ctx.lineTo(padL + w, py);
      ctx.stroke();
      ctx.fillText(this.format(y), padL - 6, py);
    }
    // Time labels every 30 s.
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (let s = this.windowSec; s >= 0; s -= 30) {
      const px = X(now - s * 1000);
      ctx.fillText(s === 0 ? 'now' : `-${s}s`, Math.min(Math.max(px, padL + 12), padL + w - 12), padT + hgt + 5);
    }

    if (pts.length === 0) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('waiting for samples…', padL + w / 2, padT + hgt / 2);
      return;
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(padL, padT - 2, w, hgt + 4);
    ctx.clip();
    this.series.forEach((s, i) => {
      const col = this.color(s.color);
      // Segments split at gaps (null values).
      const segs = [];
      let cur = [];
      for (const p of pts) {
        const v = p.v[i];
        if (v === null || !Number.isFinite(v)) { if (cur.length) segs.push(cur); cur = []; continue; }
        cur.push([X(p.t), Y(v)]);
      }
      if (cur.length) segs.push(cur);
      for (const seg of segs) {
        if (i === 0 && seg.length > 1) {
          const g = ctx.createLinearGradient(0, padT, 0, padT + hgt);
          g.addColorStop(0, withAlpha(col, 0.22));
          g.addColorStop(1, withAlpha(col, 0.02));
          ctx.fillStyle = g;
          ctx.beginPath();
          ctx.moveTo(seg[0][0], Y(0));
          for (const [x, y] of seg) ctx.lineTo(x, y);
          ctx.lineTo(seg[seg.length - 1][0], Y(0));
          ctx.closePath();
          ctx.fill();
        }
        ctx.strokeStyle = col;
        ctx.lineWidth = 2;
        ctx.lineJoin = 'round';
        ctx.beginPath();
        seg.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.stroke();
        if (seg.length === 1) {
          ctx.fillStyle = col;
          ctx.beginPath();
          ctx.arc(seg[0][0], seg[0][1], 2.5, 0, Math.PI * 2);
          ctx.fill();
        }
      }
    });
    ctx.restore();

    // Hover read-out: nearest sample.
    if (this.hoverX !== null && this.hoverX >= padL && this.hoverX <= padL + w) {
      let best = null;
      for (const p of pts) {
        const d = Math.abs(X(p.t) - this.hoverX);
        if (!best || d < best.d) best = { d, p };
      }
      if (best) {
        const px = Math.round(X(best.p.t)) + 0.5;
        ctx.strokeStyle = label;
        ctx.setLineDash([3, 3]);
        ctx.beginPath();
        ctx.moveTo(px, padT);
        ctx.lineTo(px, padT + hgt);
        ctx.stroke();
        ctx.setLineDash([]);
        const lines = this.series.map((s, i) => [s, best.p.v[i]]);
        const ago = Math.round((now - best.p.t) / 1000);
        const head = ago ? `${ago}s ago` : 'now';
        let bw = ctx.measureText(head).width;
        for (const [s, v] of lines) bw = Math.max(bw, ctx.measureText(`${s.name}: ${v === null ? '—' : this.format(v)}`).width + 14);
        bw += 16;
        const bh = 18 + lines.length * 16;
        let bx = px + 10;
        if (bx + bw > padL + w) bx = px - 10 - bw;
        const by = padT + 4;
        ctx.fillStyle = this.color('--chart-tip-bg');
        ctx.strokeStyle = grid;
        roundRect(ctx, bx, by, bw, bh, 6);
        ctx.fill();
        ctx.stroke();
        ctx.textAlign = 'left';
        ctx.textBaseline = 'top';
        ctx.fillStyle = label;
        ctx.fillText(head, bx + 8, by + 5);
        lines.forEach(([s, v], k) => {
          const ly = by + 21 + k * 16;
          ctx.fillStyle = this.color(s.color);
          ctx.fillRect(bx + 8, ly + 2, 8, 8);
          ctx.fillStyle = this.color('--text');
          ctx.fillText(`${s.name}: ${v === null ? '—' : this.format(v)}`, bx + 22, ly);
        });
      }
    }
  }
}

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}

function withAlpha(col, a) {
  const m = /^#([0-9a-f]{6})$/i.exec(col);
  if (m) {
    const n = parseInt(m[1], 16);
    return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a})`;
  }
  const r = /^rgba?\(([^)]+)\)$/.exec(col);
  if (r) {
    const [R, G, B] = r[1].split(',').map((x) => x.trim());
    return `rgba(${R},${G},${B},${a})`;
  }
  return col;
}

/**
 * Per-interval metrics from two stats samples (`{at_ms, counters}`):
 * read/write IOPS, read/write MB/s, average latency and an approximate p99
 * (the upper bound of the histogram bucket holding the 99th percentile of
 * the commands completed in the interval; null when none completed).
 */
export function deltas(prev, cur) {
  const dt = (cur.at_ms - prev.at_ms) / 1000;
  if (!(dt > 0)) return null;
  const a = prev.counters || {};
  const b = cur.counters || {};
  // Counters restart from zero when the device restarts in a new daemon.
  const d = (k) => Math.max(0, (b[k] || 0) - (a[k] || 0));
  const out = {
    readIops: d('reads') / dt,
    writeIops: d('writes') / dt,
    iops: d('commands') / dt,
    readMBs: d('read_bytes') / dt / 1e6,
    writeMBs: d('write_bytes') / dt / 1e6,
    avgUs: null,
    p99Us: null,
    p99Overflow: false,
  };
  const ha = a.latency || {};
  const hb = b.latency || {};
  const ca = ha.counts || [];
  const cb = hb.counts || [];
  const bounds = hb.bounds_us || [];
  const dc = cb.map((c, i) => Math.max(0, c - (ca[i] || 0)));
  const n = dc.reduce((x, y) => x + y, 0);
  if (n > 0) {
    out.avgUs = Math.max(0, (hb.sum_us || 0) - (ha.sum_us || 0)) / n;
    const want = Math.ceil(n * 0.99);
    let acc = 0;
    for (let i = 0; i < dc.length; i++) {
      acc += dc[i];
      if (acc >= want) {
        if (i < bounds.length) out.p99Us = bounds[i];
        else { out.p99Us = bounds.length ? bounds[bounds.length - 1] : null; out.p99Overflow = true; }
        break;
      }
    }
  }
  return out;
}
