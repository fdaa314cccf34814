/**
 * Run a page's load now and then every `seconds`, only while the page is visible: a hidden
 * tab makes no requests, and one shown again loads at once (its figures are old by then).
 */
export function refreshEvery(seconds, load) {
  let timer = null;
  let running = false;

  const schedule = () => {
    clearTimeout(timer);
    timer = document.hidden ? null : setTimeout(run, seconds * 1000);
  };

  async function run() {
    if (running) return;
    running = true;
    try {
      await load();
    } finally {
      running = false;
      schedule();
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else {
      run();
    }
  });
  return run();
}

/** The refresh period: ?refresh=<seconds> (at least 5), else the page's default. */
export function refreshSeconds(defaultSeconds) {
  const asked = Number(new URLSearchParams(window.location.search).get("refresh"));
  return Number.isFinite(asked) && asked >= 5 ? asked : defaultSeconds;
}
