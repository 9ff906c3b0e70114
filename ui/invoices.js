// Invoices: the list (by status and customer, paged with the API's cursor), one
// invoice with its lines and totals, its printable HTML and CSV; owners and admins
// draft, finalize, void, delete and send them (viewers see no such controls).
import { html, useState, useEffect, useRef } from './vendor/htm-preact-3.1.1/standalone.module.js';
import { api, org, fetchFile } from './api.js';
import { Confirm } from './dialog.js';
import { int, moneyExact, percentExact, when, calendarDay, utcDate } from './format.js';

const PAGE = 20;
const STATUSES = [
  ['', 'All'],
  ['draft', 'Drafts'],
  ['finalized', 'Finalized'],
  ['void', 'Void'],
];

function StatusPill({ status }) {
  const cls = status === 'finalized' ? 'pill ok' : status === 'void' ? 'pill fail' : 'pill draft';
  return html`<span class=${cls}>${status}</span>`;
}

/** The customer's id for the id the gateway reports (`user`), or null when unknown. */
async function customerId(orgId, externalId) {
  const page = await api(`${org(orgId)}/customers`, { params: { externalId, limit: 1 } });
  return page.data.length ? page.data[0].id : null;
}

/**
 * A text field for a customer, suggesting the known ones (the list `Invoices`
 * renders once); typing any id works, so an organization with more customers than
 * the suggestions hold is served too.
 */
function CustomerInput({ id, value, onInput, onChange, required = false, placeholder = 'All customers' }) {
  return html`<input id=${id} list="invoice-customers" autocomplete="off" value=${value} required=${required} placeholder=${placeholder}
      onInput=${(e) => onInput(e.target.value)} onChange=${onChange && ((e) => onChange(e.target.value.trim()))} />`;
}

function Settings({ ctx }) {
  const [s, setS] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api(`${org(ctx.orgId)}/billing-settings`).then(setS).catch((e) => setError(e.message));
  }, [ctx.orgId]);
  if (error) return html`<p class="error" role="alert">Billing settings could not be read: ${error}</p>`;
  if (!s) return html`<p class="muted" aria-busy="true">Loading the billing settings…</p>`;
  return html`<p class="notice" id="billing-settings">
    Invoices are issued by <strong>${s.issuerName}</strong> in ${s.currency}, with a markup of ${percentExact(s.markup)} on cost,
    tax at ${percentExact(s.taxRate)}, due ${s.dueDays === 0 ? 'on receipt' : `${int(s.dueDays)} days after issue`}.
    ${!s.updatedAt && ' These are the defaults: set them with PUT /v1/orgs/{orgId}/billing-settings.'}
  </p>`;
}

/** Previous calendar month, in UTC: the period most invoices bill. */
function lastMonth() {
  const now = new Date();
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
  const last = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 0));
  return [first.toISOString().slice(0, 10), last.toISOString().slice(0, 10)];
}

