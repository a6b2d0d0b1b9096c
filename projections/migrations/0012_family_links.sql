-- The family view reads a child's record with those of the children its
-- relationships name (`relationship.recorded` with `child_id`), both ways:
-- this index finds the relationships that name a child from another
-- child's record.
create index if not exists stored_event_names_child on stored_event ((document->'data'->>'child_id'))
    where event_type = 'relationship.recorded';
