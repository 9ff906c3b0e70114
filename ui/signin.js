// Sign in with email and password; then choose the organization.
import { html, useState } from './vendor/htm-preact-3.1.1/standalone.module.js';
import { api, setToken } from './api.js';

export function SignIn({ onSignedIn, notice }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function submit(e) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const t = await api('/v1/auth/login', { method: 'POST', body: { email, password } });
      setToken(t.accessToken);
      const me = await api('/v1/me');
      setPassword('');
      onSignedIn(me, t.expiresIn);
    } catch (err) {
      setToken(null);
      setError(err.status === 401 ? 'That email and password do not match an account.' : err.message);
    } finally {
      setBusy(false);
    }
  }

  return html`
    <main class="signin">
      <form class="card signin-card" onSubmit=${submit} aria-labelledby="signin-title">
        <div class="brand brand-large"><span class="logo" aria-hidden="true"></span> Meterplane</div>
        <h1 id="signin-title">Sign in</h1>
        ${notice && html`<p class="notice" role="status">${notice}</p>`}
        <label>Email<input id="email" name="email" type="email" autocomplete="username" required value=${email} onInput=${(e) => setEmail(e.target.value)} /></label>
        <label>Password<input id="password" name="password" type="password" autocomplete="current-password" required value=${password} onInput=${(e) => setPassword(e.target.value)} /></label>
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <button class="primary" type="submit" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
        <p class="fine">Your session stays in this tab's memory only: reloading the page signs you out.</p>
      </form>
    </main>`;
}

export function ChooseOrg({ memberships, onChoose, onSignOut }) {
  return html`
    <main class="signin">
      <div class="card signin-card">
        <div class="brand brand-large"><span class="logo" aria-hidden="true"></span> Meterplane</div>
        <h1>Choose an organization</h1>
        ${memberships.length === 0
          ? html`<p class="empty">You are not a member of any organization yet. Ask an admin to add you, or create one through the API (<code>POST /v1/orgs</code>).</p>`
          : html`<ul class="org-list">
              ${memberships.map((m) => html`<li key=${m.organization.id}>
                <button class="org-choice" onClick=${() => onChoose(m)}>
                  <strong>${m.organization.name}</strong>
                  <span class="muted">${m.role} · ${m.organization.plan} plan</span>
                </button></li>`)}
            </ul>`}
        <button class="link" onClick=${onSignOut}>Sign out</button>
      </div>
    </main>`;
}
