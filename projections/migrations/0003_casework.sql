-- Casework facts: what caseloads and indicators are computed from.
--
-- Every row here is folded from one subject's whole history (see
-- src/casework.rs): when any event of a child, worker or council arrives,
-- that subject's rows are deleted and written afresh in the same
-- transaction as the event. So a fact recorded late, a correction or a
-- retraction leaves these tables exactly as if everything had arrived in
-- business order, and applying a batch twice changes nothing.
--
-- Only codes, dates and ids are kept: no free text and no personal details.
-- Dates are business dates (Europe/London); spans are [from_on, to_on), so
-- a case deallocated on a day is no longer held that day.

-- child_status: a child's state after everything known, for caseloads and lookups.
create table child_status (
    child_id           uuid primary key,
    council            text,
    la_child_id        text,
    died_on            date,
    sealed             boolean not null,
    episode_open       boolean not null,
    on_cp_plan         boolean not null,
    on_cin_plan        boolean not null,
    plan_started_on    date,
    review_due_on      date,
    last_seen_at       timestamptz,
    last_seen_alone_at timestamptz,
    last_visit_on      date
);
create index child_status_local_id on child_status (council, la_child_id);

-- referral: each referral, with the same child's previous one (re-referrals).
create table referral (
    child_id    uuid not null,
    referral_id text not null,
    council     text not null,
    received_on date not null,
    nfa         boolean not null,
    previous_on date,
    closed_on   date,
    primary key (child_id, referral_id)
);
create index referral_council on referral (council, received_on);

-- assessment: single assessments, for the timescale indicator.
create table assessment (
    child_id      uuid not null,
    assessment_id text not null,
    council       text not null,
    started_on    date,
    completed_on  date,
    primary key (child_id, assessment_id)
);
create index assessment_council on assessment (council, completed_on);

-- icpc: initial conferences with the start of the enquiry behind them.
create table icpc (
    child_id       uuid not null,
    conference_id  text not null,
    council        text not null,
    held_on        date not null,
    s47_started_on date,
    primary key (child_id, conference_id)
);
create index icpc_council on icpc (council, held_on);

-- cp_plan: child protection plans with their review conferences.
create table cp_plan (
    child_id     uuid not null,
    plan_id      text not null,
    council      text not null,
    category     text not null,
    started_on   date not null,
    ended_on     date,
    icpc_on      date not null,
    earlier_plan boolean not null,
    reviews      date[] not null,
    primary key (child_id, plan_id)
);
create index cp_plan_council on cp_plan (council, started_on);

-- allocation: who held a child's case, and when. `ordinal` orders a child's
-- allocations (a worker may hold the same case more than once).
create table allocation (
    child_id     uuid not null,
    ordinal      integer not null,
    worker_id    uuid not null,
    team_id      text not null,
    council      text not null,
    allocated_at timestamptz not null,
    from_on      date not null,
    to_on        date,
    primary key (child_id, ordinal)
);
create index allocation_worker on allocation (worker_id) where to_on is null;
create index allocation_council on allocation (council);

-- sighting: each time a child was seen; statutory visits are the ones that
-- count toward visit timescales, any sighting toward "last seen".
create table sighting (
    child_id  uuid not null,
    ordinal   integer not null,
    seen_at   timestamptz not null,
    seen_on   date not null,
    statutory boolean not null,
    alone     boolean not null,
    primary key (child_id, ordinal)
);

-- worker_spell: a worker's council, team, role and hours over a span of days.
create table worker_spell (
    worker_id uuid not null,
    ordinal   integer not null,
    council   text not null,
    team_id   text not null,
    role      text not null,
    fte       double precision not null,
    agency    boolean not null,
    from_on   date not null,
    to_on     date,
    primary key (worker_id, ordinal)
);
create index worker_spell_council on worker_spell (council);

-- council_setting: a council's configuration in force from a date, each
-- row merged with the ones before it.
create table council_setting (
    council                   text not null,
    effective_from            date not null,
    dfe_la_code               text,
    population_0_17           bigint,
    assessment_timescale_days integer,
    visit_interval_days       integer,
    caseload_threshold        integer,
    funded_social_worker_fte  double precision,
    primary key (council, effective_from)
);
