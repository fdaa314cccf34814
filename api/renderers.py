"""A JSON renderer for large bodies: orjson writes the fleet view's megabyte several times
faster than the standard library's encoder that DRF's ``JSONRenderer`` uses, and writes a body
already encoded (an ``orjson.Fragment``) as it is (docs/measurements.md, "The fleet view")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer


class FastJSONRenderer(JSONRenderer):
    """``JSONRenderer``'s compact output (UTF-8, unescaped) from orjson, always compact: an
    encoded fragment cannot be indented. Data orjson cannot encode (a ``Decimal``, a lazy
    translation) falls back to ``JSONRenderer``."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        try:
            return orjson.dumps(data)
        except orjson.JSONEncodeError:
            rendered: bytes = super().render(data, accepted_media_type, renderer_context)
            return rendered
