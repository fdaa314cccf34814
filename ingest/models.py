"""The telemetry data model and the pipeline's delivery state.

Samples are the one table that grows to billions of rows, so a sample row holds only small
integer references, a time and a value; everything that repeats (GPU identity and labels,
metric names, workload attribution) lives in its own small table. Sample references carry
no database foreign-key constraints: they halve COPY speed, and the collector guarantees
integrity by creating every referenced row before the samples. docs/design.md, "Data model".

One module, Django's place for an app's models, a little past 400 lines: splitting the
telemetry tables from the delivery state would separate the models the ledger and the
cursors refer to from their references.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

from ingest.devices import device_id, device_key
from ingest.sample_ids import MAX_CHUNK_ROWS
from telemetry_project.routing import DEFAULT_SITE, stream_queue_for_site


class Metric(models.Model):
    """A DCGM field such as ``DCGM_FI_DEV_GPU_UTIL``; samples refer to it by a small id.

    Unit and kind come from the field table (``ingest.fields``), else from what the first page
    naming the metric said (its HELP text's ``(in W)``, its TYPE), when the metric is created.
    """

    id = models.SmallAutoField(primary_key=True)
    name = models.CharField(max_length=128, unique=True)
    unit = models.CharField(max_length=32, blank=True)
    help = models.TextField(blank=True)
    kind = models.CharField(max_length=16, blank=True, help_text="gauge or counter")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class GpuQuerySet(models.QuerySet["Gpu"]):
    def device(self, api_id: str) -> GpuQuerySet:
        """The GPU or MIG instance an API id (``<uuid>`` or ``<uuid>:<instance>``) names."""
        key = device_key(api_id)
        if key is None:
            return self.none()
        uuid, instance = key
        return self.filter(uuid=uuid, gpu_instance_id=instance)  # None matches IS NULL


class Gpu(models.Model):
    """A device: a physical GPU, or a MIG instance of one.

    A GPU's identity is its uuid (index and device repeat across hosts). A MIG instance
    reports its parent's uuid, so its identity is that uuid plus its GPU instance id; it
    has its own series and never shares samples with its parent. Unique indexes treat NULLs
    as distinct on PostgreSQL and SQLite alike, so (uuid, instance id) alone would let two
    whole-GPU rows share a uuid: a partial unique index on uuid for whole GPUs closes that,
    with no sentinel instance id standing in for "none".

    ``sample_count``, ``first_seen`` and ``last_seen`` are maintained by the collector in the
    same transaction as the samples, so they are exact and the API never counts samples.
    """

    id = models.AutoField(primary_key=True)
    uuid = models.CharField(max_length=64)
    gpu_instance_id = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="MIG instances only (GPU_I_ID)."
    )
    gpu_instance_profile = models.CharField(
        max_length=32, blank=True, help_text="MIG instances only, e.g. 1g.5gb (GPU_I_PROFILE)."
    )
    parent = models.ForeignKey(
        "self", models.PROTECT, null=True, blank=True, related_name="instances"
    )
    gpu_index = models.PositiveSmallIntegerField()
    device = models.CharField(max_length=32)
    model_name = models.CharField(max_length=128)
    hostname = models.CharField(max_length=255)
    labels = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    sample_count = models.BigIntegerField(default=0)
    # The newest workload a sample of the device was attributed to, and that sample's time:
    # the fleet view shows and filters on it beside the read model (docs/design.md, "Read
    # model"). Kept by the collector in the update that counts the samples.
    workload = models.ForeignKey(
        "Workload",
        models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )
    workload_seen_at = models.DateTimeField(null=True, blank=True)

    objects = GpuQuerySet.as_manager()

    class Meta:
        verbose_name = "GPU"
        ordering = ["hostname", "gpu_index"]
        indexes = [models.Index(fields=["hostname", "gpu_index"], name="ingest_gpu_host_index")]
        constraints = [
            models.UniqueConstraint(
                fields=["uuid", "gpu_instance_id"], name="ingest_gpu_device_unique"
            ),
            models.UniqueConstraint(
                fields=["uuid"],
                condition=models.Q(gpu_instance_id__isnull=True),
                name="ingest_gpu_whole_gpu_unique",
            ),
        ]

    def __str__(self) -> str:
        if self.gpu_instance_id is None:
            return f"{self.hostname}/{self.device} ({self.uuid})"
        return f"{self.hostname}/{self.device} MIG {self.gpu_instance_profile} ({self.device_id})"

    @property
    def device_id(self) -> str:
        """The id the API knows it by: the uuid, or ``<uuid>:<GPU instance id>``."""
        return device_id((self.uuid, self.gpu_instance_id))


class Workload(models.Model):
    """The Kubernetes workload a sample was attributed to; most DCGM rows have none."""

    id = models.AutoField(primary_key=True)
    namespace = models.CharField(max_length=255, blank=True)
    pod = models.CharField(max_length=255, blank=True)
    container = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "pod", "container"], name="ingest_workload_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}/{self.container}"


class Sample(models.Model):
    """One metric value of one GPU at one time.

    On PostgreSQL the table is range-partitioned on ``timestamp`` (``PARTITION_DAYS`` days a
    partition, ``ingest.partitions``), and its one B-tree is its primary key
    ``(gpu_id, timestamp, id)``, named as the index below; Django still treats ``id`` as the
    key (the admin needs a single column). A BRIN index on ``(timestamp, id)`` serves reads
    that name no GPU. Both are made by hand in migrations for that reason (0001, 0014), and ids
    are taken a chunk at a time (``ingest.sample_ids``). docs/design.md, "Data model".
    """

    id = models.BigAutoField(primary_key=True)
    timestamp = models.DateTimeField()
    value = models.FloatField()
    gpu = models.ForeignKey(
        Gpu, models.DO_NOTHING, db_constraint=False, db_index=False, related_name="samples"
    )
    metric = models.ForeignKey(Metric, models.DO_NOTHING, db_constraint=False, db_index=False)
    workload = models.ForeignKey(
        Workload, models.DO_NOTHING, db_constraint=False, db_index=False, null=True, blank=True
    )

    class Meta:
        indexes = [
            models.Index(fields=["gpu", "timestamp", "id"], name="ingest_sample_gpu_time_id")
        ]

    def __str__(self) -> str:
        return f"{self.gpu_id}/{self.metric_id}@{self.timestamp.isoformat()}={self.value}"


class LatestValue(models.Model):
    """The read model: the newest value of each metric of each device.

    The collector upserts a chunk's newest row per (device, metric) in the transaction that
    writes its samples, keeping whichever timestamp is newer, so the fleet view reads one small
    row per device and metric instead of probing the sample table (docs/design.md, "Read
    model"). No foreign-key constraints, like samples: the collector creates what they name.
    """

    id = models.BigAutoField(primary_key=True)
    gpu = models.ForeignKey(
        Gpu, models.DO_NOTHING, db_constraint=False, db_index=False, related_name="latest_values"
    )
    metric = models.ForeignKey(
        Metric, models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    timestamp = models.DateTimeField()
    value = models.FloatField()

    class Meta:
        constraints = [
            # The upsert's conflict target; its index also serves a device's rows.
            models.UniqueConstraint(fields=["gpu", "metric"], name="ingest_latest_gpu_metric")
        ]

    def __str__(self) -> str:
        return f"{self.gpu_id}/{self.metric_id}@{self.timestamp.isoformat()}={self.value}"


class StreamSource(models.Model):
    """A CSV file or http(s) URL streamed into the pipeline by beat-scheduled stream ticks,
    or an exporter page scraped once per interval-aligned slot."""

    class Kind(models.TextChoices):
        FILE = "file", "a CSV file or URL read in chunks"
        SCRAPE = "scrape", "a dcgm-exporter page fetched once per interval"

    class TimestampMode(models.TextChoices):
        PROCESSING = "processing", "stamp rows with the time they are processed"
        SOURCE = "source", "keep the CSV's own timestamps"

    class Pace(models.TextChoices):
        PACED = "paced", "one batch per interval"
        FAST = "fast", "as many batches as the bounds allow"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.FILE)
    location = models.CharField(max_length=2048, help_text="A file path or an http(s) URL.")
    batch_size = models.PositiveIntegerField(
        default=1000,
        help_text="Rows per chunk, at most 65,536.",
        validators=[MaxValueValidator(MAX_CHUNK_ROWS)],
    )
    interval_seconds = models.PositiveIntegerField(default=5, help_text="Seconds between ticks.")
    loop = models.BooleanField(default=False, help_text="Start again at the end of the file.")
    follow = models.BooleanField(
        default=False, help_text="Keep reading rows appended after the end, like tail -F."
    )
    timestamp_mode = models.CharField(
        max_length=16, choices=TimestampMode.choices, default=TimestampMode.PROCESSING
    )
    pace = models.CharField(max_length=8, choices=Pace.choices, default=Pace.PACED)
    shards = models.PositiveSmallIntegerField(default=1)
    site = models.SlugField(max_length=64, default=DEFAULT_SITE)
    enabled = models.BooleanField(default=True, help_text="Off: paused.")
    scheduled = models.BooleanField(
        default=True,
        help_text="Ticked by beat. One-shot imports (import_csv) publish their own ticks.",
    )
    command_line_only = models.BooleanField(
        default=False,
        editable=False,
        help_text="A file outside STREAM_SOURCE_DIRS, named to import_csv, which streams it "
        "itself; workers refuse to read it.",
    )
    columns = models.JSONField(default=list, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    throttled_ticks = models.BigIntegerField(default=0, editable=False)
    # A scrape source's health, written by each scrape: what /metrics and the dashboard show.
    last_scrape_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_scrape_duration_seconds = models.FloatField(null=True, blank=True, editable=False)
    # A scrape source's newest dispatched slot (its start, epoch milliseconds): a slot is
    # claimed by moving this on with a conditional UPDATE, so it is dispatched once.
    last_slot_ms = models.BigIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    # How a file is read in chunks; a scrape source fetches one whole page a slot instead.
    FILE_ONLY_FIELDS = ("batch_size", "pace", "shards", "loop", "follow")
    SCRAPE_INTERVAL_SECONDS = 10  # a scrape source's interval unless one is given

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Refuse what a source cannot do: the settings of reading a file on a scrape source,
        and a follow switch that cannot be honoured (``ingest.follow``). The admin form and
        ``add_source`` both validate through here."""
        if self.kind == self.Kind.SCRAPE:
            self._clean_scrape()
        elif self.follow:
            self._clean_follow()

    def _clean_scrape(self) -> None:
        errors = {
            name: self.file_only_refusal(name)
            for name in self.FILE_ONLY_FIELDS
            if getattr(self, name) != self.default_of(name)
        }
        if not self.is_url:
            errors["location"] = (
                "a scrape source fetches an http(s) URL (an exporter's /metrics page), "
                f"not {self.location!r}"
            )
        if errors:
            raise ValidationError(errors)

    def _clean_follow(self) -> None:
        if self.loop:
            raise ValidationError(
                {"follow": "follow and loop exclude each other: a followed file waits at its "
                 "end for appended rows, a looping one starts again from its first line"}
            )  # fmt: skip
        if self.is_url:
            raise ValidationError(
                {"follow": "only a local file can be followed, not an http(s) URL: its "
                 "growth and rotation are seen on the file itself"}
            )  # fmt: skip
        if self.shards > 1:
            raise ValidationError(
                {"follow": "a followed file is streamed as one shard: rows are appended at its "
                 "end, and a rotated file is read again from its start"}
            )  # fmt: skip

    @classmethod
    def default_of(cls, name: str) -> object:
        """The model's default for the field ``name``."""
        field = cls._meta.get_field(name)
        return field.get_default() if isinstance(field, models.Field) else None

    @classmethod
    def file_only_refusal(cls, name: str) -> str:
        """Why the file-reading setting ``name`` is refused for a scrape source."""
        return (
            f"{name} does not apply to a scrape source: it fetches one whole page per "
            "interval-aligned slot, never chunks of a file"
        )

    @property
    def stream_queue(self) -> str:
        return stream_queue_for_site(self.site)

    @property
    def is_url(self) -> bool:
        return self.location.startswith(("http://", "https://"))


class StreamCursor(models.Model):
    """How far one byte-range shard of a source has been streamed.

    ``position`` is the byte offset of the next unread line and ``next_line`` its line number
    (the header is line 1), so a tick resumes with a seek, never a re-scan.

    A followed source's cursor also names the file it reads (device and inode, ``ingest.follow``):
    another file at the path, or this one shorter than ``position``, means the file was rotated
    or truncated, and reading starts again at the new file's first line as a new pass.
    """

    source = models.ForeignKey(StreamSource, models.CASCADE, related_name="cursors")
    shard = models.PositiveSmallIntegerField()
    start_offset = models.BigIntegerField()
    end_offset = models.BigIntegerField(null=True, blank=True, help_text="Null: end of file.")
    start_line = models.BigIntegerField()
    position = models.BigIntegerField()
    next_line = models.BigIntegerField()
    pass_number = models.PositiveIntegerField(default=1)
    rows_streamed = models.BigIntegerField(default=0)
    finished = models.BooleanField(default=False)
    file_device = models.BigIntegerField(
        null=True, blank=True, help_text="Followed files: the device of the file being read."
    )
    file_inode = models.BigIntegerField(
        null=True, blank=True, help_text="Followed files: the inode of the file being read."
    )

    class Meta:
        ordering = ["source_id", "shard"]
        constraints = [
            models.UniqueConstraint(fields=["source", "shard"], name="ingest_cursor_unique")
        ]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.shard} @ {self.position} (pass {self.pass_number})"


class OutstandingChunk(models.Model):
    """A chunk recorded by a streamer and not yet seen in the ledger.

    It is recorded in the same transaction that advances the cursor, published after that
    commit, and published again with the same id and stamp until a collector commits it.
    Publishing again reads its bytes from the source anew, except for a followed file, whose
    chunks keep their collect message (``payload``): that file may be rotated or truncated
    before the chunk is committed, and then its bytes are no longer at the path. A scraped
    page's chunk keeps its message too (publishing it again never fetches again), and sits on
    its source's one cursor with its slot (epoch milliseconds) as start and end offset, which
    the unique constraint makes one row per slot.
    """

    cursor = models.ForeignKey(StreamCursor, models.CASCADE, related_name="outstanding")
    pass_number = models.PositiveIntegerField()
    start_offset = models.BigIntegerField()
    end_offset = models.BigIntegerField()
    first_line = models.BigIntegerField()
    line_count = models.PositiveIntegerField()
    stamp = models.DateTimeField(null=True, blank=True, help_text="Null in source-time mode.")
    # When the chunk was recorded; published_at moves on with every re-publishing, this does
    # not, so the age of a chunk that never commits keeps growing (/metrics).
    recorded_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField()
    publish_count = models.PositiveIntegerField(default=1)
    # The collect message (msgpack; the data inside it compressed), for followed files and
    # scraped pages only.
    payload = models.BinaryField(null=True, blank=True)

    class Meta:
        ordering = ["cursor_id", "pass_number", "start_offset"]
        constraints = [
            models.UniqueConstraint(
                fields=["cursor", "pass_number", "start_offset"], name="ingest_outstanding_unique"
            )
        ]

    def __str__(self) -> str:
        return f"chunk {self.start_offset}-{self.end_offset} of cursor {self.cursor_id}"


def chunk_id_for(source_id: int, shard: int, pass_number: int, start_offset: int) -> str:
    """The chunk's identity: the same bytes of the same pass always get the same id."""
    return f"{source_id}:{shard}:{pass_number}:{start_offset}"


def scrape_chunk_id(source_id: int, slot_ms: int) -> str:
    """A scraped page's identity: its source and slot, whoever scraped it and however often."""
    return f"scrape:{source_id}:{slot_ms}"


def outstanding_chunk_id(
    kind: str, source_id: int, shard: int, pass_number: int, start_offset: int
) -> str:
    """The ledger id an outstanding chunk waits for: a scraped page's by its slot (which the
    chunk keeps as its start offset), a file chunk's by its place in its pass."""
    if kind == StreamSource.Kind.SCRAPE:
        return scrape_chunk_id(source_id, start_offset)
    return chunk_id_for(source_id, shard, pass_number, start_offset)


class IngestedChunk(models.Model):
    """The ledger: one row per chunk, inserted in the transaction that writes its samples.

    Its primary key is what makes a redelivered or re-published chunk harmless.
    """

    chunk_id = models.CharField(max_length=100, primary_key=True)
    source = models.ForeignKey(
        StreamSource, models.DO_NOTHING, db_constraint=False, null=True, related_name="+"
    )
    committed_at = models.DateTimeField(default=timezone.now, db_index=True)
    rows_committed = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    dead_lettered = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["source"], name="ingest_ledger_source")]

    def __str__(self) -> str:
        return self.chunk_id


