"""The pipeline's message topology: task names, queue names and the routes between them.

Defined once, here, and imported wherever a name is needed: the tasks, the streamer,
``import_csv``, the beat schedule, the broker helpers, the admin, ``run_pipeline`` and
``CELERY_TASK_ROUTES`` in settings. It lives in the project package beside settings, not in
an app, because settings import no app code; it imports nothing itself. The chart, the
compose file and the container entry point name the same queues in their own languages.
docs/design.md, "Tasks and queues".
"""

from __future__ import annotations

STREAM_TASK = "ingest.stream"
COLLECT_TASK = "ingest.collect"
MAINTAIN_PARTITIONS_TASK = "ingest.maintain_partitions"
REPUBLISH_PUSHES_TASK = "ingest.republish_pushes"
DISPATCH_SCRAPES_TASK = "ingest.dispatch_scrapes"
SCRAPE_TASK = "ingest.scrape"

# Streamers of the default site consume STREAM_QUEUE; a site's own streamers, beside its
# files, consume ``stream.<site>``. Collectors consume COLLECT_QUEUE, wherever they run.
STREAM_QUEUE = "stream"
COLLECT_QUEUE = "collect"
DEFAULT_SITE = "default"

# Partition maintenance needs the database only; re-publishing pushed parts and dispatching
# scrape slots need the database and the broker, which every streamer reaches. A scrape itself
# goes to its source's site queue, as a stream tick does.
TASK_ROUTES = {
    STREAM_TASK: {"queue": STREAM_QUEUE},
    SCRAPE_TASK: {"queue": STREAM_QUEUE},
    DISPATCH_SCRAPES_TASK: {"queue": STREAM_QUEUE},
    COLLECT_TASK: {"queue": COLLECT_QUEUE},
    MAINTAIN_PARTITIONS_TASK: {"queue": STREAM_QUEUE},
    REPUBLISH_PUSHES_TASK: {"queue": STREAM_QUEUE},
}


def stream_queue_for_site(site: str) -> str:
    """The queue a site's stream ticks go to."""
    return STREAM_QUEUE if site == DEFAULT_SITE else f"{STREAM_QUEUE}.{site}"
