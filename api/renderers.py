"""A JSON renderer for large bodies: orjson writes the fleet view's 1 MB answer several times
faster than the standard library's encoder that DRF's ``JSONRenderer`` uses (docs/measurements.md,
"The fleet view")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer


class FastJSONRenderer(JSONRenderer):
    """``JSONRenderer``'s output (compact, UTF-8 unescaped) from orjson. A request for
    indentation, or data orjson cannot encode (a ``Decimal``, a lazy translation), falls back
    to ``JSONRenderer`` itself, so the answer never depends on which encoder wrote it."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        if self.get_indent(accepted_media_type or "", renderer_context or {}) is None:
            try:
                return orjson.dumps(data)
            except orjson.JSONEncodeError:
                pass
        rendered: bytes = super().render(data, accepted_media_type, renderer_context)
        return rendered
