"""Top-level routes: the dashboard (also the site's root), the admin, the health probe, the
versioned API and its documentation, and the pipeline's own Prometheus metrics."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from api import errors
from api.permissions import docs_login_required
from api.prometheus import metrics
from api.views import HealthView

urlpatterns = [
    # The site's root, where the admin's "View site" leads too, is the dashboard.
    path("", RedirectView.as_view(pattern_name="dashboard:fleet"), name="home"),
    path("dashboard/", include("dashboard.urls")),
    path("admin/", admin.site.urls),
    path("health", HealthView.as_view(), name="health"),
    path("metrics", metrics, name="metrics"),
    path("api/v1/", include("api.urls")),
    # API_DOCS_REQUIRE_LOGIN: the schema and both documentation pages need a login.
    path("api/schema/", docs_login_required(SpectacularAPIView.as_view()), name="schema"),
    path(
        "api/docs/",
        docs_login_required(SpectacularSwaggerView.as_view(url_name="schema")),
        name="swagger-ui",
    ),
    path(
        "api/redoc/",
        docs_login_required(SpectacularRedocView.as_view(url_name="schema")),
        name="redoc",
    ),
]

# Under /api/ the errors Django answers itself are JSON too (api/errors.py).
handler400 = errors.bad_request
handler404 = errors.page_not_found
handler500 = errors.server_error
