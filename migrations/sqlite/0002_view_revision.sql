-- 0002_view_revision: the optimistic-concurrency token of a view item. Every write of an
-- item is conditioned on the revision its writer read (DESIGN §3 "updated with a condition"),
-- so two projector instances racing on one item cannot silently overwrite each other.
ALTER TABLE views ADD COLUMN revision INTEGER NOT NULL DEFAULT 0 CHECK (revision >= 0);
