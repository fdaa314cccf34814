// Apache ECharts: [time, value] pairs, its min-max sampling, no animation; the band is
// ECharts' documented stack of the low line and the (high - low) area above it.
"use strict";

window.benchDraw(({ input, colours, element, drawn }) => {
  const pairs = (values) => values.map((v, i) => [input.times[i] * 1000, v]);
  const line = (name, values, colour) => ({
    type: "line",
    name,
    data: pairs(values),
    showSymbol: false,
    sampling: "minmax",
    lineStyle: { width: 1, color: colour },
    itemStyle: { color: colour },
  });
  let series;
  if (input.band) {
    const { low, high } = input.band;
    series = [
      { ...line("min", low, "transparent"), stack: "band" },
      {
        ...line("max", high.map((v, i) => v - low[i]), "transparent"),
        stack: "band",
        areaStyle: { color: window.benchBandFill },
      },
      line("mean", input.lines[0], colours[0]),
    ];
  } else {
    series = input.lines.map((values, i) => line(`series ${i + 1}`, values, colours[i]));
  }
  const chart = echarts.init(element, null, {
    renderer: "canvas",
    width: element.clientWidth,
    height: element.clientHeight,
  });
  chart.on("finished", () =>
    drawn(() => chart.getOption().series.reduce((n, s) => n + s.data.length, 0)),
  );
  chart.setOption({
    animation: false,
    legend: {},
    tooltip: { trigger: "axis" },
    xAxis: { type: "time" },
    yAxis: { type: "value", scale: true },
    series,
  });
});
