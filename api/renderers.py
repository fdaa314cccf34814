"""The API's JSON renderer: orjson, several times faster than the standard library's encoder
that DRF's ``JSONRenderer`` uses (a fifth of the fleet view's request; a tenth of a telemetry
page's), and able to write a body already encoded (an ``orjson.Fragment``) as it is
(docs/measurements.md, "The fleet view")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

# Times, decimals, lazy translations and the rest orjson has no (or another) way of writing
# are written as DRF's encoder writes them: a time in UTC ends in "Z", as DRF's does.
_DRF_DEFAULT: Final = JSONEncoder().default
_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME


class FastJSONRenderer(JSONRenderer):
    """``JSONRenderer``'s compact output (UTF-8, unescaped) from orjson, always compact: an
    encoded fragment cannot be indented. A float that is not a number (NaN) is written as
    null, where DRF's encoder would refuse the whole body."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        try:
            return orjson.dumps(data, default=_DRF_DEFAULT, option=_OPTIONS)
        except orjson.JSONEncodeError:  # an integer beyond 64 bits, a cycle
            rendered: bytes = super().render(data, accepted_media_type, renderer_context)
            return rendered
