/* bench-bind: bindings per second through the real lscd and a durable PostgreSQL, with
 * thousands of simulated agents on real CurveZMQ connections; also lscd's memory per
 * identity and its time to ready. It starts (and always stops, by PID) its own
 * PostgreSQL and lscd. The last line of output is one JSON object. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include "curve.h"
#include "err.h"
#include "util.h"
#include "validate.h"
#include "wire.h"

#ifndef LSC_SOURCE_DIR
#error "LSC_SOURCE_DIR must name the source tree (for tests/lib/pg.sh)"
#endif

#define HOSTS_DEFAULT 10000
#define IDENTITIES_DEFAULT 100000
#define NAIVE_DEFAULT 10000
#define BEAT_MS_DEFAULT 1000
#define WINDOW_CHUNKS 4                  /* start requests in flight, many servers each */
#define WINDOW_SINGLE 256                /* ... one server each */
#define CHUNK_DEFAULT 500                /* servers per start request (lsc server start A B ...) */
#define CHUNK_MAX 1000                   /* lscd's limit per start request */
#define PER_SIM_MAX 5000                 /* hosts per simulator process */
#define SIMS_MAX 64
#define CONNECT_RATE 2000                /* new agent connections per second, all simulators */
#define STALL_US (120 * 1000000LL)       /* no progress this long: the run failed */
#define SCAN_US 10000                    /* simulators look at their timers this often */

/* An identity's placement need: 1 vCPU, 512 MiB, 10 GiB. Hosts get 4x their share. */
#define ID_VCPUS 1
#define ID_MEMORY_MIB 512
#define ID_DISK_GIB 10

struct opts {
        uint64_t hosts, identities, naive, beat_ms, window, per_sim, chunk;
        bool keep;
        bool ready_only;                 /* only lscd's memory and time to ready */
        bool no_instance_load;           /* beats without per-instance figures (the
                                          * measured-load history's cost is the difference) */
};

/* What the simulators and the parent share (MAP_SHARED, made before the fork). */
struct shm {
        atomic_int stop;
        atomic_long connected, registered, registrations, reregisters, instantiates, reports,
                destroys, refusals, send_fail, beats, acks, moved;
        int64_t *t_cmd;                  /* per identity: wall µs its INSTANTIATE arrived */
        int64_t *t_report;               /* ... and its Report ok left */
        int32_t *host_of;                /* ... and on which host (index), -1 none */
};

struct key {
        char pub[LSC_Z85_KEY], sec[LSC_Z85_KEY];
};

/* One measured run: a database, a number of identities, a bind batch. */
struct run {
        const char *label;
        const char *db;
        uint64_t n;
        int bind_batch;                  /* 0: lscd's default */
        /* results */
        bool attempted, ok;
        double connect_s, up_s, total_s, bindings_per_s, p50_ms, p99_ms;
        double starts_done_s, last_bind_s, last_running_s;
        double med_start_ack_ms, med_to_bind_ms, med_bind_to_cmd_ms, med_cmd_to_report_ms,
               med_report_to_running_ms;
        long busy, resends, moved, send_fail, refusals, rebound;
        double cpu_lscd_loop, cpu_lscd_store, cpu_lscd_zmq, cpu_pg, cpu_sims, cpu_bench;
        long xacts, wal_bytes;
        long hosts_used, overbooked, mismatched, flaps;
        long rss_after_kib;              /* lscd's, a few beats after the last running */
};

static struct {
        struct opts o;
        char dir[256];                   /* scratch: /var/tmp/lsc-bench.XXXXXX */
        char bindir[PATH_MAX];
        char psql[256];
        int pg_port;
        pid_t pg_pid;                    /* the postmaster (not our child: pg_ctl forks it) */
        pid_t lscd_pid;
        char lscd_sock[300];             /* ipc:// endpoint of the running lscd */
        char lscd_log[300];
        int lscd_starts;
        pid_t sims[SIMS_MAX];
        int n_sims;
        struct key *keys;
        struct shm *shm;
        uint64_t max_n;
        void *zctx;
        uint64_t seq;
        bool cleaned;
} B;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
        (void)sig;
        g_stop = 1;
}

static int64_t wall_us(void)
{
        return lsc_wall_us();
}

static int64_t mono_us(void)
{
        return lsc_now_us();
}

