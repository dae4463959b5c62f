-- 0006: host labels a server requires (all must match, `--require-label k=v`).
ALTER TABLE servers
        ADD COLUMN require_labels jsonb NOT NULL DEFAULT '{}'
                CHECK (jsonb_typeof(require_labels) = 'object');
