// uPlot: columnar arrays as they come; a band between two series.
"use strict";

window.benchDraw(({ input, colours, element, drawn }) => {
  let data;
  let series;
  let bands;
  if (input.band) {
    data = [input.times, input.band.high, input.lines[0], input.band.low];
    series = [
      {},
      { label: "max", stroke: window.benchBandFill },
      { label: "mean", stroke: colours[0] },
      { label: "min", stroke: window.benchBandFill },
    ];
    bands = [{ series: [1, 3], fill: window.benchBandFill }];
  } else {
    data = [input.times, ...input.lines];
    series = [{}, ...input.lines.map((_, i) => ({ label: `series ${i + 1}`, stroke: colours[i] }))];
  }
  const onDraw = (plot) => drawn(() => plot.data.slice(1).reduce((n, s) => n + s.length, 0));
  new uPlot(
    {
      width: element.clientWidth,
      height: element.clientHeight,
      scales: { x: { time: true } },
      series,
      bands,
      hooks: { draw: [onDraw] },
    },
    data,
    element,
  );
});