static void sleep_us(int64_t us)
{
        struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
        nanosleep(&ts, NULL);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
        va_list ap;
        char stamp[32];
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
        fprintf(stderr, "bench-bind %s.%03ld ", stamp, ts.tv_nsec / 1000000);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

/* ---- processes --------------------------------------------------------------- */

/* Alive and not a zombie (the postmaster is not our child, so nobody here reaps it). */
static bool pid_alive(pid_t pid)
{
        char path[64], buf[512], *p;
        FILE *f;
        size_t n;

        if (pid <= 0 || kill(pid, 0) < 0)
                return false;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        if (!(f = fopen(path, "re")))
                return false;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = strrchr(buf, ')');
        return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* Our child: SIGTERM, wait up to grace, then SIGKILL. */
static int child_stop(pid_t *pidp, int sig, int64_t grace_us)
{
        pid_t pid = *pidp;
        int status = 0;
        int64_t deadline = mono_us() + grace_us;

        if (pid <= 0)
                return 0;
        *pidp = 0;
        kill(pid, sig);
        while (waitpid(pid, &status, WNOHANG) == 0) {
                if (mono_us() > deadline) {
                        say("pid %d ignored signal %d: killing it", (int)pid, sig);
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        return -ETIMEDOUT;
                }
                sleep_us(10000);
        }
        return status;
}

static void sims_stop(void)
{
        if (B.shm)
                atomic_store(&B.shm->stop, 1);
        for (int i = 0; i < B.n_sims; i++)
                child_stop(&B.sims[i], SIGTERM, 15 * 1000000LL);
        B.n_sims = 0;
}

static void lscd_stop(void)
{
        int st;

        if (B.lscd_pid <= 0)
                return;
        st = child_stop(&B.lscd_pid, SIGTERM, 30 * 1000000LL);
        if (st != 0 && st != -ETIMEDOUT && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
                say("lscd ended with status %d (log: %s)", st, B.lscd_log);
}

/* The postmaster: SIGINT is PostgreSQL's fast shutdown, SIGQUIT its immediate one. */
static void pg_stop(void)
{
        static const struct { int sig; int64_t wait_us; } steps[] = {
                { SIGINT, 60 * 1000000LL }, { SIGQUIT, 10 * 1000000LL }, { SIGKILL, 5 * 1000000LL },
        };
        pid_t pid = B.pg_pid;

        if (pid <= 0)
                return;
        B.pg_pid = 0;
        for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
                int64_t deadline = mono_us() + steps[i].wait_us;
                kill(pid, steps[i].sig);
                while (pid_alive(pid) && mono_us() < deadline)
                        sleep_us(20000);
                if (!pid_alive(pid))
                        return;
                say("PostgreSQL (pid %d) still runs after signal %d", (int)pid, steps[i].sig);
        }
}

static void cleanup(void)
{
        if (B.cleaned)
                return;
        B.cleaned = true;
        sims_stop();
        lscd_stop();
        pg_stop();
        if (B.zctx)
                zmq_ctx_term(B.zctx);
        B.zctx = NULL;
        if (B.dir[0] && !B.o.keep) {
                char cmd[400];
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", B.dir);
                if (system(cmd) != 0)
                        say("could not remove %s", B.dir);
        } else if (B.dir[0]) {
                say("scratch kept: %s", B.dir);
        }
}

/* Runs argv with stdout to out_path (NULL: /dev/null) and stderr to err_path; its exit status. */
static int run_cmd(char *const argv[], const char *out_path, const char *err_path)
{
        pid_t pid = fork();
        int status;

        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int in = open("/dev/null", O_RDONLY);
                int out = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
                int err = open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
                if (in < 0 || out < 0 || err < 0)
                        _exit(127);
                dup2(in, 0);
                dup2(out, 1);
                dup2(err, 2);
                execv(argv[0], argv);
                _exit(127);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- /proc figures --------------------------------------------------------------- */

/* utime + stime of a process or thread, in seconds; ret_ppid when asked. */
static double proc_cpu(const char *stat_path, pid_t *ret_ppid)
{
        char buf[1024], *p;
        FILE *f = fopen(stat_path, "re");
        unsigned long ut = 0, st = 0;
        int ppid = 0;
        size_t n;

        if (!f)
                return 0;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        if (!(p = strrchr(buf, ')')))
                return 0;
        /* fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt
         * majflt cmajflt utime stime */
        if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ppid, &ut, &st) != 3)
                return 0;
        if (ret_ppid)
                *ret_ppid = ppid;
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double pid_cpu(pid_t pid)
{
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        return proc_cpu(path, NULL);
}

/* lscd by thread: the loop (tid = pid), libzmq's threads, and the rest (the store). */
static void lscd_cpu(pid_t pid, double *loop, double *store, double *zmq)
{
        char dir[64], path[600], comm[64];
        struct dirent *e;
        DIR *d;

        *loop = *store = *zmq = 0;
        snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
        if (!(d = opendir(dir)))
                return;
        while ((e = readdir(d))) {
                FILE *f;
                double c;

                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
                c = proc_cpu(path, NULL);
                snprintf(path, sizeof(path), "%s/%s/comm", dir, e->d_name);
                comm[0] = '\0';
                if ((f = fopen(path, "re"))) {
                        if (!fgets(comm, sizeof(comm), f))
                                comm[0] = '\0';
                        fclose(f);
                }
                if (atoi(e->d_name) == pid)
                        *loop += c;
                else if (!strncmp(comm, "ZMQbg", 5))
                        *zmq += c;
                else
                        *store += c;
        }
        closedir(d);
}

/* The postmaster and every process it forked (backends, WAL writer, checkpointer). */
static double pg_cpu(void)
{
        DIR *d = opendir("/proc");
        struct dirent *e;
        double sum = 0;

        if (!d)
                return 0;
        while ((e = readdir(d))) {
                char path[300];
                pid_t ppid = 0, pid = (pid_t)atoi(e->d_name);
                double c;

                if (pid <= 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
                c = proc_cpu(path, &ppid);
                if (pid == B.pg_pid || ppid == B.pg_pid)
                        sum += c;
        }
        closedir(d);
        return sum;
}

/* VmRSS and VmHWM of pid, in KiB. */
static int proc_rss(pid_t pid, long *rss, long *hwm)
{
        char path[64], line[256];
        FILE *f;

        *rss = *hwm = -1;
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        if (!(f = fopen(path, "re")))
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                if (!strncmp(line, "VmRSS:", 6))
                        *rss = atol(line + 6);
                else if (!strncmp(line, "VmHWM:", 6))
                        *hwm = atol(line + 6);
        }
        fclose(f);
        return *rss >= 0 ? 0 : -EIO;
}

/* ---- PostgreSQL ---------------------------------------------------------------------- */

/* Runs sql (one file, ON_ERROR_STOP) against db; each output line (psql -At) to fn. */
static int psql(const char *db, const char *sql, int (*fn)(void *ctx, char *line), void *ctx)
{
        char path[320], err[320], cmd[2048], line[512];
        FILE *f;
        int r = 0, status;

        snprintf(path, sizeof(path), "%s/query.sql", B.dir);
        snprintf(err, sizeof(err), "%s/psql.err", B.dir);
        if (!(f = fopen(path, "we")))
                return lsc_err_set(-errno, "cannot write %s: %s", path, strerror(errno));
        fputs(sql, f);
        fclose(f);
        snprintf(cmd, sizeof(cmd),
                 "'%s' -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %d -U postgres -d '%s' -f '%s' 2>'%s'",
                 B.psql, B.pg_port, db, path, err);
        if (!(f = popen(cmd, "r")))
                return lsc_err_set(-errno, "cannot run psql: %s", strerror(errno));
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                if (fn && r == 0)
                        r = fn(ctx, line);
        }
        status = pclose(f);
        if (status != 0) {
                char msg[400] = "";
                FILE *e = fopen(err, "re");
                if (e) {
                        size_t n = fread(msg, 1, sizeof(msg) - 1, e);
                        msg[n] = '\0';
                        msg[strcspn(msg, "\n")] = '\0';
                        fclose(e);
                }
                return lsc_err_set(-EIO, "psql on %s failed: %s", db, msg[0] ? msg : "(no message)");
        }
        return r;
}

static int line_long(void *ctx, char *line)
{
        *(long *)ctx = atol(line);
        return 0;
}

static long psql_long(const char *db, const char *sql)
{
        long v = -1;

        if (psql(db, sql, line_long, &v) < 0)
                return -1;
        return v;
}

static int line_copy(void *ctx, char *line)
{
        char *dst = ctx;
        if (!dst[0])
                snprintf(dst, 256, "%s", line);
        return 0;
}

static int pg_start(void)
{
        char port_path[300], pid_path[300], buf[64];
        FILE *f;
        int rc = -1;
        glob_t g;

        if (glob("/usr/lib/postgresql/*/bin/psql", 0, NULL, &g) != 0 || g.gl_pathc == 0)
                return lsc_err_set(-ENOENT, "no PostgreSQL client under /usr/lib/postgresql/*/bin");
        snprintf(B.psql, sizeof(B.psql), "%s", g.gl_pathv[g.gl_pathc - 1]);
        globfree(&g);
        setenv("BENCH_PG_SH", LSC_SOURCE_DIR "/tests/lib/pg.sh", 1);
        setenv("BENCH_DIR", B.dir, 1);
        snprintf(port_path, sizeof(port_path), "%s/pg.port", B.dir);
        /* pg.sh: an unprivileged cluster owner, a free port, and here durable commits */
        for (int i = 0; i < 3 && rc != 0; i++)
                rc = system("bash -c '. \"$BENCH_PG_SH\" && PG_FSYNC=on pg_start \"$BENCH_DIR/pg\" && "
                            "echo \"$PG_PORT\" >\"$BENCH_DIR/pg.port\"' >>\"$BENCH_DIR/pg-start.log\" 2>&1");
        /* whatever happened, a postmaster that runs is ours to stop */
        snprintf(pid_path, sizeof(pid_path), "%s/pg/postmaster.pid", B.dir);
        if ((f = fopen(pid_path, "re"))) {
                if (fgets(buf, sizeof(buf), f))
                        B.pg_pid = (pid_t)atoi(buf);
                fclose(f);
        }
        if (rc != 0)
                return lsc_err_set(-EIO, "PostgreSQL did not start (see %s/pg-start.log)", B.dir);
        if (!(f = fopen(port_path, "re")) || !fgets(buf, sizeof(buf), f)) {
                if (f)
                        fclose(f);
                return lsc_err_set(-EIO, "PostgreSQL started but its port is unknown");
        }
        fclose(f);
        B.pg_port = atoi(buf);
        if (B.pg_pid <= 0)
                return lsc_err_set(-EIO, "PostgreSQL runs but %s names no pid", pid_path);
        return 0;
}

/* N defined identities s0000001..: the rows a `lsc server create` would make (uuid, name,
 * kind, size, image, hostname, one MAC), without IPs (no pool) and without the creation
 * events, in one statement: creation is not what is measured. */
static int identities_insert(const char *db, uint64_t n)
{
        char sql[1400];

        snprintf(sql, sizeof(sql),
                 "WITH s AS (INSERT INTO servers (uuid, name, kind, vcpus, memory_mib, disk_gib,"
                 "  disk_mode, image, hostname)"
                 " SELECT gen_random_uuid(), 's' || lpad(i::text, 7, '0'), 'vm', %d, %d, %d, 'ephemeral',"
                 "  'debian-12', 's' || lpad(i::text, 7, '0') FROM generate_series(1, %llu) i"
                 " RETURNING uuid, name)"
                 " INSERT INTO macs (mac, server_uuid, position)"
                 " SELECT ('024c53' || lpad(to_hex(substr(name, 2)::int), 6, '0'))::macaddr, uuid, 0 FROM s;"
                 " VACUUM ANALYZE servers; VACUUM ANALYZE macs;",
                 ID_VCPUS, ID_MEMORY_MIB, ID_DISK_GIB, (unsigned long long)n);
        return psql(db, sql, NULL, NULL);
}

/* Write transactions (transaction ids handed out, cluster-wide) and WAL written: exact,
 * unlike the statistics views, which backends flush only now and then. */
struct pg_stats {
        long xid, wal_bytes;
};

static int line_stats(void *ctx, char *line)
{
        struct pg_stats *s = ctx;
        sscanf(line, "%ld|%ld", &s->xid, &s->wal_bytes);
        return 0;
}

static void pg_stats_read(const char *db, struct pg_stats *s)
{
        memset(s, 0, sizeof(*s));
        psql(db, "SELECT pg_current_xact_id()::text::bigint, pg_current_wal_lsn() - '0/0'::pg_lsn", line_stats, s);
}

/* Every host gets room for four times its share of the larger run (at least 16 vCPUs). */
static uint32_t host_vcpus(void)
{
        uint32_t v = (uint32_t)(4 * ((B.max_n + B.o.hosts - 1) / B.o.hosts));
        return v < 16 ? 16 : v;
}

/* What lscd finds after a fleet ran a while: H registered hosts and N identities
 * running on them (round-robin, capacity reserved), made by SQL so that time to ready
 * and memory are measured at full scale whatever the binding run manages. */
static int ready_db_fill(const char *db, uint64_t n)
{
        char sql[1600];
        uint32_t v = host_vcpus();
        int r;

        snprintf(sql, sizeof(sql),
                 "INSERT INTO hosts (uuid, name, kind, driver, vcpus, memory_mib, disk_gib, alloc_ratio, epoch,"
                 " registered_at) SELECT gen_random_uuid(), 'h' || lpad(i::text, 5, '0'), 'vm', 'fake', %u, %llu,"
                 " %llu, 1.0, 1, now() FROM generate_series(1, %llu) i;",
                 v, (unsigned long long)v * ID_MEMORY_MIB, (unsigned long long)v * ID_DISK_GIB,
                 (unsigned long long)B.o.hosts);
        if ((r = psql(db, sql, NULL, NULL)) < 0 || (r = identities_insert(db, n)) < 0)
                return r;
        snprintf(sql, sizeof(sql),
                 "UPDATE servers s SET desired = 'running', state = 'running', generation = 1, bound_at = now(),"
                 " updated_at = now(), host_id = h.id FROM hosts h"
                 " WHERE h.name = 'h' || lpad((((substr(s.name, 2)::int - 1) %% %llu) + 1)::text, 5, '0');"
                 " UPDATE hosts h SET used_vcpus = x.v, used_memory_mib = x.m, used_disk_gib = x.d"
                 " FROM (SELECT host_id, sum(vcpus)::integer v, sum(memory_mib)::bigint m, sum(disk_gib)::bigint d"
                 "       FROM servers GROUP BY host_id) x WHERE h.id = x.host_id;"
                 " VACUUM ANALYZE servers; VACUUM ANALYZE hosts;",
                 (unsigned long long)B.o.hosts);
        return psql(db, sql, NULL, NULL);
}

/* ---- the CLI side: lscd's request socket ------------------------------------------- */

static void *cli_open(const char *endpoint)
{
        void *s = zmq_socket(B.zctx, ZMQ_DEALER);
        int zero = 0, ivl = 10, hwm = 100000;

        if (!s)
                return NULL;
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl));
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
        if (zmq_connect(s, endpoint) < 0) {
                zmq_close(s);
                return NULL;
        }
        return s;
}

static int cli_send(void *s, Lsc__Request *req, uint64_t seq)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;

        env.sender = "cli:bench-bind";
        env.has_seq = 1;
        env.seq = seq;
        env.body_case = LSC__ENVELOPE__BODY_REQUEST;
        env.request = req;
        return lsc_wire_send(s, NULL, &env);
}

/* Hosts lscd sees up, from its log ("host NAME is up|suspect|lost"): `lsc host list`
 * cannot say at 10,000 hosts (its reply exceeds the 1 MiB envelope limit). The log is
 * followed from *offset; state[] holds each host's last word (0 unknown, 1 up, 2 not). */
static long hosts_up_from_log(const char *path, long *offset, uint8_t *state, long *ret_flaps)
{
        char line[1024];
        FILE *f = fopen(path, "re");
        long up = 0;

        if (!f)
                return -errno;
        if (fseek(f, *offset, SEEK_SET) < 0) {
                fclose(f);
                return -errno;
        }
        while (fgets(line, sizeof(line), f)) {
                const char *p = strstr(line, ": host h");
                unsigned long idx;
                char word[16];

                if (!line[0] || line[strlen(line) - 1] != '\n')
                        break;           /* half a line: read it whole next time */
                *offset += (long)strlen(line);
                if (!p || sscanf(p, ": host h%lu is %15s", &idx, word) != 2 || idx < 1 || idx > B.o.hosts)
                        continue;
                if (!strcmp(word, "up")) {
                        state[idx - 1] = 1;
                } else if (!strcmp(word, "suspect:") || !strcmp(word, "lost:")) {
                        if (state[idx - 1] == 1)
                                (*ret_flaps)++;
                        state[idx - 1] = 2;
                }
        }
        fclose(f);
        for (uint64_t i = 0; i < B.o.hosts; i++)
                up += state[i] == 1;
        return up;
}

