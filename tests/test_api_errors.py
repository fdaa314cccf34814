"""The errors Django answers itself are JSON under /api/ and Django's pages elsewhere."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory

from api.errors import server_error


@pytest.mark.django_db
def test_a_path_no_api_route_matches_is_a_json_404_naming_it(client: Client) -> None:
    response = client.get("/api/v1/none-such")

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"detail": "no API endpoint at /api/v1/none-such"}


@pytest.mark.django_db
def test_a_host_the_server_does_not_answer_to_is_a_json_400_under_the_api_only(
    client: Client,
) -> None:
    api = client.get("/api/v1/stats", headers={"host": "="})
    admin = client.get("/admin/login/", headers={"host": "="})

    assert api.status_code == admin.status_code == 400
    assert api.json() == {"detail": "the Host header names a host this server does not answer to"}
    assert admin.headers["Content-Type"].startswith("text/html")


@pytest.mark.unit
def test_an_uncaught_exception_under_the_api_is_a_json_500() -> None:
    response = server_error(RequestFactory().get("/api/v1/stats"))

    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/json"
