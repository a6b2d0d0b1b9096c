-- refold_pending: children whose rows must be folded again because their
-- council's settings changed (`council.configured`: the alerts' clocks,
-- patterns and escalation follow them). A council may hold a hundred
-- thousand children, so the configuration's batch only queues them here;
-- the projector that owns each child's partition refolds them a few
-- hundred at a time between batches (`refold::drain`). Empty once the
-- projector has caught up: a rebuild switches only when it is.
create table if not exists refold_pending (
    child_id   uuid primary key,
    -- The child's partition (`events::subjects::partition`): only the
    -- projector that owns it writes the child's rows.
    partition  integer not null,
    queued_at  timestamptz not null default now()
);
create index if not exists refold_pending_by_partition on refold_pending (partition, queued_at);
