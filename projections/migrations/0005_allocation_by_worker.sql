-- Caseload reads ask "which allocations does this worker hold on day D",
-- i.e. from_on <= D and (to_on is null or to_on > D). The partial index of
-- 0003 (where to_on is null) cannot serve the second half, so each read
-- scanned every allocation: seconds per council at national scale. An
-- index on the worker serves both the worker's own caseload and the
-- council view's grouping.
drop index allocation_worker;
create index allocation_by_worker on allocation (worker_id, from_on);
