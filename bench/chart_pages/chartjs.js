// Chart.js with the date-fns adapter (its time scale needs one): {x, y} points in its
// internal format with parsing off, min-max decimation, no animation, as its performance
// guide advises; the band is the high line filled down to the low one.
"use strict";

window.benchDraw(({ input, colours, element, drawn }) => {
  const canvas = document.createElement("canvas");
  canvas.width = element.clientWidth;
  canvas.height = element.clientHeight;
  element.appendChild(canvas);
  const points = (values) => values.map((v, i) => ({ x: input.times[i] * 1000, y: v }));
  const line = (label, values, colour) => ({
    label,
    data: points(values),
    borderColor: colour,
    borderWidth: 1,
    pointRadius: 0,
  });
  let datasets;
  if (input.band) {
    datasets = [
      {
        ...line("max", input.band.high, window.benchBandFill),
        fill: 2,
        backgroundColor: window.benchBandFill,
      },
      line("mean", input.lines[0], colours[0]),
      line("min", input.band.low, window.benchBandFill),
    ];
  } else {
    datasets = input.lines.map((values, i) => line(`series ${i + 1}`, values, colours[i]));
  }
  const drawnSignal = {
    id: "benchDrawn",
    afterRender(chart) {
      // Decimation swaps each dataset's data for the points it keeps, holding the
      // original in _data.
      drawn(() =>
        chart.data.datasets.reduce((n, d) => n + (d._data || d.data).length, 0),
      );
    },
  };
  new Chart(canvas, {
    type: "line",
    data: { datasets },
    options: {
      animation: false,
      parsing: false,
      normalized: true,
      responsive: false,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      scales: { x: { type: "time", ticks: { maxRotation: 0, autoSkip: true } } },
      plugins: { decimation: { enabled: true, algorithm: "min-max" } },
    },
    plugins: [drawnSignal],
  });
});
