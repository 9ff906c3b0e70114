// Usage overview: the window and filters, four summary cards, the daily chart of
// spend and requests, the model breakdown, and the request log below.
import { html, useState, useEffect, useMemo } from './vendor/htm-preact-3.1.1/standalone.module.js';
import { api, org } from './api.js';
import { Chart, spendAndRequestsOptions } from './chart.js';
import { RequestLog } from './requests.js';
import { int, money, percent, ms, utcDate, hour, day } from './format.js';

const WINDOWS = [
  ['24h', 'Last 24 hours', 1],
  ['7d', 'Last 7 days', 7],
  ['30d', 'Last 30 days', 30],
];

/** The summary API's window parameters for the chosen span. */
export function summaryWindow(span) {
  return span.kind === 'custom' ? { from: span.from, to: span.to } : { window: span.kind };
}

/** The day-based analytics' window parameters (entity tabs). */
export function dayWindow(span) {
  if (span.kind === 'custom') return { from: span.from, to: span.to };
  return { days: { '24h': 1, '7d': 7, '30d': 30 }[span.kind] };
}

export function Toolbar({ ctx, span, setSpan, filters, setFilters, setRefresh, show = ['project', 'key', 'model', 'customer'], models = [], busy, daily = false }) {
  const retention = ctx.organization.retentionDays;
  const earliest = utcDate(retention - 1);
  const today = utcDate(0);
  const [from, setFrom] = useState(span.from || utcDate(Math.min(6, retention - 1)));
  const [to, setTo] = useState(span.to || today);
  const choices = ctx.choices;
  const keys = choices ? choices.keys.filter((k) => !filters.projectId || k.projectId === filters.projectId) : [];
  const set = (patch) => setFilters({ ...filters, ...patch });

  function pick(kind) {
    if (kind === 'custom') setSpan({ kind, from, to });
    else setSpan({ kind, from: '', to: '' });
  }
  function applyCustom(e) {
    e.preventDefault();
    setSpan({ kind: 'custom', from, to });
  }

  return html`
    <section class="toolbar" aria-label="Window and filters">
      <div class="segmented" role="group" aria-label="Time window">
        ${WINDOWS.map(([kind, label, days]) => (daily && kind === '24h' ? ['24h', 'Today (UTC)', 1] : [kind, label, days])).map(([kind, label, days]) => html`<button key=${kind} id=${`window-${kind}`} aria-pressed=${span.kind === kind}
            disabled=${days > retention} title=${days > retention ? `Your plan keeps ${retention} days` : label} onClick=${() => pick(kind)}>${label}</button>`)}
        <button id="window-custom" aria-pressed=${span.kind === 'custom'} onClick=${() => pick('custom')}>Custom</button>
      </div>
      ${span.kind === 'custom' && html`
        <form class="custom-range" onSubmit=${applyCustom}>
          <label>From <input type="date" id="custom-from" min=${earliest} max=${today} value=${from} onInput=${(e) => setFrom(e.target.value)} required /></label>
          <label>To <input type="date" id="custom-to" min=${earliest} max=${today} value=${to} onInput=${(e) => setTo(e.target.value)} required /></label>
          <button type="submit">Apply</button>
        </form>`}
      <div class="filters">
        ${show.includes('project') && html`<label>Project
          <select id="filter-project" value=${filters.projectId} onChange=${(e) => set({ projectId: e.target.value, apiKeyId: '' })}>
            <option value="">All projects</option>
            ${(choices?.projects || []).map((p) => html`<option key=${p.id} value=${p.id}>${p.name}</option>`)}
          </select></label>`}
        ${show.includes('key') && html`<label>API key
          <select id="filter-key" value=${filters.apiKeyId} onChange=${(e) => set({ apiKeyId: e.target.value })}>
            <option value="">All keys</option>
            ${keys.map((k) => html`<option key=${k.id} value=${k.id}>${k.name} (${k.prefix}…)</option>`)}
          </select></label>`}
        ${show.includes('model') && html`<label>Model
          <select id="filter-model" value=${filters.model} onChange=${(e) => set({ model: e.target.value })}>
            <option value="">All models</option>
            ${models.map((m) => html`<option key=${m} value=${m}>${m}</option>`)}
          </select></label>`}
        ${show.includes('customer') && html`<label>Customer
          <select id="filter-customer" value=${filters.customer} onChange=${(e) => set({ customer: e.target.value })}>
            <option value="">All customers</option>
            ${(choices?.customers || []).map((c) => html`<option key=${c} value=${c}>${c}</option>`)}
          </select></label>`}
        <button id="refresh" class="secondary" onClick=${() => setRefresh((n) => n + 1)} disabled=${busy}>${busy ? 'Refreshing…' : 'Refresh'}</button>
      </div>
    </section>
    <p class="retention-note muted" id="retention-note">
      The ${ctx.organization.plan[0].toUpperCase() + ctx.organization.plan.slice(1)} plan keeps ${retention} ${retention === 1 ? 'day' : 'days'} of history: nothing before ${earliest} (UTC) can be shown.
    </p>`;
}

