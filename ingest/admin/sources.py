"""The stream-source admin: sources and their cursors, and the actions that drive them.

Saving a source (or pausing or resuming it) updates its beat entry through the model's
signals; rewinding starts a new pass; "stream once" sends a tick now.
"""

from __future__ import annotations

from typing import Any

import kombu.exceptions
import redis.exceptions
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django_celery_beat.models import PeriodicTask

from ingest import sources
from ingest.admin.base import (
    ReadOnlyAdmin,
    TypedModelAdmin,
    TypedModelForm,
    TypedTabularInline,
    count,
    tell,
)
from ingest.models import StreamCursor, StreamSource
from ingest.schedule import periodic_task_name
from telemetry_project.celery import app
from telemetry_project.routing import DEFAULT_SITE, STREAM_TASK

# Errors of an unreachable or failing broker, reported to the user instead of a server error.
BROKER_ERRORS = (kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError)


class StreamCursorInline(TypedTabularInline[StreamCursor, StreamSource]):
    """Where each shard of the source has got to, and how many chunks await a commit."""

    model = StreamCursor
    fields = (
        "shard",
        "position",
        "next_line",
        "pass_number",
        "rows_streamed",
        "finished",
        "outstanding_chunks",
    )
    readonly_fields = fields
    extra = 0
    max_num = 0  # cursors are laid out by the streamer: no "add another"
    can_delete = False
    show_change_link = True

    @admin.display(description="outstanding chunks")
    def outstanding_chunks(self, cursor: StreamCursor) -> int:
        return cursor.outstanding.count()