/* ---- lscd ------------------------------------------------------------------------------ */

static int free_port(void)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0)
                port = ntohs(a.sin_port);
        close(fd);
        return port > 0 ? port : -EADDRNOTAVAIL;
}

/* Starts lscd on db; ret_exec: the wall clock just before exec. */
static int lscd_start(const char *db, int agent_port, int bind_batch, int64_t *ret_exec)
{
        char conninfo[300], listen_ep[300], agent_ep[64], key[300], keys[300], lscd[PATH_MAX + 8], batch[16];
        char *argv[24];
        int argc = 0, fd;
        pid_t parent = getpid(), pid;

        B.lscd_starts++;
        snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres dbname=%s connect_timeout=5",
                 B.pg_port, db);
        snprintf(B.lscd_sock, sizeof(B.lscd_sock), "ipc://%s/lscd.sock", B.dir);
        snprintf(B.lscd_log, sizeof(B.lscd_log), "%s/lscd-%d-%s.log", B.dir, B.lscd_starts, db);
        snprintf(agent_ep, sizeof(agent_ep), "tcp://127.0.0.1:%d", agent_port);
        snprintf(key, sizeof(key), "%s/lscd.key", B.dir);
        snprintf(keys, sizeof(keys), "%s/keys", B.dir);
        snprintf(lscd, sizeof(lscd), "%s/lscd", B.bindir);
        snprintf(listen_ep, sizeof(listen_ep), "%s", B.lscd_sock);
        snprintf(batch, sizeof(batch), "%d", bind_batch);
        argv[argc++] = lscd;
        argv[argc++] = "--db";
        argv[argc++] = conninfo;
        argv[argc++] = "--listen";
        argv[argc++] = listen_ep;
        argv[argc++] = "--agent-listen";
        argv[argc++] = agent_ep;
        argv[argc++] = "--curve-key";
        argv[argc++] = key;
        argv[argc++] = "--authorized-keys";
        argv[argc++] = keys;
        argv[argc++] = "--seed";
        argv[argc++] = "1";
        argv[argc++] = "--log-level";
        argv[argc++] = "info";
        if (bind_batch > 0) {
                argv[argc++] = "--bind-batch";
                argv[argc++] = batch;
        }
        argv[argc] = NULL;
        if ((fd = open(B.lscd_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0)
                return lsc_err_set(-errno, "cannot open %s: %s", B.lscd_log, strerror(errno));
        *ret_exec = wall_us();
        pid = fork();
        if (pid < 0) {
                close(fd);
                return lsc_err_set(-errno, "fork: %s", strerror(errno));
        }
        if (pid == 0) {
                int in = open("/dev/null", O_RDONLY);
                /* should the bench die hard, lscd goes with it */
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != parent || in < 0)
                        _exit(127);
                dup2(in, 0);
                dup2(fd, 1);
                dup2(fd, 2);
                execv(lscd, argv);
                _exit(127);
        }
        close(fd);
        B.lscd_pid = pid;
        return 0;
}

/* The wall-clock stamp of the first log line holding what (0: not there yet). */
static int64_t log_find(const char *path, const char *what)
{
        char line[2048];
        FILE *f = fopen(path, "re");
        int64_t at = 0;

        if (!f)
                return 0;
        while (!at && fgets(line, sizeof(line), f)) {
                struct tm tm = { 0 };
                char *rest;
                if (!strstr(line, what))
                        continue;
                /* 2025-11-26T02:16:00.123Z lscd info: ... (UTC) */
                rest = strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
                at = rest && rest[0] == '.' ? (int64_t)timegm(&tm) * 1000000 + atol(rest + 1) * 1000
                                            : wall_us();
        }
        fclose(f);
        return at;
}

static bool lscd_alive(void)
{
        int st;

        if (B.lscd_pid <= 0)
                return false;
        if (waitpid(B.lscd_pid, &st, WNOHANG) == B.lscd_pid) {
                B.lscd_pid = 0;
                return false;
        }
        return true;
}

/* Until lscd's log says its view is loaded; the time that says. */
static int lscd_wait_loaded(int64_t timeout_us, int64_t *ret_at)
{
        int64_t deadline = mono_us() + timeout_us, at;

        while (!(at = log_find(B.lscd_log, "view loaded"))) {
                if (g_stop)
                        return -EINTR;
                if (!lscd_alive())
                        return lsc_err_set(-ESRCH, "lscd exited (log: %s)", B.lscd_log);
                if (mono_us() > deadline)
                        return lsc_err_set(-ETIMEDOUT, "lscd did not load its view (log: %s)", B.lscd_log);
                sleep_us(5000);
        }
        *ret_at = at;
        return 0;
}

/* Ready: the log says "view loaded" and a request that needs the store and the view
 * answers: `lsc host show h00001` (`lsc host list` is tried after, and timed, but at
 * 10,000 hosts its reply exceeds lscd's 1 MiB envelope limit). Times from exec. */
struct ready {
        double view_s, show_s, ready_s, list_took_s;
        bool list_ok;
        long rss_kib, hwm_kib;
};

static int lscd_ready(const char *db, struct ready *rd)
{
        char lsc[PATH_MAX + 8], err[320];
        char *show[] = { lsc, "--manager", B.lscd_sock, "--timeout", "60", "host", "show", "h00001", NULL };
        char *list[] = { lsc, "--manager", B.lscd_sock, "--timeout", "30", "host", "list", NULL };
        int64_t exec_at, view_at = 0, show_at = 0, deadline, t;
        int r, port = free_port();

        snprintf(lsc, sizeof(lsc), "%s/lsc", B.bindir);
        snprintf(err, sizeof(err), "%s/lsc.err", B.dir);
        if (port < 0)
                return lsc_err_set(port, "no free port");
        if ((r = lscd_start(db, port, 0, &exec_at)) < 0)
                return r;
        deadline = mono_us() + 180 * 1000000LL;
        while (!view_at || !show_at) {
                if (g_stop)
                        return -EINTR;
                if (!lscd_alive())
                        return lsc_err_set(-ESRCH, "lscd exited (log: %s)", B.lscd_log);
                if (mono_us() > deadline)
                        return lsc_err_set(-ETIMEDOUT, "lscd not ready after 180 s (log: %s)", B.lscd_log);
                if (!view_at)
                        view_at = log_find(B.lscd_log, "view loaded");
                /* the real CLI: it fails at once while lscd's socket is not there */
                if (!show_at && run_cmd(show, NULL, err) == 0)
                        show_at = wall_us();
                else
                        sleep_us(5000);
        }
        rd->view_s = (double)(view_at - exec_at) / 1e6;
        rd->show_s = (double)(show_at - exec_at) / 1e6;
        rd->ready_s = (double)((view_at > show_at ? view_at : show_at) - exec_at) / 1e6;
        t = mono_us();
        rd->list_ok = run_cmd(list, NULL, err) == 0;
        rd->list_took_s = (double)(mono_us() - t) / 1e6;
        sleep_us(1000000);               /* settle: a tick or five */
        return proc_rss(B.lscd_pid, &rd->rss_kib, &rd->hwm_kib);
}

/* ---- the simulated agents (in forked processes) ------------------------------------------ */

struct sim_inst {
        char uuid[37];
        char name[64];
        uint64_t gen;
};

struct sim_host {
        void *sock;
        uint32_t idx;                    /* global host index */
        char name[16];
        char sender[24];
        bool connected, want_reg, registered;
        uint64_t epoch, incarnation, seq;
        int64_t next_reg_us, next_beat_us;
        struct sim_inst *inst;
        size_t n_inst, cap_inst;
};

struct sim {
        struct sim_host *hosts;
        uint32_t n;
        struct shm *shm;
        uint64_t beat_us;
        uint32_t vcpus;                  /* each host's capacity */
};

static int sim_send(struct sim_host *h, Lsc__Envelope *env)
{
        env->sender = h->sender;
        env->has_epoch = 1;
        env->epoch = h->epoch;
        env->has_seq = 1;
        env->seq = ++h->seq;
        return lsc_wire_send(h->sock, NULL, env);
}

static void sim_instances(struct sim_host *h, Lsc__Instance *items, Lsc__Instance **ptrs)
{
        for (size_t i = 0; i < h->n_inst; i++) {
                lsc__instance__init(&items[i]);
                items[i].uuid = h->inst[i].uuid;
                items[i].name = h->inst[i].name;
                items[i].has_generation = 1;
                items[i].generation = h->inst[i].gen;
                items[i].state = "running";
                ptrs[i] = &items[i];
        }
}

/* What lsc-agent sends: name, driver, kind, capacity, ratio, inventory, health. */
static int sim_register(struct sim *sm, struct sim_host *h)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Register reg = LSC__REGISTER__INIT;
        Lsc__Capacity cap = LSC__CAPACITY__INIT;
        _cleanup_free_ Lsc__Instance *items = calloc(h->n_inst + 1, sizeof(*items));
        _cleanup_free_ Lsc__Instance **ptrs = calloc(h->n_inst + 1, sizeof(*ptrs));

        if (!items || !ptrs)
                return -ENOMEM;
        sim_instances(h, items, ptrs);
        reg.host = h->name;
        reg.driver = "fake";
        reg.kind = "vm";
        cap.has_vcpus = cap.has_memory_mib = cap.has_disk_gib = 1;
        cap.vcpus = sm->vcpus;
        cap.memory_mib = (uint64_t)sm->vcpus * ID_MEMORY_MIB;
        cap.disk_gib = (uint64_t)sm->vcpus * ID_DISK_GIB;
        reg.capacity = &cap;
        reg.has_alloc_ratio = 1;
        reg.alloc_ratio = 1.0;
        reg.n_instances = h->n_inst;
        reg.instances = ptrs;
        reg.has_healthy = 1;
        reg.healthy = 1;
        reg.health = "";
        reg.agent_version = "bench-bind";
        env.body_case = LSC__ENVELOPE__BODY_REGISTER;
        env.register_ = &reg;
        return sim_send(h, &env);
}