class PushChunk(models.Model):
    """A part of a push (remote write, or an import over the API) not yet seen in the ledger.

    The web process inserts every part of a request in one transaction before it answers 2xx,
    then publishes them; the collector deletes the row in the transaction that writes its
    ledger row, and a beat task publishes again, with the same id, any row older than
    ``REPUBLISH_AFTER_SECONDS`` (``ingest.push``). The id derives from the body as sent, so a
    client's byte-identical retry finds its parts here or in the ledger and adds nothing.
    ``payload`` is the collect message itself (msgpack; the data inside it compressed), so
    publishing again needs nothing else.
    """

    chunk_id = models.CharField(max_length=100, primary_key=True)
    # The token that pushed it, as a plain number: deleting a token must not lose its data.
    token_id = models.BigIntegerField()
    format = models.CharField(max_length=16)
    payload = models.BinaryField()
    received_at = models.DateTimeField()
    last_published_at = models.DateTimeField(db_index=True)
    publish_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["last_published_at"]

    def __str__(self) -> str:
        return self.chunk_id


class ChunkAttempt(models.Model):
    """How many deliveries of a chunk started processing; survives redelivery.

    Counted in its own transaction before the work, so a worker killed by the chunk itself
    (say, out of memory) still leaves a mark, and a chunk that keeps failing is dead-lettered.
    """

    chunk_id = models.CharField(max_length=100, primary_key=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.chunk_id} x{self.attempts}"


