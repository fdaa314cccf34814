"""The bodies of the push endpoints: type, encoding and size checked before anything is decoded.

Every refusal is the API's usual JSON error (``{"detail": ...}``): 411 without a
Content-Length, 413 over ``PUSH_MAX_BODY_BYTES`` (as sent, once gunzipped, or as a snappy
block declares), 415 for a media type or content coding the endpoint does not take, 400 for a
body that does not decode. Django's own cap on a body read into memory
(``DATA_UPLOAD_MAX_MEMORY_SIZE``, which it enforces from Content-Length when ``request.body``
is read, as a plain 400) is set to the same figure, so the 413 here always answers first.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Collection

from django.conf import settings
from django.http import HttpRequest
from django.utils.http import parse_header_parameters
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, UnsupportedMediaType

from ingest import remote_write

IDENTITY = "identity"
GZIP = "gzip"
SNAPPY = "snappy"
REMOTE_WRITE_MEDIA_TYPE = "application/x-protobuf"
# The only message a remote write 1.0 body may hold (the Content-Type's "proto" parameter,
# which 1.0 senders leave out and 2.0 senders set to io.prometheus.write.v2.Request).
REMOTE_WRITE_PROTO = "prometheus.WriteRequest"


class LengthRequired(APIException):
    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_detail = "Send the body with a Content-Length header."
    default_code = "length_required"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The body is too large."
    default_code = "payload_too_large"


def media_type_of(request: HttpRequest) -> tuple[str, dict[str, str]]:
    """The request's media type, lower case, and its parameters."""
    media_type, parameters = parse_header_parameters(request.META.get("CONTENT_TYPE", ""))
    return media_type, parameters


def read_body(
    request: HttpRequest, *, media_types: Collection[str], encodings: Collection[str]
) -> bytes:
    """The request's body, after its Content-Type, Content-Encoding and size are checked.

    ``encodings`` lists the content codings the endpoint takes (``identity`` for none). A
    gzip body is returned decompressed, within the same limit; a snappy one as sent, for the
    remote write reader, which checks the length the block declares before decompressing.
    """
    media_type, _ = media_type_of(request)
    if media_type not in media_types:
        raise UnsupportedMediaType(
            media_type,
            detail=f"Content-Type {media_type or '(none)'!r} is not taken here: "
            f"send {' or '.join(sorted(media_types))}.",
        )
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower() or IDENTITY
    if encoding not in encodings:
        raise UnsupportedMediaType(
            media_type,
            detail=f"Content-Encoding {encoding!r} is not taken here: "
            f"send {' or '.join(sorted(encodings))}.",
        )
    limit: int = settings.PUSH_MAX_BODY_BYTES
    length = request.META.get("CONTENT_LENGTH", "")
    if not length.isdigit():
        raise LengthRequired()
    if int(length) > limit:
        raise PayloadTooLarge(f"The body is {int(length)} bytes, over the limit of {limit}.")
    body = request.body
    return gunzip(body, limit) if encoding == GZIP else body


def gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body decompressed, refused as soon as it passes ``limit`` bytes (a gzip bomb
    costs at most ``limit`` bytes of memory)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as stream:
            data = stream.read(limit + 1)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise ParseError(f"The body is not valid gzip: {error}.") from None
    if len(data) > limit:
        raise PayloadTooLarge(f"The body is over the limit of {limit} bytes once decompressed.")
    return data


def read_remote_write(request: HttpRequest) -> remote_write.WriteBatch:
    """A Prometheus remote write 1.0 request's series, or the API error that refuses it."""
    media_type, parameters = media_type_of(request)
    proto = parameters.get("proto", REMOTE_WRITE_PROTO)
    if proto != REMOTE_WRITE_PROTO:
        raise UnsupportedMediaType(
            media_type,
            detail=f"Remote write message {proto!r} is not taken here: only remote write 1.0 "
            f"({REMOTE_WRITE_PROTO}).",
        )
    body = read_body(request, media_types={REMOTE_WRITE_MEDIA_TYPE}, encodings={SNAPPY})
    try:
        return remote_write.decode(body, max_bytes=settings.PUSH_MAX_BODY_BYTES)
    except remote_write.DeclaredLengthError as error:
        raise PayloadTooLarge(str(error)) from None
    except remote_write.RemoteWriteError as error:
        raise ParseError(str(error)) from None
