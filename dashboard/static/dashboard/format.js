/** How the dashboard writes numbers, units, times and ages. */

const NUMBER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const MISSING = "—";
// The API's unit names, as a reader expects them next to a number.
const UNIT_LABELS = { C: "°C" };

export function unitLabel(unit) {
  return UNIT_LABELS[unit] ?? unit ?? "";
}

export function formatNumber(value) {
  return value === null || value === undefined ? MISSING : NUMBER.format(value);
}

export function formatValue(value, unit) {
  if (value === null || value === undefined) return MISSING;
  const label = unitLabel(unit);
  return label ? `${NUMBER.format(value)} ${label}` : NUMBER.format(value);
}

/** A time as the browser's local "YYYY-MM-DD HH:mm:ss". */
export function formatTime(rfc3339) {
  if (!rfc3339) return MISSING;
  const time = new Date(rfc3339);
  const pad = (number) => String(number).padStart(2, "0");
  const date = `${time.getFullYear()}-${pad(time.getMonth() + 1)}-${pad(time.getDate())}`;
  return `${date} ${pad(time.getHours())}:${pad(time.getMinutes())}:${pad(time.getSeconds())}`;
}

/** A duration in seconds as "42 s", "5 min", "3 h", "2 d". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return MISSING;
  if (seconds < 10) return `${formatNumber(seconds)} s`;
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

/** How long before `now` the time was, as "5 min ago". */
export function formatAge(rfc3339, now = new Date()) {
  if (!rfc3339) return "never";
  return `${formatDuration(Math.max(0, (now - new Date(rfc3339)) / 1000))} ago`;
}

/** How long before `now` the time was, in a tile's few characters: "42s", "5m", "3h", "2d". */
export function formatShortAge(rfc3339, now = new Date()) {
  const seconds = Math.max(0, (now - new Date(rfc3339)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)}s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)}m`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

/** An element with text and optional attributes (class as "className"). */
export function element(tag, text = "", attributes = {}) {
  const node = document.createElement(tag);
  if (text) node.textContent = text;
  Object.assign(node, attributes);
  return node;
}
