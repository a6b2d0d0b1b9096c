"""Publishing child-protection events to a Safeguard gateway.

Events are CloudEvents 1.0 built with the official CloudEvents SDK
(``cloudevents.core``) and sent in any of the three ways the gateway takes:

* structured: one event as ``application/cloudevents+json``;
* binary: the attributes as ``ce-*`` headers and the data as the body, as
  several SDKs, Knative and Dapr send by default;
* batch: up to 1,000 events as ``application/cloudevents-batch+json``,
  stored all together or not at all.

A 201 means every event of the request is on disk. Sending an event again
with the same ``id`` is safe however late: the gateway answers with the
stored original (``duplicate: true``), so after a 503 or a lost connection
the right thing is to send the same events again, unchanged (see
``examples/outbox.py``). A 422 names each field at fault and stores nothing.

Only the standard library is used for HTTP, so the client runs wherever
Python and the CloudEvents SDK do.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

__all__ = ["Publisher", "Stored", "Rejected", "Unavailable", "event"]

BATCH_LIMIT = 1000


@dataclass(frozen=True)
class Stored:
    """Where the gateway stored one event."""

    id: str
    subject: str
    sequence: int
    stream_sequence: int
    recorded_at: str
    hash: str
    duplicate: bool


@dataclass
class Rejected(Exception):
    """The gateway refused the request (4xx): nothing was stored.

    ``errors`` holds the problem's per-event errors (``index``, ``pointer``,
    ``message``), ``detail`` its summary.
    """

    status: int
    detail: str
    errors: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        fields = "; ".join(f"event {e.get('index')}: {e.get('pointer')}: {e.get('message')}" for e in self.errors)
        return f"{self.status}: {self.detail}" + (f" ({fields})" if fields else "")


@dataclass
class Unavailable(Exception):
    """The gateway could not store the request now (503, or no answer).

    Some events may be stored already (``known_stored``, from the problem's
    ``stored``); send the same events again, with the same ids, later.
    """

    detail: str
    known_stored: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"unavailable: {self.detail}"


def event(
    type: str,
    subject: str,
    data: dict[str, Any],
    *,
    source: str,
    id: str | None = None,
    time: datetime | None = None,
    **extensions: Any,
) -> CloudEvent:
    """A CloudEvent of the Safeguard catalogue (``docs/data-model.md``).

    ``source`` is the publisher's principal name; ``extensions`` are the
    catalogue's optional attributes (``authorrole``, ``significant``,
    ``expectedsequence``) and the tracing extension (``traceparent``,
    ``tracestate``). Without an ``id`` the SDK makes a UUID, which must
    then be kept to send the event again.
    """
    attributes: dict[str, Any] = {
        "type": type,
        "source": source,
        "subject": subject,
        "time": time or datetime.now(timezone.utc),
        "datacontenttype": "application/json",
    }
    if id is not None:
        attributes["id"] = id
    attributes.update({k: v for k, v in extensions.items() if v is not None})
    return CloudEvent(attributes=attributes, data=data)


class Publisher:
    """Sends events to one gateway with one bearer token."""

    def __init__(self, gateway_url: str, token: str, *, timeout: float = 10.0) -> None:
        self.url = gateway_url.rstrip("/") + "/v1/events"
        self.token = token
        self.timeout = timeout
        self.format = JSONFormat()

    def publish(self, ce: CloudEvent) -> Stored:
        """One event in structured content mode."""
        message = to_structured(ce, self.format)
        return self._send(message.headers, message.body)[0]

    def publish_binary(self, ce: CloudEvent) -> Stored:
        """One event in binary content mode: ``ce-*`` headers, the data as the body."""
        message = to_binary(ce, self.format)
        return self._send(message.headers, message.body)[0]

    def publish_batch(self, events: list[CloudEvent]) -> list[Stored]:
        """Up to 1,000 events in one request, stored all together or not at all."""
        if not 0 < len(events) <= BATCH_LIMIT:
            raise ValueError(f"a batch holds 1 to {BATCH_LIMIT} events, not {len(events)}")
        body = b"[" + b",".join(self.format.write(e) for e in events) + b"]"
        return self._send({"content-type": "application/cloudevents-batch+json"}, body)

    def _send(self, headers: dict[str, str], body: bytes) -> list[Stored]:
        request = urllib.request.Request(self.url, data=body, method="POST")
        for name, value in headers.items():
            request.add_header(name, value)
        request.add_header("authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as e:
            problem = _problem(e)
            if e.code == 503:
                raise Unavailable(problem.get("detail", "503"), problem.get("stored", [])) from e
            raise Rejected(e.code, problem.get("detail", e.reason), problem.get("errors", [])) from e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            # No answer: the request may or may not have been stored.
            raise Unavailable(str(e)) from e
        return [Stored(**{k: r[k] for k in Stored.__dataclass_fields__}) for r in answer["results"]]


def _problem(error: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        return json.loads(error.read() or b"{}")
    except ValueError:
        return {}
