"""Carry the keys of DRF's token table (the previous token scheme) over as read-only tokens.

Each ``authtoken_token`` row becomes a token named for its user, with the same key (stored
hashed) and creation time, so clients of an existing deployment keep reading. The old table is
left as it is: web processes of the previous release still read it during a rolling upgrade,
and a rollback finds it. Once no such process runs it can be dropped (README, "Tokens").
"""

import hashlib
from datetime import UTC

from django.db import migrations
from django.utils import timezone

LEGACY_TABLE = "authtoken_token"


def carry_over(apps, schema_editor):
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return  # a database that never had DRF's tokens
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, created, user_id FROM authtoken_token ORDER BY created")
        rows = cursor.fetchall()
    user_model = apps.get_model("auth", "User")
    names = dict(
        user_model.objects.filter(pk__in=[user_id for _, _, user_id in rows]).values_list(
            "pk", "username"
        )
    )
    api_token = apps.get_model("api", "ApiToken")
    api_token.objects.bulk_create(
        api_token(
            name=names[user_id],
            # The hash of api.models.hash_key, frozen here as this migration's own.
            key_hash=hashlib.sha256(key.encode()).hexdigest(),
            can_write=False,
            # SQLite hands back naive times, which Django stores in UTC.
            created=timezone.make_aware(created, UTC) if timezone.is_naive(created) else created,
        )
        for key, created, user_id in rows
    )


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_api_token"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(carry_over, migrations.RunPython.noop)]
