/**
 * The fleet page: one request to /api/v1/fleet/latest per refresh (every metric any colour
 * choice needs, and the page's filters), drawn as a row per host and a tile per device,
 * coloured by the chosen metric's latest value. Choosing another metric recolours the tiles
 * from the answer in hand and records the choice in the URL, so the view can be shared.
 */

import { getJson, segment } from "./api.js";
import { binEdges, domainOf, scaleClass } from "./colour-scale.js";
import { COLOUR_CHOICES, FLEET_METRICS, colourChoice } from "./fleet-colours.js";
import {
  element,
  formatDuration,
  formatNumber,
  formatShortAge,
  formatTime,
  formatValue,
  unitLabel,
} from "./format.js";
import { refreshEvery, refreshSeconds } from "./refresh.js";

const FILTERS = ["hostname", "model", "namespace"];
const page = document.getElementById("fleet-page");
const colourSelect = document.getElementById("colour-metric");
const hostsElement = document.getElementById("fleet-hosts");
const summaryElement = document.getElementById("fleet-summary");
const legendElement = document.getElementById("fleet-legend");
const errorElement = document.getElementById("fleet-error");
// Values seen in any answer, offered as suggestions in the filter fields.
const known = { hostname: new Set(), model: new Set(), namespace: new Set() };
let latestBody = null;
let firstRender = true;

function gpuPage(deviceId) {
  return page.dataset.gpuPage.replace("DEVICE", segment(deviceId));
}

function requestParams() {
  const query = new URLSearchParams(window.location.search);
  const params = FLEET_METRICS.map((metric) => ["metric", metric]);
  for (const name of FILTERS) {
    const value = query.get(name);
    if (value) params.push([name, value]);
  }
  return params;
}

function unitOf(choice, body) {
  if (choice.metrics.length !== 1) return choice.unit;
  const metric = body.metrics.find((entry) => entry.name === choice.metrics[0]);
  return metric?.unit || choice.unit;
}

function deviceLabel(device) {
  if (device.parent === null) return `GPU ${device.gpu_index}`;
  return `GPU ${device.gpu_index} MIG ${device.gpu_instance_profile} #${device.gpu_instance_id}`;
}

function workloadText(workload) {
  if (!workload || !(workload.namespace || workload.pod)) return "no workload";
  return `workload ${workload.namespace || "—"}/${workload.pod || "—"}`;
}

function tile(device, choice, unit, domain, now) {
  const value = choice.value(device.values);
  const link = element("a", "", { href: gpuPage(device.id) });
  const mig = device.parent !== null;
  const shortName = mig ? `${device.gpu_instance_profile}` : `${device.gpu_index}`;
  link.append(element("span", shortName, { className: "tile-name" }));
  const lines = [`${device.hostname} ${deviceLabel(device)}`, device.model_name];
  let state;
  if (device.stale) {
    state = "stale";
    link.append(
      element("span", formatShortAge(device.last_seen, now), { className: "tile-value" }),
    );
    lines.push(`stale: last seen ${formatTime(device.last_seen)}`);
  } else if (value === null) {
    state = "no-value";
    link.append(element("span", "—", { className: "tile-value" }));
    lines.push(`${choice.label}: no sample`);
  } else {
    state = scaleClass(value, domain);
    link.append(element("span", formatNumber(value), { className: "tile-value" }));
    lines.push(`${choice.label}: ${formatValue(value, unit)}`);
  }
  if (value !== null) link.dataset.value = String(value);
  lines.push(workloadText(device.workload));
  if (device.hot) lines.push("hot");
  if (device.idle) lines.push("idle");
  link.title = lines.join("\n");
  link.className = ["tile", state, mig ? "mig" : "", device.hot ? "hot" : ""].join(" ").trim();
  link.dataset.device = device.id;
  return link;
}

function hostRow(hostname, devices) {
  const row = element("section", "", { className: "host" });
  const gpus = devices.filter((device) => device.parent === null);
  const models = [...new Set(gpus.map((device) => device.model_name))].join(", ");
  const heading = element("h2", "", { className: "host-name" });
  const hostLink = element("a", hostname, {
    href: `?${new URLSearchParams({ ...currentQuery(), hostname })}`,
  });
  heading.append(hostLink, element("small", `${gpus.length} GPUs · ${models}`));
  const tiles = element("div", "", { className: "tiles" });
  row.append(heading, tiles);
  return { row, tiles };
}

function currentQuery() {
  return Object.fromEntries(new URLSearchParams(window.location.search));
}

