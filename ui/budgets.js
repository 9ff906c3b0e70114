// Customers and agents with their spend against budget and status. Owners and admins
// set or change a budget (amount, period, hard limit, alert thresholds), start a
// period's spend over, remove a budget, and block or unblock the customer or agent;
// the destructive ones after a confirmation. Viewers see no such controls.
import { html, useState, useEffect } from './vendor/htm-preact-3.1.1/standalone.module.js';
import { api, org } from './api.js';
import { Confirm } from './dialog.js';
import { int, money, when } from './format.js';

/** "50, 80, 100" as the API's list of whole percentages, or an error in words. */
function parseThresholds(text) {
  const parts = text.split(/[\s,;%]+/).filter(Boolean);
  const values = parts.map(Number);
  if (values.some((v) => !Number.isInteger(v) || v < 1 || v > 100)) {
    return { error: 'Thresholds are whole percentages from 1 to 100, separated by commas.' };
  }
  if (values.length > 10) return { error: 'At most 10 thresholds.' };
  return { values: [...new Set(values)].sort((a, b) => a - b) };
}

function BudgetForm({ ctx, scope, party, onDone }) {
  const current = party.budget && party.budget.source === 'own' ? party.budget : null;
  const [amount, setAmount] = useState(current ? current.amount : '');
  const [period, setPeriod] = useState(current ? current.period : 'monthly');
  const [hard, setHard] = useState(current ? current.hardLimit : true);
  const [thresholds, setThresholds] = useState((current ? current.thresholds : [50, 80, 100]).join(', '));
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function save(e) {
    e.preventDefault();
    const parsed = parseThresholds(thresholds);
    if (parsed.error) {
      setError(parsed.error);
      return;
    }
    setBusy(true);
    setError(null);
    const path = `${org(ctx.orgId)}/budgets/${scope}/${party.id}`;
    const body = { amount: amount.trim(), period, hardLimit: hard, thresholds: parsed.values };
    try {
      // An own budget is changed in place (PATCH); otherwise one is set (PUT).
      await api(path, { method: current ? 'PATCH' : 'PUT', body });
      onDone(true);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }
  const id = `budget-${party.id}`;
  return html`<form class="budget-form" onSubmit=${save} aria-label=${`Budget of ${party.externalId}`}>
    <label for=${`${id}-amount`}>Amount (USD)<input id=${`${id}-amount`} name="amount" inputmode="decimal" required pattern="[0-9]+(\\.[0-9]{1,10})?" value=${amount} onInput=${(e) => setAmount(e.target.value)} /></label>
    <label for=${`${id}-period`}>Period<select id=${`${id}-period`} value=${period} onChange=${(e) => setPeriod(e.target.value)}>
      ${['daily', 'weekly', 'monthly', 'total'].map((p) => html`<option key=${p} value=${p}>${p}</option>`)}
    </select></label>
    <label for=${`${id}-thresholds`}>Alert at (%)<input id=${`${id}-thresholds`} name="thresholds" value=${thresholds} onInput=${(e) => setThresholds(e.target.value)}
      aria-describedby=${`${id}-thresholds-help`} /></label>
    <span class="sr-only" id=${`${id}-thresholds-help`}>Whole percentages of the amount, separated by commas; empty for no alerts.</span>
    <label class="check"><input type="checkbox" checked=${hard} onChange=${(e) => setHard(e.target.checked)} /> Deny calls at 100 %</label>
    <button class="primary" type="submit" disabled=${busy}>Save</button>
    <button class="ghost" type="button" onClick=${() => onDone(false)}>Cancel</button>
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </form>`;
}

const ACTIONS = {
  reset: {
    title: (p) => `Start ${p.externalId}'s spend over?`,
    label: 'Reset spend',
    danger: true,
    text: (p) => `What ${p.externalId} spent so far (${money(p.spent)}) stops counting towards the budget, in this period and later ones. Calls recorded afterwards with an earlier day of the period do not count either.`,
    run: (base, scope, p) => api(`${base}/budgets/${scope}/${p.id}/reset`, { method: 'POST' }),
  },
  remove: {
    title: (p) => `Remove ${p.externalId}'s budget?`,
    label: 'Remove budget',
    danger: true,
    text: (p) => `Its own budget and any spend reset go; the organization's default budget applies instead, if there is one.`,
    run: (base, scope, p) => api(`${base}/budgets/${scope}/${p.id}`, { method: 'DELETE' }),
  },
  block: {
    title: (p) => `Block ${p.externalId}?`,
    label: 'Block',
    danger: true,
    reason: { label: 'Reason (optional)', max: 500 },
    text: (p) => `Every call for ${p.externalId} is denied until it is unblocked.`,
    run: (base, scope, p, reason) => api(`${base}/${scope}s/${p.id}/block`, { method: 'POST', body: { reason: reason || null } }),
  },
  unblock: {
    title: (p) => `Unblock ${p.externalId}?`,
    label: 'Unblock',
    text: (p) => `Calls for ${p.externalId} are allowed again (within its budget).`,
    run: (base, scope, p) => api(`${base}/${scope}s/${p.id}/unblock`, { method: 'POST' }),
  },
};

function PartyTable({ ctx, scope, title }) {
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [editing, setEditing] = useState(null);
  const [asking, setAsking] = useState(null); // [action, party]
  const [tick, setTick] = useState(0);
  const path = scope === 'customer' ? 'customers' : 'agents';
  const base = org(ctx.orgId);
  useEffect(() => {
    setError(null);
    api(`${base}/${path}`, { params: { limit: 200, sort: 'spendDesc' } }).then(setPage).catch((e) => setError(e.message));
  }, [ctx.orgId, tick]);
  const a = asking && ACTIONS[asking[0]];
  return html`<section class="card panel" id=${`budgets-${path}`} aria-labelledby=${`budgets-${path}-title`}>
    <div class="panel-head"><h2 id=${`budgets-${path}-title`}>${title}</h2></div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${!page && !error && html`<p class="muted" aria-busy="true">Loading…</p>`}
    ${page && page.data.length === 0 && html`<p class="empty">No ${path} yet: they appear with their first call.</p>`}
    ${page && page.data.length > 0 && html`<div class="table-wrap"><table class="table">
      <thead><tr><th scope="col">Id</th><th scope="col" class="num" title="In the current period">Spent</th><th scope="col" class="num">Budget</th><th scope="col" class="num hide-sm">Remaining</th><th scope="col" class="hide-sm">Period</th><th scope="col" class="hide-sm">Alerts</th><th scope="col">Status</th>${ctx.canManage && html`<th scope="col"><span class="sr-only">Actions</span></th>`}</tr></thead>
      <tbody>${page.data.map((p) => {
        const b = p.budget;
        const used = b && Number(b.amount) > 0 ? Math.min(100, (100 * Number(p.spent)) / Number(b.amount)) : 0;
        const blocked = p.status !== 'active';
        return html`<tr key=${p.id} data-id=${p.id} data-external-id=${p.externalId}>
          <td>${p.externalId}</td>
          <td class="num spent" data-value=${p.spent}>${money(p.spent)}${p.resetAt ? html`<div class="fine muted" title=${`Spend reset ${when(p.resetAt)}`}>reset</div>` : ''}</td>
          <td class="num">${b ? html`${money(b.amount)}${b.source !== 'own' ? html` <span class="muted">(default)</span>` : ''}<div class="bar small" role="img" aria-label=${`${Math.round(used)} % used`}><span class=${used >= 100 ? 'bar-fill over' : used >= 80 ? 'bar-fill warn' : 'bar-fill'} style=${{ width: `${used}%` }}></span></div>` : html`<span class="muted">none</span>`}</td>
          <td class="num hide-sm">${b ? money(b.remaining) : '—'}</td>
          <td class="hide-sm">${b ? `${b.period}${b.hardLimit ? '' : ' (alerts only)'}` : p.period}</td>
          <td class="hide-sm thresholds">${b ? (b.thresholds.length ? b.thresholds.map((t) => `${int(t)} %`).join(', ') : 'none') : '—'}</td>
          <td><span class=${blocked ? 'pill fail' : 'pill ok'} title=${p.blockedAt ? `Blocked ${when(p.blockedAt)}${p.blockReason ? `: ${p.blockReason}` : ''}` : ''}>${p.status}</span></td>
          ${ctx.canManage && html`<td class="edit-cell">${editing === p.id
            ? html`<${BudgetForm} ctx=${ctx} scope=${scope} party=${p} onDone=${(saved) => { setEditing(null); if (saved) setTick(tick + 1); }} />`
            : html`<div class="row-actions">
              <button class="secondary edit-control" onClick=${() => setEditing(p.id)}>${b && b.source === 'own' ? 'Edit budget' : 'Set budget'}</button>
              ${b && html`<button class="secondary edit-control reset-control" onClick=${() => setAsking(['reset', p])}>Reset spend</button>`}
              ${b && b.source === 'own' && html`<button class="secondary edit-control danger-text remove-control" onClick=${() => setAsking(['remove', p])}>Remove</button>`}
              ${blocked
                ? html`<button class="secondary edit-control unblock-control" onClick=${() => setAsking(['unblock', p])}>Unblock</button>`
                : html`<button class="secondary edit-control danger-text block-control" onClick=${() => setAsking(['block', p])}>Block</button>`}
            </div>`}</td>`}
        </tr>`;
      })}</tbody>
    </table></div>`}
    ${a && html`<${Confirm} title=${a.title(asking[1])} confirmLabel=${a.label} danger=${!!a.danger} reason=${a.reason || null}
        onConfirm=${async (reason) => { await a.run(base, scope, asking[1], reason); setAsking(null); setTick((n) => n + 1); }}
        onCancel=${() => setAsking(null)}>${a.text(asking[1])}</${Confirm}>`}
  </section>`;
}

export function Budgets({ ctx }) {
  return html`
    ${!ctx.canManage && html`<p class="notice" id="read-only-note">You are a viewer in this organization: budgets are shown, not changed.</p>`}
    <${PartyTable} ctx=${ctx} scope="customer" title="Customer budgets" />
    <${PartyTable} ctx=${ctx} scope="agent" title="Agent budgets" />`;
}
