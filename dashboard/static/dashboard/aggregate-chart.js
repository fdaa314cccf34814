/**
 * A GPU's aggregate telemetry as a uPlot chart: each bucket's mean as a line, its minimum and
 * maximum as a band around it, time along the x axis (the browser's zone, or one asked for,
 * such as UTC) and the metric's unit on the y axis.
 *
 * The input is the body of GET /api/v1/gpus/{uuid}/telemetry/aggregate ("Aggregate" in
 * openapi.yaml). This module only shapes it into uPlot's data and options; uPlot draws.
 * Load dashboard/vendor/uplot/uPlot.iife.min.js (it defines the global uPlot) and
 * dashboard/vendor/uplot/uPlot.min.css before using it.
 */

// The API writes bucket widths in whole seconds ("60s").
const BUCKET_WIDTH = /^([1-9][0-9]*)s$/;
// Okabe-Ito blue: it stays distinct under the common colour-vision deficiencies.
const MEAN_COLOUR = "#0072b2";
const BAND_EDGE_COLOUR = "rgba(0, 114, 178, 0.45)";
const BAND_FILL = "rgba(0, 114, 178, 0.18)";
const LEGEND_TIME = "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}";
// uPlot's x-axis label table in 24-hour time, like the legend: a row per tick spacing
// (seconds), its label, the labels added where a year, month, day, hour, minute or second
// rolls over, and mode 1 (append the rollover label to the plain one).
const DAY = 86400;
const TIME_AXIS = [
  [DAY * 365, "{YYYY}", null, null, null, null, null, null, 1],
  [DAY * 28, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
  [DAY, "{MM}-{DD}", "\n{YYYY}", null, null, null, null, null, 1],
  [60, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
  [1, "{HH}:{mm}:{ss}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
];
const MISSING = "—";

// Series indices in uPlot's data: x first, then the mean and the band's two edges.
const MEAN = 1;
const MAX = 2;
const MIN = 3;

function uPlotLibrary() {
  if (typeof globalThis.uPlot !== "function") {
    throw new Error("uPlot is not loaded: include dashboard/vendor/uplot/uPlot.iife.min.js first");
  }
  return globalThis.uPlot;
}

/** The bucket width of an aggregate body, in seconds. */
export function bucketSeconds(aggregate) {
  const match = BUCKET_WIDTH.exec(aggregate.bucket);
  if (match === null) {
    const given = JSON.stringify(aggregate.bucket);
    throw new Error(`aggregate.bucket must be whole seconds such as "60s", not ${given}`);
  }
  return Number(match[1]);
}

function unixSeconds(rfc3339) {
  const milliseconds = Date.parse(rfc3339);
  if (Number.isNaN(milliseconds)) {
    throw new Error(`bucket_start is not an RFC 3339 time: ${JSON.stringify(rfc3339)}`);
  }
  return milliseconds / 1000;
}

/**
 * uPlot's columns for one metric: bucket starts (Unix seconds), means, maxima, minima. Where
 * buckets are missing (no samples then), a row of nulls one bucket after the last present
 * one makes the line and the band stop there instead of bridging the gap.
 */
export function metricColumns(aggregate, metric) {
  if (!Array.isArray(aggregate.buckets)) {
    throw new Error("aggregate.buckets must be the list of buckets the API returned");
  }
  const width = bucketSeconds(aggregate);
  const buckets = aggregate.buckets
    .filter((bucket) => bucket.metric === metric)
    .map((bucket) => ({ ...bucket, start: unixSeconds(bucket.bucket_start) }))
    .sort((a, b) => a.start - b.start);
  const columns = [[], [], [], []];
  const append = (start, mean, high, low) => {
    columns[0].push(start);
    columns[MEAN].push(mean);
    columns[MAX].push(high);
    columns[MIN].push(low);
  };
  let previousStart = null;
  for (const bucket of buckets) {
    if (previousStart !== null && bucket.start - previousStart > width) {
      append(previousStart + width, null, null, null);
    }
    append(bucket.start, bucket.avg, bucket.max, bucket.min);
    previousStart = bucket.start;
  }
  return columns;
}

/**
 * The y axis's width in CSS pixels: its tick marks, the gap, and its widest tick label as the
 * axis's font draws it, so large values (600,000 mJ/s) do not run into the unit's label.
 * uPlot asks again while the ticks settle; from its third pass on the answer stands.
 */
function yAxisWidth(plot, labels, axisIndex, pass) {
  const axis = plot.axes[axisIndex];
  if (pass > 1) return axis._size;
  const widest = (labels ?? []).reduce(
    (wide, label) => (label.length > wide.length ? label : wide),
    "",
  );
  plot.ctx.font = axis.font[0];
  const text = widest ? plot.ctx.measureText(widest).width / devicePixelRatio : 0;
  return Math.ceil(axis.ticks.size + axis.gap + text);
}

/** The zone's name, after checking the browser knows it; the browser's own without one. */
function zoneName(timeZone) {
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone }).resolvedOptions().timeZone;
  } catch (error) {
    throw new Error(`unknown time zone ${JSON.stringify(timeZone)}: ${error.message}`);
  }
}

/**
 * uPlot's options and data for one metric of an aggregate body.
 *
 * settings: unit (shown on the y axis and with every value), timeZone (an IANA name such as
 * "UTC"; the browser's zone when absent), title (the metric's name by default), width and
 * height in CSS pixels, line (the legend's name for the line: "mean" by default).
 */
export function aggregateChart(aggregate, metric, settings = {}) {
  const {
    unit = "",
    timeZone,
    title = metric,
    width = 800,
    height = 260,
    line = "mean",
  } = settings;
  const zone = zoneName(timeZone);
  const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  const suffix = unit ? ` ${unit}` : "";
  const withUnit = (_plot, value) =>
    value === null || value === undefined ? MISSING : `${number.format(value)}${suffix}`;
  const tickLabels = (_plot, ticks) => ticks.map((tick) => number.format(tick));
  const options = {
    title,
    width,
    height,
    scales: { x: { time: true } },
    series: [
      { label: `Time (${zone})`, value: LEGEND_TIME },
      { label: line, stroke: MEAN_COLOUR, width: 1.5, value: withUnit },
      { label: "max", stroke: BAND_EDGE_COLOUR, width: 1, value: withUnit },
      { label: "min", stroke: BAND_EDGE_COLOUR, width: 1, value: withUnit },
    ],
    bands: [{ series: [MAX, MIN], fill: BAND_FILL }],
    axes: [
      { values: TIME_AXIS },
      { label: unit || undefined, values: tickLabels, size: yAxisWidth },
    ],
  };
  if (timeZone !== undefined) {
    const library = uPlotLibrary();
    options.tzDate = (seconds) => library.tzDate(new Date(seconds * 1000), zone);
  }
  return { options, data: metricColumns(aggregate, metric) };
}

/** Draw one metric of an aggregate body into an element; returns the uPlot instance. */
export function drawAggregateChart(element, aggregate, metric, settings = {}) {
  const library = uPlotLibrary();
  const { options, data } = aggregateChart(aggregate, metric, {
    width: element.clientWidth || undefined,
    ...settings,
  });
  return new library(options, data, element);
}
