-- Containment: one subject whose events cannot be applied must not stop
-- the read side for everyone else.
--
-- parked_subject: a subject the projector could not apply (a fold that
-- panicked, a row a constraint refused). It is recorded with the stream
-- position of the first message that failed and the error, in the same
-- transaction that moves the projector past it, so the rest of the stream
-- goes on. Parking is an alarm (safeguard_projector_parked_subjects), and
-- reads of a parked child say they are stale. `safeguard parked retry`
-- applies the waiting messages once the cause is fixed; a rebuild starts
-- from nothing and parks afresh only what still fails.
create table parked_subject (
    subject      text primary key,
    subject_kind text not null check (subject_kind in ('child', 'worker', 'council')),
    projector    text not null,
    stream_seq   bigint not null,
    error        text not null,
    parked_at    timestamptz not null default now(),
    attempts     integer not null default 1,
    retried_at   timestamptz
);

-- parked_message: every message of a parked subject from the one that
-- failed on, as stored on the stream (personal fields still sealed). They
-- wait here in stream order, so the subject's order is kept: later events
-- of a parked subject are never applied ahead of the one that failed.
-- verify counts them as the subject's copy.
create table parked_message (
    stream_seq   bigint primary key,
    subject      text not null references parked_subject (subject),
    sequence     bigint not null,
    hash         text not null,
    nats_subject text not null,
    payload      bytea not null
);
create index parked_message_by_subject on parked_message (subject, stream_seq);

-- event_copy: the Postgres copy of the stream as verification compares it:
-- every applied event, and every message waiting behind a parked subject.
create view event_copy as
    select stream_seq, subject, sequence, hash, document::text as document from stored_event
    union all
    select stream_seq, subject, sequence, hash, convert_from(payload, 'UTF8') from parked_message;

-- projector_health: what each projector last saw of the stream, written on
-- a timer whether or not it makes progress, so the query role (and anyone
-- with the database) can tell how far behind the read models are, and
-- whether the projector is alive at all (`checked_at`).
create table projector_health (
    projector   text primary key,
    position    bigint not null,
    stream_last bigint not null,
    lag         bigint not null,
    lag_seconds double precision not null,
    stalled     boolean not null,
    parked      integer not null,
    checked_at  timestamptz not null
);

-- audit.dead_letter: an audit message the audit consumer cannot apply (not
-- a record this version knows, or one the audit tables refuse), kept with
-- its reason rather than skipped or retried for ever. Counted in the
-- projector's metrics (safeguard_projector_audit_dead_letters_total).
create table if not exists audit.dead_letter (
    stream_seq   bigint primary key,
    nats_subject text not null,
    reason       text not null,
    payload      bytea not null,
    received_at  timestamptz not null default now()
);