/* Every beat carries the full inventory, as lsc-agent's do. */
static int sim_beat(struct sim_host *h)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Heartbeat hb = LSC__HEARTBEAT__INIT;
        Lsc__Utilisation util = LSC__UTILISATION__INIT;
        _cleanup_free_ Lsc__Instance *items = calloc(h->n_inst + 1, sizeof(*items));
        _cleanup_free_ Lsc__Instance **ptrs = calloc(h->n_inst + 1, sizeof(*ptrs));

        if (!items || !ptrs)
                return -ENOMEM;
        sim_instances(h, items, ptrs);
        /* what lsc-agent measures: vCPUs busy (spread over 0.1-0.55) and memory */
        for (size_t i = 0; i < h->n_inst && !B.o.no_instance_load; i++) {
                items[i].has_cpu = items[i].has_memory_mib = 1;
                items[i].cpu = 0.1 + (double)(i % 10) / 20.0;
                items[i].memory_mib = ID_MEMORY_MIB / 2;
        }
        hb.n_instances = h->n_inst;
        hb.instances = ptrs;
        hb.has_healthy = 1;
        hb.healthy = 1;
        hb.health = "";
        util.has_cpu = util.has_memory_mib = 1;
        util.cpu = 0.05;
        util.memory_mib = 1024;
        hb.util = &util;
        hb.has_sent_us = 1;
        hb.sent_us = mono_us();
        env.body_case = LSC__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        return sim_send(h, &env);
}

static void sim_report(struct sim *sm, struct sim_host *h, const Lsc__Command *c, bool ok, const char *error)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Report rep = LSC__REPORT__INIT;

        rep.has_op = rep.has_generation = rep.has_epoch = rep.has_ok = 1;
        rep.op = c->op;
        rep.uuid = c->uuid;
        rep.generation = c->generation;
        rep.epoch = c->epoch;
        rep.ok = ok;
        rep.error = ok ? NULL : (char *)error;
        env.body_case = LSC__ENVELOPE__BODY_REPORT;
        env.report = &rep;
        if (sim_send(h, &env) < 0)
                atomic_fetch_add(&sm->shm->send_fail, 1);
}

static void sim_need_register(struct sim *sm, struct sim_host *h, int64_t now)
{
        if (h->registered)
                atomic_fetch_sub(&sm->shm->registered, 1);
        atomic_fetch_add(&sm->shm->reregisters, 1);
        h->registered = false;
        h->want_reg = true;
        h->next_reg_us = now;
}

static void sim_ack(struct sim *sm, struct sim_host *h, const Lsc__Ack *a, int64_t now)
{
        bool ok = !a->has_status || a->status == LSC__STATUS__OK;

        if (!a->has_echo_sent_us || !a->echo_sent_us) {         /* a Register's ack */
                if (!h->want_reg)
                        return;
                if (!ok || !a->has_epoch || !a->epoch) {
                        atomic_fetch_add(&sm->shm->refusals, 1);
                        h->next_reg_us = now + 1000000;
                        return;
                }
                h->epoch = a->epoch;
                h->incarnation = a->has_incarnation ? a->incarnation : 0;
                h->want_reg = false;
                h->registered = true;
                h->next_beat_us = now;   /* at once: it starts the lease */
                atomic_fetch_add(&sm->shm->registered, 1);
                atomic_fetch_add(&sm->shm->registrations, 1);
                return;
        }
        atomic_fetch_add(&sm->shm->acks, 1);
        if (!h->registered)
                return;
        if (!ok || (a->has_reregister && a->reregister) ||
            (a->has_incarnation && a->incarnation && h->incarnation && a->incarnation != h->incarnation) ||
            (a->has_epoch && a->epoch && a->epoch != h->epoch))
                sim_need_register(sm, h, now);
}

/* Identity index from its name s0000001 (1-based in the name). */
static long id_index(const char *name, uint64_t n)
{
        char *end;
        unsigned long v;

        if (!name || name[0] != 's')
                return -1;
        v = strtoul(name + 1, &end, 10);
        return *end || v < 1 || v > n ? -1 : (long)v - 1;
}

static void sim_command(struct sim *sm, struct sim_host *h, const Lsc__Command *c, uint64_t max_n)
{
        if (!h->registered || !c->has_epoch || c->epoch != h->epoch || !c->uuid) {
                atomic_fetch_add(&sm->shm->refusals, 1);
                if (c->uuid)
                        sim_report(sm, h, c, false, "another session epoch");
                return;
        }
        if (c->op == LSC__COMMAND__OP__INSTANTIATE) {
                long idx = c->spec ? id_index(c->spec->name, max_n) : -1;
                size_t i;

                for (i = 0; i < h->n_inst && strcmp(h->inst[i].uuid, c->uuid); i++)
                        ;
                if (i == h->n_inst) {
                        if (h->n_inst == h->cap_inst) {
                                size_t cap = h->cap_inst ? h->cap_inst * 2 : 8;
                                struct sim_inst *ni = realloc(h->inst, cap * sizeof(*ni));
                                if (!ni) {
                                        sim_report(sm, h, c, false, "out of memory");
                                        return;
                                }
                                h->inst = ni;
                                h->cap_inst = cap;
                        }
                        h->n_inst++;
                        snprintf(h->inst[i].uuid, sizeof(h->inst[i].uuid), "%s", c->uuid);
                        snprintf(h->inst[i].name, sizeof(h->inst[i].name), "%s",
                                 c->spec && c->spec->name ? c->spec->name : "");
                }
                h->inst[i].gen = c->generation;
                atomic_fetch_add(&sm->shm->instantiates, 1);
                if (idx >= 0) {
                        int32_t was = sm->shm->host_of[idx];
                        if (was >= 0 && was != (int32_t)h->idx)
                                atomic_fetch_add(&sm->shm->moved, 1);
                        sm->shm->host_of[idx] = (int32_t)h->idx;
                        if (!sm->shm->t_cmd[idx])
                                sm->shm->t_cmd[idx] = wall_us();
                }
                /* no hypervisor: the instance "runs" as soon as the command arrives */
                sim_report(sm, h, c, true, NULL);
                atomic_fetch_add(&sm->shm->reports, 1);
                if (idx >= 0 && !sm->shm->t_report[idx])
                        sm->shm->t_report[idx] = wall_us();
        } else if (c->op == LSC__COMMAND__OP__DESTROY || c->op == LSC__COMMAND__OP__SHUTDOWN) {
                size_t keep = 0;
                for (size_t i = 0; i < h->n_inst; i++)
                        if (strcmp(h->inst[i].uuid, c->uuid) || h->inst[i].gen > c->generation)
                                h->inst[keep++] = h->inst[i];
                h->n_inst = keep;
                atomic_fetch_add(&sm->shm->destroys, 1);
                sim_report(sm, h, c, true, NULL);
        }
}

/* Everything the socket holds. ZMQ_FD only says "look": ZMQ_EVENTS says what is there,
 * and any send may consume the signal, so this runs after sends too. */
static void sim_drain(struct sim *sm, struct sim_host *h, uint64_t max_n)
{
        for (;;) {
                int ev = 0;
                size_t sz = sizeof(ev);
                Lsc__Envelope *env = NULL;

                if (zmq_getsockopt(h->sock, ZMQ_EVENTS, &ev, &sz) < 0 || !(ev & ZMQ_POLLIN))
                        return;
                if (lsc_wire_recv(h->sock, false, NULL, &env) < 0) {
                        lsc_wire_free(env);
                        continue;
                }
                if (env->body_case == LSC__ENVELOPE__BODY_ACK)
                        sim_ack(sm, h, env->ack, mono_us());
                else if (env->body_case == LSC__ENVELOPE__BODY_COMMAND)
                        sim_command(sm, h, env->command, max_n);
                lsc_wire_free(env);
        }
}

static void sim_timers(struct sim *sm, struct sim_host *h, int64_t now)
{
        bool sent = false;

        if (h->want_reg && now >= h->next_reg_us) {
                /* ZMQ_IMMEDIATE: refused until the handshake is done; then wait for the ack */
                h->next_reg_us = now + (sim_register(sm, h) == 0 ? 3000000 : 250000);
                sent = true;
        }
        if (h->registered && now >= h->next_beat_us) {
                if (sim_beat(h) < 0)
                        atomic_fetch_add(&sm->shm->send_fail, 1);
                atomic_fetch_add(&sm->shm->beats, 1);
                h->next_beat_us += (int64_t)sm->beat_us;
                if (h->next_beat_us <= now)
                        h->next_beat_us = now + (int64_t)sm->beat_us;
                sent = true;
        }
        if (sent)
                sim_drain(sm, h, B.max_n);
}

