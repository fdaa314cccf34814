"""Query strings of the API with a control character are refused before any view reads them.

No parameter of the API has a use for a control character (NUL, a newline, an escape, DEL,
the C1 range), and some parsers stop at one: a time that was clean up to a NUL would be
answered as if the rest were not there. One check here covers every parameter, name or value,
of every endpoint under ``/api/``, including those added later; it answers in the API's 400
form, naming the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/"
# Unicode's control characters (category Cc): C0, DEL and C1.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class RefuseControlCharacters:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            errors = control_character_errors(request)
            if errors:
                return JsonResponse(errors, status=400)
        return self.get_response(request)


def control_character_errors(request: HttpRequest) -> dict[str, list[str]]:
    """``{parameter: [message]}`` for each query parameter holding a control character."""
    errors: dict[str, list[str]] = {}
    for name, values in request.GET.lists():
        for text in (name, *values):
            found = CONTROL_CHARACTER.search(text)
            if found:
                errors[name] = [
                    f"This parameter holds a control character (U+{ord(found.group()):04X}), "
                    "which no parameter accepts."
                ]
                break
    return errors
