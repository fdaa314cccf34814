"""The source location policy: files only under STREAM_SOURCE_DIRS, URLs only over http(s).

Every hostile location is tried twice: when it is registered (add_source, import_csv, the
admin form), and at read time, as if it had been written into the database directly or a
symlink had been swapped after registration. At read time the streamer must record an error
on the source and store nothing of the file: no cursor, chunk, row, rejected row or dead
letter. Checks run in this process with the ``settings`` fixture; one runs a real streamer.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from django.core.management import CommandError, call_command
from django.test import Client
from pytest_django.fixtures import Settings

from ingest import sources
from ingest.models import (
    OutstandingChunk,
    StreamSource,
)
from ingest.reader import SourceError, open_at, read_header
from ingest.streamer import stream_tick
from telemetry_project.celery import app
from telemetry_project.routing import COLLECT_QUEUE
from tests.support.admin_forms import add_source_in_the_admin
from tests.support.pipeline import assert_nothing_stored
from tests.support.reference import REPO
from tests.support.workers import WorkerFactory, wait_for

HEADER = b"timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,value\n"
# A marker in the files outside the allowed directory: it must never reach the database.
MARKER = "GPU-outside-secret"
ROW = f'"2025-07-18T20:42:34Z",DCGM_FI_DEV_GPU_UTIL,0,nvidia0,{MARKER},H100,host-a,1\n'


@dataclass
class Layout:
    """An allowed directory with a good CSV, and a readable CSV just outside it."""

    allowed: Path
    good: Path
    outside: Path


@pytest.fixture
def layout(tmp_path: Path, settings: Settings) -> Layout:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    good = allowed / "good.csv"
    good.write_bytes(HEADER + ROW.replace(MARKER, "GPU-inside").encode())
    outside = tmp_path / "outside.csv"
    outside.write_bytes(HEADER + ROW.encode() * 3)
    settings.STREAM_SOURCE_DIRS = [str(allowed)]
    return Layout(allowed, good, outside)


def _etc_passwd(layout: Layout) -> str:
    return "/etc/passwd"


def _dot_dot_to_etc_passwd(layout: Layout) -> str:
    return str(layout.allowed) + "/.." * len(layout.allowed.parts) + "/etc/passwd"


def _dot_dot_to_a_csv_beside(layout: Layout) -> str:
    return f"{layout.allowed}/../{layout.outside.name}"


def _symlink_out(layout: Layout) -> str:
    link = layout.allowed / "link.csv"
    link.symlink_to(layout.outside)
    return str(link)


def _symlinked_folder_out(layout: Layout) -> str:
    folder = layout.allowed / "elsewhere"
    folder.symlink_to(layout.outside.parent)
    return str(folder / layout.outside.name)


def _file_url(layout: Layout) -> str:
    return "file:///etc/passwd"


def _file_url_of_an_allowed_file(layout: Layout) -> str:
    return f"file://{layout.good}"


def _ftp_url(layout: Layout) -> str:
    return "ftp://example.com/dcgm.csv"


def _fifo(layout: Layout) -> str:
    fifo = layout.allowed / "pipe.csv"
    os.mkfifo(fifo)
    return str(fifo)


def _folder(layout: Layout) -> str:
    return str(layout.allowed)


HOSTILE: dict[str, Callable[[Layout], str]] = {
    "etc-passwd": _etc_passwd,
    "dot-dot-to-etc-passwd": _dot_dot_to_etc_passwd,
    "dot-dot-to-a-csv-beside": _dot_dot_to_a_csv_beside,
    "symlink-out": _symlink_out,
    "symlinked-folder-out": _symlinked_folder_out,
    "file-url": _file_url,
    "file-url-of-an-allowed-file": _file_url_of_an_allowed_file,
    "ftp-url": _ftp_url,
    "fifo": _fifo,
    "folder": _folder,
}
# What the refusal must say, so an operator knows what to change.
EXPECTED_MESSAGE = {
    "etc-passwd": "STREAM_SOURCE_DIRS",
    "dot-dot-to-etc-passwd": "resolves to /etc/passwd",
    "dot-dot-to-a-csv-beside": "outside the directories sources may read",
    "symlink-out": "outside the directories sources may read",
    "symlinked-folder-out": "STREAM_SOURCE_DIRS",
    "file-url": "file:// URLs are not read",
    "file-url-of-an-allowed-file": "file:// URLs are not read",
    "ftp-url": "only http:// and https:// URLs",
    "fifo": "not a regular file (a FIFO)",
    "folder": "not a regular file (a directory)",
}


@pytest.fixture(params=list(HOSTILE))
def hostile(request: pytest.FixtureRequest, layout: Layout) -> tuple[str, str]:
    """(case name, location) for each hostile location, built inside ``layout``."""
    name: str = request.param
    return name, HOSTILE[name](layout)


def assert_nothing_read(source: StreamSource) -> None:
    """Nothing stored, and nothing of the refused file shown on the source."""
    assert_nothing_stored()
    source.refresh_from_db()
    assert MARKER not in source.last_error
    assert "root:" not in source.last_error
    assert source.columns in ([], None)


# --- Registration ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_add_source_refuses_each_hostile_location_with_a_clear_error(
    hostile: tuple[str, str],
) -> None:
    name, location = hostile
    with pytest.raises(CommandError, match=re.escape(EXPECTED_MESSAGE[name])):
        call_command("add_source", "hostile", location, stdout=io.StringIO())
    assert not StreamSource.objects.exists()


@pytest.mark.django_db
def test_import_csv_reads_the_file_its_user_named_but_refuses_one_that_is_no_dcgm_export(
    layout: Layout,
) -> None:
    # Outside STREAM_SOURCE_DIRS: the person typing the command may name any file they can
    # read, and what is not a DCGM export is refused before a source exists.
    with pytest.raises(CommandError, match="header lacks the column"):
        call_command("import_csv", "/etc/passwd", no_progress=True, stdout=io.StringIO())
    assert not StreamSource.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["file-url", "ftp-url", "fifo", "folder"])
def test_import_csv_refuses_what_is_no_regular_file_or_http_url_even_when_named(
    layout: Layout, case: str
) -> None:
    location = HOSTILE[case](layout)
    with pytest.raises(CommandError, match=re.escape(EXPECTED_MESSAGE[case])):
        call_command("import_csv", location, no_progress=True, stdout=io.StringIO())
    assert not StreamSource.objects.exists()


@pytest.mark.django_db
def test_the_admin_form_refuses_etc_passwd(admin_client: Client, layout: Layout) -> None:
    shown = add_source_in_the_admin(admin_client, "/etc/passwd")
    assert "outside the directories sources may read" in shown
    assert not StreamSource.objects.exists()


@pytest.mark.django_db
def test_a_file_in_an_allowed_directory_is_registered_by_its_real_path(layout: Layout) -> None:
    link = layout.allowed / "alias.csv"
    link.symlink_to(layout.good)
    call_command("add_source", "good", str(link), stdout=io.StringIO())
    assert StreamSource.objects.get(name="good").location == str(layout.good.resolve())


@pytest.mark.django_db
def test_a_path_with_dot_dot_that_stays_inside_is_accepted(layout: Layout) -> None:
    (layout.allowed / "sub").mkdir()
    location = f"{layout.allowed}/sub/../{layout.good.name}"
    call_command("add_source", "good", location, stdout=io.StringIO())
    assert StreamSource.objects.get(name="good").location == str(layout.good.resolve())


@pytest.mark.django_db
def test_a_missing_file_in_an_allowed_directory_is_not_a_readable_file(layout: Layout) -> None:
    with pytest.raises(CommandError, match="is not a readable file"):
        call_command("add_source", "gone", str(layout.allowed / "no.csv"), stdout=io.StringIO())


@pytest.mark.django_db
def test_http_and_https_urls_are_accepted_and_their_scheme_lower_cased(layout: Layout) -> None:
    call_command("add_source", "plain", "http://example.com/a.csv", stdout=io.StringIO())
    call_command("add_source", "tls", "HTTPS://example.com/a.csv", stdout=io.StringIO())
    locations = dict(StreamSource.objects.values_list("name", "location"))
    assert locations == {"plain": "http://example.com/a.csv", "tls": "https://example.com/a.csv"}


def test_a_url_without_a_host_is_refused() -> None:
    with pytest.raises(sources.LocationRefusedError, match="names no host"):
        sources.check_location("http:///etc/passwd")


def test_the_stream_source_dirs_override_decides_what_is_allowed(
    layout: Layout, settings: Settings
) -> None:
    with pytest.raises(sources.LocationRefusedError):
        sources.check_location(str(layout.outside))
    settings.STREAM_SOURCE_DIRS = [str(layout.allowed), str(layout.outside.parent)]
    assert sources.check_location(str(layout.outside)) == str(layout.outside.resolve())


def test_an_empty_stream_source_dirs_allows_urls_only(layout: Layout, settings: Settings) -> None:
    settings.STREAM_SOURCE_DIRS = []
    with pytest.raises(sources.LocationRefusedError, match="STREAM_SOURCE_DIRS is empty"):
        sources.check_location(str(layout.good))
    assert sources.check_location("https://example.com/a.csv") == "https://example.com/a.csv"


def test_a_device_inside_an_allowed_directory_is_refused(settings: Settings) -> None:
    settings.STREAM_SOURCE_DIRS = ["/dev"]
    with pytest.raises(sources.LocationRefusedError, match="not a regular file"):
        sources.check_location("/dev/zero")


def test_the_default_directories_are_data_and_the_var_dir(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "STREAM_SOURCE_DIRS"}
    env.update(DJANGO_DEBUG="1", TELEMETRY_VAR_DIR=str(tmp_path / "var"))
    code = "from django.conf import settings; print(settings.STREAM_SOURCE_DIRS)"
    default = run_with_settings(code, env)
    assert default == str([str(REPO / "data"), str(tmp_path / "var")])
    listed = run_with_settings(code, {**env, "STREAM_SOURCE_DIRS": " /srv/a, /srv/b ,"})
    assert listed == str(["/srv/a", "/srv/b"])


def run_with_settings(code: str, env: dict[str, str]) -> str:
    """Run ``code`` in a fresh interpreter, so settings are read from ``env`` afresh."""
    script = (
        "import django, os\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'telemetry_project.settings')\n"
        f"django.setup()\n{code}\n"
    )
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


# --- Read time ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_streamer_refuses_each_hostile_location_at_read_time_and_stores_nothing(
    hostile: tuple[str, str],
) -> None:
    name, location = hostile
    # Written straight into the database, as a direct edit would, skipping registration.
    source = StreamSource.objects.create(name="hostile", location=location, scheduled=False)
    report = stream_tick(source.pk)
    assert "source error" in report.notes
    source.refresh_from_db()
    assert EXPECTED_MESSAGE[name] in source.last_error
    assert source.last_error_at is not None
    assert_nothing_read(source)


def test_the_reader_refuses_a_hostile_location_itself(hostile: tuple[str, str]) -> None:
    name, location = hostile
    with pytest.raises(SourceError, match=re.escape(EXPECTED_MESSAGE[name])):
        read_header(location)


@pytest.mark.django_db
def test_a_file_swapped_for_a_symlink_after_streaming_began_is_refused_at_its_next_read(
    layout: Layout, broker: redis.Redis
) -> None:
    call_command("add_source", "good", str(layout.good), stdout=io.StringIO())
    source = StreamSource.objects.get(name="good")
    source.loop = True
    source.save()
    assert stream_tick(source.pk).published == 1
    assert OutstandingChunk.objects.count() == 1

    layout.good.unlink()
    layout.good.symlink_to(layout.outside)
    report = stream_tick(source.pk)

    assert "source error" in report.notes
    source.refresh_from_db()
    assert "outside the directories sources may read" in source.last_error
    assert MARKER not in source.last_error
    assert OutstandingChunk.objects.count() == 1  # the chunk read before the swap, no more
    assert broker.llen(COLLECT_QUEUE) == 1  # nothing published after the swap


@pytest.mark.integration
def test_a_real_streamer_refuses_a_symlink_swapped_in_after_registration(
    workers: WorkerFactory, layout: Layout
) -> None:
    call_command("add_source", "swapped", str(layout.good), stdout=io.StringIO())
    source = StreamSource.objects.get(name="swapped")
    layout.good.unlink()
    layout.good.symlink_to(layout.outside)
    workers.streamer(extra_env={"STREAM_SOURCE_DIRS": str(layout.allowed)})
    workers.collector(extra_env={"STREAM_SOURCE_DIRS": str(layout.allowed)})

    app.send_task("ingest.stream", args=[source.pk], queue=source.stream_queue, expires=30)
    wait_for(
        lambda: StreamSource.objects.filter(pk=source.pk).exclude(last_error="").exists(),
        60,
        what="the streamer to record the refusal",
    )
    source.refresh_from_db()
    assert "outside the directories sources may read" in source.last_error
    assert_nothing_read(source)


# --- URLs: size cap, timeouts, redirects ----------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    send_length: bool = True
    delay: float = 0.0


@pytest.fixture
def http_source() -> Iterator[Callable[[Reply], str]]:
    """A local HTTP server answering every GET with the reply set; yields a URL maker."""
    replies: list[Reply] = [Reply()]
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            reply = replies[-1]
            if reply.delay:
                stop.wait(reply.delay)
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.send_length:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(reply: Reply) -> str:
        replies.append(reply)
        return f"http://127.0.0.1:{server.server_address[1]}/dcgm.csv"

    yield serve
    stop.set()
    server.shutdown()
    server.server_close()


def read_all(url: str) -> bytes:
    with open_at(url, 0) as stream:
        return stream.read()


def test_a_url_within_the_size_cap_is_read(
    http_source: Callable[[Reply], str], settings: Settings
) -> None:
    settings.STREAM_SOURCE_MAX_BYTES = 1000
    body = HEADER + ROW.encode()
    assert read_all(http_source(Reply(body=body))) == body


def test_a_url_announcing_more_than_the_size_cap_is_refused_before_reading(
    http_source: Callable[[Reply], str], settings: Settings
) -> None:
    settings.STREAM_SOURCE_MAX_BYTES = 100
    url = http_source(Reply(body=HEADER + ROW.encode() * 10))
    with pytest.raises(SourceError, match="more than STREAM_SOURCE_MAX_BYTES"):
        read_all(url)


def test_a_url_without_a_length_is_stopped_at_the_size_cap(
    http_source: Callable[[Reply], str], settings: Settings
) -> None:
    settings.STREAM_SOURCE_MAX_BYTES = 100
    url = http_source(Reply(body=HEADER + ROW.encode() * 10, send_length=False))
    with pytest.raises(SourceError, match="sent more bytes than allowed"):
        read_all(url)


def test_a_url_whose_content_range_total_exceeds_the_cap_is_refused(
    http_source: Callable[[Reply], str], settings: Settings
) -> None:
    settings.STREAM_SOURCE_MAX_BYTES = 100
    reply = Reply(status=206, body=b"x\n", headers=(("Content-Range", "bytes 50-51/999999"),))
    with pytest.raises(SourceError, match="is 999999 bytes"), open_at(http_source(reply), 50):
        pass


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/etc/passwd"])
def test_a_redirect_away_from_http_is_refused(
    http_source: Callable[[Reply], str], target: str
) -> None:
    url = http_source(Reply(status=302, headers=(("Location", target),)))
    with pytest.raises(SourceError, match="cannot read"):
        read_all(url)


def test_a_stalled_server_fails_after_the_http_timeout(
    http_source: Callable[[Reply], str], settings: Settings
) -> None:
    settings.STREAM_SOURCE_HTTP_TIMEOUT_SECONDS = 0.3
    url = http_source(Reply(body=HEADER, delay=5))
    with pytest.raises(SourceError, match="timed out"):
        read_all(url)
