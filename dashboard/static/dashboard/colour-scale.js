/**
 * The tiles' sequential colour scale: a value's bin among ten even bins of a domain. The
 * colours themselves are CSS (.scale-0 … .scale-9 in dashboard.css, viridis stops), so a
 * tile only carries its bin's class.
 */

export const BINS = 10;

/** The bin (0 … BINS-1) of a value in [low, high]; values outside are clamped. */
export function binOf(value, [low, high]) {
  if (!(high > low)) return 0;
  const bin = Math.floor(((value - low) / (high - low)) * BINS);
  return Math.min(BINS - 1, Math.max(0, bin));
}

/** The CSS class of a value's bin. */
export function scaleClass(value, domain) {
  return `scale-${binOf(value, domain)}`;
}

/** The lower bound of every bin, and the domain's top: BINS + 1 numbers. */
export function binEdges([low, high]) {
  return Array.from({ length: BINS + 1 }, (_, index) => low + ((high - low) * index) / BINS);
}

/**
 * A domain covering the values: from the lowest to the highest, widened to whole numbers
 * so the legend's edges read simply. Without values, [0, 1].
 */
export function domainOf(values) {
  const present = values.filter((value) => value !== null && value !== undefined);
  if (present.length === 0) return [0, 1];
  const low = Math.floor(Math.min(...present));
  const high = Math.ceil(Math.max(...present));
  return [low, high > low ? high : low + 1];
}
