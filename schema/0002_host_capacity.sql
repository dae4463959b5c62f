-- 0002: what an agent says about its host when it registers (driver, labels,
-- physical capacity, allocation ratio), what bindings reserve on it (used_*), and
-- the host session epoch, bumped by every registration. Liveness and health come
-- from heartbeats and are kept in lscd's memory, never written per beat.
ALTER TABLE hosts
        ADD COLUMN driver      text NOT NULL DEFAULT 'fake'
                               CHECK (driver IN ('libvirt', 'fake', 'container', 'metal')),
        ADD COLUMN labels      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
        ADD COLUMN vcpus       integer NOT NULL DEFAULT 0 CHECK (vcpus BETWEEN 0 AND 1048576),
        ADD COLUMN memory_mib  bigint NOT NULL DEFAULT 0 CHECK (memory_mib BETWEEN 0 AND 1073741824),
        ADD COLUMN disk_gib    bigint NOT NULL DEFAULT 0 CHECK (disk_gib BETWEEN 0 AND 1073741824),
        ADD COLUMN alloc_ratio double precision NOT NULL DEFAULT 1.0
                               CHECK (alloc_ratio > 0 AND alloc_ratio <= 64),
        ADD COLUMN used_vcpus      integer NOT NULL DEFAULT 0 CHECK (used_vcpus >= 0),
        ADD COLUMN used_memory_mib bigint NOT NULL DEFAULT 0 CHECK (used_memory_mib >= 0),
        ADD COLUMN used_disk_gib   bigint NOT NULL DEFAULT 0 CHECK (used_disk_gib >= 0),
        ADD COLUMN epoch       bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
        ADD COLUMN registered_at timestamptz;

-- Events about hosts name them here (server_name stays for servers).
ALTER TABLE events ADD COLUMN host_name text;
CREATE INDEX events_host_name_id_idx ON events (host_name, id) WHERE host_name IS NOT NULL;
