-- child_identifier: finding a child by an identifier that is personal data
-- (today the NHS number) without keeping it. Each row holds a keyed digest
-- (HMAC-SHA-256 under a lookup key derived from the master key, see
-- events::privacy::identifier_digest) of a value recorded for the child in
-- any `child.registered` or `child.details_updated` (corrections applied),
-- so a number recorded once still finds the child after it changes. The
-- projector opens the sealed `person` field only to compute this digest and
-- never writes the value itself anywhere. Rows are rewritten from the
-- child's whole history whenever one of those events arrives.
create table child_identifier (
    child_id uuid not null,
    kind     text not null check (kind in ('nhs_number')),
    digest   text not null,
    primary key (child_id, kind, digest)
);
create index child_identifier_digest on child_identifier (kind, digest);
