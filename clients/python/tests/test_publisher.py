"""The publisher against a real gateway, started by the Rust suite
(``tests/tests/clients.rs``), which sets SAFEGUARD_GATEWAY_URL,
SAFEGUARD_TOKEN and SAFEGUARD_SOURCE (a Haringey publisher's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from safeguard_publisher import Publisher, Rejected, event

HARINGEY = "E09000014"
HERE = Path(__file__).resolve().parent


@pytest.fixture
def publisher() -> Publisher:
    return Publisher(os.environ["SAFEGUARD_GATEWAY_URL"], os.environ["SAFEGUARD_TOKEN"])


def source() -> str:
    return os.environ["SAFEGUARD_SOURCE"]


def registration(child: str, **extensions):
    return event(
        "child.registered",
        child,
        {
            "council": HARINGEY, "la_child_id": "HAR" + child[:6], "sex": "F", "birth_date": "2022-04-01",
            "ethnicity": "WBRI", "disabilities": ["NONE"],
            "person": {"given_name": "Sam", "family_name": "Example"},
        },
        source=source(),
        time=datetime(2025, 1, 14, 9, 30, tzinfo=timezone.utc),
        **extensions,
    )


def visit(child: str, **extensions):
    return event(
        "child.seen",
        child,
        {"seen_by": str(uuid.uuid4()), "seen_alone": True, "context": "statutory_visit",
         "agency": "Haringey children's services"},
        source=source(),
        **extensions,
    )


def test_structured_binary_and_batch_modes_are_all_stored(publisher: Publisher) -> None:
    child = str(uuid.uuid4())
    first = publisher.publish(registration(child))
    assert (first.subject, first.sequence, first.duplicate) == (child, 1, False)
    # Binary mode: attributes as ce-* headers (a boolean and a number among
    # them), the data as the body, the W3C trace context beside them.
    second = publisher.publish_binary(
        visit(child, significant=True, expectedsequence=1,
              traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    )
    assert (second.sequence, second.duplicate) == (2, False)
    batch = publisher.publish_batch([visit(child), visit(child, authorrole="social_worker")])
    assert [s.sequence for s in batch] == [3, 4]
    assert batch[1].stream_sequence > batch[0].stream_sequence


def test_sending_an_event_again_with_its_id_stores_it_once(publisher: Publisher) -> None:
    child = str(uuid.uuid4())
    ce = registration(child, id=f"reg-{child}")
    stored = publisher.publish(ce)
    again = publisher.publish_binary(ce)
    assert again.duplicate and (again.stream_sequence, again.hash) == (stored.stream_sequence, stored.hash)


def test_a_refused_event_names_its_field_in_every_mode(publisher: Publisher) -> None:
    child = str(uuid.uuid4())
    bad = event("child.registered", child, {"council": "nowhere"}, source=source())
    for send in (publisher.publish, publisher.publish_binary, lambda e: publisher.publish_batch([e])):
        with pytest.raises(Rejected) as refused:
            send(bad)
        assert refused.value.status == 422
        pointers = {e["pointer"] for e in refused.value.errors}
        assert "/data/council" in pointers, refused.value


def test_the_outbox_sends_what_waits_and_stops_at_nothing_it_can_retry(tmp_path: Path) -> None:
    # Queued events are sent in one flush; running it again sends nothing twice.
    child = str(uuid.uuid4())
    outbox = tmp_path / "outbox.db"
    for ce in (registration(child, id=f"reg-{child}"), visit(child, id=f"visit-{child}")):
        path = tmp_path / f"{ce.get_id()}.json"
        path.write_bytes(publisher_format(ce))
        run_outbox(outbox, "add", str(path))
    summary = json.loads(run_outbox(outbox, "flush").stdout)
    assert (summary["stored"], summary["waiting"], summary["refused"]) == (2, 0, 0), summary
    summary = json.loads(run_outbox(outbox, "flush").stdout)
    assert summary["stored"] == 0, summary


def publisher_format(ce) -> bytes:
    from cloudevents.core.formats.json import JSONFormat

    return JSONFormat().write(ce)


def run_outbox(outbox: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    done = subprocess.run(
        [sys.executable, str(HERE.parent / "examples" / "outbox.py"), str(outbox), *args],
        env=env, capture_output=True, text=True, check=False,
    )
    assert done.returncode == expect, done.stderr + done.stdout
    return done
