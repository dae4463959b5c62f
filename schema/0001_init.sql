-- 0001: identities, hosts, address pools, one row per allocated address, events.
-- The database enforces what it can (names, sizes, states, uniqueness of every
-- address, no overlapping pools); store.c checks the rest and says why.
-- Applied by store_migrate inside its transaction: no BEGIN/COMMIT here.

-- Physical hosts. Minimal until agents register (next issue), but real: servers
-- point at them for their current binding.
CREATE TABLE hosts (
        id          bigserial PRIMARY KEY,
        uuid        uuid NOT NULL UNIQUE,
        name        text NOT NULL UNIQUE
                    CHECK (length(name) <= 253 AND
                           name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$'),
        kind        text NOT NULL CHECK (kind IN ('vm', 'container', 'metal')),
        liveness    text NOT NULL DEFAULT 'lost' CHECK (liveness IN ('up', 'suspect', 'lost')),
        admin       text NOT NULL DEFAULT 'active' CHECK (admin IN ('active', 'drained', 'maintenance')),
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Logical servers: the persistent identity and its current binding (host_id,
-- generation, state, bound_at, expires_at).
CREATE TABLE servers (
        uuid        uuid PRIMARY KEY,
        name        text NOT NULL UNIQUE
                    CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
        kind        text NOT NULL CHECK (kind IN ('vm', 'container', 'metal')),
        vcpus       integer NOT NULL CHECK (vcpus BETWEEN 1 AND 1024),
        memory_mib  bigint NOT NULL CHECK (memory_mib BETWEEN 16 AND 16777216),
        disk_gib    bigint NOT NULL CHECK (disk_gib BETWEEN 0 AND 1048576),
        disk_mode   text NOT NULL CHECK (disk_mode IN ('ephemeral', 'persistent')),
        image       text NOT NULL CHECK (length(image) BETWEEN 1 AND 1024),
        hostname    text NOT NULL CHECK (length(hostname) BETWEEN 1 AND 253),
        labels      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
        group_name  text,                -- groups come later
        lifetime_s  bigint CHECK (lifetime_s BETWEEN 1 AND 315360000),
        desired     text NOT NULL DEFAULT 'stopped'
                    CHECK (desired IN ('running', 'stopped', 'deleted')),
        state       text NOT NULL DEFAULT 'defined'
                    CHECK (state IN ('defined', 'pending', 'binding', 'running', 'stopping',
                                     'lost', 'fencing', 'failed')),
        host_id     bigint REFERENCES hosts (id),
        generation  bigint NOT NULL DEFAULT 0 CHECK (generation >= 0),
        bound_at    timestamptz,
        expires_at  timestamptz,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        -- a binding has a host; an unbound server has none
        CHECK (host_id IS NOT NULL OR state IN ('defined', 'pending', 'failed'))
);
CREATE INDEX servers_host_id_idx ON servers (host_id) WHERE host_id IS NOT NULL;
CREATE INDEX servers_expires_at_idx ON servers (expires_at) WHERE expires_at IS NOT NULL;

-- Address pools. No two pools overlap (the exclusion constraint holds even
-- against concurrent creates); the gateway is a host address inside the pool.
CREATE TABLE pools (
        id          bigserial PRIMARY KEY,
        name        text NOT NULL UNIQUE
                    CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
        cidr        cidr NOT NULL UNIQUE
                    CHECK (CASE family(cidr) WHEN 4 THEN masklen(cidr) BETWEEN 8 AND 30
                                             ELSE masklen(cidr) BETWEEN 64 AND 126 END),
        gateway     inet,
        created_at  timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pools_gateway_check CHECK (gateway IS NULL OR (
                masklen(gateway) = CASE family(gateway) WHEN 4 THEN 32 ELSE 128 END
                AND gateway << cidr
                AND gateway <> host(cidr)::inet
                AND (family(cidr) = 6 OR gateway <> host(broadcast(cidr))::inet))),
        CONSTRAINT pools_no_overlap EXCLUDE USING gist (cidr inet_ops WITH &&)
);

-- One row per allocated MAC: the primary key means no MAC is ever held twice.
-- Unicast only (bit 0 of the first octet clear), never all zero.
CREATE TABLE macs (
        mac         macaddr PRIMARY KEY
                    CHECK (mac <> '00:00:00:00:00:00'::macaddr AND
                           (('x' || substr(mac::text, 2, 1))::bit(4) & B'0001') = B'0000'),
        server_uuid uuid NOT NULL REFERENCES servers (uuid) ON DELETE CASCADE,
        position    smallint NOT NULL CHECK (position BETWEEN 0 AND 63),
        UNIQUE (server_uuid, position)
);

-- One row per allocated IP, a host address (/32 or /128) so that equality is
-- address equality. A pool with addresses cannot be deleted (no cascade).
CREATE TABLE ips (
        ip          inet PRIMARY KEY
                    CHECK (masklen(ip) = CASE family(ip) WHEN 4 THEN 32 ELSE 128 END),
        pool_id     bigint NOT NULL REFERENCES pools (id),
        server_uuid uuid NOT NULL REFERENCES servers (uuid) ON DELETE CASCADE,
        position    smallint NOT NULL CHECK (position BETWEEN 0 AND 63),
        UNIQUE (server_uuid, position)
);
CREATE INDEX ips_pool_id_ip_idx ON ips (pool_id, ip);

-- Every change, written in the transaction that makes it. No foreign key to
-- servers: events outlive what they describe. request_id lets a client that
-- lost its connection during COMMIT find out whether the change committed.
CREATE TABLE events (
        id          bigserial PRIMARY KEY,
        at          timestamptz NOT NULL DEFAULT clock_timestamp(),
        actor       text NOT NULL,
        kind        text NOT NULL,
        server_uuid uuid,
        server_name text,
        request_id  uuid UNIQUE,
        detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_server_name_id_idx ON events (server_name, id) WHERE server_name IS NOT NULL;
CREATE INDEX events_server_uuid_id_idx ON events (server_uuid, id) WHERE server_uuid IS NOT NULL;
