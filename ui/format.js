// Readable numbers and dates, in the viewer's locale and time zone.

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const usd2 = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 2 });
const usd4 = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 4 });
const usdSmall = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD', maximumSignificantDigits: 2 });
const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
const pct = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const pctExact = new Intl.NumberFormat(undefined, { maximumFractionDigits: 4 });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const shortDateTime = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit', second: '2-digit' });
const hourFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' });
const calendarFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });

export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';

export function int(n) {
  return n === null || n === undefined ? '—' : integer.format(n);
}

export function compactInt(n) {
  return n === null || n === undefined ? '—' : compact.format(n);
}

/** Money for cards and totals: dollars and cents. The API's decimal string in. */
export function money(value) {
  if (value === null || value === undefined) return '—';
  return usd2.format(Number(value));
}

/** Money for one call: small amounts keep their significant digits. */
export function moneyFine(value) {
  if (value === null || value === undefined) return '—';
  const n = Number(value);
  if (n !== 0 && Math.abs(n) < 0.01) return usdSmall.format(n);
  return usd4.format(n);
}

/**
 * Exact money, from the decimal string, without going through a binary float: used
 * where amounts must add up to the cent and beyond (the cost breakdown).
 */
export function moneyExact(value) {
  if (value === null || value === undefined) return '—';
  let s = String(value);
  const negative = s.startsWith('-');
  if (negative) s = s.slice(1);
  let [whole, frac = ''] = s.split('.');
  frac = frac.replace(/0+$/, '');
  if (frac.length < 2) frac = frac.padEnd(2, '0');
  const grouped = integer.format(BigInt(whole || '0'));
  const sep = (1.5).toLocaleString().includes(',') ? ',' : '.';
  return `${negative ? '−' : ''}$${grouped}${sep}${frac}`;
}

/** A rate as set (tax, markup): every decimal it has, e.g. 8.25%. */
export function percentExact(n) {
  return n === null || n === undefined ? '—' : `${pctExact.format(Number(n))}%`;
}

export function percent(n) {
  return n === null || n === undefined ? '—' : `${pct.format(n)}%`;
}

export function ms(n) {
  if (n === null || n === undefined) return '—';
  if (n < 1000) return `${integer.format(Math.round(n))} ms`;
  return `${(n / 1000).toLocaleString(undefined, { maximumFractionDigits: 2 })} s`;
}

export function when(iso) {
  return iso ? dateTime.format(new Date(iso)) : '—';
}

export function hour(iso) {
  return iso ? hourFmt.format(new Date(iso)) : '—';
}

export function whenShort(iso) {
  return iso ? shortDateTime.format(new Date(iso)) : '—';
}

/** A UTC day (the API's daily buckets) as "Dec 4". */
export function day(iso) {
  return dayFmt.format(new Date(iso));
}

/** Today's UTC date as YYYY-MM-DD, minus `back` days. */
export function utcDate(back = 0) {
  const d = new Date(Date.now() - back * 86400000);
  return d.toISOString().slice(0, 10);
}

/** A calendar date from the API (`YYYY-MM-DD`, an invoice's period or due date) as "Nov 1, 2026". */
export function calendarDay(date) {
  return date ? calendarFmt.format(new Date(`${date}T00:00:00Z`)) : '—';
}
