-- A referral received while the council's episode for the child is still
-- open is not a new referral (the CIN census guide): the referral and
-- re-referral indicators leave it out. Rows folded before this column
-- existed say false; `safeguard rebuild` refolds them.
alter table referral add column if not exists during_open_episode boolean not null default false;
