"""Routes of API version 1."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from api.export_views import DeviceTelemetryCsvView, FleetTelemetryCsvView
from api.push_views import CsvImportView, PageImportView, RemoteWriteView
from api.views import (
    FleetLatestView,
    GpuViewSet,
    HostViewSet,
    MetricListView,
    SourceListView,
    StatsView,
)

app_name = "api"

# Path converters rather than regular expressions: a route then reads as a template
# (api/v1/gpus/<str:id>/telemetry), which is what request metrics are labelled with.
router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("gpus", GpuViewSet, basename="gpu")
router.register("hosts", HostViewSet, basename="host")

urlpatterns = [
    path("metrics", MetricListView.as_view(), name="metrics"),
    path("stats", StatsView.as_view(), name="stats"),
    path("telemetry.csv", FleetTelemetryCsvView.as_view(), name="telemetry-csv"),
    path("gpus/<str:id>/telemetry.csv", DeviceTelemetryCsvView.as_view(), name="gpu-telemetry-csv"),
    path("fleet/latest", FleetLatestView.as_view(), name="fleet-latest"),
    path("sources", SourceListView.as_view(), name="sources"),
    path("write", RemoteWriteView.as_view(), name="write"),
    path("import/csv", CsvImportView.as_view(), name="import-csv"),
    path("import/prometheus", PageImportView.as_view(), name="import-prometheus"),
    *router.urls,
]
