"""Lists of numbers sent to PostgreSQL as one array literal each (``'{1,2,3}'``).

psycopg2 adapts a Python list as an ``ARRAY[...]`` constructor, quoting every element on the
client, and the server then parses and type-checks that constructor as an expression of one
constant per element. For the thousands of numbers a chunk's read-model and counter statements
carry, that round of quoting and parsing cost more than the statements' writes (docs/design.md,
"Read model"). An array literal is one string the client joins and the server reads with the
element type's input function; the statement casts it (``%s::integer[]``).
"""

from __future__ import annotations

from collections.abc import Iterable


def array_literal(numbers: Iterable[int] | Iterable[float]) -> str:
    """The numbers as an array literal; repr is the shortest text that reads back as the same
    double (as in the sample COPY), and ``nan``/``inf`` are read by float8's input too."""
    return "{" + ",".join(map(repr, numbers)) + "}"
