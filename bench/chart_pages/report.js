// What every library's page shares: the colours, and how a run is timed.
"use strict";

window.benchColours = ["#0072b2", "#e69f00", "#009e73", "#cc79a7"];
window.benchBandFill = "rgba(0, 114, 178, 0.2)";

// Each library's page calls this as its script starts, with a function that draws the
// benchmark's input into the element and calls drawn(countPoints) on the library's own
// "drawn" signal. The frame after that signal is when the chart is on screen; countPoints
// asks the library how many points it holds, after the clock stops.
window.benchDraw = function (draw) {
  const loadedAt = performance.now();
  let signalled = false;
  // Libraries signal every redraw; the first one is the chart drawn.
  const drawn = (countPoints) => {
    if (signalled) return;
    signalled = true;
    requestAnimationFrame(() => {
      const drawnAt = performance.now();
      window.benchResult = {
        load_ms: loadedAt - window.benchStart,
        draw_ms: drawnAt - loadedAt,
        points: countPoints(),
      };
    });
  };
  draw({
    input: window.benchInput,
    colours: window.benchColours,
    element: document.getElementById("chart"),
    drawn,
  });
};
