-- A child on a child in need plan is visited on the council's own CIN
-- interval (`council.configured` `cin_visit_interval_days`), not the child
-- protection one. Councils configured before this column keep the default
-- (28 days) until they configure one.
alter table council_setting add column if not exists cin_visit_interval_days integer;
