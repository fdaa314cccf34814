"""Routes of the dashboard's pages."""

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.fleet, name="fleet"),
    # A MIG instance's id holds a colon (<uuid>:<GPU instance id>), which <str:> accepts.
    path("gpus/<str:device_id>/", views.gpu, name="gpu"),
    path("pipeline/", views.pipeline, name="pipeline"),
]
