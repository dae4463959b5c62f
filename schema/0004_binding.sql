-- 0004: why a server is where it is (pending for want of room, failed with the
-- driver's message), and how many bindings in a row failed (failed after 3).
ALTER TABLE servers
        ADD COLUMN reason   text NOT NULL DEFAULT '',
        ADD COLUMN failures integer NOT NULL DEFAULT 0 CHECK (failures >= 0);
-- the loop's view is rebuilt from these at start
CREATE INDEX servers_state_idx ON servers (state) WHERE state <> 'defined';
