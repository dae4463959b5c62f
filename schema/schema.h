/* The schema migrations compiled into lscd (generated from schema/NNNN_name.sql). */
#pragma once

struct schema_migration {
        int version;
        const char *name;
        const char *sql;
};

extern const struct schema_migration schema_migrations[];
extern const int schema_migrations_count;