static int sim_socket(void *ctx, struct sim_host *h, const char *server_key)
{
        const struct key *k = &B.keys[h->idx];
        const int zero = 0, one = 1, hwm = 64, rcvhwm = 1000, ivl = 1000, tmo = 3000,
                  reconnect = 200, reconnect_max = 2000;

        if (!(h->sock = zmq_socket(ctx, ZMQ_DEALER)))
                return -errno;
        /* the same options as lsc-agent's manager socket */
        if (zmq_setsockopt(h->sock, ZMQ_CURVE_SERVERKEY, server_key, 40) < 0 ||
            zmq_setsockopt(h->sock, ZMQ_CURVE_PUBLICKEY, k->pub, 40) < 0 ||
            zmq_setsockopt(h->sock, ZMQ_CURVE_SECRETKEY, k->sec, 40) < 0)
                return -errno;
        zmq_setsockopt(h->sock, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(h->sock, ZMQ_IMMEDIATE, &one, sizeof(one));
        zmq_setsockopt(h->sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(h->sock, ZMQ_RCVHWM, &rcvhwm, sizeof(rcvhwm));
        zmq_setsockopt(h->sock, ZMQ_HEARTBEAT_IVL, &ivl, sizeof(ivl));
        zmq_setsockopt(h->sock, ZMQ_HEARTBEAT_TIMEOUT, &tmo, sizeof(tmo));
        zmq_setsockopt(h->sock, ZMQ_RECONNECT_IVL, &reconnect, sizeof(reconnect));
        zmq_setsockopt(h->sock, ZMQ_RECONNECT_IVL_MAX, &reconnect_max, sizeof(reconnect_max));
        return 0;
}

/* One simulator process: hosts [h0, h1) over one zmq context, one epoll over the
 * sockets' ZMQ_FDs, one thread (plus libzmq's I/O threads, one per 1000 hosts). */
static int sim_main(uint32_t h0, uint32_t h1, const char *endpoint, const char *server_key, uint32_t vcpus,
                    int n_sims)
{
        struct sim sm = { .n = h1 - h0, .shm = B.shm, .beat_us = B.o.beat_ms * 1000, .vcpus = vcpus };
        struct epoll_event evs[512];
        int64_t start = mono_us(), next_scan = 0, per_conn_us = (int64_t)1000000 * n_sims / CONNECT_RATE;
        uint32_t next_connect = 0;
        void *ctx = zmq_ctx_new();
        int ep = epoll_create1(EPOLL_CLOEXEC);

        if (!ctx || ep < 0)
                return 1;
        /* libzmq cancels a timer by walking all of its I/O thread's timers, and every
         * received message cancels the ZMTP heartbeat ones: several I/O threads keep the
         * simulators' own cost (thousands of agents in one process, which no real agent
         * is) from growing with the square of their hosts */
        zmq_ctx_set(ctx, ZMQ_IO_THREADS, (int)(sm.n + 999) / 1000);
        zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, (int)sm.n + 64);
        if (!(sm.hosts = calloc(sm.n, sizeof(*sm.hosts))))
                return 1;
        for (uint32_t i = 0; i < sm.n; i++) {
                struct sim_host *h = &sm.hosts[i];
                struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
                int fd;
                size_t sz = sizeof(fd);

                h->idx = h0 + i;
                snprintf(h->name, sizeof(h->name), "h%05u", h->idx + 1);
                snprintf(h->sender, sizeof(h->sender), "agent:%s", h->name);
                if (sim_socket(ctx, h, server_key) < 0 ||
                    zmq_getsockopt(h->sock, ZMQ_FD, &fd, &sz) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        fprintf(stderr, "bench-bind: simulator: socket %u: %s (open files limit?)\n", i,
                                zmq_strerror(errno));
                        return 1;
                }
        }
        while (!atomic_load(&sm.shm->stop)) {
                int64_t now = mono_us();
                int n;

                /* connections come at a bounded rate, as a fleet's would after an outage */
                while (next_connect < sm.n && now >= start + (int64_t)next_connect * per_conn_us) {
                        struct sim_host *h = &sm.hosts[next_connect++];
                        if (zmq_connect(h->sock, endpoint) == 0) {
                                h->connected = true;
                                h->want_reg = true;
                                h->next_reg_us = now;
                                atomic_fetch_add(&sm.shm->connected, 1);
                        }
                }
                if (now >= next_scan) {
                        for (uint32_t i = 0; i < next_connect; i++)
                                if (sm.hosts[i].connected)
                                        sim_timers(&sm, &sm.hosts[i], now);
                        next_scan = now + SCAN_US;
                }
                n = epoll_wait(ep, evs, (int)ARRAY_SIZE(evs), 5);
                for (int i = 0; i < n; i++)
                        sim_drain(&sm, &sm.hosts[evs[i].data.u32], B.max_n);
        }
        for (uint32_t i = 0; i < sm.n; i++) {
                zmq_close(sm.hosts[i].sock);
                free(sm.hosts[i].inst);
        }
        free(sm.hosts);
        close(ep);
        zmq_ctx_term(ctx);
        return 0;
}

static int sims_start(int agent_port, const char *server_key, uint32_t vcpus)
{
        char endpoint[64];
        uint64_t per = B.o.per_sim, h = B.o.hosts;
        int n = (int)((h + per - 1) / per);
        pid_t parent = getpid();

        if (n > SIMS_MAX)
                return lsc_err_set(-E2BIG, "%d simulator processes are too many (at most %d)", n, SIMS_MAX);
        snprintf(endpoint, sizeof(endpoint), "tcp://127.0.0.1:%d", agent_port);
        atomic_store(&B.shm->stop, 0);
        for (int i = 0; i < n; i++) {
                uint32_t h0 = (uint32_t)(h * (uint64_t)i / (uint64_t)n), h1 = (uint32_t)(h * (uint64_t)(i + 1) / (uint64_t)n);
                pid_t pid = fork();

                if (pid < 0)
                        return lsc_err_set(-errno, "fork: %s", strerror(errno));
                if (pid == 0) {
                        signal(SIGINT, SIG_IGN);         /* the parent stops us */
                        signal(SIGTERM, SIG_DFL);
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        if (getppid() != parent)
                                _exit(1);
                        _exit(sim_main(h0, h1, endpoint, server_key, vcpus, n));
                }
                B.sims[B.n_sims++] = pid;
        }
        return 0;
}

static bool sims_alive(void)
{
        for (int i = 0; i < B.n_sims; i++) {
                int st;
                if (waitpid(B.sims[i], &st, WNOHANG) == B.sims[i]) {
                        say("simulator %d (pid %d) exited with status %d", i, (int)B.sims[i], st);
                        B.sims[i] = 0;
                        return false;
                }
        }
        return true;
}

/* ---- one measured run ---------------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

/* Median (q = 0.5) or another quantile of v[0..n) in ms, sorting v. */
static double quantile_ms(int64_t *v, size_t n, double q)
{
        if (n == 0)
                return NAN;
        qsort(v, n, sizeof(*v), cmp_i64);
        return (double)v[(size_t)((double)(n - 1) * q + 0.5)] / 1000.0;
}

struct evts {
        uint64_t n;
        int64_t *bind, *running;
        long bad;
};

static int line_event(void *ctx, char *line)
{
        struct evts *e = ctx;
        long idx;
        int kind;
        long long at;

        if (sscanf(line, "%ld|%d|%lld", &idx, &kind, &at) != 3 || idx < 1 || (uint64_t)idx > e->n) {
                e->bad++;
                return 0;
        }
        int64_t *slot = kind == 1 ? &e->bind[idx - 1] : &e->running[idx - 1];
        if (*slot < at)
                *slot = at;              /* a re-binding: the last one counts */
        return 0;
}

struct placed {
        struct run *run;
        long mismatched;
};

static int line_placed(void *ctx, char *line)
{
        struct placed *p = ctx;
        long idx, host;

        if (sscanf(line, "%ld|%ld", &idx, &host) != 2 || idx < 1 || (uint64_t)idx > p->run->n ||
            B.shm->host_of[idx - 1] != (int32_t)(host - 1))
                p->mismatched++;
        return 0;
}

struct cpu {
        double loop, store, zmq, pg, sims, bench;
};

static void cpu_sample(struct cpu *c)
{
        lscd_cpu(B.lscd_pid, &c->loop, &c->store, &c->zmq);
        c->pg = pg_cpu();
        c->sims = 0;
        for (int i = 0; i < B.n_sims; i++)
                c->sims += pid_cpu(B.sims[i]);
        c->bench = pid_cpu(getpid());
}

static int run_bind(struct run *rn)
{
        int64_t *t_start = calloc(rn->n, sizeof(int64_t)), *t_ack = calloc(rn->n, sizeof(int64_t));
        int64_t exec_at, loaded_at, t0 = 0, t_conn, last_progress, last_print = 0;
        uint64_t next = 0, done = 0, inflight = 0, r_head = 0, r_tail = 0;
        /* the naive run starts one server per request, as one `lsc server start` each */
        const uint64_t chunk = rn->bind_batch == 1 ? 1 : B.o.chunk;
        const uint64_t window = B.o.window ? B.o.window : chunk == 1 ? WINDOW_SINGLE : WINDOW_CHUNKS;
        uint32_t *retry = calloc(window + 1, sizeof(uint32_t));
        long seen_inst = -1, seen_reports = -1, running = 0, log_off = 0, flaps = 0;
        uint8_t *host_state = calloc(B.o.hosts, 1);
        uint32_t vcpus;
        struct cpu c0, c1;
        struct pg_stats s0, s1;
        struct evts ev = { .n = rn->n };
        void *cli = NULL;
        int r, port = free_port();
        char sql[600], server_key[LSC_Z85_KEY];

        rn->attempted = true;
        if (!t_start || !t_ack || !retry || !host_state) {
                r = -ENOMEM;
                goto out;
        }
        {
                char path[320];
                snprintf(path, sizeof(path), "%s/lscd.pub", B.dir);
                if ((r = lsc_curve_read_public(path, server_key)) < 0)
                        goto out;
        }
        vcpus = host_vcpus();

        say("%s: lscd%s on database %s", rn->label,
            rn->bind_batch ? (rn->bind_batch == 1 ? " --bind-batch 1" : " --bind-batch N") : "", rn->db);
        if (port < 0 || (r = lscd_start(rn->db, port, rn->bind_batch, &exec_at)) < 0 ||
            (r = lscd_wait_loaded(120 * 1000000LL, &loaded_at)) < 0)
                goto out;
        if (!(cli = cli_open(B.lscd_sock))) {
                r = lsc_err_set(-EIO, "cannot connect to lscd at %s", B.lscd_sock);
                goto out;
        }
        say("%s: creating %llu identities (bulk SQL, not measured)", rn->label, (unsigned long long)rn->n);
        {
                int64_t t = mono_us();
                if ((r = identities_insert(rn->db, rn->n)) < 0)
                        goto out;
                say("%s: %llu identities in %.1f s", rn->label, (unsigned long long)rn->n,
                    (double)(mono_us() - t) / 1e6);
        }

        /* the fleet connects, registers and beats */
        memset(B.shm->t_cmd, 0, B.max_n * sizeof(int64_t));
        memset(B.shm->t_report, 0, B.max_n * sizeof(int64_t));
        memset(B.shm->host_of, 0xff, B.max_n * sizeof(int32_t));
        atomic_store(&B.shm->connected, 0);
        atomic_store(&B.shm->registered, 0);
        atomic_store(&B.shm->registrations, 0);
        atomic_store(&B.shm->reregisters, 0);
        atomic_store(&B.shm->instantiates, 0);
        atomic_store(&B.shm->reports, 0);
        atomic_store(&B.shm->destroys, 0);
        atomic_store(&B.shm->refusals, 0);
        atomic_store(&B.shm->send_fail, 0);
        atomic_store(&B.shm->beats, 0);
        atomic_store(&B.shm->acks, 0);
        atomic_store(&B.shm->moved, 0);
        t_conn = mono_us();
        if ((r = sims_start(port, server_key, vcpus)) < 0)
                goto out;
        say("%s: %llu simulated agents in %d processes connecting (CurveZMQ, %d/s)", rn->label,
            (unsigned long long)B.o.hosts, B.n_sims, CONNECT_RATE);
        for (;;) {
                long up;

                if (g_stop) {
                        r = -EINTR;
                        goto out;
                }
                if (!lscd_alive() || !sims_alive()) {
                        r = lsc_err_set(-ESRCH, "lscd or a simulator exited (log: %s)", B.lscd_log);
                        goto out;
                }
                if (atomic_load(&B.shm->registered) < (long)B.o.hosts) {
                        if (mono_us() - t_conn > 300 * 1000000LL) {
                                double loop, store, zmq;
                                lscd_cpu(B.lscd_pid, &loop, &store, &zmq);
                                r = lsc_err_set(-ETIMEDOUT, "only %ld of %llu hosts registered after 300 s "
                                                "(%ld registrations acknowledged; lscd CPU so far: loop %.1f s, "
                                                "zmq I/O %.1f s, store %.1f s; see %s)",
                                                atomic_load(&B.shm->registered), (unsigned long long)B.o.hosts,
                                                atomic_load(&B.shm->registrations), loop, zmq, store, B.lscd_log);
                                goto out;
                        }
                        if (mono_us() - last_print > 2000000) {
                                say("%s: %ld connected, %ld registered", rn->label, atomic_load(&B.shm->connected),
                                    atomic_load(&B.shm->registered));
                                last_print = mono_us();
                        }
                        sleep_us(100000);
                        continue;
                }
                if (!rn->connect_s)
                        rn->connect_s = (double)(mono_us() - t_conn) / 1e6;
                if ((up = hosts_up_from_log(B.lscd_log, &log_off, host_state, &flaps)) < 0) {
                        r = lsc_err_set((int)up, "cannot read %s", B.lscd_log);
                        goto out;
                }
                if (up == (long)B.o.hosts)
                        break;
                if (mono_us() - t_conn > 300 * 1000000LL) {
                        r = lsc_err_set(-ETIMEDOUT, "only %ld of %llu hosts up after 300 s (%ld fell suspect)", up,
                                        (unsigned long long)B.o.hosts, flaps);
                        goto out;
                }
                if (mono_us() - last_print > 2000000) {
                        say("%s: lscd sees %ld of %llu hosts up (%ld fell suspect so far)", rn->label, up,
                            (unsigned long long)B.o.hosts, flaps);
                        last_print = mono_us();
                }
                sleep_us(200000);
        }
        rn->up_s = (double)(mono_us() - t_conn) / 1e6;
        say("%s: %llu hosts registered in %.1f s, all up in lscd's view after %.1f s", rn->label,
            (unsigned long long)B.o.hosts, rn->connect_s, rn->up_s);

        /* start them all, as fast as lscd takes start requests */
        pg_stats_read(rn->db, &s0);
        cpu_sample(&c0);
        say("%s: starting %llu servers (%llu per request, %llu requests in flight at most)", rn->label,
            (unsigned long long)rn->n, (unsigned long long)chunk, (unsigned long long)window);
        last_progress = mono_us();
        t0 = wall_us();
        while (done < rn->n) {
                zmq_pollitem_t it = { .socket = cli, .events = ZMQ_POLLIN };

                if (g_stop) {
                        r = -EINTR;
                        goto out;
                }
                while (inflight < window) {
                        Lsc__Request req = LSC__REQUEST__INIT;
                        Lsc__ServerStart st = LSC__SERVER_START__INIT;
                        char names[CHUNK_MAX][24], *refs[CHUNK_MAX];
                        uint64_t idx, k;

                        if (r_head != r_tail)
                                idx = retry[r_head++ % (window + 1)];
                        else if (next < rn->n)
                                idx = next, next += chunk;
                        else
                                break;
                        /* servers idx .. idx + k - 1 in one request, seq = idx + 1 */
                        for (k = 0; k < chunk && idx + k < rn->n; k++) {
                                snprintf(names[k], sizeof(names[k]), "s%07llu", (unsigned long long)(idx + k + 1));
                                refs[k] = names[k];
                                if (!t_start[idx + k])
                                        t_start[idx + k] = wall_us();
                        }
                        st.refs = refs;
                        st.n_refs = k;
                        req.op_case = LSC__REQUEST__OP_SERVER_START;
                        req.server_start = &st;
                        if ((r = cli_send(cli, &req, idx + 1)) < 0)
                                goto out;
                        inflight++;
                }
                if (zmq_poll(&it, 1, 5) <= 0) {
                        if (mono_us() - last_progress > STALL_US) {
                                r = lsc_err_set(-ETIMEDOUT, "no start acknowledged for %lld s",
                                                STALL_US / 1000000);
                                goto out;
                        }
                        if (!lscd_alive()) {
                                r = lsc_err_set(-ESRCH, "lscd exited (log: %s)", B.lscd_log);
                                goto out;
                        }
                        continue;
                }
                for (;;) {
                        Lsc__Envelope *env = NULL;
                        uint64_t idx;

                        r = lsc_wire_recv(cli, false, NULL, &env);
                        if (r == -EAGAIN)
                                break;
                        if (r < 0 || !env->has_seq || env->seq < 1 || env->seq > rn->n ||
                            env->body_case != LSC__ENVELOPE__BODY_REPLY) {
                                lsc_wire_free(env);
                                continue;
                        }
                        idx = env->seq - 1;
                        inflight--;
                        if (env->reply->status == LSC__STATUS__OK) {
                                int64_t now = wall_us();
                                for (uint64_t k = 0; k < chunk && idx + k < rn->n; k++, done++)
                                        t_ack[idx + k] = now;
                                last_progress = mono_us();
                        } else if (env->reply->status == LSC__STATUS__ERR_UNAVAILABLE) {
                                /* "lscd is busy": its store queue is full; ask again */
                                rn->busy++;
                                retry[r_tail++ % (window + 1)] = (uint32_t)idx;
                        } else {
                                r = lsc_err_set(-EIO, "start s%07llu refused: %s", (unsigned long long)idx + 1,
                                                env->reply->error ? env->reply->error : "?");
                                lsc_wire_free(env);
                                goto out;
                        }
                        lsc_wire_free(env);
                }
                if (mono_us() - last_print > 2000000) {
                        say("%s: %llu starts acknowledged, %ld instantiated, %ld reported", rn->label,
                            (unsigned long long)done, atomic_load(&B.shm->instantiates),
                            atomic_load(&B.shm->reports));
                        last_print = mono_us();
                }
        }
        say("%s: all %llu starts acknowledged after %.1f s (%ld \"busy\" answers asked again)", rn->label,
            (unsigned long long)rn->n, (double)(wall_us() - t0) / 1e6, rn->busy);

        /* until every server runs: the agent reported and lscd committed the transition */
        last_progress = mono_us();
        for (;;) {
                long inst = atomic_load(&B.shm->instantiates), rep = atomic_load(&B.shm->reports);

                if (g_stop) {
                        r = -EINTR;
                        goto out;
                }
                if (!lscd_alive() || !sims_alive()) {
                        r = lsc_err_set(-ESRCH, "lscd or a simulator exited (log: %s)", B.lscd_log);
                        goto out;
                }
                if (inst != seen_inst || rep != seen_reports) {
                        seen_inst = inst;
                        seen_reports = rep;
                        last_progress = mono_us();
                }
                if (rep >= (long)rn->n) {
                        long was = running;
                        running = psql_long(rn->db, "SELECT count(*) FROM servers WHERE state = 'running'");
                        if (running == (long)rn->n)
                                break;
                        if (running != was)
                                last_progress = mono_us();
                }
                if (mono_us() - last_progress > STALL_US) {
                        char states[256] = "";
                        psql(rn->db, "SELECT string_agg(state || ' ' || n, ', ') FROM"
                                     " (SELECT state, count(*) n FROM servers GROUP BY state) t",
                             line_copy, states);
                        r = lsc_err_set(-ETIMEDOUT, "no progress for %lld s: %ld instantiated, %ld reported; "
                                        "servers: %s", STALL_US / 1000000, inst, rep, states);
                        goto out;
                }
                if (mono_us() - last_print > 2000000) {
                        say("%s: %ld instantiated, %ld reported%s", rn->label, inst, rep,
                            rep >= (long)rn->n ? ", waiting for lscd to commit the last transitions" : "");
                        last_print = mono_us();
                }
                sleep_us(rep >= (long)rn->n ? 100000 : 50000);
        }
        cpu_sample(&c1);
        pg_stats_read(rn->db, &s1);
        {
                long before = flaps;
                hosts_up_from_log(B.lscd_log, &log_off, host_state, &flaps);
                rn->flaps = flaps - before;
        }
        rn->cpu_lscd_loop = c1.loop - c0.loop;
        rn->cpu_lscd_store = c1.store - c0.store;
        rn->cpu_lscd_zmq = c1.zmq - c0.zmq;
        rn->cpu_pg = c1.pg - c0.pg;
        rn->cpu_sims = c1.sims - c0.sims;
        rn->cpu_bench = c1.bench - c0.bench;
        rn->xacts = s1.xid - s0.xid - 1;         /* less the one that asked */
        rn->wal_bytes = s1.wal_bytes - s0.wal_bytes;
        rn->resends = atomic_load(&B.shm->instantiates) - (long)rn->n;
        rn->moved = atomic_load(&B.shm->moved);
        rn->send_fail = atomic_load(&B.shm->send_fail);
        rn->refusals = atomic_load(&B.shm->refusals);

        /* when each binding committed and each running transition committed: the event rows
         * carry clock_timestamp() from inside those transactions */
        ev.bind = calloc(rn->n, sizeof(int64_t));
        ev.running = calloc(rn->n, sizeof(int64_t));
        if (!ev.bind || !ev.running) {
                r = -ENOMEM;
                goto out;
        }
        if ((r = psql(rn->db, "SELECT substr(server_name, 2)::int, CASE kind WHEN 'server.binding' THEN 1 ELSE 2 END,"
                              " floor(extract(epoch FROM at) * 1000000)::bigint FROM events"
                              " WHERE kind IN ('server.binding', 'server.running') AND server_name LIKE 's%'",
                      line_event, &ev)) < 0)
                goto out;
        {
                int64_t *lat = calloc(rn->n, sizeof(int64_t)), *seg = calloc(rn->n, sizeof(int64_t));
                int64_t t_end = 0, last_ack = 0, last_bind = 0;
                size_t k;

                if (!lat || !seg) {
                        free(lat);
                        free(seg);
                        r = -ENOMEM;
                        goto out;
                }
                for (uint64_t i = 0; i < rn->n; i++) {
                        if (ev.running[i] > t_end)
                                t_end = ev.running[i];
                        if (t_ack[i] > last_ack)
                                last_ack = t_ack[i];
                        if (ev.bind[i] > last_bind)
                                last_bind = ev.bind[i];
                        lat[i] = ev.running[i] - t_start[i];
                }
                rn->total_s = (double)(t_end - t0) / 1e6;
                rn->bindings_per_s = (double)rn->n / rn->total_s;
                rn->starts_done_s = (double)(last_ack - t0) / 1e6;
                rn->last_bind_s = (double)(last_bind - t0) / 1e6;
                rn->last_running_s = rn->total_s;
                rn->p50_ms = quantile_ms(lat, rn->n, 0.50);
                rn->p99_ms = quantile_ms(lat, rn->n, 0.99);
#define SEGMENT(dst, a, b)                                                      \
                do {                                                            \
                        k = 0;                                                  \
                        for (uint64_t i = 0; i < rn->n; i++)                    \
                                if ((a)[i] && (b)[i])                           \
                                        seg[k++] = (b)[i] - (a)[i];             \
                        dst = quantile_ms(seg, k, 0.5);                         \
                } while (0)
                SEGMENT(rn->med_start_ack_ms, t_start, t_ack);
                SEGMENT(rn->med_to_bind_ms, t_start, ev.bind);
                SEGMENT(rn->med_bind_to_cmd_ms, ev.bind, B.shm->t_cmd);
                SEGMENT(rn->med_cmd_to_report_ms, B.shm->t_cmd, B.shm->t_report);
                SEGMENT(rn->med_report_to_running_ms, B.shm->t_report, ev.running);
#undef SEGMENT
                free(lat);
                free(seg);
        }
        /* each identity exactly where the database says, once, and no host overbooked */
        rn->rebound = psql_long(rn->db, "SELECT count(*) FROM servers WHERE generation <> 1");
        rn->hosts_used = psql_long(rn->db, "SELECT count(DISTINCT host_id) FROM servers WHERE host_id IS NOT NULL");
        rn->overbooked = psql_long(rn->db, "SELECT count(*) FROM hosts WHERE used_vcpus > floor(vcpus * alloc_ratio)"
                                           " OR used_memory_mib > floor(memory_mib * alloc_ratio)");
        {
                struct placed p = { .run = rn };
                snprintf(sql, sizeof(sql), "SELECT substr(s.name, 2)::int, substr(h.name, 2)::int FROM servers s"
                                           " JOIN hosts h ON h.id = s.host_id");
                if ((r = psql(rn->db, sql, line_placed, &p)) < 0)
                        goto out;
                rn->mismatched = p.mismatched;
        }
        /* every identity running has been in a few beats: the load table is full */
        sleep_us(3 * B.o.beat_ms * 1000);
        {
                long hwm;
                if ((r = proc_rss(B.lscd_pid, &rn->rss_after_kib, &hwm)) < 0)
                        goto out;
        }
        rn->ok = true;
        say("%s: %llu bindings in %.2f s: %.0f/s, p50 %.0f ms, p99 %.0f ms", rn->label,
            (unsigned long long)rn->n, rn->total_s, rn->bindings_per_s, rn->p50_ms, rn->p99_ms);
        r = 0;
out:
        if (cli)
                zmq_close(cli);
        sims_stop();
        lscd_stop();
        free(ev.bind);
        free(ev.running);
        free(t_start);
        free(t_ack);
        free(retry);
        free(host_state);
        return r;
}

/* ---- setup and the report ------------------------------------------------------------------- */

static int keys_make(void)
{
        char path[400], dir[320];

        snprintf(dir, sizeof(dir), "%s/keys", B.dir);
        if (mkdir(dir, 0755) < 0)
                return lsc_err_set(-errno, "cannot create %s: %s", dir, strerror(errno));
        if (!(B.keys = calloc(B.o.hosts, sizeof(*B.keys))))
                return -ENOMEM;
        for (uint64_t i = 0; i < B.o.hosts; i++) {
                FILE *f;

                if (zmq_curve_keypair(B.keys[i].pub, B.keys[i].sec) < 0)
                        return lsc_err_set(-ENOTSUP, "this libzmq has no CURVE");
                snprintf(path, sizeof(path), "%s/h%05llu.pub", dir, (unsigned long long)i + 1);
                if (!(f = fopen(path, "we")))
                        return lsc_err_set(-errno, "cannot write %s: %s", path, strerror(errno));
                fprintf(f, "%s\n", B.keys[i].pub);
                fclose(f);
        }
        {
                char sec[320], pub[320], p[LSC_Z85_KEY], s[LSC_Z85_KEY];
                snprintf(sec, sizeof(sec), "%s/lscd.key", B.dir);
                snprintf(pub, sizeof(pub), "%s/lscd.pub", B.dir);
                return lsc_curve_load_or_create(sec, pub, p, s);
        }
}

static int shm_make(void)
{
        size_t n = B.max_n, size = sizeof(struct shm) + n * (2 * sizeof(int64_t) + sizeof(int32_t)) + 64;
        char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED)
                return lsc_err_set(-errno, "mmap: %s", strerror(errno));
        B.shm = (struct shm *)p;
        B.shm->t_cmd = (int64_t *)(p + ((sizeof(struct shm) + 63) & ~(size_t)63));
        B.shm->t_report = B.shm->t_cmd + n;
        B.shm->host_of = (int32_t *)(B.shm->t_report + n);
        return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
        bool naive_set = false;

        for (int i = 1; i < argc; i++) {
                uint64_t *dst = !strcmp(argv[i], "--hosts") ? &o->hosts
                              : !strcmp(argv[i], "--identities") ? &o->identities
                              : !strcmp(argv[i], "--naive-identities") ? &o->naive
                              : !strcmp(argv[i], "--beat-ms") ? &o->beat_ms
                              : !strcmp(argv[i], "--window") ? &o->window
                              : !strcmp(argv[i], "--start-chunk") ? &o->chunk
                              : !strcmp(argv[i], "--hosts-per-process") ? &o->per_sim : NULL;

                if (!strcmp(argv[i], "--keep")) {
                        o->keep = true;
                        continue;
                }
                if (!strcmp(argv[i], "--ready-only")) {
                        o->ready_only = true;
                        continue;
                }
                if (!strcmp(argv[i], "--no-instance-load")) {
                        o->no_instance_load = true;
                        continue;
                }
                if (!strcmp(argv[i], "--help")) {
                        printf("Usage: bench-bind [--hosts N] [--identities N] [--naive-identities N] [--keep]\n"
                               "                  [--beat-ms N] [--window N] [--start-chunk N] [--hosts-per-process N]\n"
                               "                  [--ready-only] [--no-instance-load]\n"
                               "Binds N identities to H simulated CurveZMQ agents through a real lscd and a\n"
                               "private durable PostgreSQL; see docs/performance.md. --naive-identities 0\n"
                               "skips the one-transaction-per-binding run (default min(N, %d)); --ready-only\n"
                               "measures only lscd's memory per identity and time to ready (no binding run);\n"
                               "--no-instance-load: beats carry no per-instance CPU and memory (lscd then keeps\n"
                               "no measured-load history: the difference in RSS after the run is its cost).\n",
                               NAIVE_DEFAULT);
                        exit(0);
                }
                if (!dst || i + 1 >= argc) {
                        fprintf(stderr, "bench-bind: unknown option %s; try --help\n", argv[i]);
                        return -EINVAL;
                }
                if (lsc_parse_u64(argv[i], argv[i + 1], dst) < 0) {
                        fprintf(stderr, "bench-bind: %s\n", lsc_err_msg(-EINVAL));
                        return -EINVAL;
                }
                naive_set |= dst == &o->naive;
                i++;
        }
        if (!naive_set)
                o->naive = o->identities < NAIVE_DEFAULT ? o->identities : NAIVE_DEFAULT;
        if (o->hosts < 1 || o->hosts > 99999 || o->identities < 1 || o->identities > 9999999 ||
            o->naive > 9999999 || o->beat_ms < 100 || o->beat_ms > 2500 || o->window > 100000 ||
            o->per_sim < 1 || o->chunk < 1 || o->chunk > CHUNK_MAX) {
                fprintf(stderr, "bench-bind: --hosts 1-99999, --identities 1-9999999, --beat-ms 100-2500 "
                                "(lscd calls a host suspect after 3 s without a beat), --window 0-100000 "
                                "(0: %d requests of many servers, %d of one), --start-chunk 1-%d\n",
                        WINDOW_CHUNKS, WINDOW_SINGLE, CHUNK_MAX);
                return -EINVAL;
        }
        return 0;
}

