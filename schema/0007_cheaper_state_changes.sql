-- 0007: cheaper state changes. Every binding changes a server's row three times
-- (start, bind, running) and writes three events (docs/performance.md).
--
-- servers: a row whose indexed columns do not change is updated in place (a HOT
-- update, no index entry written) when its page has room. state changes at every
-- step, so it is no longer indexed (the one query that filtered on it, lscd's load
-- at start, reads most rows anyway), and pages keep 30% free for new row versions.
DROP INDEX servers_state_idx;
ALTER TABLE servers SET (fillfactor = 70);

-- events: only the first event of a transaction carries its request id; the others
-- need no entry in its unique index.
ALTER TABLE events DROP CONSTRAINT events_request_id_key;
CREATE UNIQUE INDEX events_request_id_key ON events (request_id) WHERE request_id IS NOT NULL;
