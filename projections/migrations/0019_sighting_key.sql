-- sighting.ordinal is the subject sequence of the child.seen event the
-- sighting comes from, no longer its position in business order: visits are
-- recorded late and corrected, and a position would shift every later row
-- with each late visit, so that a projector keeping a child's history
-- (`kept::Kept`) rewrote half a long history's sightings per batch. Keyed by
-- its event, a late visit adds one row and a correction changes one. Rows
-- written before keep their old numbers until their child is folded again
-- (any new event of the child, or `safeguard rebuild`); no read uses them.
comment on column sighting.ordinal is
    'the subject sequence of the child.seen event this sighting comes from';
