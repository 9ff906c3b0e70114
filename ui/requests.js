// The request log: newest first, paged with the API's cursor; a detail drawer; and
// Live, which streams calls recorded from now on into the top of the log.
import { html, useState, useEffect, useRef } from './vendor/htm-preact-3.1.1/standalone.module.js';
import { api, org, query } from './api.js';
import { int, ms, moneyFine, moneyExact, when, whenShort } from './format.js';

const PAGE = 25;

function Status({ row }) {
  const ok = row.status === 'success';
  return html`<span class=${ok ? 'pill ok' : 'pill fail'} title=${row.errorCode || ''}>${ok ? 'Success' : row.errorCode || 'Error'}</span>`;
}

function Row({ row, onOpen, fresh }) {
  const onKeyDown = (e) => {
    if (e.target === e.currentTarget && (e.key === 'Enter' || e.key === ' ')) {
      e.preventDefault();
      onOpen(row.id);
    }
  };
  return html`<tr class=${fresh ? 'row fresh' : 'row'} data-id=${row.id} data-request-id=${row.requestId} tabindex="0"
    data-status=${row.status} data-agent=${row.agentId || ''} data-provider=${row.provider}
    aria-label=${`Request ${row.requestId}: open its details`} onClick=${() => onOpen(row.id)} onKeyDown=${onKeyDown}>
    <td class="nowrap">${whenShort(row.occurredAt)}</td>
    <td><${Status} row=${row} /></td>
    <td class="hide-sm nowrap"><span class="model">${row.model}</span></td>
    <td class="hide-sm customer nowrap">${row.user || html`<span class="muted">—</span>`}</td>
    <td class="num hide-sm">${int(row.promptTokens)}</td>
    <td class="num hide-sm">${int(row.completionTokens)}</td>
    <td class="num">${int(row.totalTokens)}</td>
    <td class="num hide-sm">${ms(row.latencyMs)}</td>
    <td class="num">${row.unpriced ? html`<span class="muted" title="No price for this model">unpriced</span>` : moneyFine(row.cost)}</td>
    <td class="hide-sm"><span class="mono request-link">${row.requestId}</span></td>
  </tr>`;
}

/** The log's own filters: they narrow the log (and Live), not the cards above. */
function LogFilters({ ctx, filters, setFilters, providers }) {
  const set = (patch) => setFilters({ ...filters, ...patch });
  return html`<div class="filters log-filters" role="group" aria-label="Filter the requests">
    <label>Status<select id="filter-status" value=${filters.status} onChange=${(e) => set({ status: e.target.value })}>
      <option value="">Any status</option><option value="success">Success</option><option value="error">Error</option>
    </select></label>
    <label>Agent<select id="filter-agent" value=${filters.agent} onChange=${(e) => set({ agent: e.target.value })}>
      <option value="">All agents</option>
      ${(ctx.choices?.agents || []).map((a) => html`<option key=${a} value=${a}>${a}</option>`)}
    </select></label>
    <label>Provider<select id="filter-provider" value=${filters.provider} onChange=${(e) => set({ provider: e.target.value })}>
      <option value="">All providers</option>
      ${[...new Set([...providers, filters.provider].filter(Boolean))].map((p) => html`<option key=${p} value=${p}>${p}</option>`)}
    </select></label>
  </div>`;
}

