-- indicator_tally: the indicators' arithmetic kept current (issue 23).
--
-- Per council, measure, day and key, how many (`casework::tally`): a
-- referral on the day received, an assessment's working days on the day
-- authorised, +1 and -1 where a plan opens and closes. A read of a
-- council-year sums the days of the year (and the running measures up to
-- the day counted) instead of reading the council's whole history, which
-- grew with every year kept.
--
-- The projector keeps it in the batch's transaction, adding what each
-- refolded child's tallies changed (`indicator_part`). A row whose count
-- falls to zero is removed, so the table holds exactly what a rebuild
-- would write. Within a transaction every change goes through one
-- statement, ordered by key, so two projectors adding to the same rows
-- wait for one another but never deadlock.
create table if not exists indicator_tally (
    council text    not null,
    measure text    not null,
    day     date    not null,
    key     integer not null,
    n       bigint  not null,
    primary key (council, measure, day, key)
);

-- indicator_part: each child's own tallies, the rows `indicator_tally`
-- sums. A refold that reads a child afresh takes its old tallies from
-- here as it deletes them; one that kept the child in memory knows them.
create table if not exists indicator_part (
    child_id uuid    not null,
    council  text    not null,
    measure  text    not null,
    day      date    not null,
    key      integer not null,
    n        bigint  not null,
    primary key (child_id, council, measure, day, key)
);

-- Read models written before tallies existed hold none: their children
-- are queued to be folded again when the projector first migrates
-- (`projections::migrate`), and the marker says so once.
create table if not exists indicator_backfill (
    queued boolean primary key
);
insert into indicator_backfill select false where exists (select from child_status);

-- A council's caseloads on a day read its allocations open that day: by
-- their end, most of them open still, rather than all it ever made.
drop index if exists allocation_council;
create index if not exists allocation_council_open on allocation (council, to_on);

-- Assessments, conferences and enquiries were read by council only to
-- load a council's whole facts for its indicators, which the tallies
-- replace; every refold of a child rewrote these indexes for no read.
drop index if exists assessment_council;
drop index if exists icpc_council;
drop index if exists section_47_by_council;
