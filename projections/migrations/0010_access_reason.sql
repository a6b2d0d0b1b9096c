-- Why a child-level read was refused. The caller is told only that it may
-- not read the record (so a refusal never says, for instance, that a child
-- is sealed); the reason is for those who audit the access log.
alter table audit.access_event add column if not exists reason text;
