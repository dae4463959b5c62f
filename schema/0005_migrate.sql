-- 0005: a cold migration under way survives a restart of lscd: the host it leaves
-- (never chosen again for it) and, with `migrate --to`, the host it must go to.
-- Both are cleared when the server runs again.
ALTER TABLE servers
        ADD COLUMN migrate_from text,
        ADD COLUMN migrate_to   text;
