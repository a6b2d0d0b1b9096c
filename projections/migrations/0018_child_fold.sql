-- child_fold: which writing of a child's casework rows the database holds.
-- A projector keeps the histories of the children it folds last in memory
-- with the rows it wrote from them (`kept::Kept`), so that a batch reads
-- and writes only what is new rather than the child's whole history. Every
-- refold of a child writes a fresh stamp here in its transaction; the kept
-- copy is trusted only while its stamp is the one the database holds, so a
-- rolled-back batch, another process's refold, a reconciliation or a
-- rebuild's switch makes the projector read the child afresh. What it holds
-- is how a projector ran, not what the stream says: never compared.
create table if not exists child_fold (
    child_id uuid primary key,
    stamp    uuid not null
);