class RejectedRow(models.Model):
    """A CSV line that did not become a sample, with where it came from and why."""

    source = models.ForeignKey(
        StreamSource, models.SET_NULL, db_constraint=False, null=True, related_name="+"
    )
    chunk_id = models.CharField(max_length=100)
    line_number = models.BigIntegerField()
    raw_line = models.TextField()
    reason = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["source", "line_number"], name="ingest_rejected_line")]

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.reason}"


class DeadLetter(models.Model):
    """A collect message kept whole because it cannot be processed; replayable from the admin."""

    chunk_id = models.CharField(max_length=100, blank=True)
    source = models.ForeignKey(
        StreamSource, models.SET_NULL, db_constraint=False, null=True, related_name="+"
    )
    payload = models.BinaryField()
    reason = models.TextField()
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"dead letter {self.chunk_id or self.pk}: {self.reason[:60]}"


class Tally(models.Model):
    """Striped counters that /stats and /metrics sum instead of counting rows.

    Each chunk adds to one stripe chosen from its id, so concurrent collectors rarely update
    the same row and no single counter row serialises every commit. Names: ``metric:<id>``
    (samples stored), ``rejected`` (rows rejected), ``rejected_reason:<category>`` (rows
    rejected, by the category of their reason: a fixed set, ``ingest.rejections``), and
    per-source counters
    ``source:<label>:<counter>``, where the label is a source's id, ``import`` for every
    one-off import (unscheduled sources, which would otherwise add counters without bound),
    ``push`` for everything pushed over the API (remote write, imports), or ``unknown`` for a
    message that names no existing source.
    """

    STRIPES = 16
    REJECTED = "rejected"
    REJECTED_REASON_PREFIX = "rejected_reason:"
    METRIC_PREFIX = "metric:"
    SOURCE_PREFIX = "source:"
    IMPORTS = "import"
    UNKNOWN_SOURCE = "unknown"
    PUSHES = "push"

    class SourceCounter(models.TextChoices):
        """What a per-source tally counts."""

        ROWS_COMMITTED = "rows_committed", "rows committed as samples"
        ROWS_REJECTED = "rows_rejected", "rows rejected"
        CHUNKS_COMMITTED = "chunks_committed", "chunks committed"
        DUPLICATE_DELIVERIES = "duplicates", "deliveries of a chunk already done, skipped"
        DEAD_LETTERS = "dead_letters", "messages set aside as dead letters"
        # Neither stored nor rejected: counted once per pushed body (ingest.push), or per
        # scraped page in its collect transaction.
        IGNORED_SAMPLES = "ignored_samples", "samples of series that are not DCGM fields"
        STALE_MARKERS = "stale_markers", "Prometheus staleness markers, skipped"
        MISSED_SLOTS = "missed_slots", "scrape slots that passed with no scrape dispatched"

    name = models.CharField(max_length=140)
    stripe = models.PositiveSmallIntegerField()
    value = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "tallies"
        constraints = [
            models.UniqueConstraint(fields=["name", "stripe"], name="ingest_tally_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name}[{self.stripe}]={self.value}"

    @classmethod
    def metric_key(cls, metric_id: int) -> str:
        return f"{cls.METRIC_PREFIX}{metric_id}"

    @classmethod
    def rejected_reason_key(cls, category: str) -> str:
        return f"{cls.REJECTED_REASON_PREFIX}{category}"

    @classmethod
    def source_key(cls, label: str, counter: Tally.SourceCounter) -> str:
        return f"{cls.SOURCE_PREFIX}{label}:{counter.value}"

    @classmethod
    def split_source_key(cls, name: str) -> tuple[str, Tally.SourceCounter] | None:
        """(label, counter) of a per-source tally's name; None for any other tally."""
        label, _, counter = name.removeprefix(cls.SOURCE_PREFIX).rpartition(":")
        if not name.startswith(cls.SOURCE_PREFIX) or counter not in cls.SourceCounter.values:
            return None
        return label, cls.SourceCounter(counter)

    @classmethod
    def totals(cls) -> dict[str, int]:
        """Every counter summed over its stripes."""
        rows = cls.objects.values_list("name").annotate(total=models.Sum("value"))
        return {name: int(total) for name, total in rows}
