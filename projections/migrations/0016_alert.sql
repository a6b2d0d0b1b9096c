-- The alerts' settings, per council (`council.configured`): how many
-- concerns from how many agencies within how many days make a pattern, how
-- many working days an alert may wait for acknowledgement before it is
-- escalated, and how many working days before a statutory deadline the
-- worker is warned. Null takes the default (`casework::alerts`).
alter table council_setting add column if not exists pattern_agencies integer;
alter table council_setting add column if not exists pattern_events integer;
alter table council_setting add column if not exists pattern_window_days integer;
alter table council_setting add column if not exists acknowledge_within_days integer;
alter table council_setting add column if not exists alert_lead_days integer;

-- alert: what the backbone tells the people responsible for a child
-- (`casework::alerts`): another agency's concern, a pattern across
-- agencies, a statutory clock due or missed. Folded from the child's whole
-- history with every other casework table, so a rebuild gives the same
-- rows and the same ids an acknowledgement names. Clocks are folded ahead:
-- a row whose raised_at is still to come is not shown until then, and its
-- status (open, acknowledged, escalated, closed) is read against the time
-- of reading, never stored. Ids, codes and times only: the chronology
-- holds what was said.
create table if not exists alert (
    alert_id         uuid primary key,
    child_id         uuid not null,
    kind             text not null,
    council          text not null,
    worker_id        uuid,
    team_id          text,
    raised_by        text,
    -- The child's event that raised it (for a clock, the one that started it).
    sequence         bigint not null,
    raised_at        timestamptz not null,
    due_by           timestamptz not null,
    escalates_at     timestamptz not null,
    closed_at        timestamptz,
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    acknowledged_sequence bigint
);
create index if not exists alert_by_child on alert (child_id);
create index if not exists alert_by_council on alert (council, raised_at);
create index if not exists alert_by_worker on alert (worker_id, raised_at) where worker_id is not null;
-- What the sweep looks for: alerts raised, escalated or closed by the
-- passing of time since it last looked.
create index if not exists alert_by_raising on alert (raised_at);
create index if not exists alert_by_escalation on alert (escalates_at);
create index if not exists alert_by_closing on alert (closed_at) where closed_at is not null;
