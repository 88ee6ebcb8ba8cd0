"""Which instance name a recovered job is recorded under: the one its real hooks use, so a
late hook meets the same job row (one runner), never a second one."""

from __future__ import annotations

from app.runners.recover import hook_instance


def test_the_only_instance_hooks_came_from_wins_over_the_api_url() -> None:
    assert hook_instance("http://10.0.0.5:8080", {"https://gitlab.example.com"}) == (
        "https://gitlab.example.com"
    )


def test_the_instance_that_is_the_api_url_is_chosen_among_several() -> None:
    seen = {"https://other.example.org", "https://GitLab.example.com"}
    assert hook_instance("https://gitlab.example.com/api/v4/", seen) == "https://GitLab.example.com"


def test_without_history_the_api_url_is_used_without_its_api_suffix() -> None:
    assert hook_instance("https://gitlab.example.com/api/v4/", set()) == (
        "https://gitlab.example.com"
    )
    assert hook_instance(None, set()) == "gitlab"
