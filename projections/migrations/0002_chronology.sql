-- chronology_entry: one line per child event, for the chronology a review
-- panel replays. The summary is written from codes and dates only (never
-- free text or a person's details), so nothing personal sits here in clear.
-- Order is decided when reading (business time, then recorded order), so an
-- event that arrives late takes its business-time place by itself.
-- A correction or retraction names the event it amends (`amends_event_id`,
-- the same publisher's id); status and the links both ways are derived when
-- reading, which is also what lets `as_of` show a record as it then stood.
create table chronology_entry (
    child_id        uuid not null,
    sequence        bigint not null,
    stream_seq      bigint not null references stored_event (stream_seq),
    event_id        text not null,
    source          text not null,
    event_type      text not null,
    occurred_at     timestamptz not null,
    business_date   date not null,
    recorded_at     timestamptz not null,
    summary         text not null,
    amends_event_id text,
    primary key (child_id, sequence)
);

create index chronology_entry_business_order on chronology_entry (child_id, occurred_at, sequence);
create index chronology_entry_amends on chronology_entry (child_id, source, amends_event_id)
    where amends_event_id is not null;
