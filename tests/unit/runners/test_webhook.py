"""The webhook's pure checks: tokens compared in constant time against every configured one,
the dedupe key, and payload validation with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.runners.settings import webhook_tokens
from app.runners.webhook import WebhookRejected, dedupe_key, parse_payload, token_matches


def test_any_configured_token_matches() -> None:
    tokens = ["alpha", "beta"]
    assert token_matches("alpha", tokens)
    assert token_matches("beta", tokens)
    assert not token_matches("gamma", tokens)
    assert not token_matches("", tokens)
    assert not token_matches(None, tokens)
    assert not token_matches("alpha", [])


@given(st.text(min_size=1), st.lists(st.text(min_size=1), max_size=4))
def test_token_matches_exactly_membership(given_token: str, tokens: list[str]) -> None:
    assert token_matches(given_token, tokens) == (given_token in tokens)


def test_tokens_from_settings(settings_factory: object) -> None:
    make = settings_factory  # type: ignore[assignment]
    assert webhook_tokens(make()) == []  # type: ignore[operator]
    one, two = "one-5Rt8Km2Xw6Qd3Lz9VbPe", "two-1Hn4Pc7Ys2Gf9Wk6JmUo"
    assert webhook_tokens(make(gitlab_webhook_token=one)) == [one]  # type: ignore[operator]
    both = make(gitlab_webhook_token=f" {one}, {two} ,")  # type: ignore[operator]
    assert webhook_tokens(both) == [one, two]


def test_dedupe_key_prefers_idempotency_key_and_names_the_instance() -> None:
    assert dedupe_key({"idempotency-key": "k", "x-gitlab-event-uuid": "u"}) == "gitlab|k"
    assert dedupe_key({"x-gitlab-event-uuid": "u", "x-gitlab-instance": "https://gl"}) == (
        "https://gl|u"
    )
    assert dedupe_key({}) is None
    assert len(dedupe_key({"idempotency-key": "k" * 1000}) or "") == 255


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1]", "JSON object"),
        (b"{}", "object_kind"),
        (b'{"object_kind": 3}', "object_kind"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRejected) as raised:
        parse_payload(body)
    assert raised.value.status == 400
    assert reason in raised.value.reason


def test_a_job_hook_is_accepted() -> None:
    assert parse_payload(b'{"object_kind": "build", "build_id": 1}')["build_id"] == 1
