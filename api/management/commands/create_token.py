"""``manage.py create_token NAME [--write] [--staff]``: make an API token and print its key."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.models import ApiToken


class Command(BaseCommand):
    help = (
        "Make an API token named NAME and print its key, alone on one line: it is shown only "
        "this once. Exits 1 if NAME is taken."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who or what holds the key, e.g. prometheus-eu1")
        parser.add_argument(
            "--write",
            action="store_true",
            help="the token may also push samples (remote write, CSV and exposition imports)",
        )
        parser.add_argument(
            "--staff",
            action="store_true",
            help="the token may also read the operators' views (/api/v1/sources)",
        )

    def handle(self, *args: Any, name: str, write: bool, staff: bool, **options: Any) -> None:
        try:
            token = ApiToken.issue(name, can_write=write, is_staff=staff)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(token.new_key)
