"""``arn:aws:states:::http:invoke``: call an HTTP(S) API (Step Functions' HTTP Task).

Parameters as on AWS: ``ApiEndpoint``, ``Method``, ``Headers``, ``QueryParameters``,
``RequestBody`` (an object is sent as JSON, or form-encoded with
``Transform.RequestBodyEncoding: URL_ENCODED``). The result is
``{"StatusCode", "StatusText", "Headers": {name: [values]}, "ResponseBody"}`` with a JSON body
parsed. A non-2xx answer fails the task with ``States.Http.StatusCode.<code>`` (the cause is that
result as JSON); a connection failure or timeout with ``States.Http.Socket``.

Every call goes through the egress policy (:mod:`app.egress`, ``SMOKEHOUSE_EGRESS_*``): a
destination it refuses (loopback, link-local, private, metadata, smokehouse's own ports... on
any redirect hop) fails the task with ``States.Http.Socket`` and a cause that starts with
``egress refused:`` and names the range, before any connection is made. The call has a total
deadline (the state's ``TimeoutSeconds``, at most ``SMOKEHOUSE_EGRESS_TIMEOUT_SECONDS``), and
reading stops at 256 KiB (the state payload quota; ``States.DataLimitExceeded``) or
``SMOKEHOUSE_EGRESS_MAX_RESPONSE_BYTES`` if lower. Redirects are returned as they are (a 3xx
fails the task) unless ``SMOKEHOUSE_EGRESS_MAX_REDIRECTS`` allows following them.

``Authentication.ConnectionArn`` is accepted and not required: smokehouse does not yet apply an
EventBridge connection's credentials here, so put what the API needs in ``Headers``.
"""

from __future__ import annotations

import contextlib
import json
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import httpx

from app.egress import (
    EgressError,
    EgressRefused,
    EgressTimeout,
    EgressTooLarge,
    Response,
    policy_for,
    request,
)
from app.workflows.asl import TaskError
from app.workflows.resources.base import TaskCall

RESOURCE = "arn:aws:states:::http:invoke"
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"})
DEFAULT_TIMEOUT = 60.0
MAX_RESPONSE = 256 * 1024


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _query(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise TaskError("States.Runtime", "QueryParameters must be an object")
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        for one in item if isinstance(item, list) else [item]:
            pairs.append((key, one if isinstance(one, str) else _text(one)))
    return pairs


def _request(params: dict[str, Any]) -> tuple[str, str, dict[str, str], bytes | None]:
    url, method = params.get("ApiEndpoint"), params.get("Method")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise TaskError("States.Runtime", "ApiEndpoint must be an http(s) URL")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise TaskError("States.Runtime", f"Method must be one of {', '.join(sorted(METHODS))}")
    headers = params.get("Headers") or {}
    if not isinstance(headers, dict):
        raise TaskError("States.Runtime", "Headers must be an object")
    headers = {str(k): _text(v) for k, v in headers.items()}
    body = params.get("RequestBody")
    content: bytes | None = None
    if body is not None:
        transform = params.get("Transform") or {}
        if transform.get("RequestBodyEncoding") == "URL_ENCODED" and isinstance(body, dict):
            content = urlencode(_query(body)).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        else:
            content = body.encode() if isinstance(body, str) else _text(body).encode()
            if not isinstance(body, str):
                headers.setdefault("Content-Type", "application/json; charset=UTF-8")
    query = _query(params.get("QueryParameters"))
    if query:
        url = f"{url}{'&' if '?' in url else '?'}{urlencode(query)}"
    return method.upper(), url, headers, content


def _result(response: Response) -> dict[str, Any]:
    headers: dict[str, list[str]] = {}
    for name, value in response.headers.multi_items():
        headers.setdefault(name, []).append(value)
    body: Any = response.text
    if "json" in response.headers.get("content-type", ""):
        with contextlib.suppress(ValueError):
            body = json.loads(response.text)
    try:
        status_text = HTTPStatus(response.status_code).phrase
    except ValueError:
        status_text = response.reason_phrase
    return {
        "StatusCode": response.status_code,
        "StatusText": status_text,
        "Headers": headers,
        "ResponseBody": body,
    }


class HttpResource:
    kind = "http"
    transactional = False

    def accepts(self, base: str) -> bool:
        return base == RESOURCE

    def problem(self, base: str) -> str | None:
        return None

    def run(self, call: TaskCall) -> Any:
        if not isinstance(call.parameters, dict):
            raise TaskError("States.Runtime", "the parameters of an HTTP Task must be an object")
        method, url, headers, content = _request(call.parameters)
        timeout = float(call.timeout_seconds or DEFAULT_TIMEOUT)
        try:
            response = request(
                policy_for(call.settings),
                method,
                url,
                headers=headers,
                content=content,
                timeout=timeout,
                max_bytes=MAX_RESPONSE,
            )
        except EgressTooLarge:
            raise TaskError(
                "States.DataLimitExceeded", "The HTTP response exceeds the payload size quota"
            ) from None
        except (EgressRefused, EgressTimeout) as exc:
            raise TaskError("States.Http.Socket", str(exc)) from None
        except (EgressError, httpx.HTTPError) as exc:
            raise TaskError("States.Http.Socket", f"{type(exc).__name__}: {exc}") from None
        result = _result(response)
        if not 200 <= response.status_code < 300:
            raise TaskError(f"States.Http.StatusCode.{response.status_code}", json.dumps(result))
        return result
