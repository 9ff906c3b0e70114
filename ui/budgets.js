// Customers and agents with their spend against budget and status; owners and admins
// set a budget here (viewers see no edit controls).
import { html, useState, useEffect } from './vendor/htm-preact-3.1.1/standalone.module.js';
import { api, org } from './api.js';
import { money, when } from './format.js';

function BudgetForm({ ctx, scope, party, onDone }) {
  const current = party.budget && party.budget.source === 'own' ? party.budget : null;
  const [amount, setAmount] = useState(current ? current.amount : '');
  const [period, setPeriod] = useState(current ? current.period : 'monthly');
  const [hard, setHard] = useState(current ? current.hardLimit : true);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function save(e) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api(`${org(ctx.orgId)}/budgets/${scope}/${party.id}`, { method: 'PUT', body: { amount: amount.trim(), period, hardLimit: hard } });
      onDone(true);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }
  return html`<form class="budget-form" onSubmit=${save}>
    <label>Amount (USD)<input name="amount" inputmode="decimal" required pattern="[0-9]+(\\.[0-9]{1,10})?" value=${amount} onInput=${(e) => setAmount(e.target.value)} /></label>
    <label>Period<select value=${period} onChange=${(e) => setPeriod(e.target.value)}>
      ${['daily', 'weekly', 'monthly', 'total'].map((p) => html`<option key=${p} value=${p}>${p}</option>`)}
    </select></label>
    <label class="check"><input type="checkbox" checked=${hard} onChange=${(e) => setHard(e.target.checked)} /> Deny calls at 100 %</label>
    <button class="primary" type="submit" disabled=${busy}>Save</button>
    <button class="ghost" type="button" onClick=${() => onDone(false)}>Cancel</button>
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </form>`;
}

function PartyTable({ ctx, scope, title }) {
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [editing, setEditing] = useState(null);
  const [tick, setTick] = useState(0);
  const path = scope === 'customer' ? 'customers' : 'agents';
  useEffect(() => {
    setError(null);
    api(`${org(ctx.orgId)}/${path}`, { params: { limit: 200, sort: 'spendDesc' } }).then(setPage).catch((e) => setError(e.message));
  }, [ctx.orgId, tick]);
  return html`<section class="card panel" id=${`budgets-${path}`}>
    <div class="panel-head"><h2>${title}</h2></div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${!page && !error && html`<p class="muted" aria-busy="true">Loading…</p>`}
    ${page && page.data.length === 0 && html`<p class="empty">No ${path} yet: they appear with their first call.</p>`}
    ${page && page.data.length > 0 && html`<div class="table-wrap"><table class="table">
      <thead><tr><th scope="col">Id</th><th scope="col" class="num" title="In the current period">Spent</th><th scope="col" class="num">Budget</th><th scope="col" class="num hide-sm">Remaining</th><th scope="col" class="hide-sm">Period</th><th scope="col">Status</th>${ctx.canManage && html`<th scope="col"><span class="sr-only">Actions</span></th>`}</tr></thead>
      <tbody>${page.data.map((p) => {
        const b = p.budget;
        const used = b && Number(b.amount) > 0 ? Math.min(100, (100 * Number(p.spent)) / Number(b.amount)) : 0;
        return html`<tr key=${p.id}>
          <td>${p.externalId}</td>
          <td class="num">${money(p.spent)}</td>
          <td class="num">${b ? html`${money(b.amount)}${b.source !== 'own' ? html` <span class="muted">(default)</span>` : ''}<div class="bar small"><span class=${used >= 100 ? 'bar-fill over' : used >= 80 ? 'bar-fill warn' : 'bar-fill'} style=${{ width: `${used}%` }}></span></div>` : html`<span class="muted">none</span>`}</td>
          <td class="num hide-sm">${b ? money(b.remaining) : '—'}</td>
          <td class="hide-sm">${b ? `${b.period}${b.hardLimit ? '' : ' (alerts only)'}` : p.period}</td>
          <td><span class=${p.status === 'active' ? 'pill ok' : 'pill fail'} title=${p.blockedAt ? `Blocked ${when(p.blockedAt)}` : ''}>${p.status}</span></td>
          ${ctx.canManage && html`<td class="edit-cell">${editing === p.id
            ? html`<${BudgetForm} ctx=${ctx} scope=${scope} party=${p} onDone=${(saved) => { setEditing(null); if (saved) setTick(tick + 1); }} />`
            : html`<button class="secondary edit-control" onClick=${() => setEditing(p.id)}>Set budget</button>`}</td>`}
        </tr>`;
      })}</tbody>
    </table></div>`}
  </section>`;
}

export function Budgets({ ctx }) {
  return html`
    ${!ctx.canManage && html`<p class="notice" id="read-only-note">You are a viewer in this organization: budgets are shown, not changed.</p>`}
    <${PartyTable} ctx=${ctx} scope="customer" title="Customer budgets" />
    <${PartyTable} ctx=${ctx} scope="agent" title="Agent budgets" />`;
}
