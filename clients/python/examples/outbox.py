"""The outbox pattern: an agency system records what it must publish in its
own database, in the same transaction as its own change, and a sender
publishes from there. Nothing is lost if the gateway is down or an answer
never comes: the sender sends the same events again, with the same ids,
until the gateway stores them (or says they are stored: ``duplicate``).
Only a 422 stops an event: it needs a person to correct it.

Here the outbox is a SQLite table. Run it as:

    python outbox.py OUTBOX.db add EVENT.json      # queue an event (a CloudEvent as JSON)
    python outbox.py OUTBOX.db flush               # send what waits; prints a JSON summary

with SAFEGUARD_GATEWAY_URL and SAFEGUARD_TOKEN set. ``flush`` exits 0 when
nothing waits any more, 75 (EX_TEMPFAIL) when the gateway was unavailable
and events still wait, 65 (EX_DATAERR) when the gateway refused some, and 1 when it refused the
sender itself (its token or role), which a person must look at.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from datetime import datetime

from safeguard_publisher import Publisher, Rejected, Unavailable, event


def open_outbox(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute(
        "create table if not exists outbox ("
        " seq integer primary key autoincrement,"
        " id text not null unique,"
        " body text not null,"
        " state text not null default 'waiting',"  # waiting, stored, refused
        " stream_sequence integer, problem text)"
    )
    return db


def add(db: sqlite3.Connection, ce: dict) -> None:
    # In an agency system this insert shares the transaction of the change it reports.
    with db:
        db.execute("insert or ignore into outbox (id, body) values (?, ?)", (ce["id"], json.dumps(ce)))


def flush(db: sqlite3.Connection, publisher: Publisher, batch: int = 100) -> dict:
    summary = {"stored": 0, "refused": 0, "waiting": 0, "unavailable": None, "stopped": None}
    while True:
        rows = db.execute(
            "select seq, body from outbox where state = 'waiting' order by seq limit ?", (batch,)
        ).fetchall()
        if not rows:
            break
        events = []
        for _, body in rows:
            raw = json.loads(body)
            attributes = {k: v for k, v in raw.items() if k not in ("data", "specversion", "id", "type", "source", "subject", "time")}
            events.append(
                event(
                    raw["type"], raw["subject"], raw["data"], source=raw["source"], id=raw["id"],
                    time=datetime.fromisoformat(raw["time"].replace("Z", "+00:00")), **attributes,
                )
            )
        try:
            stored = publisher.publish_batch(events)
        except Unavailable as e:
            # The same events, the same ids, next time.
            summary["unavailable"] = e.detail
            break
        except Rejected as e:
            if e.status != 422:
                # Not the events' fault (a token refused, a principal without
                # the role): nothing is marked, and a person must look.
                summary["stopped"] = str(e)
                break
            # A batch is stored whole or not at all: mark the events at fault,
            # then send the rest again.
            faulty = {err.get("index") for err in e.errors if err.get("index") is not None}
            if not faulty:
                faulty = set(range(len(rows)))
            with db:
                for i, (seq, _) in enumerate(rows):
                    if i in faulty:
                        problem = [err for err in e.errors if err.get("index") == i] or e.detail
                        db.execute("update outbox set state = 'refused', problem = ? where seq = ?", (json.dumps(problem), seq))
            summary["refused"] += len(faulty)
            continue
        with db:
            for (seq, _), s in zip(rows, stored):
                db.execute("update outbox set state = 'stored', stream_sequence = ? where seq = ?", (s.stream_sequence, seq))
        summary["stored"] += len(stored)
    summary["waiting"] = db.execute("select count(*) from outbox where state = 'waiting'").fetchone()[0]
    return summary


def main(argv: list[str]) -> int:
    db = open_outbox(argv[1])
    if argv[2] == "add":
        with open(argv[3], encoding="utf-8") as f:
            add(db, json.load(f))
        return 0
    publisher = Publisher(os.environ["SAFEGUARD_GATEWAY_URL"], os.environ["SAFEGUARD_TOKEN"])
    summary = flush(db, publisher)
    print(json.dumps(summary))
    if summary["stopped"]:
        return 1
    if summary["refused"]:
        return 65
    return 75 if summary["waiting"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
