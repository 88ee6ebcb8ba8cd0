"""A real HTTP front for moto's EC2 that answers some RunInstances calls with the errors AWS
gives when a subnet or an availability zone is out of capacity.

moto never runs out of capacity or addresses, so this proxy stands where AWS would refuse: a
RunInstances whose ``SubnetId`` (or ``InstanceType``) is listed gets EC2's Query-API error
document (HTTP 400, ``<Response><Errors><Error><Code>…``), which botocore parses into the same
``ClientError`` as AWS's; every other request is passed to moto unchanged.

    with Ec2Faults(moto_url) as faults:
        faults.refuse["subnet-1"] = ("InsufficientFreeAddressesInSubnet", "There are not …")
        ec2 = boto3.client("ec2", endpoint_url=faults.url)
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import httpx

ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
    "<Message>{message}</Message></Error></Errors><RequestID>{request}</RequestID></Response>"
)


class Ec2Faults:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.refuse: dict[str, tuple[str, str]] = {}  # subnet id or instance type → error
        self.refused: list[str] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Ec2Faults:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def fault(self, form: dict[str, list[str]]) -> tuple[str, str] | None:
        if form.get("Action") != ["RunInstances"]:
            return None
        with self.lock:
            for key in (*form.get("SubnetId", []), *form.get("InstanceType", [])):
                if key in self.refuse:
                    self.refused.append(key)
                    return self.refuse[key]
        return None


def _handler(faults: Ec2Faults) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            refused = faults.fault(parse_qs(body.decode()))
            if refused is not None:
                data = ERROR.format(code=refused[0], message=refused[1], request="fault-1")
                self._send(400, {"Content-Type": "text/xml"}, data.encode())
                return
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
            }
            answer = httpx.post(f"{faults.upstream}{self.path}", content=body, headers=headers)
            self._send(
                answer.status_code,
                {"Content-Type": answer.headers.get("Content-Type", "text/xml")},
                answer.content,
            )

        def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
