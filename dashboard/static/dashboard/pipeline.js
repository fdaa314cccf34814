/**
 * The pipeline page: /api/v1/sources every refresh, as a table of sources (state, progress
 * of a file or the last scrape, rate, lag, last error, a link to the source in the admin),
 * the collect queue's depth, dead letters and rejected rows by reason.
 */

import { getJson } from "./api.js";
import { element, formatAge, formatDuration, formatNumber, formatTime } from "./format.js";
import { refreshEvery, refreshSeconds } from "./refresh.js";

const page = document.getElementById("pipeline-page");
const errorElement = document.getElementById("pipeline-error");
const deadLettersAdmin = document.getElementById("pipeline-links").dataset.deadLetters;
const COUNT = new Intl.NumberFormat("en-US");

// The table's column names, which a narrow screen shows beside each value (dashboard.css).
const COLUMNS = [...document.querySelectorAll("#pipeline-sources thead th")].map(
  (th) => th.textContent,
);

function cell(content, column, className = "") {
  const td = element("td", "", { className });
  td.dataset.label = COLUMNS[column];
  td.append(content);
  return td;
}

function progressOf(source) {
  const wrapper = element("span");
  if (source.progress) {
    const { pass_number: pass, fraction } = source.progress;
    const bar = element("progress", "", { max: 1, value: fraction ?? 0 });
    const percent =
      fraction === null || fraction === undefined ? "—" : `${Math.round(fraction * 100)} %`;
    wrapper.append(bar, ` pass ${pass}, ${percent}`);
  } else if (source.last_scrape) {
    const scrape = source.last_scrape;
    const up = scrape.up ? "up" : "down";
    const took =
      scrape.duration_seconds === null ? "" : `, took ${formatDuration(scrape.duration_seconds)}`;
    const success = formatAge(scrape.last_success_at);
    wrapper.append(`${up}, scraped ${formatAge(scrape.at)}${took}; last success ${success}`);
  } else {
    wrapper.append("—");
  }
  return wrapper;
}

function sourceRow(source) {
  const row = element("tr");
  row.dataset.source = source.name;
  const name = element("a", source.name, { href: source.admin_url, title: source.location });
  const state = element("span", source.state, { className: `state state-${source.state}` });
  const error = source.last_error
    ? `${source.last_error} (${formatTime(source.last_error_at)})`
    : "—";
  const rate = element("span", formatNumber(source.rows_per_second));
  rate.className = "source-rate";
  const lag = source.lag_seconds === null ? "—" : formatDuration(source.lag_seconds);
  row.append(
    ...[
      [name],
      [source.kind],
      [state],
      [progressOf(source)],
      [COUNT.format(source.rows_committed), "number"],
      [COUNT.format(source.rows_rejected), "number"],
      [rate, "number"],
      [lag, "number"],
      [error],
    ].map(([content, className], column) => cell(content, column, className)),
  );
  return row;
}

function figure(term, value, href) {
  const item = element("div");
  const description = element("dd");
  description.append(href ? element("a", value, { href }) : value);
  item.append(element("dt", term), description);
  return item;
}

function render(body) {
  const depth = body.collect_queue_depth;
  document
    .getElementById("pipeline-figures")
    .replaceChildren(
      figure("Sources", COUNT.format(body.sources.length)),
      figure("Collect queue depth", depth === null ? "broker unreachable" : COUNT.format(depth)),
      figure("Dead letters", COUNT.format(body.dead_letters), deadLettersAdmin),
      figure(
        "Rejected rows",
        COUNT.format(body.rejected_by_reason.reduce((total, entry) => total + entry.rows, 0)),
      ),
    );
  document.querySelector("#pipeline-sources tbody").replaceChildren(...body.sources.map(sourceRow));
  const reasons = body.rejected_by_reason.map(({ reason, rows }) => {
    const row = element("tr");
    row.append(element("td", reason), element("td", COUNT.format(rows), { className: "number" }));
    return row;
  });
  if (reasons.length === 0) {
    const row = element("tr");
    row.append(element("td", "none", { colSpan: 2 }));
    reasons.push(row);
  }
  document.querySelector("#pipeline-rejected tbody").replaceChildren(...reasons);
  document.getElementById("pipeline-updated").textContent =
    `Updated ${formatTime(body.generated_at)}.`;
}

async function load() {
  try {
    render(await getJson("/api/v1/sources"));
    errorElement.hidden = true;
  } catch (error) {
    errorElement.textContent = `The pipeline could not be loaded: ${error.message}`;
    errorElement.hidden = false;
  }
}

refreshEvery(refreshSeconds(Number(page.dataset.refreshSeconds)), load);