export function RequestLog({ ctx, filters, setFilters, providers = [], from, to, refresh }) {
  const [rows, setRows] = useState(null);
  const [next, setNext] = useState(null);
  const [cursors, setCursors] = useState(['']); // cursor of each page seen, first page ''
  const [page, setPage] = useState(0);
  const [error, setError] = useState(null);
  const [open, setOpen] = useState(null);
  const [live, setLive] = useState(false);
  const [liveRows, setLiveRows] = useState([]);
  const [liveNote, setLiveNote] = useState(null);
  const source = useRef(null);
  const base = org(ctx.orgId);
  const params = {
    projectId: filters.projectId, apiKeyId: filters.apiKeyId, model: filters.model, customer: filters.customer,
    status: filters.status, agent: filters.agent, provider: filters.provider,
  };

  // A new window or filter starts again from the first page.
  useEffect(() => {
    setCursors(['']);
    setPage(0);
    setLiveRows([]);
  }, [ctx.orgId, filters, from, to, refresh]);

  useEffect(() => {
    const ctl = new AbortController();
    setRows(null);
    setError(null);
    api(`${base}/spend-logs`, { params: { ...params, from, to, limit: PAGE, cursor: cursors[page] }, signal: ctl.signal })
      .then((p) => {
        setRows(p.data);
        setNext(p.nextCursor || null);
      })
      .catch((e) => e.name !== 'AbortError' && setError(e.message));
    return () => ctl.abort();
  }, [cursors, page]);

  function older() {
    if (!next) return;
    setCursors([...cursors.slice(0, page + 1), next]);
    setPage(page + 1);
  }

  function stop() {
    if (source.current) source.current.close();
    source.current = null;
    setLive(false);
    setLiveNote(null);
  }

  async function openStream() {
    // EventSource cannot send the token: trade it for a one-time ticket (60 s, one stream).
    const { ticket } = await api(`${base}/stream-tickets`, { method: 'POST' });
    const es = new EventSource(`${base}/spend-logs/stream${query({ ...params, ticket })}`);
    source.current = es;
    es.onopen = () => setLiveNote(null);
    es.onmessage = (e) => {
      const row = JSON.parse(e.data);
      setLiveRows((list) => [row, ...list.filter((r) => r.id !== row.id)].slice(0, 200));
    };
    const reopen = (why) => {
      es.close();
      if (source.current !== es) return;
      setLiveNote(why);
      setTimeout(() => {
        if (source.current === es) openStream().catch((err) => setLiveNote(err.message));
      }, 2000);
    };
    es.addEventListener('end', (e) => {
      let reason = 'ended';
      try { reason = JSON.parse(e.data).reason; } catch { /* keep the default */ }
      reopen(`The stream ended (${reason}); reconnecting…`);
    });
    es.onerror = () => reopen('Connection lost; reconnecting…');
  }

  async function start() {
    setLive(true);
    setLiveRows([]);
    setLiveNote('Connecting…');
    try {
      await openStream();
    } catch (e) {
      setLive(false);
      setLiveNote(null);
      setError(`Live could not start: ${e.message}`);
    }
  }

  useEffect(() => stop, [ctx.orgId]);
  useEffect(() => {
    if (live) {
      stop();
      start();
    }
  }, [filters]);

  const shown = page === 0 ? [...liveRows, ...(rows || []).filter((r) => !liveRows.some((l) => l.id === r.id))] : rows || [];

  return html`<section class="card panel" id="request-log">
    <div class="panel-head">
      <h2>Requests</h2>
      <${LogFilters} ctx=${ctx} filters=${filters} setFilters=${setFilters} providers=${providers} />
      <div class="actions">
        ${live
          ? html`<button class="secondary" id="live-stop" onClick=${stop}>Stop live</button>`
          : html`<button class="secondary" id="live-toggle" onClick=${start} aria-pressed="false"><span class="dot" aria-hidden="true"></span> Live</button>`}
      </div>
    </div>
    ${live && html`<div class="live-banner" role="status" id="live-banner">
      <span class="pulse" aria-hidden="true"></span>
      <span><strong>Live</strong> — new requests appear at the top as they are recorded${liveRows.length ? ` (${int(liveRows.length)} so far)` : ''}.${liveNote ? ` ${liveNote}` : ''}</span>
      <button class="ghost" onClick=${stop}>Stop</button>
    </div>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${rows === null && !error && html`<p class="muted loading-line" aria-busy="true">Loading requests…</p>`}
    ${rows !== null && shown.length === 0 && html`<p class="empty">No requests match this window and these filters${live ? ' yet' : ''}.</p>`}
    ${shown.length > 0 && html`<div class="table-wrap"><table class="table clickable" id="requests-table">
      <thead><tr>
        <th scope="col">Time</th><th scope="col">Status</th><th scope="col" class="hide-sm">Model</th><th scope="col" class="hide-sm">Customer</th>
        <th scope="col" class="num hide-sm">Prompt</th><th scope="col" class="num hide-sm">Completion</th><th scope="col" class="num">Total tokens</th>
        <th scope="col" class="num hide-sm">Latency</th><th scope="col" class="num">Spend</th><th scope="col" class="hide-sm">Request id</th>
      </tr></thead>
      <tbody>${shown.map((r) => html`<${Row} key=${r.id} row=${r} onOpen=${setOpen} fresh=${liveRows.some((l) => l.id === r.id)} />`)}</tbody>
    </table></div>`}
    <div class="pager">
      <button class="secondary" id="page-newer" disabled=${page === 0} onClick=${() => setPage(page - 1)}>Newer</button>
      <span class="muted">Page ${page + 1}</span>
      <button class="secondary" id="page-older" disabled=${!next} onClick=${older}>Older</button>
    </div>
    ${open && html`<${Drawer} ctx=${ctx} eventId=${open} onClose=${() => setOpen(null)} />`}
  </section>`;
}

const COMPONENTS = [
  ['input', 'Input'],
  ['cachedInput', 'Cached input'],
  ['cacheWrite5m', 'Cache writes (5 min)'],
  ['cacheWrite1h', 'Cache writes (1 h)'],
  ['audioInput', 'Audio input'],
  ['output', 'Output'],
  ['reasoning', 'Reasoning'],
  ['audioOutput', 'Audio output'],
  ['request', 'Per request'],
  ['imageInput', 'Images in'],
  ['imageOutput', 'Images out'],
  ['dataStorage', 'Data storage'],
];

function Body({ label, text }) {
  const [mode, setMode] = useState('pretty');
  if (text === null || text === undefined) return html`<div class="body-block"><h4>${label}</h4><p class="muted">Not stored.</p></div>`;
  let parsed;
  try { parsed = JSON.parse(text); } catch { parsed = undefined; }
  const shown = parsed === undefined ? text : mode === 'pretty' ? JSON.stringify(parsed, null, 2) : JSON.stringify(parsed);
  return html`<div class="body-block">
    <div class="body-head"><h4>${label}</h4>
      ${parsed !== undefined && html`<div class="segmented small" role="group" aria-label=${`${label} format`}>
        <button aria-pressed=${mode === 'pretty'} onClick=${() => setMode('pretty')}>Pretty</button>
        <button aria-pressed=${mode === 'json'} onClick=${() => setMode('json')}>JSON</button>
      </div>`}
    </div>
    ${parsed !== undefined && mode === 'pretty' && Array.isArray(parsed?.messages)
      ? html`<div class="messages">${parsed.messages.map((m, i) => html`<div key=${i} class="message"><span class="role">${m.role}</span><div>${typeof m.content === 'string' ? m.content : JSON.stringify(m.content)}</div></div>`)}</div>`
      : html`<pre class=${mode === 'json' ? 'code wrap' : 'code'}>${shown}</pre>`}
  </div>`;
}

function Field({ label, children }) {
  return html`<div class="field"><dt>${label}</dt><dd>${children}</dd></div>`;
}

export function Drawer({ ctx, eventId, onClose }) {
  const [d, setD] = useState(null);
  const [error, setError] = useState(null);
  const closeRef = useRef(null);
  const opener = useRef(document.activeElement);

  useEffect(() => {
    setD(null);
    api(`${org(ctx.orgId)}/spend-logs/${eventId}`).then(setD).catch((e) => setError(e.message));
  }, [eventId]);
  useEffect(() => {
    closeRef.current?.focus();
    const onKey = (e) => {
      if (e.key === 'Escape') onClose();
      if (e.key !== 'Tab') return;
      // Keep the focus inside the drawer while it is open.
      const drawer = document.getElementById('drawer');
      const focusable = drawer ? [...drawer.querySelectorAll('button, [href], input, select, [tabindex="0"]')] : [];
      if (!focusable.length) return;
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      if (!drawer.contains(document.activeElement)) {
        e.preventDefault();
        first.focus();
      } else if (e.shiftKey && document.activeElement === first) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && document.activeElement === last) {
        e.preventDefault();
        first.focus();
      }
    };
    document.addEventListener('keydown', onKey);
    const back = opener.current;
    return () => {
      document.removeEventListener('keydown', onKey);
      if (back && back.focus) back.focus();
    };
  }, []);

  const names = ctx.choices || { keyNames: {}, projectNames: {} };
  const components = d ? COMPONENTS.filter(([k]) => Number(d.costBreakdown[k]) !== 0) : [];

  return html`<div class="drawer-backdrop" onClick=${onClose}></div>
  <div class="drawer" role="dialog" aria-modal="true" aria-labelledby="drawer-title" id="drawer">
    <div class="drawer-head">
      <div><h3 id="drawer-title">Request</h3>${d && html`<div class="mono muted">${d.requestId}</div>`}</div>
      <button class="ghost" ref=${closeRef} onClick=${onClose} aria-label="Close the request details">Close</button>
    </div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${!d && !error && html`<p class="muted" aria-busy="true">Loading…</p>`}
    ${d && html`<div class="drawer-body">
      <section><h4>Request</h4><dl class="fields">
        <${Field} label="Status"><${Status} row=${d} /></${Field}>
        <${Field} label="Model">${d.model}${d.modelId ? html` <span class="muted">(${d.modelId})</span>` : ''}</${Field}>
        <${Field} label="Provider">${d.provider}</${Field}>
        <${Field} label="Endpoint"><span class="mono">${d.endpoint}</span></${Field}>
        <${Field} label="Customer">${d.user || '—'}</${Field}>
        <${Field} label="Agent">${d.agentId || '—'}</${Field}>
        <${Field} label="Project">${names.projectNames[d.projectId] || d.projectId}</${Field}>
        <${Field} label="API key">${names.keyNames[d.apiKeyId] || d.apiKeyId}</${Field}>
        ${d.callType && html`<${Field} label="Call type">${d.callType}</${Field}>`}
        <${Field} label="Billing">${d.billingSource === 'credits' ? 'Credits' : 'Own provider keys'}</${Field}>
      </dl></section>
      <section><h4>Metrics</h4><dl class="fields">
        <${Field} label="Prompt tokens">${int(d.promptTokens)}${d.cachedTokens ? html` <span class="muted">(${int(d.cachedTokens)} cached)</span>` : ''}</${Field}>
        <${Field} label="Completion tokens">${int(d.completionTokens)}${d.reasoningTokens ? html` <span class="muted">(${int(d.reasoningTokens)} reasoning)</span>` : ''}</${Field}>
        <${Field} label="Total tokens">${int(d.totalTokens)}</${Field}>
        <${Field} label="Cost"><span id="drawer-cost">${moneyExact(d.cost)}</span></${Field}>
        <${Field} label="Duration">${ms(d.latencyMs)}</${Field}>
        <${Field} label="Time to first token">${ms(d.timeToFirstTokenMs)}</${Field}>
        <${Field} label="Cache hit">${d.cacheHit ? 'Yes' : 'No'}</${Field}>
        <${Field} label="Retries">${int(d.retries)}</${Field}>
        <${Field} label="Started">${when(d.startedAt)}</${Field}>
        <${Field} label="Ended">${when(d.endedAt)}</${Field}>
        <${Field} label="Recorded">${when(d.recordedAt)}</${Field}>
      </dl></section>
      <section><h4>Cost breakdown</h4>
        ${d.unpriced ? html`<p class="muted">This model has no price: the call was recorded at no cost.</p>` : ''}
        <table class="table breakdown" id="cost-breakdown">
          <tbody>
            ${components.map(([k, label]) => html`<tr key=${k} class="component" data-component=${k} data-value=${d.costBreakdown[k]}><td>${label}</td><td class="num mono">${moneyExact(d.costBreakdown[k])}</td></tr>`)}
            ${components.length === 0 && html`<tr><td colspan="2" class="muted">No charges.</td></tr>`}
          </tbody>
          <tfoot>
            <tr class="subtotal" data-value=${d.costBeforeDiscount}><th scope="row">Before discount</th><td class="num mono">${moneyExact(d.costBeforeDiscount)}</td></tr>
            ${Number(d.discountSavings) !== 0 && html`<tr class="discount" data-value=${d.discountSavings}><th scope="row">Discount (${d.discountPercent}%)</th><td class="num mono">−${moneyExact(d.discountSavings)}</td></tr>`}
            <tr class="total" data-value=${d.cost}><th scope="row">Total</th><td class="num mono">${moneyExact(d.cost)}</td></tr>
          </tfoot>
        </table>
        ${d.priceSource && html`<p class="fine muted">Priced by the ${d.priceSource === 'organization' ? "organization's own price" : 'catalog price'} in force at the time.</p>`}
      </section>
      <section><h4>Bodies</h4>
        ${d.bodiesTruncated && html`<p class="fine muted">Cut to the storage limit.</p>`}
        <${Body} label="Request" text=${d.requestBody} />
        <${Body} label="Response" text=${d.responseBody} />
      </section>
      <section><h4>Metadata</h4>
        ${d.tags.length > 0 && html`<p>${d.tags.map((t) => html`<span key=${t} class="pill tag">${t}</span>`)}</p>`}
        ${d.metadata ? html`<${Body} label="Metadata" text=${JSON.stringify(d.metadata)} />` : html`<p class="muted">None.</p>`}
      </section>
    </div>`}
  </div>`;
}
