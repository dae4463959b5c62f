-- 0003: placement groups. A group is a named rule about where its members may run
-- together: anti-affinity (at most max_per_host members on one host) or affinity
-- (once a member is placed, the others go only where members already are).
-- servers.group_name, a placeholder until now, becomes a real reference.
CREATE TABLE groups (
        id           bigserial PRIMARY KEY,
        name         text NOT NULL UNIQUE
                     CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
        policy       text NOT NULL DEFAULT 'anti-affinity'
                     CHECK (policy IN ('anti-affinity', 'affinity')),
        -- anti-affinity: members per host; affinity has no such limit and stores the maximum
        max_per_host integer NOT NULL DEFAULT 1 CHECK (max_per_host BETWEEN 1 AND 1000000),
        created_at   timestamptz NOT NULL DEFAULT now()
);

-- NULL: no group. No cascade: a group with members cannot be deleted.
ALTER TABLE servers ADD COLUMN group_id bigint REFERENCES groups (id);
CREATE INDEX servers_group_id_idx ON servers (group_id) WHERE group_id IS NOT NULL;

-- Nothing wrote group_name before this migration; should a hand-made row carry one,
-- it becomes an anti-affinity group (a name that is not a DNS label fails here,
-- loudly, rather than being dropped).
INSERT INTO groups (name)
        SELECT DISTINCT group_name FROM servers WHERE group_name IS NOT NULL;
UPDATE servers s SET group_id = g.id FROM groups g WHERE g.name = s.group_name;
ALTER TABLE servers DROP COLUMN group_name;
