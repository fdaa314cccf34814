"""API tokens: named keys that let a client read the API, and, when allowed, write to it."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

# 256 random bits: a key cannot be guessed, so one SHA-256 (no salt, no slow hash) is enough
# to keep the stored form useless to whoever reads the table.
KEY_BYTES = 32
# ``last_used`` is refreshed at most this often, so a busy client does not write a row per
# request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
NAME_TAKEN = "A token with this name already exists."


def hash_key(key: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """A client's key to the API, named for who holds it.

    Only the key's SHA-256 is stored: the key itself is shown once, when the token is made
    (``manage.py create_token`` or the admin), and cannot be read back. Any token may read
    the API when ``API_REQUIRE_TOKEN`` is on; only a token with ``can_write`` may push data.

    An authenticated request carries its token as both ``request.user`` and ``request.auth``
    (tokens belong to no user account), hence ``is_authenticated``.
    """

    # As long as a user name, which a token carried over from the previous scheme is named for.
    name = models.CharField(
        max_length=150,
        unique=True,
        error_messages={"unique": NAME_TAKEN},
        help_text="Who or what holds the key, e.g. prometheus-eu1.",
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    can_write = models.BooleanField(
        default=False,
        help_text="May push samples (remote write, CSV and exposition imports); "
        "without it the token can only read.",
    )
    # Named as Django's users name it, so DRF's IsAdminUser reads a token and a staff user alike.
    is_staff = models.BooleanField(
        default=False,
        verbose_name="staff",
        help_text="May read the operators' views (/api/v1/sources: sources, queue, rejections), "
        "as a staff user signed in to the admin may.",
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    is_authenticated = True
    # The key of a token made in this process, never stored: empty on a token read back.
    new_key = ""

    class Meta:
        verbose_name = "token"
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def assign_new_key(self) -> str:
        """Give the token a fresh random key, keep its hash, and return the key."""
        self.new_key = secrets.token_urlsafe(KEY_BYTES)
        self.key_hash = hash_key(self.new_key)
        return self.new_key

    @classmethod
    def issue(cls, name: str, *, can_write: bool, is_staff: bool = False) -> ApiToken:
        """Make and save a token named ``name``; its key is in ``new_key``.

        Raises ``ValidationError`` for a name that is empty, too long or taken, including
        one taken by a concurrent call between the check and the insert.
        """
        token = cls(name=name, can_write=can_write, is_staff=is_staff)
        token.assign_new_key()
        token.full_clean()
        try:
            with transaction.atomic():
                token.save()
        except IntegrityError:
            raise ValidationError({"name": [NAME_TAKEN]}) from None
        return token

    @classmethod
    def for_key(cls, key: str) -> ApiToken | None:
        """The token whose key this is, or None; notes when it was last used."""
        token = cls.objects.filter(key_hash=hash_key(key)).first()
        if token is not None:
            now = timezone.now()
            if token.last_used is None or now - token.last_used >= LAST_USED_RESOLUTION:
                token.last_used = now
                cls.objects.filter(pk=token.pk).update(last_used=now)
        return token
