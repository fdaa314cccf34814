"""The dashboard's pages as Django serves them: where the site's root leads, who may see
each page, and the links between the dashboard, the admin and the API docs. What the pages
draw is checked in a browser (tests/test_dashboard_browser.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

PASSWORD = "dashboard-test-password-31c9"  # noqa: S105 (a throwaway user of the test database)
ADMIN_LOGIN = "/admin/login/"


def test_the_site_root_redirects_to_the_fleet_page(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_the_fleet_page_is_open_while_the_api_needs_no_token(client: Client) -> None:
    response = client.get("/dashboard/?hostname=h1")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="fleet-page"' in page
    # The filter the URL names is in the form, so the view can be shared as a link.
    assert 'name="hostname" list="known-hosts" autocomplete="off" value="h1"' in page
    for link in ('href="/dashboard/"', 'href="/api/docs/"', 'href="/admin/"'):
        assert link in page


def test_the_gpu_page_names_its_device_for_the_script(client: Client) -> None:
    response = client.get("/dashboard/gpus/GPU-1234:7/")
    assert response.status_code == 200
    assert 'data-device="GPU-1234:7"' in response.content.decode()


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/gpus/GPU-1234/"])
def test_pages_ask_for_the_admin_login_while_the_api_needs_a_token(
    client: Client, settings: Settings, path: str
) -> None:
    settings.API_REQUIRE_TOKEN = True
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(f"{ADMIN_LOGIN}?next=")


def test_the_pipeline_page_sends_an_anonymous_visitor_to_the_admin_login(client: Client) -> None:
    response = client.get("/dashboard/pipeline/")
    assert response.status_code == 302
    assert response["Location"] == f"{ADMIN_LOGIN}?next=/dashboard/pipeline/"


@pytest.mark.django_db
def test_the_pipeline_page_refuses_a_user_who_is_not_staff(client: Client) -> None:
    user = User.objects.create_user("viewer", password=PASSWORD)
    client.force_login(user)
    response = client.get("/dashboard/pipeline/")
    assert response.status_code == 302
    assert response["Location"].startswith(ADMIN_LOGIN)


@pytest.mark.django_db
def test_staff_see_the_pipeline_page_and_its_link(client: Client) -> None:
    client.force_login(User.objects.create_user("operator", password=PASSWORD, is_staff=True))
    response = client.get("/dashboard/pipeline/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="pipeline-page"' in page
    assert 'href="/dashboard/pipeline/" aria-current="page"' in page
    assert 'href="/admin/ingest/streamsource/"' in page


@pytest.mark.django_db
def test_the_admin_links_to_the_dashboard(client: Client) -> None:
    client.force_login(User.objects.create_superuser("admin", "", PASSWORD))
    page = client.get("/admin/").content.decode()
    assert '<a class="dashboard-link" href="/dashboard/">View dashboard</a>' in page
    # "View site" leads to the site's root, which redirects to the dashboard.
    assert '<a href="/">View site</a>' in page


@pytest.mark.django_db
def test_the_login_session_reads_the_api_when_it_needs_a_token(
    client: Client, settings: Settings
) -> None:
    settings.API_REQUIRE_TOKEN = True
    assert client.get("/api/v1/stats").status_code == 401
    client.force_login(User.objects.create_user("viewer", password=PASSWORD))
    assert client.get("/dashboard/").status_code == 200
    assert client.get("/api/v1/stats").status_code == 200
