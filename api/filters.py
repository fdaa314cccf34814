"""Filters of the list endpoints."""

from __future__ import annotations

import django_filters

from ingest.models import Gpu


class GpuFilter(django_filters.FilterSet):
    hostname = django_filters.CharFilter(field_name="hostname", help_text="Exact host name.")
    model = django_filters.CharFilter(field_name="model_name", help_text="Exact GPU model name.")

    class Meta:
        model = Gpu
        fields = ["hostname", "model"]


class HostFilter(django_filters.FilterSet):
    model = django_filters.CharFilter(
        field_name="model_name", help_text="Only hosts with GPUs of this model."
    )

    class Meta:
        model = Gpu
        fields = ["model"]
