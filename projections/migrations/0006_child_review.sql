-- child_review: reviews of a child (`review.opened` .. `review.closed`).
-- The query role reads it to decide whether a reviewer may see the child:
-- only principals named in a review that is still open. Refolded from the
-- child's history like every casework table, so a retracted opening or a
-- corrected reviewer list takes effect at once.
create table child_review (
    child_id   uuid not null,
    review_id  text not null,
    kind       text not null,
    reviewers  text[] not null,
    opened_at  timestamptz not null,
    closed_at  timestamptz,
    primary key (child_id, review_id)
);
