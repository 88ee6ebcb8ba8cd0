"""GraphQL over the real app in tests: a query as a user sends it, with an API key (through a
``TestClient`` or an ``httpx.Client`` on a live server)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.keys import ADMIN_SECRET, auth


def gql(client: httpx.Client, query: str, key: str = ADMIN_SECRET, **variables: Any) -> Any:
    """The whole response body (``data`` and ``errors``); HTTP must be 200."""
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=auth(key)
    )
    assert response.status_code == 200, response.text
    return response.json()


def data(client: httpx.Client, query: str, key: str = ADMIN_SECRET, **variables: Any) -> Any:
    """``data`` of a query that must succeed."""
    body = gql(client, query, key, **variables)
    assert "errors" not in body, body["errors"]
    return body["data"]


def error(client: httpx.Client, query: str, key: str = ADMIN_SECRET, **variables: Any) -> str:
    """The first error's message of a query that must fail."""
    body = gql(client, query, key, **variables)
    assert body.get("errors"), body
    return str(body["errors"][0]["message"])
