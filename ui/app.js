// The dashboard's shell: sign-in, the organization, the tabs, and the window and
// filters the tabs share.
import { html, render, useState, useEffect, useRef } from './vendor/htm-preact-3.1.1/standalone.module.js';
import { api, org, setToken, whenSessionEnds } from './api.js';
import { SignIn, ChooseOrg } from './signin.js';
import { Overview } from './overview.js';
import { Entities } from './entities.js';
import { Budgets } from './budgets.js';
import { Invoices } from './invoices.js';
import { timeZone } from './format.js';

const TABS = [
  ['overview', 'Overview'],
  ['customers', 'Customers'],
  ['agents', 'Agents'],
  ['endpoints', 'Endpoints'],
  ['budgets', 'Budgets'],
  ['invoices', 'Invoices'],
];

const NO_FILTERS = { projectId: '', apiKeyId: '', model: '', customer: '', status: '', agent: '', provider: '' };

/** Projects, their keys and the customers' ids: what the filters offer. */
async function loadChoices(orgId) {
  const [projects, customers, agents] = await Promise.all([
    api(`${org(orgId)}/projects`),
    api(`${org(orgId)}/customers`, { params: { limit: 500 } }).catch(() => ({ data: [] })),
    api(`${org(orgId)}/agents`, { params: { limit: 500 } }).catch(() => ({ data: [] })),
  ]);
  const keyLists = await Promise.all(projects.map((p) => api(`${org(orgId)}/projects/${p.id}/keys`).catch(() => [])));
  const keys = keyLists.flat();
  return {
    projects,
    keys,
    keyNames: Object.fromEntries(keys.map((k) => [k.id, `${k.name} (${k.prefix}…)`])),
    projectNames: Object.fromEntries(projects.map((p) => [p.id, p.name])),
    customers: customers.data.map((c) => c.externalId).sort(),
    agents: agents.data.map((a) => a.externalId).sort(),
  };
}

function Tabs({ tab, setTab }) {
  const refs = useRef({});
  function onKeyDown(e) {
    const i = TABS.findIndex(([id]) => id === tab);
    const step = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
    if (!step) return;
    e.preventDefault();
    const [next] = TABS[(i + step + TABS.length) % TABS.length];
    setTab(next);
    refs.current[next]?.focus();
  }
  return html`<div class="tabs" role="tablist" aria-label="Views" onKeyDown=${onKeyDown}>
    ${TABS.map(([id, label]) => html`<button key=${id} id=${`tab-${id}`} role="tab" ref=${(el) => (refs.current[id] = el)}
      aria-selected=${tab === id} aria-controls="panel" tabindex=${tab === id ? 0 : -1}
      class=${tab === id ? 'tab active' : 'tab'} onClick=${() => setTab(id)}>${label}</button>`)}
  </div>`;
}

function App() {
  const [me, setMe] = useState(null);
  const [membership, setMembership] = useState(null);
  const [notice, setNotice] = useState(null);
  const [tab, setTab] = useState('overview');
  const [span, setSpan] = useState({ kind: '24h', from: '', to: '' });
  const [filters, setFilters] = useState(NO_FILTERS);
  const [choices, setChoices] = useState(null);
  const [refresh, setRefresh] = useState(0);

  function reset(message) {
    setToken(null);
    setMe(null);
    setMembership(null);
    setChoices(null);
    setFilters(NO_FILTERS);
    setSpan({ kind: '24h', from: '', to: '' });
    setTab('overview');
    setNotice(message);
  }

  useEffect(() => whenSessionEnds(() => reset('Your session has ended. Sign in again.')), []);

  useEffect(() => {
    if (!membership) return;
    setChoices(null);
    loadChoices(membership.organization.id)
      .then(setChoices)
      .catch(() => setChoices({ projects: [], keys: [], keyNames: {}, projectNames: {}, customers: [], agents: [] }));
  }, [membership]);

  function signedIn(profile) {
    setNotice(null);
    setMe(profile);
    if (profile.memberships.length === 1) setMembership(profile.memberships[0]);
  }

  function choose(m) {
    setFilters(NO_FILTERS);
    setSpan({ kind: '24h', from: '', to: '' });
    setMembership(m);
  }

  if (!me) return html`<${SignIn} onSignedIn=${signedIn} notice=${notice} />`;
  if (!membership) return html`<${ChooseOrg} memberships=${me.memberships} onChoose=${choose} onSignOut=${() => reset('You have signed out.')} />`;

  const organization = membership.organization;
  const canManage = membership.role === 'owner' || membership.role === 'admin';
  const ctx = { orgId: organization.id, organization, role: membership.role, canManage, choices };
  const shared = { ctx, span, setSpan, filters, setFilters, refresh, setRefresh };

  return html`
    <header class="topbar">
      <div class="brand"><span class="logo" aria-hidden="true"></span><span class="brand-text">Meterplane</span></div>
      <div class="org">
        ${me.memberships.length > 1
          ? html`<label class="sr-only" for="org-switch">Organization</label>
            <select id="org-switch" value=${organization.id} onChange=${(e) => choose(me.memberships.find((m) => m.organization.id === e.target.value))}>
              ${me.memberships.map((m) => html`<option key=${m.organization.id} value=${m.organization.id}>${m.organization.name}</option>`)}
            </select>`
          : html`<span class="org-name">${organization.name}</span>`}
        <span class=${`badge role-${membership.role}`} id="role-badge" title=${canManage ? 'You can change settings' : 'You can read, not change'}>${membership.role}${canManage ? '' : ' · read only'}</span>
      </div>
      <div class="who">
        <span class="muted email" id="signed-in-as">${me.user.email}</span>
        <button class="ghost" id="signout" onClick=${() => reset('You have signed out.')}>Sign out</button>
      </div>
    </header>
    <nav class="navbar" aria-label="Dashboard"><${Tabs} tab=${tab} setTab=${setTab} /></nav>
    <main class="content" key=${organization.id}>
      <div id="panel" role="tabpanel" aria-labelledby=${`tab-${tab}`} class="panel-stack">
      <h1 class="sr-only">${TABS.find(([id]) => id === tab)[1]}</h1>
      ${tab === 'overview' && html`<${Overview} ...${shared} />`}
      ${(tab === 'customers' || tab === 'agents' || tab === 'endpoints') && html`<${Entities} key=${tab} entity=${tab} ...${shared} />`}
      ${tab === 'budgets' && html`<${Budgets} ctx=${ctx} />`}
      ${tab === 'invoices' && html`<${Invoices} ctx=${ctx} />`}
      </div>
    </main>
    <footer class="footer muted">Times in ${timeZone}; daily figures are UTC days. Data from the Meterplane API of this server.</footer>`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
