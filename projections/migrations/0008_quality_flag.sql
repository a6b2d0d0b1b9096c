-- quality_flag: the DfE CIN census rules a child's history breaks
-- (projections::quality), so a council can fix its data before the return
-- is due. Refolded from the child's whole history with its casework rows,
-- so a correction that mends the data removes the flag at once.
create table quality_flag (
    child_id  uuid not null,
    ordinal   integer not null,
    council   text not null,
    rule      text not null,
    reference text not null,
    detail    text not null,
    on_date   date not null,
    primary key (child_id, ordinal)
);
create index quality_flag_by_council on quality_flag (council, rule);