/** The window as a person reads it: UTC days for daily buckets, local hours otherwise. */
function rangeLabel(summary) {
  if (summary.resolution === 'hour') return `${hour(summary.from)} – ${hour(summary.to)}`;
  const last = new Date(Date.parse(summary.to) - 1).toISOString();
  return `${day(summary.from)} – ${day(last)} (UTC days)`;
}

function Card({ id, title, value, raw, sub }) {
  return html`<div class="card stat" id=${id} data-value=${raw}>
    <div class="stat-title">${title}</div>
    <div class="stat-value">${value}</div>
    <div class="stat-sub muted">${sub}</div>
  </div>`;
}

function Cards({ summary }) {
  if (!summary) {
    return html`<div class="cards" aria-busy="true">
      ${['Requests', 'Tokens', 'Spend', 'Avg latency'].map((t) => html`<div key=${t} class="card stat loading"><div class="stat-title">${t}</div><div class="stat-value shimmer">&nbsp;</div><div class="stat-sub">&nbsp;</div></div>`)}
    </div>`;
  }
  const t = summary.totals;
  const l = summary.latency;
  const p95 = l.p95Ms != null ? `p95 ≤ ${ms(l.p95Ms)}` : l.p95AboveMs != null ? `p95 > ${ms(l.p95AboveMs)}` : 'p95 —';
  return html`<div class="cards">
    <${Card} id="card-requests" title="Requests" value=${int(t.requestCount)} raw=${t.requestCount}
      sub=${t.requestCount ? `${percent(t.successRate)} success · ${int(t.errorCount)} failed` : 'no requests'} />
    <${Card} id="card-tokens" title="Tokens" value=${int(t.totalTokens)} raw=${t.totalTokens}
      sub=${`${int(t.inputTokens)} input · ${int(t.outputTokens)} output`} />
    <${Card} id="card-spend" title="Spend" value=${money(t.cost)} raw=${t.cost} sub=${`${summary.models.length} ${summary.models.length === 1 ? 'model' : 'models'}`} />
    <${Card} id="card-latency" title="Avg latency" value=${ms(l.meanMs)} raw=${l.meanMs ?? ''} sub=${p95} />
  </div>`;
}

