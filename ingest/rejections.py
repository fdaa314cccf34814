"""Rejected rows counted by reason, for the reports of ``validate_csv`` and ``import_csv``.

Reasons quote the offending value ("value 'abc' is not a number"), which would give every
bad value a line of its own, so a report counts them by group: the reason without the values
it quotes. Both commands group and print with this one module, so what ``validate_csv``
reports for a file is the prediction of what ``import_csv`` reports after importing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

# The collector's reason for a row past RETENTION_DAYS, and the pattern that finds it again.
_RETENTION_REASON: Final = "timestamp is older than the {days}-day retention"
_RETENTION_GROUP = re.compile(r"^timestamp is older than the (\d+)-day retention$")

# Rules that turn a rejection reason into its group.
_REASON_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^expected (\d+) columns, found \d+$"),
        r"wrong number of columns (expected \1)",
    ),
    (re.compile(r"^(unparseable line: \w+):.*$", re.DOTALL), r"\1"),
    (re.compile(r"^gpu_id -?\d+ is out of range$"), "gpu_id is out of range"),
    (re.compile(r" (?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"), ""),
)
# Rules that turn a rejection reason into its category: the kind of fault before any detail of
# the row (a value, a field's name, a column count), so the collector's per-category counters
# (``Tally.REJECTED_REASON_PREFIX``) have a fixed set of names whatever the input says.
_CATEGORY_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^DCGM (not found|not supported|not permissioned)\b"), r"DCGM \1"),
    (re.compile(r"^DCGM blank\b"), "DCGM blank"),
    (re.compile(r"^expected \d+ columns"), "wrong number of columns"),
    (re.compile(r"^empty line$"), "empty line"),
    (re.compile(r"^line is not valid UTF-8$"), "line is not valid UTF-8"),
    (re.compile(r"^line contains a NUL byte$"), "line contains a NUL byte"),
    (re.compile(r"^malformed CSV\b"), "malformed CSV"),
    (re.compile(r"^unparseable line\b"), "unparseable line"),
    (re.compile(r"^value .* is not a number$", re.DOTALL), "value is not a number"),
    (re.compile(r"^value .* is not finite$", re.DOTALL), "value is not finite"),
    (re.compile(r"^value .* is out of range$", re.DOTALL), "value is out of range"),
    (re.compile(r"^timestamp .* is not an RFC 3339 time$", re.DOTALL), "timestamp is not RFC 3339"),
    (re.compile(r"^timestamp .* has no time zone$", re.DOTALL), "timestamp has no time zone"),
    (re.compile(r"^timestamp .* is outside the years", re.DOTALL), "timestamp is out of range"),
    (re.compile(r"^timestamp is older than the \d+-day retention$"), "timestamp is past retention"),
    (re.compile(r"^timestamp .* minutes ahead of", re.DOTALL), "timestamp is in the future"),
    (re.compile(r"^\w+ is longer than \d+ characters$"), "a field is too long"),
    (re.compile(r"^(uuid|metric_name) is empty$"), r"\1 is empty"),
    (re.compile(r"^uuid .* contains", re.DOTALL), "uuid contains the instance separator"),
    (re.compile(r"^\w+ .* is not an integer$", re.DOTALL), "a number field is not an integer"),
    (re.compile(r"^\w+ -?\d+ is out of range$"), "a number field is out of range"),
    (re.compile(r"^the series has no (UUID|gpu) label$"), r"the series has no \1 label"),
    (re.compile(r" is not the value of the \w+ "), "not the value of its family"),
)
OTHER_CATEGORY: Final = "other"

# Distinct groups kept; hostile input cannot grow a report past this.
MAX_REASON_GROUPS: Final = 100
OTHER_REASONS: Final = "other reasons (more distinct reasons than the report lists)"


def retention_reason(days: int) -> str:
    """Why a row older than a ``days``-day retention window is rejected."""
    return _RETENTION_REASON.format(days=days)


def reason_group(reason: str) -> str:
    """The group a rejection reason is counted under, without the values it quotes."""
    for pattern, replacement in _REASON_RULES:
        reason = pattern.sub(replacement, reason)
    return reason


def reason_category(reason: str) -> str:
    """The category a rejection is counted under: one of a fixed set of names."""
    for pattern, replacement in _CATEGORY_RULES:
        match = pattern.search(reason)
        if match:
            return match.expand(replacement)
    return OTHER_CATEGORY


@dataclass
class ReasonCount:
    count: int
    example_line: int  # the first line rejected for it


@dataclass
class ReasonTally:
    """Rejections counted by group, with the first line of each."""

    groups: dict[str, ReasonCount] = field(default_factory=dict)

    def add(self, reason: str, line_number: int, count: int = 1) -> None:
        group = reason_group(reason)
        if group not in self.groups and len(self.groups) >= MAX_REASON_GROUPS:
            group = OTHER_REASONS
        counted = self.groups.get(group)
        if counted is None:
            self.groups[group] = ReasonCount(count, line_number)
        else:
            counted.count += count
            counted.example_line = min(counted.example_line, line_number)

    def report_lines(self, limit: int | None = None) -> list[str]:
        """One line a group, the most frequent first, then a note on past-retention rows."""
        by_count = sorted(self.groups.items(), key=lambda item: (-item[1].count, item[0]))
        shown = by_count if limit is None else by_count[:limit]
        lines = [
            f"  {counted.count:>10}  {group} (e.g. line {counted.example_line})"
            for group, counted in shown
        ]
        if len(by_count) > len(shown):
            hidden = sum(counted.count for _, counted in by_count[len(shown) :])
            lines.append(f"  {hidden:>10}  for {len(by_count) - len(shown)} other reasons")
        return lines + self._retention_note()

    def _retention_note(self) -> list[str]:
        for group, counted in self.groups.items():
            match = _RETENTION_GROUP.match(group)
            if match:
                return [
                    f"{counted.count} rows are older than RETENTION_DAYS={match[1]} allows: "
                    "RETENTION_DAYS=0 keeps rows of any age (make run's var/dev.env sets it); "
                    "set it, or a wider window, where the collectors and validate_csv run"
                ]
        return []
