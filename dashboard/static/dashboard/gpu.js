/**
 * The GPU page: every metric of one device over a time range, one uPlot chart each
 * (aggregate-chart.js: the bucket means as a line inside their min-max band), from the
 * aggregate endpoint with a bucket chosen for a few hundred points. Counters are drawn as
 * their rate per second (fn=rate). Beside them: the device's facts, its current workload and
 * MIG instances (from /api/v1/fleet/latest), and a CSV download of the range shown.
 */

import { drawAggregateChart } from "./aggregate-chart.js";
import { getJson, segment } from "./api.js";
import { element, formatAge, formatDuration, formatTime, unitLabel } from "./format.js";

// Preset ranges: query value, label, seconds. A preset ends at the device's newest sample.
const PRESETS = [
  ["15m", "15 min", 900],
  ["1h", "1 h", 3600],
  ["6h", "6 h", 6 * 3600],
  ["24h", "24 h", 24 * 3600],
  ["7d", "7 d", 7 * 24 * 3600],
];
const DEFAULT_PRESET = "1h";
const TARGET_POINTS = 300;
// Bucket widths in seconds. A range gets the smallest giving at most TARGET_POINTS buckets
// that is also no narrower than the device's sampling interval: narrower buckets would leave
// most of them empty, and the chart would draw the gaps between them instead of a line.
const BUCKETS = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];
const CHART_HEIGHT = 220;

const page = document.getElementById("gpu-page");
const deviceId = page.dataset.device;
const query = new URLSearchParams(window.location.search);
const errorElement = document.getElementById("gpu-error");

export function bucketFor(spanSeconds, sampleIntervalSeconds) {
  const fits = (width) => spanSeconds / width <= TARGET_POINTS && width >= sampleIntervalSeconds;
  return BUCKETS.find(fits) ?? BUCKETS.at(-1);
}

/**
 * The device's average time between two samples of one metric, from its sample count and
 * first and last sight (0 when it has only one sample of each).
 */
function sampleInterval(device, metricCount) {
  const perMetric = device.sample_count / Math.max(1, metricCount);
  if (perMetric <= 1 || !device.first_seen || !device.last_seen) return 0;
  return (Date.parse(device.last_seen) - Date.parse(device.first_seen)) / 1000 / (perMetric - 1);
}

function gpuPage(id) {
  return page.dataset.gpuPage.replace("DEVICE", segment(id));
}

/** The range the URL asks for: ?start=&end= (RFC 3339), or ?range=<preset>. */
function chosenRange(lastSeen) {
  const start = query.get("start");
  const end = query.get("end");
  if (start && end) {
    const span = (Date.parse(end) - Date.parse(start)) / 1000;
    if (!(span > 0)) throw new Error(`the range ${start} to ${end} is not a forward span of time`);
    return { start, end, span, preset: null };
  }
  const preset =
    PRESETS.find(([key]) => key === query.get("range")) ??
    PRESETS.find(([key]) => key === DEFAULT_PRESET);
  const endTime = lastSeen ? new Date(lastSeen) : new Date();
  const startTime = new Date(endTime.getTime() - preset[2] * 1000);
  return {
    start: startTime.toISOString(),
    end: endTime.toISOString(),
    span: preset[2],
    preset: preset[0],
  };
}

function showFacts(device, fleetDevice) {
  const gpu = `${device.hostname} · GPU ${device.gpu_index}`;
  const instance = `MIG ${device.gpu_instance_profile} #${device.gpu_instance_id}`;
  document.getElementById("gpu-title").textContent =
    device.parent === null ? gpu : `${gpu} · ${instance}`;
  document.getElementById("gpu-host").textContent = device.hostname;
  const workload = fleetDevice?.workload;
  const workloadText =
    workload && (workload.namespace || workload.pod)
      ? [workload.namespace || "—", workload.pod || "—", workload.container]
          .filter(Boolean)
          .join(" / ")
      : "none";
  const facts = [
    ["Id", device.id],
    ["Model", device.model],
    ["Device", device.device],
    ["First seen", formatTime(device.first_seen)],
    ["Last seen", `${formatTime(device.last_seen)} (${formatAge(device.last_seen)})`],
    ["Samples", new Intl.NumberFormat("en-US").format(device.sample_count)],
    // The API keeps each sample's workload but offers no summary of it over time, so the
    // page shows the latest one seen.
    ["Workload now (namespace / pod)", workloadText],
  ];
  if (fleetDevice?.stale) facts.push(["State", "stale"]);
  const list = document.getElementById("gpu-facts");
  list.replaceChildren(
    ...facts.map(([term, value]) => {
      const item = element("div");
      item.append(element("dt", term), element("dd", value));
      return item;
    }),
  );
  if (device.parent !== null) {
    const parent = element("dd");
    parent.append(element("a", device.parent, { href: gpuPage(device.parent) }));
    const item = element("div");
    item.append(element("dt", "Parent GPU"), parent);
    list.append(item);
  }
}

function showInstances(instances) {
  if (instances.length === 0) return;
  document.getElementById("gpu-instances").hidden = false;
  document.getElementById("gpu-instance-list").replaceChildren(
    ...instances.map((instance) => {
      const item = element("li");
      const label = `MIG ${instance.gpu_instance_profile} #${instance.gpu_instance_id}`;
      item.append(element("a", label, { href: gpuPage(instance.id) }));
      return item;
    }),
  );
}

