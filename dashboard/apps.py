from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The dashboard: pages that draw the API's answers as charts, and their static files."""

    name = "dashboard"
    verbose_name = "Dashboard"
