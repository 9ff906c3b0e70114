// Charts by uPlot (vendored): a Preact component that owns one uPlot instance and
// follows its container's width.
import { html, useEffect, useRef } from './vendor/htm-preact-3.1.1/standalone.module.js';
import uPlot from './vendor/uplot-1.6.32/uPlot.esm.js';
import { money, compactInt } from './format.js';

const PALETTE = ['--c1', '--c2', '--c3', '--c4', '--c5', '--c6', '--c7', '--c8'];

export function cssColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

export const paletteColor = (i) => cssColor(PALETTE[i % PALETTE.length]);

function axisStyle() {
  const stroke = cssColor('--muted');
  const grid = { stroke: cssColor('--grid'), width: 1 };
  return { stroke, grid, ticks: { stroke: cssColor('--grid'), width: 1 } };
}

/**
 * Spend (bars, left axis) and requests (line, right axis) per bucket. `points` are
 * the summary's series; `hourly` picks the time labels.
 */
/** Daily buckets are UTC days: label them so, in any time zone. */
const utc = (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC');
const dayLabels = (u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' }));
const DAY = 86400;
/** Tick steps for counts: whole numbers only. */
const WHOLE = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 50000, 100000, 250000, 500000, 1000000];

export function spendAndRequestsOptions(hourly) {
  const a = axisStyle();
  const x = hourly ? { ...a, space: 60 } : { ...a, space: 60, incrs: [DAY, 2 * DAY, 7 * DAY, 14 * DAY], values: dayLabels };
  const spend = cssColor('--c1');
  const requests = cssColor('--c2');
  return {
    height: 240,
    legend: { show: true },
    cursor: { points: { size: 7 } },
    ...(hourly ? {} : { tzDate: utc }),
    scales: { x: { time: true }, spend: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] }, requests: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    series: [
      { value: (u, v) => (v == null ? '—' : new Date(v * 1000).toLocaleString(undefined, hourly ? { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' } : { month: 'short', day: 'numeric', timeZone: 'UTC' })) },
      { label: 'Spend', scale: 'spend', stroke: spend, fill: spend + '99', width: 0, paths: uPlot.paths.bars({ size: [0.7, 48] }), value: (u, v) => (v == null ? '—' : money(v)) },
      { label: 'Requests', scale: 'requests', stroke: requests, width: 2, points: { show: true, size: 4 }, value: (u, v) => (v == null ? '—' : compactInt(v)) },
    ],
    axes: [
      x,
      { ...a, scale: 'spend', size: 64, values: (u, vals) => vals.map((v) => money(v)) },
      { ...a, scale: 'requests', side: 1, size: 50, grid: { show: false }, incrs: WHOLE, values: (u, vals) => vals.map((v) => compactInt(v)) },
    ],
  };
}

/** One line per entity, daily spend. */
export function trendOptions(labels) {
  const a = axisStyle();
  return {
    height: 240,
    tzDate: utc,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    series: [
      { value: (u, v) => (v == null ? '—' : new Date(v * 1000).toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' })) },
      ...labels.map((label, i) => ({ label, stroke: paletteColor(i), width: 2, points: { show: false }, value: (u, v) => (v == null ? '—' : money(v)) })),
    ],
    axes: [{ ...a, space: 60, incrs: [DAY, 2 * DAY, 7 * DAY, 14 * DAY], values: dayLabels }, { ...a, size: 64, values: (u, vals) => vals.map((v) => money(v)) }],
  };
}

export function Chart({ options, data, label }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const width = Math.max(el.clientWidth, 200);
    plot.current = new uPlot({ ...options, width }, data, el);
    const observer = new ResizeObserver(() => {
      if (plot.current && el.clientWidth > 0) plot.current.setSize({ width: el.clientWidth, height: options.height });
    });
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.current.destroy();
      plot.current = null;
    };
  }, [options, data]);
  return html`<div class="chart" ref=${box} role="img" aria-label=${label}></div>`;
}
