// A confirmation before a destructive or irreversible action, as a modal <dialog>:
// the browser keeps the focus inside it and Escape cancels it; the focus goes back to
// the button that opened it. The action runs from the dialog, so its error shows there.
import { html, useState, useEffect, useRef } from './vendor/htm-preact-3.1.1/standalone.module.js';

export function Confirm({ title, children, confirmLabel, danger = false, reason = null, onConfirm, onCancel }) {
  const ref = useRef(null);
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);

  useEffect(() => {
    const opener = document.activeElement;
    ref.current?.showModal();
    return () => {
      if (opener && opener.isConnected && opener.focus) opener.focus();
    };
  }, []);

  async function submit(e) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onConfirm(text.trim());
    } catch (err) {
      setError(err.message);
      setBusy(false);
    }
  }

  return html`<dialog ref=${ref} class="confirm card" id="confirm" aria-labelledby="confirm-title" aria-describedby="confirm-text"
      onCancel=${(e) => { e.preventDefault(); if (!busy) onCancel(); }}>
    <form onSubmit=${submit}>
      <h3 id="confirm-title">${title}</h3>
      <div id="confirm-text" class="confirm-text">${children}</div>
      ${reason && html`<label>${reason.label}<input id="confirm-reason" maxlength=${reason.max || 500} required=${!!reason.required}
        value=${text} onInput=${(e) => setText(e.target.value)} /></label>`}
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <div class="confirm-actions">
        <button type="button" class="secondary" id="confirm-cancel" onClick=${onCancel} disabled=${busy}>Cancel</button>
        <button type="submit" class=${danger ? 'danger' : 'primary'} id="confirm-ok" disabled=${busy}>${busy ? 'Working…' : confirmLabel}</button>
      </div>
    </form>
  </dialog>`;
}