class StreamSourceForm(TypedModelForm[StreamSource]):
    """Checks a location as ``manage.py add_source`` does, and what a scrape source refuses
    (``StreamSource.clean``, which both share).

    Files of the default site are checked on this host (and stored as absolute paths);
    files of another site live on that site's streamers, so only their form is checked.
    A new scrape source whose interval was left alone gets a scrape's default interval.
    """

    class Meta:
        model = StreamSource
        fields = (
            "name",
            "kind",
            "location",
            "site",
            "batch_size",
            "interval_seconds",
            "pace",
            "timestamp_mode",
            "loop",
            "follow",
            "shards",
            "enabled",
            "scheduled",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Left out, the kind is a file's, as every source was before scrape sources. (Once a
        # source has a cursor its kind is read-only, and not a field of the form.)
        if "kind" in self.fields:
            self.fields["kind"].required = False

    def clean_kind(self) -> str:
        return str(self.cleaned_data.get("kind") or StreamSource.Kind.FILE)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        location = cleaned.get("location")
        if location and "location" in self.changed_data:
            try:
                if cleaned.get("site", DEFAULT_SITE) == DEFAULT_SITE:
                    cleaned["location"] = sources.validate_location(location)
                elif "://" in location and not location.startswith(("http://", "https://")):
                    raise ValidationError(
                        f"only files and http(s) URLs can be streamed, not {location!r}"
                    )
            except ValidationError as error:
                self.add_error("location", error)
        scrape = cleaned.get("kind") == StreamSource.Kind.SCRAPE
        if scrape and self.instance._state.adding and "interval_seconds" not in self.changed_data:
            cleaned["interval_seconds"] = StreamSource.SCRAPE_INTERVAL_SECONDS
        shards = cleaned.get("shards") or 1
        location = cleaned.get("location") or ""
        if shards > 1 and location.startswith(("http://", "https://")):
            self.add_error("shards", "an http(s) source is streamed as one shard")
        return cleaned


@admin.register(StreamSource)
class StreamSourceAdmin(TypedModelAdmin[StreamSource]):
    """Stream sources; saving one (or pausing or resuming it) updates its beat entry."""

    form = StreamSourceForm
    list_display = (
        "name",
        "kind",
        "location",
        "site",
        "pace",
        "timestamp_mode",
        "batch_size",
        "interval_seconds",
        "loop",
        "follow",
        "enabled",
        "error",
        "last_success_at",
        "throttled_ticks",
    )
    list_filter = ("enabled", "kind", "site", "pace")
    search_fields = ("name", "location")
    readonly_fields = (
        "beat_entry",
        "command_line_only",
        "columns",
        "last_error",
        "last_error_at",
        "last_scrape_at",
        "last_success_at",
        "last_scrape_duration_seconds",
        "last_slot_ms",
        "throttled_ticks",
        "created_at",
    )
    inlines = (StreamCursorInline,)
    actions = ("pause", "resume", "rewind", "stream_once")

    def get_readonly_fields(
        self, request: HttpRequest, obj: StreamSource | None = None
    ) -> tuple[str, ...]:
        fields = tuple(self.readonly_fields)
        # The shards' byte offsets were laid out in this file (or the cursor holds a scrape
        # source's slots): register a new source to stream another one. A command-line-only
        # file was allowed for the import_csv that named it, not for whatever location this
        # form might be given.
        if obj is not None and (obj.command_line_only or obj.cursors.exists()):
            fields = ("kind", "location", "shards", *fields)
        return fields

    def save_model(self, request: HttpRequest, obj: StreamSource, form: Any, change: bool) -> None:
        if change:
            # Only the form's own fields: streamers write the columns, errors and throttle
            # counts of the same row meanwhile, and a full save would put old values back.
            obj.save(update_fields=list(form.fields))
        else:
            obj.save()

    @admin.display(description="last error")
    def error(self, source: StreamSource) -> str:
        return Truncator(source.last_error).chars(80)

    @admin.display(description="beat entry")
    def beat_entry(self, source: StreamSource) -> SafeString | str:
        task = PeriodicTask.objects.filter(name=periodic_task_name(source)).first()
        if task is None:
            return "none"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
        state = "enabled" if task.enabled else "disabled"
        return format_html('<a href="{}">{}</a> ({})', url, task.name, state)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[StreamSource], enabled: bool
    ) -> None:
        changed, unchanged = [], []
        for source in queryset:
            if source.enabled == enabled:
                unchanged.append(source.name)
                continue
            source.enabled = enabled
            # save(), not update(): its post_save signal updates the beat entry.
            source.save(update_fields=["enabled"])
            self.log_change(request, source, "Resumed." if enabled else "Paused.")
            changed.append(source.name)
        verb = "Resumed" if enabled else "Paused"
        state = "running" if enabled else "paused"
        tell(
            self,
            request,
            f"{verb} {count(len(changed), 'source')} ({', '.join(changed)}); "
            f"beat ticks are {'on' if enabled else 'off'}."
            if changed
            else "",
            left=f"Already {state}: {', '.join(unchanged)}." if unchanged else "",
        )

    @admin.action(description="Pause: stop the beat ticks", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[StreamSource]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    @admin.action(description="Resume: start the beat ticks again", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[StreamSource]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(
        description="Rewind: stream again from the first line, as a new pass",
        permissions=["change"],
    )
    def rewind(self, request: HttpRequest, queryset: QuerySet[StreamSource]) -> None:
        rewound, fresh = [], []
        for source in queryset:
            if not source.cursors.exists():
                fresh.append(source.name)
                continue
            sources.rewind(source)
            self.log_change(request, source, "Rewound.")
            passes = sorted(set(source.cursors.values_list("pass_number", flat=True)))
            rewound.append(f"{source.name} (pass {', '.join(map(str, passes))})")
        tell(
            self,
            request,
            f"Rewound {count(len(rewound), 'source')}: {', '.join(rewound)}. "
            "The next ticks stream them from their first line."
            if rewound
            else "",
            left=f"Not streamed yet, nothing to rewind: {', '.join(fresh)}." if fresh else "",
        )

    @admin.action(description="Stream once: send one tick now", permissions=["change"])
    def stream_once(self, request: HttpRequest, queryset: QuerySet[StreamSource]) -> None:
        sent, paused, scraped = [], [], []
        try:
            for source in queryset:
                if source.kind == StreamSource.Kind.SCRAPE:
                    # Served by its slots only: a tick at another time would stand for none.
                    scraped.append(source.name)
                elif not source.enabled:
                    paused.append(source.name)  # a tick of a paused source does nothing
                else:
                    app.send_task(
                        STREAM_TASK, args=[source.pk], queue=source.stream_queue, expires=60
                    )
                    sent.append(f"{source.name} -> {source.stream_queue}")
        except BROKER_ERRORS as error:
            self.message_user(request, f"The broker could not be reached: {error}", messages.ERROR)
        left = []
        if paused:
            left.append(f"Paused, so no tick was sent: {', '.join(paused)}. Resume them first.")
        if scraped:
            left.append(
                f"Scrape sources are scraped once per slot, not by ticks: {', '.join(scraped)}."
            )
        tell(
            self,
            request,
            f"Sent a stream tick for {count(len(sent), 'source')}: {', '.join(sent)}."
            if sent
            else "",
            left=" ".join(left),
            left_level=messages.WARNING,
        )


@admin.register(StreamCursor)
class StreamCursorAdmin(ReadOnlyAdmin[StreamCursor]):
    list_display = (
        "source",
        "shard",
        "position",
        "end_offset",
        "next_line",
        "pass_number",
        "rows_streamed",
        "finished",
    )
    list_filter = ("source", "finished")
    list_select_related = ("source",)