function Generate({ ctx, onCreated, onRun }) {
  const [defaultFrom, defaultTo] = lastMonth();
  const [customer, setCustomer] = useState('');
  const [from, setFrom] = useState(defaultFrom);
  const [to, setTo] = useState(defaultTo);
  const [memo, setMemo] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [note, setNote] = useState(null);
  const base = org(ctx.orgId);

  async function draft(e) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setNote(null);
    try {
      const id = await customerId(ctx.orgId, customer.trim());
      if (!id) throw new Error(`There is no customer “${customer.trim()}” in this organization.`);
      const invoice = await api(`${base}/invoices`, { method: 'POST', body: { customerId: id, periodStart: from, periodEnd: to, memo: memo.trim() || null } });
      setMemo('');
      onCreated(invoice);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }

  async function run() {
    setBusy(true);
    setError(null);
    setNote(null);
    try {
      const r = await api(`${base}/invoice-runs`, { method: 'POST', body: { periodStart: from, periodEnd: to } });
      setNote(`${int(r.created.length)} ${r.created.length === 1 ? 'draft' : 'drafts'} made; ${int(r.skipped.length)} ${r.skipped.length === 1 ? 'customer' : 'customers'} skipped (an invoice already covers the period).`);
      onRun();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }

  return html`<section class="card panel" id="invoice-generate" aria-labelledby="generate-title">
    <div class="panel-head"><h2 id="generate-title">Draft an invoice</h2><span class="muted fine">A draft follows usage until it is finalized.</span></div>
    <form class="budget-form" onSubmit=${draft}>
      <label>Customer<${CustomerInput} id="generate-customer" value=${customer} onInput=${setCustomer} required=${true} placeholder="customer id" /></label>
      <label>First day (UTC)<input type="date" id="generate-from" max=${utcDate(0)} value=${from} onInput=${(e) => setFrom(e.target.value)} required /></label>
      <label>Last day<input type="date" id="generate-to" value=${to} onInput=${(e) => setTo(e.target.value)} required /></label>
      <label>Memo (optional)<input id="generate-memo" maxlength="2000" value=${memo} onInput=${(e) => setMemo(e.target.value)} /></label>
      <button class="primary" type="submit" id="generate-draft" disabled=${busy}>Create draft</button>
      <button class="secondary" type="button" id="generate-run" disabled=${busy || !from || !to} onClick=${run}
        title="One draft for every customer with usage in the period">Drafts for all customers</button>
    </form>
    ${error && html`<p class="error" role="alert" id="generate-error">${error}</p>`}
    ${note && html`<p class="notice" role="status">${note}</p>`}
  </section>`;
}

function InvoiceList({ ctx, list, setList, onOpen, refresh }) {
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [customer, setCustomer] = useState(list.customer);
  const [customerError, setCustomerError] = useState(null);
  const { status, customerId: cid, cursors, index } = list;

  useEffect(() => {
    const ctl = new AbortController();
    setPage(null);
    setError(null);
    api(`${org(ctx.orgId)}/invoices`, { params: { status, customerId: cid, limit: PAGE, cursor: cursors[index] }, signal: ctl.signal })
      .then(setPage)
      .catch((e) => e.name !== 'AbortError' && setError(e.message));
    return () => ctl.abort();
  }, [ctx.orgId, status, cid, cursors, index, refresh]);

  async function pickCustomer(value) {
    setCustomerError(null);
    if (!value) {
      setList({ ...list, customer: '', customerId: '', cursors: [''], index: 0 });
      return;
    }
    try {
      const id = await customerId(ctx.orgId, value);
      if (!id) {
        setCustomerError(`There is no customer “${value}”.`);
        return;
      }
      setList({ ...list, customer: value, customerId: id, cursors: [''], index: 0 });
    } catch (e) {
      setCustomerError(e.message);
    }
  }

  const rows = page ? page.data : [];
  const onKey = (e, id) => {
    if (e.target === e.currentTarget && (e.key === 'Enter' || e.key === ' ')) {
      e.preventDefault();
      onOpen(id);
    }
  };

  return html`<section class="card panel" id="invoice-list" aria-labelledby="invoices-title">
    <div class="panel-head"><h2 id="invoices-title">Invoices</h2>
      <div class="filters">
        <label>Status<select id="invoice-status" value=${status} onChange=${(e) => setList({ ...list, status: e.target.value, cursors: [''], index: 0 })}>
          ${STATUSES.map(([v, l]) => html`<option key=${v} value=${v}>${l}</option>`)}
        </select></label>
        <label>Customer<${CustomerInput} id="invoice-customer" value=${customer} onInput=${setCustomer} onChange=${pickCustomer} /></label>
      </div>
    </div>
    ${customerError && html`<p class="error" role="alert">${customerError}</p>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${!page && !error && html`<p class="muted loading-line" aria-busy="true">Loading invoices…</p>`}
    ${page && rows.length === 0 && html`<p class="empty">No invoices${status || cid ? ' match these filters' : ' yet'}.${ctx.canManage && !status && !cid ? ' Draft one above.' : ''}</p>`}
    ${rows.length > 0 && html`<div class="table-wrap"><table class="table clickable" id="invoices-table">
      <thead><tr><th scope="col">Number</th><th scope="col">Customer</th><th scope="col" class="hide-sm">Period</th><th scope="col">Status</th>
        <th scope="col" class="hide-sm">Issued</th><th scope="col" class="hide-sm">Due</th><th scope="col" class="num">Total</th></tr></thead>
      <tbody>${rows.map((i) => html`<tr key=${i.id} data-id=${i.id} data-total=${i.total} tabindex="0" aria-label=${`${i.number || 'Draft'} for ${i.customerExternalId}: open it`}
          onClick=${() => onOpen(i.id)} onKeyDown=${(e) => onKey(e, i.id)}>
        <td class="nowrap">${i.number || html`<span class="muted">Draft</span>`}</td>
        <td>${i.customerExternalId}</td>
        <td class="hide-sm nowrap">${calendarDay(i.periodStart)} – ${calendarDay(i.periodEnd)}</td>
        <td><${StatusPill} status=${i.status} /></td>
        <td class="hide-sm nowrap">${calendarDay(i.issuedOn)}</td>
        <td class="hide-sm nowrap">${calendarDay(i.dueOn)}</td>
        <td class="num">${moneyExact(i.total)}</td>
      </tr>`)}</tbody>
    </table></div>`}
    <div class="pager">
      <button class="secondary" id="invoices-newer" disabled=${index === 0} onClick=${() => setList({ ...list, index: index - 1 })}>Newer</button>
      <span class="muted">Page ${index + 1}</span>
      <button class="secondary" id="invoices-older" disabled=${!page || !page.nextCursor}
        onClick=${() => setList({ ...list, cursors: [...cursors.slice(0, index + 1), page.nextCursor], index: index + 1 })}>Older</button>
    </div>
  </section>`;
}

function Field({ label, children }) {
  return html`<div class="field"><dt>${label}</dt><dd>${children}</dd></div>`;
}

function Party({ party }) {
  return html`<strong>${party.name}</strong>${party.address && html`<span class="pre-line">${'\n' + party.address}</span>`}
    ${party.taxId && html`<br /><span class="muted">Tax ID ${party.taxId}</span>`}${party.email && html`<br /><span class="muted">${party.email}</span>`}`;
}

function tokens(l) {
  const parts = [`${int(l.inputTokens)} in`, `${int(l.outputTokens)} out`];
  if (l.cachedTokens) parts.push(`${int(l.cachedTokens)} cached`);
  return parts.join(' · ');
}

function prices(u) {
  if (!u) return html`<span class="muted">no price</span>`;
  const parts = [`${moneyExact(u.inputPerMtok)} in`, `${moneyExact(u.outputPerMtok)} out`];
  if (Number(u.cachedInputPerMtok)) parts.push(`${moneyExact(u.cachedInputPerMtok)} cached`);
  const perRequest = Number(u.perRequest) ? ` + ${moneyExact(u.perRequest)}/request` : '';
  return html`${parts.join(' · ')} <span class="muted">per 1M tokens${perRequest}</span>`;
}

/** Opens a file the API makes: HTML in a new tab, CSV as a download. */
async function openFile(path, kind) {
  // Opened during the click, before the fetch, so a popup blocker lets it through.
  const tab = kind === 'html' ? window.open('', '_blank') : null;
  try {
    const { blob, name } = await fetchFile(path);
    const url = URL.createObjectURL(blob);
    if (tab) {
      tab.opener = null;
      tab.location.href = url;
    } else if (kind === 'html') {
      // No new tab (blocked): open it here is worse than a link the person clicks.
      throw new Error('The browser blocked the new tab: allow pop-ups for this site and try again.');
    } else {
      const a = document.createElement('a');
      a.href = url;
      a.download = name || 'invoice.csv';
      document.body.appendChild(a);
      a.click();
      a.remove();
    }
    // The tab or the download has the file by then.
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    if (tab) tab.close();
    throw e;
  }
}

const ACTIONS = {
  finalize: {
    title: 'Finalize this invoice?',
    label: 'Finalize',
    text: (i) => `It gets the next invoice number and its lines and totals are frozen as they are now (${moneyExact(i.total)}). A finalized invoice cannot be changed, only voided.`,
    run: (base) => api(`${base}/finalize`, { method: 'POST' }),
  },
  void: {
    title: 'Void this invoice?',
    label: 'Void invoice',
    danger: true,
    reason: { label: 'Reason (printed on the invoice)', max: 500 },
    text: (i) => `${i.number} stays on record, marked void; its number is not reused. Usage it billed can be billed again.`,
    run: (base, reason) => api(`${base}/void`, { method: 'POST', body: { reason: reason || null } }),
  },
  delete: {
    title: 'Delete this draft?',
    label: 'Delete draft',
    danger: true,
    text: () => 'The draft goes; no number was given to it. Its usage can be drafted again.',
    run: (base) => api(base, { method: 'DELETE' }),
  },
  send: {
    title: 'Send this invoice?',
    label: 'Send',
    text: (i) => `${i.number} goes by email to ${i.billTo.email || 'the customer’s billing email'}, as the printable document.`,
    run: (base) => api(`${base}/send`, { method: 'POST' }),
  },
};

function InvoiceDetail({ ctx, id, onBack, onChanged }) {
  const [inv, setInv] = useState(null);
  const [error, setError] = useState(null);
  const [note, setNote] = useState(null);
  const [asking, setAsking] = useState(null);
  const [fileError, setFileError] = useState(null);
  const heading = useRef(null);
  const base = `${org(ctx.orgId)}/invoices/${id}`;

  useEffect(() => {
    setInv(null);
    setError(null);
    api(base).then(setInv).catch((e) => setError(e.message));
  }, [id]);
  useEffect(() => heading.current?.focus(), [inv !== null]);

  async function act(name, reason) {
    const result = await ACTIONS[name].run(base, reason);
    setAsking(null);
    onChanged();
    if (name === 'delete') {
      onBack('The draft was deleted.');
      return;
    }
    if (name === 'send') {
      setNote(`Queued for delivery to ${result.to}.`);
      return;
    }
    setInv(result);
    setNote(name === 'finalize' ? `Finalized as ${result.number}.` : 'The invoice is void.');
  }

  async function file(kind) {
    setFileError(null);
    try {
      await openFile(`${base}/${kind}`, kind);
    } catch (e) {
      setFileError(e.message);
    }
  }

  const a = asking && ACTIONS[asking];
  return html`<section class="card panel" id="invoice-detail" data-id=${id} data-status=${inv?.status} aria-labelledby="invoice-title">
    <div class="panel-head">
      <div class="title-line">
        <button class="ghost" id="invoice-back" onClick=${() => onBack(null)}>← Invoices</button>
        <h2 id="invoice-title" tabindex="-1" ref=${heading}>${inv ? (inv.number ? `Invoice ${inv.number}` : `Draft invoice for ${inv.customerExternalId}`) : 'Invoice'}</h2>
        ${inv && html`<${StatusPill} status=${inv.status} />`}
      </div>
      ${inv && html`<div class="actions wrap">
        <button class="secondary" id="invoice-html" onClick=${() => file('html')}>Printable</button>
        <button class="secondary" id="invoice-csv" onClick=${() => file('csv')}>Download CSV</button>
        ${ctx.canManage && inv.status === 'draft' && html`
          <button class="secondary manage-control danger-text" id="invoice-delete" onClick=${() => setAsking('delete')}>Delete draft</button>
          <button class="primary manage-control" id="invoice-finalize" onClick=${() => setAsking('finalize')}>Finalize</button>`}
        ${ctx.canManage && inv.status === 'finalized' && html`
          <button class="secondary manage-control" id="invoice-send" onClick=${() => setAsking('send')}>Send by email</button>
          <button class="secondary manage-control danger-text" id="invoice-void" onClick=${() => setAsking('void')}>Void</button>`}
      </div>`}
    </div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${fileError && html`<p class="error" role="alert">${fileError}</p>`}
    ${note && html`<p class="notice" role="status" id="invoice-note">${note}</p>`}
    ${!inv && !error && html`<p class="muted" aria-busy="true">Loading the invoice…</p>`}
    ${inv && html`
      ${inv.status === 'draft' && html`<p class="fine muted">A draft is computed from the usage ledger each time it is read: its lines follow usage that arrives late until it is finalized.</p>`}
      ${inv.status === 'void' && html`<p class="error">Void ${when(inv.voidedAt)}${inv.voidReason ? `: ${inv.voidReason}` : ''}.</p>`}
      <dl class="fields invoice-fields">
        <${Field} label="Number"><span id="invoice-number">${inv.number || '— (given on finalizing)'}</span></${Field}>
        <${Field} label="Customer">${inv.customerExternalId}</${Field}>
        <${Field} label="Billing period">${calendarDay(inv.periodStart)} – ${calendarDay(inv.periodEnd)} <span class="muted">(UTC days)</span></${Field}>
        <${Field} label="Currency">${inv.currency}</${Field}>
        <${Field} label="Issued">${calendarDay(inv.issuedOn)}</${Field}>
        <${Field} label="Due">${calendarDay(inv.dueOn)}</${Field}>
        <${Field} label="Created">${when(inv.createdAt)}</${Field}>
        <${Field} label="Finalized">${when(inv.finalizedAt)}</${Field}>
        <${Field} label="From"><${Party} party=${inv.issuer} /></${Field}>
        <${Field} label="Bill to"><${Party} party=${inv.billTo} /></${Field}>
        ${inv.memo && html`<${Field} label="Memo">${inv.memo}</${Field}>`}
        <${Field} label="Markup on cost">${percentExact(inv.markup)} <span class="muted">(cost ${moneyExact(inv.cost)})</span></${Field}>
      </dl>
      <h3 class="subhead">Lines</h3>
      ${inv.lines.length === 0 ? html`<p class="empty">No usage in this period.</p>` : html`<div class="table-wrap"><table class="table" id="invoice-lines">
        <thead><tr><th scope="col">Item</th><th scope="col" class="num">Requests</th><th scope="col" class="hide-sm">Tokens</th><th scope="col" class="hide-sm">Unit prices</th>
          <th scope="col" class="num hide-sm">Before discount</th><th scope="col" class="num hide-sm">Discount</th><th scope="col" class="num">Amount</th></tr></thead>
        <tbody>${inv.lines.map((l, n) => html`<tr key=${n} class="line" data-amount=${l.amount} data-kind=${l.kind}>
          <td>${l.description}${l.kind === 'late_usage' && html` <span class="pill draft late-label">Late usage${l.adjusts ? ` for ${l.adjusts.number}` : ''}</span>`}</td>
          <td class="num">${int(l.requests)}</td>
          <td class="hide-sm nowrap">${tokens(l)}</td>
          <td class="hide-sm fine">${prices(l.unitPrices)}</td>
          <td class="num hide-sm">${moneyExact(l.amountBeforeDiscount)}</td>
          <td class="num hide-sm">${Number(l.discount) ? `−${moneyExact(l.discount)}` : '—'}</td>
          <td class="num">${moneyExact(l.amount)}</td>
        </tr>`)}</tbody>
      </table></div>`}
      <table class="table breakdown invoice-totals" id="invoice-totals">
        <tbody>
          <tr data-value=${inv.subtotal} class="subtotal"><th scope="row">Subtotal</th><td class="num">${moneyExact(inv.subtotal)}</td></tr>
          <tr data-value=${inv.discountTotal} class="discount"><th scope="row">Discounts included</th><td class="num">${moneyExact(inv.discountTotal)}</td></tr>
          <tr data-value=${inv.tax} class="tax"><th scope="row">Tax (${percentExact(inv.taxRate)})</th><td class="num">${moneyExact(inv.tax)}</td></tr>
          <tr data-value=${inv.total} class="total"><th scope="row">Total (${inv.currency})</th><td class="num" id="invoice-total">${moneyExact(inv.total)}</td></tr>
        </tbody>
      </table>
      ${inv.footer && html`<p class="fine muted pre-line">${inv.footer}</p>`}`}
    ${a && html`<${Confirm} title=${a.title} confirmLabel=${a.label} danger=${!!a.danger} reason=${a.reason || null}
        onConfirm=${(reason) => act(asking, reason)} onCancel=${() => setAsking(null)}>${a.text(inv)}</${Confirm}>`}
  </section>`;
}

export function Invoices({ ctx }) {
  const [open, setOpen] = useState(null);
  const [list, setList] = useState({ status: '', customer: '', customerId: '', cursors: [''], index: 0 });
  const [refresh, setRefresh] = useState(0);
  const [note, setNote] = useState(null);
  const bump = () => setRefresh((n) => n + 1);

  function back(message) {
    setOpen(null);
    setNote(message);
  }

  return html`
    <datalist id="invoice-customers">${(ctx.choices?.customers || []).map((c) => html`<option key=${c} value=${c} />`)}</datalist>
    ${!ctx.canManage && html`<p class="notice" id="read-only-note">You are a viewer in this organization: invoices are shown, not changed.</p>`}
    <${Settings} ctx=${ctx} />
    ${note && !open && html`<p class="notice" role="status">${note}</p>`}
    ${open
      ? html`<${InvoiceDetail} key=${open} ctx=${ctx} id=${open} onBack=${back} onChanged=${bump} />`
      : html`
        ${ctx.canManage && html`<${Generate} ctx=${ctx} onCreated=${(i) => { bump(); setNote(null); setOpen(i.id); }} onRun=${bump} />`}
        <${InvoiceList} ctx=${ctx} list=${list} setList=${setList} onOpen=${(id) => { setNote(null); setOpen(id); }} refresh=${refresh} />`}`;
}
