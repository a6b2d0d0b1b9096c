-- section_47: every section 47 enquiry started, by council and day: the
-- section 47 rate per 10,000 counts enquiries, not only those that reached
-- a conference (which `icpc` holds).
create table if not exists section_47 (
    child_id   uuid not null,
    s47_id     text not null,
    council    text not null,
    started_on date not null,
    primary key (child_id, s47_id)
);
create index if not exists section_47_by_council on section_47 (council, started_on);

-- Whether an authorised assessment found the child in need: the share of
-- assessments that found no need is one of the DfE's published figures.
-- Rows folded before this column existed say null; `safeguard rebuild`
-- refolds them.
alter table assessment add column if not exists needs_support boolean;