// Devices arrive ordered by host, each GPU's MIG instances after it: one pass groups them.
function byHost(devices) {
  const hosts = [];
  for (const device of devices) {
    const last = hosts.at(-1);
    if (last?.hostname === device.hostname) last.devices.push(device);
    else hosts.push({ hostname: device.hostname, devices: [device] });
  }
  return hosts;
}

function render(body) {
  const choice = colourChoice(colourSelect.value);
  const unit = unitOf(choice, body);
  const now = new Date(body.generated_at);
  const live = body.devices.filter((device) => !device.stale);
  const domain = choice.domain ?? domainOf(live.map((device) => choice.value(device.values)));
  const fragment = document.createDocumentFragment();
  for (const { hostname, devices } of byHost(body.devices)) {
    const { row, tiles } = hostRow(hostname, devices);
    let group = null;
    for (const device of devices) {
      const deviceTile = tile(device, choice, unit, domain, now);
      // A MIG instance joins its parent's group, so the two read as one GPU.
      if (device.parent !== null && group?.dataset.device === device.parent) {
        group.classList.add("has-mig");
        group.append(deviceTile);
      } else {
        group = element("div", "", { className: "gpu" });
        group.dataset.device = device.id;
        group.append(deviceTile);
        tiles.append(group);
      }
    }
    fragment.append(row);
  }
  hostsElement.replaceChildren(fragment);
  renderLegend(choice, unit, domain, body);
  renderSummary(body);
}

function renderLegend(choice, unit, domain, body) {
  const label = unitLabel(unit);
  const edges = binEdges(domain);
  const title = choice.domain ? choice.label : `${choice.label} (range of the values shown)`;
  const items = [element("span", `${title}, ${label}:`, { className: "legend-title" })];
  for (let bin = 0; bin < edges.length - 1; bin += 1) {
    const text = `${formatNumber(edges[bin])}–${formatNumber(edges[bin + 1])}`;
    items.push(element("span", text, { className: `swatch scale-${bin}` }));
  }
  const staleText = `stale (no sample for ${formatDuration(body.stale_after_seconds)})`;
  items.push(element("span", staleText, { className: "swatch stale" }));
  items.push(element("span", "no sample", { className: "swatch no-value" }));
  const hotText = `▲ hot (≥ ${body.thresholds.hot_temperature_c} °C)`;
  items.push(element("span", hotText, { className: "swatch hot-key" }));
  legendElement.replaceChildren(...items);
}

function renderSummary(body) {
  const { counts, thresholds } = body;
  const part = (name, text) => {
    const figure = element("strong", String(counts[name]));
    figure.dataset.count = name;
    return [figure, ` ${text}`];
  };
  summaryElement.replaceChildren(
    ...part("devices", "devices on "),
    ...part("hosts", "hosts · "),
    ...part("hot", `hot (≥ ${thresholds.hot_temperature_c} °C) · `),
    ...part("idle", `idle (≤ ${thresholds.idle_utilisation_percent} % utilisation) · `),
    ...part("stale", `stale · updated ${formatTime(body.generated_at)}`),
  );
}

function remember(body) {
  for (const device of body.devices) {
    known.hostname.add(device.hostname);
    known.model.add(device.model_name);
    if (device.workload?.namespace) known.namespace.add(device.workload.namespace);
  }
  for (const [name, values] of Object.entries(known)) {
    const list = document.getElementById(`known-${name === "hostname" ? "hosts" : `${name}s`}`);
    list.replaceChildren(...[...values].sort().map((value) => element("option", "", { value })));
  }
}

async function load() {
  try {
    latestBody = await getJson("/api/v1/fleet/latest", requestParams());
    errorElement.hidden = true;
  } catch (error) {
    errorElement.textContent = `The fleet could not be loaded: ${error.message}`;
    errorElement.hidden = false;
    return;
  }
  render(latestBody);
  remember(latestBody);
  if (firstRender) {
    firstRender = false;
    // What `make bench-dashboard` reads: navigation start to the first drawn fleet. The
    // mark waits for the frame the tiles are laid out and painted in, not only built.
    requestAnimationFrame(() => setTimeout(() => performance.mark("fleet-first-render")));
  }
}

function chooseColour() {
  const query = new URLSearchParams(window.location.search);
  query.set("colour", colourSelect.value);
  window.history.replaceState(null, "", `?${query}`);
  if (latestBody !== null) render(latestBody);
}

colourSelect.append(
  ...COLOUR_CHOICES.map((choice) => element("option", choice.label, { value: choice.key })),
);
colourSelect.value = colourChoice(new URLSearchParams(window.location.search).get("colour")).key;
colourSelect.addEventListener("change", chooseColour);
refreshEvery(refreshSeconds(Number(page.dataset.refreshSeconds)), load);