static void print_run(const struct run *rn)
{
        double wall = rn->total_s;

        if (!rn->ok) {
                printf("%s run: %s\n", rn->label, rn->attempted ? "did not complete (see above)" : "not run");
                return;
        }
        printf("%s run (lscd %s): %llu identities on %llu hosts\n", rn->label,
               rn->bind_batch == 1 ? "--bind-batch 1, one transaction per binding" : "default, bind batches of up to 1000",
               (unsigned long long)rn->n, (unsigned long long)B.o.hosts);
        printf("  fleet: all hosts registered after %.1f s, all up in lscd's view after %.1f s\n",
               rn->connect_s, rn->up_s);
        printf("  first start request -> last running committed: %.2f s = %.0f bindings/s\n", rn->total_s,
               rn->bindings_per_s);
        printf("  latency per binding (start request sent -> running committed): p50 %.0f ms, p99 %.0f ms\n",
               rn->p50_ms, rn->p99_ms);
        printf("  stages done at: last start acknowledged %.2f s, last binding committed %.2f s, "
               "last running committed %.2f s\n", rn->starts_done_s, rn->last_bind_s, rn->last_running_s);
        printf("  median per binding: start ack %.0f ms; start -> bind committed %.0f ms; bind -> INSTANTIATE "
               "at agent %.1f ms; INSTANTIATE -> Report %.2f ms; Report -> running committed %.0f ms\n",
               rn->med_start_ack_ms, rn->med_to_bind_ms, rn->med_bind_to_cmd_ms, rn->med_cmd_to_report_ms,
               rn->med_report_to_running_ms);
        printf("  PostgreSQL: %ld write transactions (%.0f/s, %.2f per binding), %.1f MiB WAL\n",
               rn->xacts, (double)rn->xacts / wall, (double)rn->xacts / (double)rn->n,
               (double)rn->wal_bytes / 1048576.0);
        printf("  CPU seconds over those %.1f s (2 cores = %.1f s): lscd loop %.1f, lscd store thread %.1f, "
               "lscd zmq I/O %.1f, PostgreSQL %.1f, agent simulators %.1f, bench %.1f\n", wall, 2 * wall,
               rn->cpu_lscd_loop, rn->cpu_lscd_store, rn->cpu_lscd_zmq, rn->cpu_pg, rn->cpu_sims, rn->cpu_bench);
        printf("  checks: %ld \"busy\" start answers asked again, %ld INSTANTIATE resent, %ld moved, %ld re-bound "
               "(generation > 1), %ld agent sends failed, %ld commands refused, %ld hosts fell suspect; %ld hosts "
               "used, %ld overbooked, %ld placements differ from the agents' view\n",
               rn->busy, rn->resends, rn->moved, rn->rebound, rn->send_fail, rn->refusals, rn->flaps,
               rn->hosts_used, rn->overbooked, rn->mismatched);
        printf("  lscd RSS %.0f ms after the last running, agents beating %s: %ld KiB\n", 3.0 * B.o.beat_ms,
               B.o.no_instance_load ? "without per-instance load" : "with per-instance load (measured history)",
               rn->rss_after_kib);
}

