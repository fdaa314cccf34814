"""Routes of API version 1."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from api.views import GpuViewSet, HostViewSet, MetricListView, StatsView

app_name = "api"

router = SimpleRouter(trailing_slash=False)
router.register("gpus", GpuViewSet, basename="gpu")
router.register("hosts", HostViewSet, basename="host")

urlpatterns = [
    path("metrics", MetricListView.as_view(), name="metrics"),
    path("stats", StatsView.as_view(), name="stats"),
    *router.urls,
]
