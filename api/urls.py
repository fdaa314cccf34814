from django.urls import path

from api.views import StatsView

app_name = "api"

urlpatterns = [
    path("stats", StatsView.as_view(), name="stats"),
]