static const char *json_num(char buf[32], bool ok, double v, int decimals)
{
        if (!ok || isnan(v))
                return "null";
        snprintf(buf, 32, "%.*f", decimals, v);
        return buf;
}

int main(int argc, char **argv)
{
        char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
        struct run main_run = { .label = "batched", .db = "lsc" };
        struct run naive = { .label = "naive", .db = "lsc_naive", .bind_batch = 1 };
        struct ready empty = { 0 }, loaded = { 0 }, hosts_only = { 0 };
        struct rlimit rl;
        struct sigaction sa = { .sa_handler = on_signal };
        char exe[PATH_MAX], settings[256] = "";
        ssize_t n;
        int r = 0;
        int64_t loaded_at, exec_at;
        double rss_per_id = NAN, rss_per_id_hosts = NAN;

        B.o = (struct opts){ .hosts = HOSTS_DEFAULT, .identities = IDENTITIES_DEFAULT, .beat_ms = BEAT_MS_DEFAULT,
                             .window = 0, .chunk = CHUNK_DEFAULT, .per_sim = PER_SIM_MAX };
        if (parse(argc, argv, &B.o) < 0)
                return 2;
        main_run.n = B.o.identities;
        naive.n = B.o.naive;
        B.max_n = B.o.identities > B.o.naive ? B.o.identities : B.o.naive;

        /* two descriptors per agent connection (the socket's mailbox and its TCP
         * connection): raise the soft limit to the hard one and size the processes */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
                getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur < B.o.hosts + 256) {
                fprintf(stderr, "bench-bind: lscd needs one descriptor per agent: %llu hosts need RLIMIT_NOFILE "
                                ">= %llu, the hard limit here is %llu\n", (unsigned long long)B.o.hosts,
                        (unsigned long long)B.o.hosts + 256, (unsigned long long)rl.rlim_cur);
                return 1;
        }
        if (B.o.per_sim > (rl.rlim_cur - 256) / 2)
                B.o.per_sim = (rl.rlim_cur - 256) / 2;

        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        atexit(cleanup);

        if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) < 0) {
                perror("bench-bind: /proc/self/exe");
                return 1;
        }
        exe[n] = '\0';
        snprintf(B.bindir, sizeof(B.bindir), "%s", exe);
        *strrchr(B.bindir, '/') = '\0';
        /* PostgreSQL runs as an unprivileged user: the scratch must be traversable */
        snprintf(B.dir, sizeof(B.dir), "/var/tmp/lsc-bench.XXXXXX");
        if (!mkdtemp(B.dir) || chmod(B.dir, 0755) < 0) {
                B.dir[0] = '\0';
                perror("bench-bind: mkdtemp");
                return 1;
        }
        if (!(B.zctx = zmq_ctx_new())) {
                r = -errno;
                goto out;
        }
        say("scratch %s; %llu hosts, %llu identities, naive run with %llu; agents beat every %llu ms",
            B.dir, (unsigned long long)B.o.hosts, (unsigned long long)B.o.identities,
            (unsigned long long)B.o.naive, (unsigned long long)B.o.beat_ms);
        if ((r = shm_make()) < 0 || (r = keys_make()) < 0)
                goto out;
        if ((r = pg_start()) < 0)
                goto out;
        psql("postgres", "SELECT 'fsync=' || current_setting('fsync') || ', synchronous_commit=' ||"
                         " current_setting('synchronous_commit') || ', wal_sync_method=' ||"
                         " current_setting('wal_sync_method') || ', shared_buffers=' ||"
                         " current_setting('shared_buffers') || ', PostgreSQL ' || current_setting('server_version')",
             line_copy, settings);
        say("PostgreSQL on port %d (pid %d): %s", B.pg_port, (int)B.pg_pid, settings);
        if ((r = psql("postgres", naive.n ? "CREATE DATABASE lsc; CREATE DATABASE lsc_naive; CREATE DATABASE lsc_ready;"
                                          : "CREATE DATABASE lsc; CREATE DATABASE lsc_ready;",
                      NULL, NULL)) < 0)
                goto out;

        /* an empty lscd: a fresh database (it migrates it), no host, no identity, no agent */
        if ((r = lscd_start("lsc_ready", free_port(), 0, &exec_at)) < 0 ||
            (r = lscd_wait_loaded(120 * 1000000LL, &loaded_at)) < 0)
                goto out;
        sleep_us(1000000);
        if ((r = proc_rss(B.lscd_pid, &empty.rss_kib, &empty.hwm_kib)) < 0)
                goto out;
        empty.view_s = (double)(loaded_at - exec_at) / 1e6;
        say("empty lscd: view loaded %.2f s after exec, RSS %ld KiB", empty.view_s, empty.rss_kib);
        lscd_stop();

        /* lscd started on H hosts and N running identities, no agent: ready and RSS */
        say("ready: %llu hosts and %llu running identities (bulk SQL)", (unsigned long long)B.o.hosts,
            (unsigned long long)main_run.n);
        if ((r = ready_db_fill("lsc_ready", main_run.n)) < 0 || (r = lscd_ready("lsc_ready", &loaded)) < 0)
                goto out;
        lscd_stop();
        say("loaded lscd: view loaded %.2f s, host show answered %.2f s, RSS %ld KiB (peak %ld); host list %s",
            loaded.view_s, loaded.show_s, loaded.rss_kib, loaded.hwm_kib, loaded.list_ok ? "answered" : "did not answer");
        /* the same hosts without identities in the view: what the identities alone cost */
        if ((r = psql("lsc_ready", "UPDATE servers SET state = 'defined', desired = 'stopped', host_id = NULL;"
                                   " UPDATE hosts SET used_vcpus = 0, used_memory_mib = 0, used_disk_gib = 0;",
                      NULL, NULL)) < 0 ||
            (r = lscd_ready("lsc_ready", &hosts_only)) < 0)
                goto out;
        lscd_stop();
        say("hosts-only lscd: ready %.2f s, RSS %ld KiB", hosts_only.ready_s, hosts_only.rss_kib);
        rss_per_id = (double)(loaded.rss_kib - empty.rss_kib) / (double)main_run.n;
        rss_per_id_hosts = (double)(loaded.rss_kib - hosts_only.rss_kib) / (double)main_run.n;

        if (B.o.ready_only)
                goto out;
        if ((r = run_bind(&main_run)) < 0)
                goto out;
        if (naive.n && (r = run_bind(&naive)) < 0)
                goto out;
