-- The projector's own bookkeeping and the second durable copy of every
-- stored event.

-- stored_event: every event exactly as it is on the stream (personal fields
-- still sealed), keyed by stream position. The chronology reads it, and
-- verification compares it with the stream (copy_mismatch). Rows are
-- inserted once and never updated or deleted: like the stream, this table
-- only grows. The unique keys restate the stream's own guarantees, so a
-- projector bug that applied an event twice fails loudly instead of
-- doubling a fact.
create table stored_event (
    stream_seq    bigint primary key,
    subject       text not null,
    subject_kind  text not null check (subject_kind in ('child', 'worker', 'council')),
    sequence      bigint not null check (sequence >= 1),
    event_id      text not null,
    source        text not null,
    event_type    text not null,
    occurred_at   timestamptz not null,
    -- The Europe/London date of occurred_at: every day-based rule uses it.
    business_date date not null,
    recorded_at   timestamptz not null,
    hash          text not null,
    document      jsonb not null,
    unique (subject, sequence),
    unique (source, event_id)
);

-- projector_position: how far each projector has applied the stream. It is
-- written in the same transaction as the rows a batch produces, so after a
-- crash the position and the read models can never disagree.
create table projector_position (
    projector  text primary key,
    stream_seq bigint not null,
    updated_at timestamptz not null default now()
);

-- dead_letter: a message the projector could not decode. Kept with its
-- position and the reason so nothing is silently dropped, and counted in
-- the projector's metrics. The payload is kept as stored (sealed).
create table dead_letter (
    stream_seq   bigint primary key,
    nats_subject text not null,
    reason       text not null,
    payload      bytea not null,
    received_at  timestamptz not null default now()
);