function Models({ models, total }) {
  if (!models.length) return html`<p class="empty">No model was called in this window.</p>`;
  const max = Math.max(...models.map((m) => Number(m.cost)), 0);
  return html`<div class="table-wrap"><table class="table" id="models-table">
    <thead><tr><th scope="col">Model</th><th scope="col" class="num">Requests</th><th scope="col" class="num hide-sm">Success</th><th scope="col" class="num hide-sm">Input tokens</th><th scope="col" class="num hide-sm">Output tokens</th><th scope="col" class="num">Spend</th><th scope="col" class="hide-sm">Share</th></tr></thead>
    <tbody>${models.map((m) => html`<tr key=${m.provider + m.id}>
      <td><span class="model">${m.id}</span> <span class="muted">${m.provider}</span></td>
      <td class="num">${int(m.requestCount)}</td>
      <td class="num hide-sm">${percent(m.successRate)}</td>
      <td class="num hide-sm">${int(m.inputTokens)}</td>
      <td class="num hide-sm">${int(m.outputTokens)}</td>
      <td class="num">${money(m.cost)}</td>
      <td class="hide-sm"><div class="bar" title=${Number(total) > 0 ? percent((100 * Number(m.cost)) / Number(total)) : ''}><span class="bar-fill" style=${{ width: `${max > 0 ? (100 * Number(m.cost)) / max : 0}%` }}></span></div></td>
    </tr>`)}</tbody>
  </table></div>`;
}

export function Overview({ ctx, span, setSpan, filters, setFilters, refresh, setRefresh }) {
  const [summary, setSummary] = useState(null);
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(true);
  const [knownModels, setKnownModels] = useState([]);
  const [knownProviders, setKnownProviders] = useState([]);

  useEffect(() => {
    const ctl = new AbortController();
    setLoading(true);
    setError(null);
    api(`${org(ctx.orgId)}/activity/summary`, {
      params: { ...summaryWindow(span), projectId: filters.projectId, apiKeyId: filters.apiKeyId, model: filters.model, customer: filters.customer },
      signal: ctl.signal,
    })
      .then((s) => {
        setSummary(s);
        setKnownModels((known) => [...new Set([...known, ...s.models.map((m) => m.id)])].sort());
        setKnownProviders((known) => [...new Set([...known, ...s.models.map((m) => m.provider)])].sort());
        setLoading(false);
      })
      .catch((e) => {
        if (e.name === 'AbortError') return;
        setSummary(null);
        setError(e.message);
        setLoading(false);
      });
    return () => ctl.abort();
    // The log's own filters (status, agent, provider) do not change the summary.
  }, [ctx.orgId, span, filters.projectId, filters.apiKeyId, filters.model, filters.customer, refresh]);

  const chart = useMemo(() => {
    if (!summary) return null;
    const hourly = summary.resolution === 'hour';
    return {
      options: spendAndRequestsOptions(hourly),
      data: [summary.series.map((p) => Date.parse(p.start) / 1000), summary.series.map((p) => Number(p.cost)), summary.series.map((p) => p.requestCount)],
      hourly,
    };
  }, [summary]);

  const logTo = summary && span.kind === 'custom' ? new Date(Date.parse(summary.to) - 1).toISOString() : '';

  return html`
    <${Toolbar} ctx=${ctx} span=${span} setSpan=${setSpan} filters=${filters} setFilters=${setFilters} setRefresh=${setRefresh} models=${knownModels} busy=${loading} />
    ${error && html`<p class="error" role="alert" id="overview-error">${error}</p>`}
    ${!error && html`
      <${Cards} summary=${loading ? null : summary} />
      <section class="card panel">
        <div class="panel-head"><h2>${chart && chart.hourly ? 'Spend and requests per hour' : 'Spend and requests per day'}</h2>
          ${summary && html`<span class="muted" id="window-range" data-from=${summary.from} data-to=${summary.to}>${rangeLabel(summary)}</span>`}</div>
        ${summary ? (summary.totals.requestCount ? html`<${Chart} options=${chart.options} data=${chart.data} label="Spend and requests over the window" />` : html`<p class="empty">No requests in this window.</p>`) : html`<div class="chart-placeholder shimmer"></div>`}
      </section>
      <section class="card panel">
        <div class="panel-head"><h2>Models</h2></div>
        ${summary ? html`<${Models} models=${summary.models} total=${summary.totals.cost} />` : html`<p class="muted">Loading…</p>`}
      </section>
      ${summary && html`<${RequestLog} ctx=${ctx} filters=${filters} setFilters=${setFilters} providers=${knownProviders} from=${summary.from} to=${logTo} refresh=${refresh} />`}`}`;
}
