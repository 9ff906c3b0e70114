// Customer usage, agent usage and endpoint activity: one table per entity over the
// window, a multi-select by id, the daily spend trend and the model breakdown of the
// selection (or of every entity when none is selected).
import { html, useState, useEffect, useMemo } from './vendor/htm-preact-3.1.1/standalone.module.js';
import { api, org } from './api.js';
import { Chart, trendOptions } from './chart.js';
import { Toolbar, dayWindow } from './overview.js';
import { int, money, percent } from './format.js';

const NAMES = {
  customers: { one: 'customer', title: 'Customers' },
  agents: { one: 'agent', title: 'Agents' },
  endpoints: { one: 'endpoint', title: 'Endpoints' },
};
const TREND_LINES = 6;

const label = (e) => e.name || e.id || '(none)';

const PAGE = 50;
/** The report takes at most this many ids, in at most 256 characters. */
const MAX_IDS = 100;
const MAX_IDS_CHARS = 256;

export function Entities({ ctx, entity, span, setSpan, filters, setFilters, refresh, setRefresh }) {
  const [page, setPage] = useState(null);
  const [offsets, setOffsets] = useState([0]); // offset of each page seen
  const [index, setIndex] = useState(0);
  const [error, setError] = useState(null);
  const [selected, setSelected] = useState([]);
  const [chosenPage, setChosenPage] = useState(null); // the selection's own report
  const [allModels, setAllModels] = useState(null); // every entity's models (no selection)
  const [search, setSearch] = useState('');
  const names = NAMES[entity];
  const base = org(ctx.orgId);
  const scope = { ...dayWindow(span), projectId: filters.projectId, apiKeyId: filters.apiKeyId };

  // A new window or filter starts again from the first page.
  useEffect(() => {
    setOffsets([0]);
    setIndex(0);
  }, [ctx.orgId, entity, span, filters.projectId, filters.apiKeyId, refresh]);

  useEffect(() => {
    const ctl = new AbortController();
    setPage(null);
    setError(null);
    api(`${base}/activity/${entity}`, { params: { ...scope, sort: 'spend', limit: PAGE, offset: offsets[index] }, signal: ctl.signal })
      .then(setPage)
      .catch((e) => e.name !== 'AbortError' && setError(e.message));
    return () => ctl.abort();
  }, [offsets, index]);

  // The selection is reported on its own (it may span pages); with none, the models
  // are the whole window's (every entity, not only this page).
  const idsParam = selected.join(',');
  const tooMany = selected.length > MAX_IDS || idsParam.length > MAX_IDS_CHARS;
  useEffect(() => {
    const ctl = new AbortController();
    setChosenPage(null);
    setAllModels(null);
    if (selected.length && !tooMany) {
      api(`${base}/activity/${entity}`, { params: { ...scope, ids: idsParam, sort: 'spend', limit: MAX_IDS }, signal: ctl.signal })
        .then(setChosenPage)
        .catch((e) => e.name !== 'AbortError' && setError(e.message));
    } else if (!selected.length && page) {
      api(`${base}/activity/summary`, { params: { from: page.from, to: page.to, projectId: filters.projectId, apiKeyId: filters.apiKeyId }, signal: ctl.signal })
        .then((s) => setAllModels(s.models))
        .catch((e) => e.name !== 'AbortError' && setError(e.message));
    }
    return () => ctl.abort();
  }, [idsParam, page]);

  const rows = page ? page.data : [];
  const chosen = selected.length ? (chosenPage ? chosenPage.data : []) : rows;
  const visible = rows.filter((r) => !search || label(r).toLowerCase().includes(search.toLowerCase()));

  const trend = useMemo(() => {
    const lines = chosen.slice(0, TREND_LINES);
    if (!lines.length || !lines[0].daily.length) return null;
    const days = lines[0].daily.map((p) => Date.parse(`${p.date}T00:00:00Z`) / 1000);
    return {
      options: trendOptions(lines.map(label)),
      data: [days, ...lines.map((l) => l.daily.map((p) => Number(p.cost)))],
    };
  }, [page, chosenPage, selected]);

  const models = useMemo(() => {
    if (!selected.length) {
      return (allModels || []).map((m) => ({ id: m.id, provider: m.provider, requestCount: m.requestCount, totalTokens: m.inputTokens + m.outputTokens, cost: Number(m.cost) }));
    }
    const byModel = new Map();
    for (const r of chosen) {
      for (const m of r.modelBreakdown) {
        const key = `${m.provider}/${m.id}`;
        const acc = byModel.get(key) || { id: m.id, provider: m.provider, requestCount: 0, totalTokens: 0, cost: 0 };
        acc.requestCount += m.requestCount;
        acc.totalTokens += m.totalTokens;
        acc.cost += Number(m.cost);
        byModel.set(key, acc);
      }
    }
    return [...byModel.values()].sort((a, b) => b.cost - a.cost);
  }, [chosenPage, allModels, selected]);

  const toggle = (id) => setSelected(selected.includes(id) ? selected.filter((s) => s !== id) : [...selected, id]);

  return html`
    <${Toolbar} ctx=${ctx} span=${span} setSpan=${setSpan} filters=${filters} setFilters=${setFilters} setRefresh=${setRefresh} show=${['project', 'key']} busy=${!page && !error} daily=${true} />
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${!error && html`<section class="card panel">
      <div class="panel-head"><h2>${names.title}</h2>
        <div class="actions">
          <label class="sr-only" for="entity-search">Find a ${names.one} on this page</label>
          <input id="entity-search" type="search" placeholder=${`Find on this page…`} value=${search} onInput=${(e) => setSearch(e.target.value)} />
          ${selected.length > 0 && html`<button class="ghost" onClick=${() => setSelected([])}>Clear selection (${selected.length})</button>`}
        </div>
      </div>
      ${tooMany && html`<p class="error" role="alert">Too many selected to report together (at most ${MAX_IDS}, ${MAX_IDS_CHARS} characters of ids): clear some.</p>`}
      ${!page && html`<p class="muted" aria-busy="true">Loading…</p>`}
      ${page && rows.length === 0 && html`<p class="empty">No ${names.one} made calls in this window${index > 0 ? ' beyond the previous page' : ''}.</p>`}
      ${page && rows.length > 0 && html`<div class="table-wrap"><table class="table" id="entity-table">
        <thead><tr><th scope="col"><span class="sr-only">Selected</span></th><th scope="col">${names.one[0].toUpperCase() + names.one.slice(1)}</th><th scope="col" class="num">Requests</th><th scope="col" class="num hide-sm">Success rate</th><th scope="col" class="num hide-sm">Tokens</th><th scope="col" class="num">Spend</th></tr></thead>
        <tbody>${visible.map((r) => {
          const id = label(r);
          return html`<tr key=${id} data-name=${r.name || ''} class=${selected.includes(id) ? 'selected' : ''}>
            <td><input type="checkbox" aria-label=${`Select ${id}`} checked=${selected.includes(id)} onChange=${() => toggle(id)}
              disabled=${!r.name} title=${r.name ? '' : `Calls that named no ${names.one} cannot be selected`} /></td>
            <td class=${entity === 'endpoints' ? 'mono' : ''}>${id}</td>
            <td class="num">${int(r.requestCount)}</td>
            <td class="num hide-sm">${percent(r.successRate)}</td>
            <td class="num hide-sm">${int(r.totalTokens)}</td>
            <td class="num">${money(r.cost)}</td></tr>`;
        })}</tbody>
      </table></div>`}
      <div class="pager">
        <button class="secondary" id="entity-newer" disabled=${index === 0} onClick=${() => setIndex(index - 1)}>Previous</button>
        <span class="muted" id="entity-page">Page ${index + 1}</span>
        <button class="secondary" id="entity-older" disabled=${!page || page.nextOffset == null}
          onClick=${() => { setOffsets([...offsets.slice(0, index + 1), page.nextOffset]); setIndex(index + 1); }}>Next</button>
      </div>
    </section>
    ${page && (rows.length > 0 || selected.length > 0) && html`<div class="two-col">
      <section class="card panel">
        <div class="panel-head"><h2>Daily spend</h2><span class="muted">${selected.length ? 'selected' : `top ${Math.min(TREND_LINES, rows.length)} of this page`}</span></div>
        ${trend ? html`<${Chart} options=${trend.options} data=${trend.data} label=${`Daily spend per ${names.one}`} />` : html`<p class="empty">No days to show.</p>`}
      </section>
      <section class="card panel">
        <div class="panel-head"><h2>Models</h2><span class="muted">${selected.length ? `${selected.length} selected` : `all ${names.title.toLowerCase()}`}</span></div>
        ${models.length === 0 ? html`<p class="empty">${(selected.length ? !chosenPage : !allModels) ? 'Loading…' : 'No model calls.'}</p>` : html`<div class="table-wrap"><table class="table" id="entity-models">
          <thead><tr><th scope="col">Model</th><th scope="col" class="num">Requests</th><th scope="col" class="num hide-sm">Tokens</th><th scope="col" class="num">Spend</th></tr></thead>
          <tbody>${models.map((m) => html`<tr key=${m.provider + m.id}><td><span class="model">${m.id}</span> <span class="muted">${m.provider}</span></td><td class="num">${int(m.requestCount)}</td><td class="num hide-sm">${int(m.totalTokens)}</td><td class="num">${money(m.cost)}</td></tr>`)}</tbody>
        </table></div>`}
      </section>
    </div>`}`}`;
}
