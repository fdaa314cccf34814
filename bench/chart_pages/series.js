// The benchmark's data, the same for every library: plain arrays as a JSON response
// would give them. A seeded random walk, one point every 10 s (50,000 points ~ 5.8 days).
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const points = Number(params.get("points"));
  const shape = params.get("case");
  const startSeconds = Date.UTC(2025, 6, 18) / 1000;
  const stepSeconds = 10;

  // mulberry32: a tiny seeded generator, so every run and library sees the same values.
  function generator(seed) {
    let state = seed >>> 0;
    return function () {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function walk(seed) {
    const random = generator(seed);
    const values = new Array(points);
    let value = 50;
    for (let i = 0; i < points; i++) {
      value = Math.min(100, Math.max(0, value + (random() - 0.5) * 4));
      values[i] = value;
    }
    return values;
  }

  const times = new Array(points);
  for (let i = 0; i < points; i++) times[i] = startSeconds + i * stepSeconds;

  let series;
  if (shape === "line") {
    series = { lines: [walk(1)] };
  } else if (shape === "lines4") {
    series = { lines: [walk(1), walk(2), walk(3), walk(4)] };
  } else if (shape === "band") {
    const mean = walk(1);
    const spread = generator(5);
    const low = mean.map((v) => v - 2 - spread() * 8);
    const high = mean.map((v) => v + 2 + spread() * 8);
    series = { lines: [mean], band: { low, high } };
  } else {
    throw new Error(`unknown case ${shape}`);
  }
  window.benchInput = { times, ...series };
})();
