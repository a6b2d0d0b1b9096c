-- The audit read models, projected from the audit stream (SG_AUDIT) by the
-- projector's audit consumer. They live in their own schema, `audit`,
-- because they are not rebuilt from the event stream: a rebuild swaps the
-- `projection` schema and must leave these alone. (Every schema's
-- migrations create them "if not exists", so they are made once.)
create schema if not exists audit;

-- audit.position: how far the audit consumer has applied SG_AUDIT, written
-- in the same transaction as the rows, like projector_position.
create table if not exists audit.position (
    consumer   text primary key,
    stream_seq bigint not null
);

-- audit.access_event: every child-level read and every refusal of one
-- (principal, acting user, purpose, endpoint, time, outcome), for
-- `GET /v1/children/{child}/access-log`. No personal data of the child:
-- an id and who looked.
create table if not exists audit.access_event (
    stream_seq  bigint primary key,
    id          uuid not null unique,
    child_id    uuid,
    principal   text not null,
    acting_user text,
    purpose     text,
    endpoint    text not null,
    at          timestamptz not null,
    outcome     text not null check (outcome in ('allowed', 'refused'))
);
create index if not exists access_event_by_child on audit.access_event (child_id, at);

-- audit.erased_child: children whose data key has been erased. The
-- identifier index refuses rows for them (a projector holding a key from
-- before the erasure must not write digests after it).
create table if not exists audit.erased_child (
    child_id    uuid primary key,
    stream_seq  bigint not null,
    principal   text not null,
    acting_user text,
    at          timestamptz not null
);

-- audit.checkpoint: the signed checkpoints the gateway published, as
-- published (verification checks them against the stream).
create table if not exists audit.checkpoint (
    stream_seq bigint primary key,
    covers     bigint not null,
    root       text not null,
    document   jsonb not null
);