out:
        if (r < 0)
                say("failed: %s", lsc_err_msg(r));
        cleanup();
        printf("bench-bind: lscd + PostgreSQL (%s) + %llu simulated CurveZMQ agents, %llu identities\n",
               settings, (unsigned long long)B.o.hosts, (unsigned long long)B.o.identities);
        print_run(&main_run);
        if (naive.n && !B.o.ready_only)
                print_run(&naive);
        else
                printf("naive run: skipped (%s)\n", B.o.ready_only ? "--ready-only" : "--naive-identities 0");
        if (loaded.ready_s > 0) {
                printf("lscd memory (VmRSS, no agent connected): empty %ld KiB; %llu hosts without identities %ld KiB; "
                       "%llu hosts with %llu running identities %ld KiB (peak %ld KiB) => %.2f KiB per identity over "
                       "the empty process (%.2f over the hosts-only one)\n", empty.rss_kib,
                       (unsigned long long)B.o.hosts, hosts_only.rss_kib, (unsigned long long)B.o.hosts,
                       (unsigned long long)main_run.n, loaded.rss_kib, loaded.hwm_kib, rss_per_id, rss_per_id_hosts);
                printf("lscd ready on that data (no agent connected): view loaded %.2f s, `lsc host show h00001` "
                       "answered %.2f s after exec => %.2f s; then `lsc host list` %s (%.2f s)\n", loaded.view_s,
                       loaded.show_s, loaded.ready_s,
                       loaded.list_ok ? "answered" : "did NOT answer (lscd's log says why)", loaded.list_took_s);
        } else {
                printf("lscd memory and time to ready: not measured\n");
        }
        if (naive.ok && naive.n != main_run.n)
                printf("note: the naive run used %llu identities, not %llu\n", (unsigned long long)naive.n,
                       (unsigned long long)main_run.n);
        /* what was not measured is null, never a number that looks like a result */
        printf("{\"hosts\": %llu, \"identities\": %llu, \"bindings_per_s\": %s, \"p50_ms\": %s, \"p99_ms\": %s, "
               "\"naive_bindings_per_s\": %s, \"rss_kib_per_identity\": %s, \"ready_s\": %s}\n",
               (unsigned long long)B.o.hosts, (unsigned long long)main_run.n,
               json_num(b1, main_run.ok, main_run.bindings_per_s, 0),
               json_num(b2, main_run.ok, main_run.p50_ms, 1),
               json_num(b3, main_run.ok, main_run.p99_ms, 1),
               json_num(b4, naive.ok, naive.bindings_per_s, 0),
               json_num(b5, !isnan(rss_per_id), rss_per_id, 3),
               json_num(b6, loaded.ready_s > 0, loaded.ready_s, 2));
        return r < 0 ? 1 : 0;
}