/** datetime-local's value for an RFC 3339 time, in the browser's zone. */
function localInput(rfc3339) {
  const time = new Date(rfc3339);
  return new Date(time.getTime() - time.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

function showRange(range, bucket) {
  const presets = document.getElementById("gpu-range-presets");
  presets.replaceChildren(
    ...PRESETS.map(([key, label]) => {
      const link = element("a", label, { href: `?range=${key}` });
      if (key === range.preset) link.setAttribute("aria-current", "true");
      return link;
    }),
  );
  const start = document.getElementById("range-start");
  const end = document.getElementById("range-end");
  start.value = localInput(range.start);
  end.value = localInput(range.end);
  document.getElementById("gpu-range").addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = new URLSearchParams({
      start: new Date(start.value).toISOString(),
      end: new Date(end.value).toISOString(),
    });
    window.location.search = `?${chosen}`;
  });
  const csv = new URLSearchParams({ start_time: range.start, end_time: range.end });
  document.getElementById("gpu-csv").href =
    `/api/v1/gpus/${segment(deviceId)}/telemetry.csv?${csv}`;
  const ending = range.preset ? "ending at the device's newest sample" : "as chosen";
  document.getElementById("gpu-range-note").textContent =
    `${formatTime(range.start)} to ${formatTime(range.end)} (${ending}), ` +
    `in buckets of ${formatDuration(bucket)}.`;
}

function aggregateParams(range, bucket, metrics, fn) {
  const params = [
    ["start_time", range.start],
    ["end_time", range.end],
    ["bucket", `${bucket}s`],
    ...metrics.map((metric) => ["metric", metric]),
  ];
  if (fn) params.push(["fn", fn]);
  return params;
}

/** A counter's buckets as the chart module reads them: the rate is the line, no band. */
function asRate(aggregate) {
  return {
    ...aggregate,
    buckets: aggregate.buckets.map((bucket) => ({
      ...bucket,
      avg: bucket.rate,
      min: bucket.rate,
      max: bucket.rate,
    })),
  };
}

function drawCharts(aggregates, metrics, range) {
  const charts = document.getElementById("gpu-charts");
  const plots = [];
  for (const metric of metrics) {
    const card = element("section", "", { className: "chart-card" });
    card.dataset.metric = metric.name;
    const counter = metric.kind === "counter";
    // A counter's unit "-" (a plain count) reads as "/s" once it is a rate.
    const counted = metric.unit && metric.unit !== "-" ? metric.unit : "";
    const unit = counter ? `${counted}/s` : unitLabel(metric.unit);
    const heading = counter
      ? `${metric.name} (rate, ${unit})`
      : `${metric.name} (${unit || "no unit"})`;
    card.append(element("h2", heading));
    const chart = element("div", "", { className: "chart" });
    card.append(chart);
    const aggregate = counter ? asRate(aggregates.counter) : aggregates.gauge;
    const buckets = aggregate.buckets.filter((bucket) => bucket.metric === metric.name);
    const caption = element("p", "", { className: "note chart-points" });
    caption.dataset.points = String(buckets.length);
    const width = formatDuration(Number.parseInt(aggregate.bucket));
    const noun = buckets.length === 1 ? "bucket" : "buckets";
    caption.textContent = buckets.length
      ? `${buckets.length} ${noun} of ${width}`
      : "no samples in this range";
    card.append(caption);
    charts.append(card);
    const settings = { unit, height: CHART_HEIGHT, title: "", line: counter ? "rate" : "mean" };
    const plot = drawAggregateChart(chart, aggregate, metric.name, settings);
    // The whole range chosen, not only the span that has data: a gap reads as a gap.
    plot.setScale("x", { min: Date.parse(range.start) / 1000, max: Date.parse(range.end) / 1000 });
    plots.push({ chart, plot });
  }
  // uPlot draws at a fixed size: follow the cards when the window is resized.
  window.addEventListener("resize", () => {
    for (const { chart, plot } of plots)
      plot.setSize({ width: chart.clientWidth, height: CHART_HEIGHT });
  });
}

async function main() {
  const base = `/api/v1/gpus/${segment(deviceId)}`;
  const [device, metricList, latest] = await Promise.all([
    getJson(base),
    getJson("/api/v1/metrics"),
    getJson(`${base}/latest`),
  ]);
  const fleet = await getJson("/api/v1/fleet/latest", [
    ["hostname", device.hostname],
    ["metric", "DCGM_FI_DEV_GPU_UTIL"],
  ]);
  showFacts(
    device,
    fleet.devices.find((entry) => entry.id === device.id),
  );
  showInstances(fleet.devices.filter((entry) => entry.parent === device.id));

  const range = chosenRange(device.last_seen);
  const bucket = bucketFor(range.span, sampleInterval(device, latest.length));
  showRange(range, bucket);
  const present = new Set(latest.map((entry) => entry.metric));
  const metrics = metricList.filter((metric) => present.has(metric.name));
  const names = (kind) => metrics.filter((m) => (m.kind === "counter") === kind).map((m) => m.name);
  const [gauges, counters] = [names(false), names(true)];
  const empty = { bucket: `${bucket}s`, buckets: [] };
  const [gauge, counter] = await Promise.all([
    gauges.length
      ? getJson(`${base}/telemetry/aggregate`, aggregateParams(range, bucket, gauges))
      : empty,
    counters.length
      ? getJson(`${base}/telemetry/aggregate`, aggregateParams(range, bucket, counters, "rate"))
      : empty,
  ]);
  drawCharts({ gauge, counter }, metrics, range);
  page.dataset.drawn = "true";
}

main().catch((error) => {
  errorElement.textContent = `This page could not be drawn: ${error.message}`;
  errorElement.hidden = false;
});
