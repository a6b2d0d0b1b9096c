-- Why a read was made, as the audit stream keeps it: sealed under the
-- child's data key, or withheld (events::audit::Purpose), never in clear.
-- Rows stored before purposes were sealed keep their text in `purpose`;
-- new rows leave it null.
alter table audit.access_event add column if not exists purpose_kept jsonb;
