// What every library's page shares: the colours, and how a run reports its times.
"use strict";

window.benchColours = ["#0072b2", "#e69f00", "#009e73", "#cc79a7"];
window.benchBandFill = "rgba(0, 114, 178, 0.2)";

// Called on the library's own "drawn" signal; the frame after it is when the chart is on
// screen. countPoints asks the library how many points it holds, after the clock stops.
window.benchReport = function (loadedAt, countPoints) {
  requestAnimationFrame(() => {
    const drawnAt = performance.now();
    window.benchResult = {
      load_ms: loadedAt - window.benchStart,
      draw_ms: drawnAt - loadedAt,
      points: countPoints(),
    };
  });
};
