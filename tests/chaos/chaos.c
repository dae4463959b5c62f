/* lsc-chaos: the fault harness. It starts a private PostgreSQL (tests/lib/pg.sh), lscd,
 * lsc-fenced and agents on the fake, test:///default and qemu:///system drivers, injects
 * seeded random faults (kill -9 and restart of an agent, lscd or PostgreSQL; SIGSTOP of
 * an agent past its lease) and checks the invariants against ground truth the agents
 * cannot forge: its own libvirt connection for real VMs, the agents' stamped driver
 * calls cut at their lease deadlines for in-process drivers. It stops, by PID, only
 * what it started. The last line of output is one JSON object. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "util.h"

#ifndef LSC_SOURCE_DIR
#error "LSC_SOURCE_DIR must name the source tree (for tests/lib/*.sh)"
#endif

#define AGENTS_MAX 16
#define SERVERS_MAX 200
#define QEMU_URI "qemu:///system"
#define SAMPLE_US 150000                 /* the libvirt sampler's period */
#define POLL_US 250000                   /* lscd's view is polled this often */
#define FENCE_LINE "without an acknowledged heartbeat: destroying"

enum drv_kind { DK_FAKE, DK_TEST, DK_QEMU, DK_COUNT };
static const char *const dk_names[DK_COUNT] = { "fake", "test", "qemu" };

enum fault_kind { FK_AGENT_KILL, FK_AGENT_STOP, FK_PARTITION, FK_LSCD_KILL, FK_PG_KILL, FK_COUNT };
static const char *const fk_names[FK_COUNT] = { "agent-kill9", "agent-sigstop", "partition", "lscd-kill9",
                                                "pg-kill9" };

/* The partition: everything runs in network namespace A (the harness enters it at
 * start), one more fake agent in namespace B, joined to A by a veth pair whose link
 * the fault cuts. Addresses exist only inside these two namespaces. */
#define NET_A_ADDR "10.213.0.1"
#define NET_B_ADDR "10.213.0.2"

struct opts {
        uint64_t seed;
        int faults, max_seconds, settle_seconds, servers;
        int n_fake, n_test, n_qemu, partition, wire;
        int lease_ms, grace_ms, heartbeat_ms;
        bool keep;
        bool no_fenced;                  /* --broken no-fenced: the checker's own test */
};

/* One run of one agent process: its own log, parsed incrementally. */
struct inc {
        int agent;
        char log[320];
        long off;
        int64_t deadline;                /* the newest lease deadline it logged (boot µs), 0 none */
        int64_t *lapses;                 /* deadlines that passed before a newer one came */
        size_t n_lapses, cap_lapses;
        int64_t died;                    /* boot µs the harness reaped it after kill -9, 0 alive */
};

struct agent {
        char name[48];
        enum drv_kind kind;
        pid_t pid;
        bool frozen;
        int inc;                         /* index into C.incs of the current run */
        int runs;
        char conf[320], state_dir[320];
        pid_t fenced_pid;
        bool partitioned;                /* in namespace B, behind the veth */
        bool wire;                       /* its messages duplicated, replayed, delayed */
};

/* An instance's life on one host: from an agent's log (in-process drivers) or from
 * the harness's own libvirt samples (qemu). */
struct ival {
        char uuid[40];
        int agent;                       /* -1: seen by the libvirt sampler */
        int inc;
        uint64_t gen;
        int64_t start, end;              /* boot µs; end INT64_MAX while open */
};

struct ident {
        char name[64], uuid[40];
        char *orig;                      /* uuid, name, macs, ips, hostname as created */
        char state[16], host[32];
};

/* A host-loss fault's identities and when each ran elsewhere. */
struct move {
        char uuid[40], from[32];
        enum drv_kind kind;
        int64_t t0, done;
        bool closed;                     /* its fault is over: no later move counts */
};

static struct {
        struct opts o;
        char dir[64], bindir[256], prefix[32], ns_a[64], ns_b[64];
        bool ns_made;
        int agent_port, pg_port;
        pid_t pg_pid, lscd_pid;
        int lscd_runs;
        struct agent agents[AGENTS_MAX];
        int n_agents;
        struct inc *incs;
        int n_incs;
        size_t cap_incs;
        struct ival *ivals;
        size_t n_ivals, cap_ivals;
        pthread_mutex_t lock;            /* ivals: the sampler adds to them */
        pthread_t sampler;
        bool sampler_on;
        struct ident ids[SERVERS_MAX];
        int n_ids;
        struct move *moves;
        size_t n_moves, cap_moves;
        int fault_no;
        enum fault_kind fault_kind;
        int fault_agent;
        int kind_count[FK_COUNT];
        long violations, needless, fences_expected;
        uint64_t *reported;              /* overlapping ival pairs already reported: a << 32 | b */
        size_t n_reported, cap_reported;
        long wire_dup, wire_replay, wire_delay;
        char libvirtd_started[512];
        uint64_t rng;
        bool cleaned;
} C;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
        (void)sig;
        g_stop = 1;
}

static int64_t now_us(void)
{
        return lsc_boot_us();            /* the agents' lease clock */
}

static void sleep_us(int64_t us)
{
        struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
        nanosleep(&ts, NULL);
}

static int64_t t_begin;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
        va_list ap;

        fprintf(stdout, "[%7.1f s] ", (double)(now_us() - t_begin) / 1e6);
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
        fflush(stdout);
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
        va_list ap;

        C.violations++;
        fprintf(stdout, "[%7.1f s] VIOLATION: ", (double)(now_us() - t_begin) / 1e6);
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
        fflush(stdout);
}

/* splitmix64: the faults replay from --seed */
static uint64_t rnd(void)
{
        uint64_t z = (C.rng += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static int64_t rnd_range(int64_t lo, int64_t hi)
{
        return hi <= lo ? lo : lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
        if (need <= *cap)
                return p;
        size_t n = *cap ? *cap * 2 : 64;
        while (n < need)
                n *= 2;
        void *q = realloc(p, n * size);
        if (!q) {
                fprintf(stderr, "lsc-chaos: out of memory\n");
                exit(1);
        }
        *cap = n;
        return q;
}

/* ---- processes ----------------------------------------------------------------- */

/* Alive and not a zombie (the postmaster is not our child: nobody here reaps it). */
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

/* Our child: sig, wait up to grace, then SIGKILL. */
static void child_stop(pid_t *pidp, int sig, int64_t grace_us)
{
        pid_t pid = *pidp;
        int64_t deadline = now_us() + grace_us;

        if (pid <= 0)
                return;
        *pidp = 0;
        kill(pid, SIGCONT);
        kill(pid, sig);
        while (waitpid(pid, NULL, WNOHANG) == 0) {
                if (now_us() > deadline) {
                        kill(pid, SIGKILL);
                        waitpid(pid, NULL, 0);
                        return;
                }
                sleep_us(10000);
        }
}

/* Starts argv with stdout and stderr appended to log; dies with the harness. */
static pid_t spawn_in(char *const argv[], const char *log, int deathsig, const char *netns)
{
        pid_t parent = getpid(), pid;
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644), nsfd = -1;
        char path[128];

        if (fd < 0)
                return -1;
        if (netns) {
                snprintf(path, sizeof(path), "/run/netns/%s", netns);
                if ((nsfd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
                        close(fd);
                        return -1;
                }
        }
        pid = fork();
        if (pid == 0) {
                int in = open("/dev/null", O_RDONLY);
                prctl(PR_SET_PDEATHSIG, deathsig);
                if (getppid() != parent || in < 0 || (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0))
                        _exit(127);
                dup2(in, 0);
                dup2(fd, 1);
                dup2(fd, 2);
                execv(argv[0], argv);
                _exit(127);
        }
        close(fd);
        if (nsfd >= 0)
                close(nsfd);
        return pid;
}

static pid_t spawn(char *const argv[], const char *log, int deathsig)
{
        return spawn_in(argv, log, deathsig, NULL);
}

/* Runs argv to the end; its stdout into *ret_out (malloc'd) when asked. Exit status. */
static int run(char *const argv[], char **ret_out, const char *err_log)
{
        int p[2], status;
        pid_t pid;
        char *buf = NULL;
        size_t len = 0, cap = 0;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -1;
        pid = fork();
        if (pid == 0) {
                int in = open("/dev/null", O_RDONLY);
                int err = open(err_log ? err_log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
                dup2(in, 0);
                dup2(p[1], 1);
                dup2(err, 2);
                execv(argv[0], argv);
                _exit(127);
        }
        close(p[1]);
        for (;;) {
                buf = grow(buf, &cap, len + 4097, 1);
                ssize_t n = read(p[0], buf + len, 4096);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        close(p[0]);
        if (buf)
                buf[len] = '\0';
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (ret_out)
                *ret_out = buf ? buf : strdup("");
        else
                free(buf);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int sh(const char *script, char **ret_out)
{
        char *argv[] = { "/bin/bash", "-c", (char *)script, NULL };
        char log[300];

        snprintf(log, sizeof(log), "%s/sh.log", C.dir);
        return run(argv, ret_out, log);
}

/* Namespaces A and B and the veth between them; then the harness enters A, so
 * PostgreSQL, lscd and the other agents run on A's loopback. */
static int net_setup(void)
{
        char script[1200], path[128];
        int fd, rc;

        snprintf(C.ns_a, sizeof(C.ns_a), "lsc-chaos-%s-a", strrchr(C.dir, '.') + 1);
        snprintf(C.ns_b, sizeof(C.ns_b), "lsc-chaos-%s-b", strrchr(C.dir, '.') + 1);
        snprintf(script, sizeof(script),
                 "set -e; ip netns add %s; ip netns add %s; ip -n %s link set lo up; ip -n %s link set lo up; "
                 "ip -n %s link add lscx-a type veth peer name lscx-b netns %s; "
                 "ip -n %s addr add " NET_A_ADDR "/30 dev lscx-a; ip -n %s addr add " NET_B_ADDR "/30 dev lscx-b; "
                 "ip -n %s link set lscx-a up; ip -n %s link set lscx-b up",
                 C.ns_a, C.ns_b, C.ns_a, C.ns_b, C.ns_a, C.ns_b, C.ns_a, C.ns_b, C.ns_a, C.ns_b);
        C.ns_made = true;
        if ((rc = sh(script, NULL)) != 0) {
                fprintf(stderr, "lsc-chaos: cannot make the namespaces for the partition (see %s/sh.log); "
                                "--partition 0 runs without\n", C.dir);
                return -1;
        }
        snprintf(path, sizeof(path), "/run/netns/%s", C.ns_a);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || setns(fd, CLONE_NEWNET) < 0) {
                fprintf(stderr, "lsc-chaos: cannot enter namespace %s: %s\n", C.ns_a, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        close(fd);
        return 0;
}

/* The veth's end in A down (the cut) or up (restored). */
static int net_link(bool up)
{
        char script[200];

        snprintf(script, sizeof(script), "ip -n %s link set lscx-a %s", C.ns_a, up ? "up" : "down");
        return sh(script, NULL);
}

static void net_teardown(void)
{
        char script[300];

        if (!C.ns_made)
                return;
        snprintf(script, sizeof(script), "ip netns del %s; ip netns del %s", C.ns_a, C.ns_b);
        sh(script, NULL);
        C.ns_made = false;
}

/* ---- PostgreSQL, lscd, lsc ----------------------------------------------------------- */

static int pg_start(void)
{
        char script[1024], *out = NULL, path[320], buf[64];
        FILE *f;
        int rc = -1;

        for (int i = 0; i < 20 && rc != 0; i++) {
                if (i)
                        sleep_us(500000);        /* a killed postmaster's backends leave late */
                if (C.pg_port)
                        snprintf(script, sizeof(script), ". '%s/tests/lib/pg.sh' && pg_start '%s/pg' %d "
                                 ">>'%s/pg-start.log' 2>&1 && echo $PG_PORT", LSC_SOURCE_DIR, C.dir, C.pg_port, C.dir);
                else
                        snprintf(script, sizeof(script), ". '%s/tests/lib/pg.sh' && pg_start '%s/pg' "
                                 ">>'%s/pg-start.log' 2>&1 && echo $PG_PORT", LSC_SOURCE_DIR, C.dir, C.dir);
                free(out);
                out = NULL;
                rc = sh(script, &out);
        }
        snprintf(path, sizeof(path), "%s/pg/postmaster.pid", C.dir);
        if ((f = fopen(path, "re"))) {
                if (fgets(buf, sizeof(buf), f))
                        C.pg_pid = (pid_t)atoi(buf);
                fclose(f);
        }
        if (rc == 0 && !C.pg_port)
                C.pg_port = atoi(out);
        free(out);
        if (rc != 0)
                fprintf(stderr, "lsc-chaos: PostgreSQL did not start (see %s/pg-start.log)\n", C.dir);
        return rc == 0 && C.pg_pid > 0 ? 0 : -1;
}

static void pg_kill(int sig)
{
        pid_t pid = C.pg_pid;
        int64_t deadline = now_us() + 20000000;

        if (pid <= 0)
                return;
        C.pg_pid = 0;
        kill(pid, sig);
        while (pid_alive(pid) && now_us() < deadline)
                sleep_us(20000);
        if (pid_alive(pid))
                kill(pid, SIGKILL);
}

static int lscd_start(void)
{
        char conninfo[200], listen_ep[320], agent_ep[64], key[320], keys[320], lscd[PATH_MAX + 8], log[320];
        char lease[16], grace[16];

        snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=5",
                 C.pg_port);
        snprintf(listen_ep, sizeof(listen_ep), "ipc://%s/lscd.sock", C.dir);
        /* with a partition, also on the veth: the agent in namespace B comes through it */
        snprintf(agent_ep, sizeof(agent_ep), "tcp://%s:%d", C.o.partition ? "0.0.0.0" : "127.0.0.1", C.agent_port);
        snprintf(key, sizeof(key), "%s/lscd.key", C.dir);
        snprintf(keys, sizeof(keys), "%s/keys", C.dir);
        snprintf(lscd, sizeof(lscd), "%s/lscd", C.bindir);
        snprintf(log, sizeof(log), "%s/lscd.log", C.dir);
        snprintf(lease, sizeof(lease), "%d", C.o.lease_ms);
        snprintf(grace, sizeof(grace), "%d", C.o.grace_ms);
        char *argv[] = { lscd, "--db", conninfo, "--listen", listen_ep, "--agent-listen", agent_ep,
                         "--curve-key", key, "--authorized-keys", keys, "--lease-ttl-ms", lease,
                         "--grace-ms", grace, "--seed", "1", NULL };
        C.lscd_runs++;
        if ((C.lscd_pid = spawn(argv, log, SIGTERM)) < 0)
                return -1;
        return 0;
}

static int lsc_json(json_t **ret, const char *a1, const char *a2, const char *a3)
{
        char lsc[PATH_MAX + 8], *out = NULL;
        char *argv[] = { lsc, "--timeout", "3", "--json", (char *)a1, (char *)a2, (char *)a3, NULL };
        int rc;

        snprintf(lsc, sizeof(lsc), "%s/lsc", C.bindir);
        rc = run(argv, &out, NULL);
        *ret = NULL;
        if (rc == 0 && !(*ret = json_loads(out, 0, NULL)))
                rc = -1;
        free(out);
        return rc;
}

static int lsc_cmd(char **argv_tail, int n)
{
        char lsc[PATH_MAX + 8], log[320];
        char *argv[SERVERS_MAX + 8];
        int k = 0;

        snprintf(lsc, sizeof(lsc), "%s/lsc", C.bindir);
        snprintf(log, sizeof(log), "%s/lsc.log", C.dir);
        argv[k++] = lsc;
        argv[k++] = "--timeout";
        argv[k++] = "10";
        for (int i = 0; i < n; i++)
                argv[k++] = argv_tail[i];
        argv[k] = NULL;
        return run(argv, NULL, log);
}

static bool lscd_answers(void)
{
        json_t *j;
        int rc = lsc_json(&j, "host", "list", NULL);

        json_decref(j);
        return rc == 0;
}

/* ---- agents ------------------------------------------------------------------------------ */

static int agent_start(int a)
{
        struct agent *ag = &C.agents[a];
        char exe[PATH_MAX + 16], mgr[64], key[320];
        struct inc *in;

        C.incs = grow(C.incs, &C.cap_incs, (size_t)C.n_incs + 1, sizeof(*C.incs));
        in = &C.incs[C.n_incs];
        memset(in, 0, sizeof(*in));
        in->agent = a;
        snprintf(in->log, sizeof(in->log), "%s/agent-%s.%d.log", C.dir, ag->name, ++ag->runs);
        snprintf(exe, sizeof(exe), "%s/lsc-agent", C.bindir);
        snprintf(mgr, sizeof(mgr), "tcp://%s:%d", ag->partitioned ? NET_A_ADDR : "127.0.0.1", C.agent_port);
        snprintf(key, sizeof(key), "%s/lscd.pub", C.dir);
        char *argv[] = { exe, "--name", ag->name, "--state-dir", ag->state_dir, "--config", ag->conf,
                         "--manager", mgr, "--manager-key", key, "--log-level", "debug", NULL };
        if ((ag->pid = spawn_in(argv, in->log, SIGKILL, ag->partitioned ? C.ns_b : NULL)) < 0)
                return -1;
        ag->inc = C.n_incs++;
        ag->frozen = false;
        return 0;
}

static int agent_setup(int a, enum drv_kind kind)
{
        struct agent *ag = &C.agents[a];
        char path[400], script[2400];
        FILE *f;

        ag->kind = kind;
        char name[48];
        /* the qemu host's domains live in the one libvirtd that other runs share, and
         * agents and lsc-fenced take theirs by host name: that name is this run's own */
        snprintf(name, sizeof(name), "%s%s%d", kind == DK_QEMU ? C.prefix : "", dk_names[kind], a + 1);
        snprintf(ag->name, sizeof(ag->name), "%s", name);
        snprintf(ag->state_dir, sizeof(ag->state_dir), "%s/agents/%s", C.dir, name);
        snprintf(ag->conf, sizeof(ag->conf), "%s/%s.conf", C.dir, name);
        snprintf(script, sizeof(script), "mkdir -p '%s' '%s/images' && '%s/lsc-agent' --name %s --state-dir '%s' "
                 "--print-public-key >'%s/keys/%s.pub.tmp' && mv '%s/keys/%s.pub.tmp' '%s/keys/%s.pub'",
                 ag->state_dir, C.dir, C.bindir, ag->name, ag->state_dir, C.dir, ag->name, C.dir, ag->name,
                 C.dir, ag->name);
        if (sh(script, NULL) != 0)
                return -1;
        if (!(f = fopen(ag->conf, "we")))
                return -1;
        fprintf(f, "[agent]\nheartbeat_ms = %d\n", C.o.heartbeat_ms);
        switch (kind) {
        case DK_FAKE:
                fprintf(f, "driver = fake\nvcpus = 8\nmemory_mib = 4096\ndisk_gib = 100\n");
                break;
        case DK_TEST:
                fprintf(f, "driver = libvirt\nuri = test:///default\nvcpus = 8\nmemory_mib = 4096\ndisk_gib = 100\n");
                break;
        default:
                /* two tiny TCG guests at most: two shared cores */
                snprintf(path, sizeof(path), "%s/fenced-%s.sock", C.dir, ag->name);
                fprintf(f, "driver = libvirt\nuri = " QEMU_URI "\nvcpus = 2\nmemory_mib = 256\ndisk_gib = 100\n"
                        "image_dir = %s/images\ndriver_slow_ms = 120000\ndestroy_budget_ms = %d\n", C.dir,
                        C.o.lease_ms / 2);
                if (!C.o.no_fenced)
                        fprintf(f, "fenced_socket = %s\n", path);
                break;
        }
        /* test-only wire faults (agent/loop.c chaos_send): the second agent of each
         * in-process kind gets its messages duplicated, replayed and delayed */
        if (C.o.wire && kind != DK_QEMU && (a == 1 || a == C.o.n_fake + 1)) {
                ag->wire = true;
                fprintf(f, "chaos_duplicate_pct = 10\nchaos_replay_pct = 10\nchaos_delay_pct = 10\n"
                        "chaos_delay_ms = 700\n");
        }
        fclose(f);
        if (kind == DK_QEMU && !C.o.no_fenced) {
                char exe[PATH_MAX + 16], log[320];
                snprintf(exe, sizeof(exe), "%s/lsc-fenced", C.bindir);
                snprintf(log, sizeof(log), "%s/fenced-%s.log", C.dir, ag->name);
                char *argv[] = { exe, "--socket", path, "--uri", QEMU_URI, "--host", ag->name, "--state-dir", ag->state_dir,
                                 NULL };
                if ((ag->fenced_pid = spawn(argv, log, SIGTERM)) < 0)
                        return -1;
        }
        return 0;
}

/* ---- ground truth: the agents' stamped driver calls ------------------------------------ */

static struct ival *ival_add(const char *uuid, int agent, int inc, uint64_t gen, int64_t start)
{
        struct ival *v;

        C.ivals = grow(C.ivals, &C.cap_ivals, C.n_ivals + 1, sizeof(*C.ivals));
        v = &C.ivals[C.n_ivals++];
        snprintf(v->uuid, sizeof(v->uuid), "%s", uuid);
        v->agent = agent;
        v->inc = inc;
        v->gen = gen;
        v->start = start;
        v->end = INT64_MAX;
        return v;
}

static void inc_lapse(struct inc *in, int64_t at)
{
        in->lapses = grow(in->lapses, &in->cap_lapses, in->n_lapses + 1, sizeof(*in->lapses));
        in->lapses[in->n_lapses++] = at;
}

/* "... driver OP NAME (UUID) generation G: WHAT at boot T us" */
static void parse_driver_line(int i, const char *p)
{
        struct inc *in = &C.incs[i];
        char op[16], name[80], uuid[48], what[16];
        unsigned long long g;
        long long t;

        if (sscanf(p, "driver %15s %79s (%47[^)]) generation %llu: %15s at boot %lld us", op, name, uuid, &g, what,
                   &t) != 6)
                return;
        if (C.agents[in->agent].kind == DK_QEMU)
                return;                  /* libvirt itself says what runs there */
        pthread_mutex_lock(&C.lock);
        if (strcmp(op, "instantiate") == 0 && strcmp(what, "intent") == 0) {
                ival_add(uuid, in->agent, i, g, t);
        } else if ((strcmp(op, "instantiate") == 0 && strcmp(what, "failed") == 0) ||
                   (strcmp(op, "instantiate") != 0 && strcmp(what, "returned") == 0)) {
                bool inst = strcmp(op, "instantiate") == 0;
                for (size_t k = 0; k < C.n_ivals; k++) {
                        struct ival *v = &C.ivals[k];
                        if (v->inc == i && v->end == INT64_MAX && strcmp(v->uuid, uuid) == 0 &&
                            (inst ? v->gen == g : v->gen <= g))
                                v->end = t;
                }
        }
        pthread_mutex_unlock(&C.lock);
}

/* New lines of every agent log: driver calls, lease deadlines, self-fencing. */
static void logs_parse(void)
{
        char line[2048];

        for (int i = 0; i < C.n_incs; i++) {
                struct inc *in = &C.incs[i];
                struct agent *ag = &C.agents[in->agent];
                FILE *f = fopen(in->log, "re");
                char *p;

                if (!f)
                        continue;
                fseek(f, in->off, SEEK_SET);
                while (fgets(line, sizeof(line), f)) {
                        size_t n = strlen(line);
                        long long x, d;
                        if (n == 0 || line[n - 1] != '\n')
                                break;           /* half a line: read it whole next time */
                        in->off += (long)n;
                        if ((p = strstr(line, ": driver ")))
                                parse_driver_line(i, p + 2);
                        else if ((p = strstr(line, "lease until now")) &&
                                 sscanf(p, "lease until now%lld ms (at boot %lld us)", &x, &d) == 2) {
                                int64_t logged = d - x * 1000;
                                if (in->deadline && logged > in->deadline)
                                        inc_lapse(in, d > in->deadline && d < logged ? d : in->deadline);
                                if (d > in->deadline)
                                        in->deadline = d;
                        } else if (strstr(line, "chaos: ")) {
                                C.wire_dup += strstr(line, "sent twice") != NULL;
                                C.wire_replay += strstr(line, "replayed") != NULL;
                                C.wire_delay += strstr(line, "held back") != NULL;
                        } else if (strstr(line, FENCE_LINE)) {
                                bool own = (C.fault_kind == FK_AGENT_KILL || C.fault_kind == FK_AGENT_STOP ||
                                            C.fault_kind == FK_PARTITION) && in->agent == C.fault_agent;
                                n = strcspn(line, "\n");
                                line[n] = '\0';
                                if (own) {
                                        C.fences_expected++;
                                } else {
                                        C.needless++;
                                        say("NEEDLESS SELF-FENCING during fault %d (%s): %s: %s", C.fault_no,
                                            fk_names[C.fault_kind], ag->name, line);
                                }
                        }
                }
                fclose(f);
        }
}

/* Where an in-process instance of inc ends at the latest: its first lapse after start,
 * or the last deadline once passed (a killed or frozen agent). */
static int64_t inc_cut(const struct inc *in, int64_t start, int64_t now, bool death)
{
        int64_t cut = INT64_MAX;

        for (size_t k = 0; k < in->n_lapses && cut == INT64_MAX; k++)
                if (in->lapses[k] > start)
                        cut = in->lapses[k];
        if (cut == INT64_MAX && in->deadline && in->deadline > start && in->deadline < now)
                cut = in->deadline;
        /* an in-process hypervisor (fake, test:///default) dies with its agent: the
         * harness's own waitpid after kill -9 is a fact the agent cannot forge */
        if (death && in->died && in->died < cut)
                cut = in->died > start ? in->died : start;
        return cut;
}

/* ---- ground truth: the harness's own libvirt connection -------------------------------- */

static void virt_quiet(void *ud, virErrorPtr e)
{
        (void)ud;
        (void)e;
}

static void *sampler_main(void *arg)
{
        virConnectPtr conn = NULL;
        size_t plen = strlen(C.prefix);
        (void)arg;

        while (!g_stop && C.sampler_on) {
                virDomainPtr *doms = NULL;
                int64_t t;
                int n;

                if (!conn && !(conn = virConnectOpen(QEMU_URI))) {
                        sleep_us(1000000);
                        continue;
                }
                t = now_us();
                n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
                if (n < 0) {
                        virConnectClose(conn);
                        conn = NULL;
                        continue;
                }
                pthread_mutex_lock(&C.lock);
                /* a qemu interval is [first, last sample that saw it]; inc 1 while open */
                for (int i = 0; i < n; i++) {
                        const char *name = virDomainGetName(doms[i]);
                        char uuid[VIR_UUID_STRING_BUFLEN];
                        if (name && strncmp(name, C.prefix, plen) == 0 &&
                            virDomainGetUUIDString(doms[i], uuid) == 0) {
                                size_t k;
                                for (k = 0; k < C.n_ivals; k++) {
                                        struct ival *v = &C.ivals[k];
                                        if (v->agent == -1 && v->inc == 1 && strcmp(v->uuid, uuid) == 0)
                                                break;
                                }
                                if (k == C.n_ivals)
                                        ival_add(uuid, -1, 1, 0, t)->end = t;
                                else
                                        C.ivals[k].end = t;
                        }
                        virDomainFree(doms[i]);
                }
                for (size_t k = 0; k < C.n_ivals; k++)
                        if (C.ivals[k].agent == -1 && C.ivals[k].inc == 1 && C.ivals[k].end != t)
                                C.ivals[k].inc = 0;
                pthread_mutex_unlock(&C.lock);
                free(doms);
                sleep_us(SAMPLE_US);
        }
        if (conn)
                virConnectClose(conn);
        return NULL;
}

/* Destroys and undefines the domains of this run (their names carry its prefix). */
static void qemu_sweep(void)
{
        virConnectPtr conn = virConnectOpen(QEMU_URI);
        virDomainPtr *doms = NULL;
        int n;

        if (!conn)
                return;
        n = virConnectListAllDomains(conn, &doms, 0);
        for (int i = 0; i < n; i++) {
                const char *name = virDomainGetName(doms[i]);
                if (name && strncmp(name, C.prefix, strlen(C.prefix)) == 0) {
                        virDomainDestroy(doms[i]);
                        virDomainUndefine(doms[i]);
                }
                virDomainFree(doms[i]);
        }
        free(doms);
        virConnectClose(conn);
}

/* ---- checks -------------------------------------------------------------------------------- */

static const char *agent_name(int a)
{
        return a < 0 ? "qemu(libvirt)" : C.agents[a].name;
}

static const char *ident_name(const char *uuid)
{
        for (int i = 0; i < C.n_ids; i++)
                if (strcmp(C.ids[i].uuid, uuid) == 0)
                        return C.ids[i].name;
        return "?";
}

/* The end of x for the checker: a log interval cut at its agent's lapsed lease. */
static int64_t ival_end(const struct ival *x, int64_t now, bool death)
{
        int64_t e = x->end;

        if (x->agent >= 0) {
                int64_t cut = inc_cut(&C.incs[x->inc], x->start, now, death);
                if (cut < e)
                        e = cut;
        }
        return e;
}

/* The first instant both live, or -1. Log intervals are [start, end); a libvirt one is
 * [first, last] sample that saw the domain running: each of its samples is a fact. */
static int64_t ival_overlap(const struct ival *x, int64_t xe, const struct ival *y, int64_t ye)
{
        int64_t s = x->start > y->start ? x->start : y->start;

        if (x->agent < 0 || y->agent < 0) {
                const struct ival *q = x->agent < 0 ? x : y;
                int64_t le = x->agent < 0 ? ye : xe;
                return s <= q->end && s < le ? s : -1;
        }
        return s < (xe < ye ? xe : ye) ? s : -1;
}

/* True when the overlap of ivals a and b was reported before; notes it otherwise (ival
 * indexes are stable: the list only grows). */
static bool pair_reported(size_t a, size_t b)
{
        uint64_t key = (uint64_t)a << 32 | (uint64_t)b;

        for (size_t i = 0; i < C.n_reported; i++)
                if (C.reported[i] == key)
                        return true;
        C.reported = grow(C.reported, &C.cap_reported, C.n_reported + 1, sizeof(*C.reported));
        C.reported[C.n_reported++] = key;
        return false;
}

/* Never two live instances of one identity at once, on any two hosts. */
static long check_overlaps(bool print, bool death)
{
        int64_t now = now_us();
        long n = 0;

        pthread_mutex_lock(&C.lock);
        for (size_t a = 0; a < C.n_ivals; a++) {
                struct ival *x = &C.ivals[a];
                int64_t xe = ival_end(x, now, death);
                for (size_t b = a + 1; b < C.n_ivals; b++) {
                        struct ival *y = &C.ivals[b];
                        int64_t ye, at;
                        if (strcmp(x->uuid, y->uuid) != 0 || (x->agent < 0 && y->agent < 0) ||
                            (x->agent == y->agent && x->inc == y->inc))
                                continue;
                        ye = ival_end(y, now, death);
                        if ((at = ival_overlap(x, xe, y, ye)) < 0)
                                continue;
                        n++;
                        if (print && !pair_reported(a, b))
                                violation("two live instances of %s (%s) at %+.3f s: on %s (%+.3f s to %s) and on %s "
                                          "(%+.3f s to %s)", ident_name(x->uuid), x->uuid,
                                          (double)(at - t_begin) / 1e6, agent_name(x->agent),
                                          (double)(x->start - t_begin) / 1e6, xe == INT64_MAX ? "now" : "its end",
                                          agent_name(y->agent), (double)(y->start - t_begin) / 1e6,
                                          ye == INT64_MAX ? "now" : "its end");
                }
        }
        pthread_mutex_unlock(&C.lock);
        return n;
}

static const char *jstr(json_t *o, const char *k)
{
        const char *s = json_string_value(json_object_get(o, k));
        return s ? s : "";
}

/* The identity as created: what must never change. */
static char *ident_core(json_t *o)
{
        json_t *c = json_pack("{s:O, s:O, s:O, s:O, s:O}", "uuid", json_object_get(o, "uuid"), "name",
                              json_object_get(o, "name"), "macs", json_object_get(o, "macs"), "ips",
                              json_object_get(o, "ips"), "hostname", json_object_get(o, "hostname"));
        char *s = c ? json_dumps(c, JSON_SORT_KEYS | JSON_COMPACT) : NULL;

        json_decref(c);
        return s;
}

/* lscd's view: identities and hosts. ok: whether it answered. converged: every
 * identity runs on exactly one host and every host whose agent runs is up. Identity
 * and capacity invariants are checked when check is set. */
static bool view_poll(bool check, bool *ret_converged)
{
        json_t *servers = NULL, *hosts = NULL, *o;
        size_t i;
        bool conv = true;
        int64_t t = now_us();

        *ret_converged = false;
        if (lsc_json(&servers, "server", "list", NULL) != 0 || !json_is_array(servers) ||
            lsc_json(&hosts, "host", "list", NULL) != 0 || !json_is_array(hosts)) {
                json_decref(servers);
                json_decref(hosts);
                return false;
        }
        for (int k = 0; k < C.n_ids; k++) {
                struct ident *id = &C.ids[k];
                json_t *found = NULL;
                json_array_foreach(servers, i, o)
                        if (strcmp(jstr(o, "uuid"), id->uuid) == 0)
                                found = o;
                if (!found) {
                        if (check)
                                violation("identity %s (%s) is gone from `lsc server list`", id->name, id->uuid);
                        conv = false;
                        continue;
                }
                snprintf(id->state, sizeof(id->state), "%s", jstr(found, "state"));
                snprintf(id->host, sizeof(id->host), "%s", jstr(found, "host"));
                if (check) {
                        char *core = ident_core(found);
                        if (!core || strcmp(core, id->orig) != 0)
                                violation("identity %s changed: was %s, is %s", id->name, id->orig,
                                          core ? core : "?");
                        free(core);
                }
                int where = 0;
                json_t *h;
                size_t hi;
                json_array_foreach(hosts, hi, h) {
                        json_t *inst;
                        size_t ii;
                        json_array_foreach(json_object_get(h, "instances"), ii, inst)
                                if (strcmp(json_string_value(inst) ? json_string_value(inst) : "", id->name) == 0)
                                        where++;
                }
                if (strcmp(id->state, "running") != 0 || !id->host[0] || where != 1)
                        conv = false;
                /* relocations: the first time it runs off the host that was lost */
                for (size_t m = 0; m < C.n_moves; m++) {
                        struct move *mv = &C.moves[m];
                        if (!mv->done && !mv->closed && strcmp(mv->uuid, id->uuid) == 0 && strcmp(id->state, "running") == 0 &&
                            id->host[0] && strcmp(id->host, mv->from) != 0)
                                mv->done = t;
                }
        }
        json_array_foreach(hosts, i, o) {
                const char *name = jstr(o, "name");
                double ratio = json_number_value(json_object_get(o, "alloc_ratio"));
                static const char *const dims[][2] = { { "used_vcpus", "vcpus" },
                                                       { "used_memory_mib", "memory_mib" },
                                                       { "used_disk_gib", "disk_gib" } };
                if (ratio <= 0)
                        ratio = 1.0;
                if (check)
                        for (size_t d = 0; d < ARRAY_SIZE(dims); d++) {
                                json_int_t used = json_integer_value(json_object_get(o, dims[d][0]));
                                json_int_t cap = json_integer_value(json_object_get(o, dims[d][1]));
                                if ((double)used > (double)cap * ratio + 1e-9)
                                        violation("host %s over its allocatable capacity: %s %lld > %s %lld x %.2f",
                                                  name, dims[d][0], (long long)used, dims[d][1], (long long)cap,
                                                  ratio);
                        }
                for (int a = 0; a < C.n_agents; a++)
                        if (strcmp(C.agents[a].name, name) == 0 && C.agents[a].pid > 0 && !C.agents[a].frozen &&
                            strcmp(jstr(o, "liveness"), "up") != 0)
                                conv = false;
        }
        json_decref(servers);
        json_decref(hosts);
        *ret_converged = conv;
        return true;
}

/* Waits us while polling lscd's view (relocations) and the logs. */
static void wait_polling(int64_t us)
{
        int64_t end = now_us() + us;
        bool conv;

        while (!g_stop && now_us() < end) {
                int64_t left = end - now_us();
                view_poll(false, &conv);
                logs_parse();
                if (left > 0)
                        sleep_us(left < POLL_US ? left : POLL_US);
        }
}

/* Until converged (and at least min_us); false after the bound. */
static bool settle(int64_t min_us, int64_t *ret_us)
{
        int64_t t0 = now_us(), bound = (int64_t)C.o.settle_seconds * 1000000, since = 0;
        bool conv = false;

        for (;;) {
                bool ok = view_poll(false, &conv);
                logs_parse();
                if (g_stop)
                        return false;
                /* converged for a second on end: a view between a freeze and its
                 * consequences can look settled for a poll or two */
                if (!ok || !conv)
                        since = 0;
                else if (!since)
                        since = now_us();
                if (since && now_us() - since >= 1000000 && now_us() - t0 >= min_us)
                        break;
                if (now_us() - t0 > bound) {
                        *ret_us = now_us() - t0;
                        return false;
                }
                sleep_us(POLL_US);
        }
        *ret_us = now_us() - t0;
        return true;
}

static void check_all(const char *when)
{
        bool conv;

        logs_parse();
        if (!view_poll(true, &conv))
                violation("%s: lscd does not answer", when);
        check_overlaps(true, true);          /* violation() counted the new ones */
}

/* ---- faults -------------------------------------------------------------------------------- */

static void moves_note(int a, int64_t t0)
{
        for (int k = 0; k < C.n_ids; k++) {
                struct ident *id = &C.ids[k];
                if (strcmp(id->host, C.agents[a].name) != 0)
                        continue;
                C.moves = grow(C.moves, &C.cap_moves, C.n_moves + 1, sizeof(*C.moves));
                struct move *mv = &C.moves[C.n_moves++];
                memset(mv, 0, sizeof(*mv));
                snprintf(mv->uuid, sizeof(mv->uuid), "%s", id->uuid);
                snprintf(mv->from, sizeof(mv->from), "%s", C.agents[a].name);
                mv->kind = C.agents[a].kind;
                mv->t0 = t0;
        }
}

static void fault_one(void)
{
        int64_t lease = (int64_t)C.o.lease_ms * 1000, grace = (int64_t)C.o.grace_ms * 1000, t0, settled = 0;
        uint64_t r = rnd() % 100;
        enum fault_kind k;
        int a = (int)(rnd() % (uint64_t)C.n_agents);

        if (!C.o.partition)
                k = r < 30 ? FK_AGENT_KILL : r < 60 ? FK_AGENT_STOP : r < 80 ? FK_LSCD_KILL : FK_PG_KILL;
        else
                k = r < 25 ? FK_AGENT_KILL : r < 50 ? FK_AGENT_STOP : r < 65 ? FK_PARTITION
                                                                          : r < 80 ? FK_LSCD_KILL : FK_PG_KILL;
        if (k == FK_PARTITION)
                for (int i = 0; i < C.n_agents; i++)
                        if (C.agents[i].partitioned)
                                a = i;
        if (C.o.no_fenced) {
                /* the broken deployment: freeze the qemu agent, whose VMs nothing fences now */
                k = FK_AGENT_STOP;
                for (int i = 0; i < C.n_agents; i++)
                        if (C.agents[i].kind == DK_QEMU)
                                a = i;
        }
        char what[200];
        bool conv;

        logs_parse();                    /* what came before belongs to the fault before */
        view_poll(false, &conv);
        C.fault_no++;
        C.fault_kind = k;
        C.fault_agent = a;
        C.kind_count[k]++;
        t0 = now_us();
        switch (k) {
        case FK_AGENT_KILL: {
                struct agent *ag = &C.agents[a];
                /* half the time back before the host is lost, half after */
                int64_t down = rnd() % 2 ? rnd_range(300000, 2000000) : lease + grace + rnd_range(1000000, 4000000);
                if (down >= lease + grace)
                        moves_note(a, t0);       /* the host is lost: its identities move */
                kill(ag->pid, SIGKILL);
                waitpid(ag->pid, NULL, 0);
                C.incs[ag->inc].died = now_us();
                ag->pid = 0;
                wait_polling(down);
                agent_start(a);
                snprintf(what, sizeof(what), "%s %s (%s), restarted after %.1f s", fk_names[k], ag->name,
                         dk_names[ag->kind], (double)down / 1e6);
                break;
        }
        case FK_AGENT_STOP: {
                struct agent *ag = &C.agents[a];
                int64_t len = C.o.no_fenced ? lease + grace + 4000000 : lease + rnd_range(500000, grace + 3000000);
                if (len >= lease + grace)
                        moves_note(a, t0);
                kill(ag->pid, SIGSTOP);
                ag->frozen = true;
                wait_polling(len);
                kill(ag->pid, SIGCONT);
                ag->frozen = false;
                snprintf(what, sizeof(what), "%s %s (%s) for %.1f s", fk_names[k], ag->name, dk_names[ag->kind],
                         (double)len / 1e6);
                break;
        }
        case FK_PARTITION: {
                struct agent *ag = &C.agents[a];
                int64_t len = lease + rnd_range(500000, grace + 3000000);
                if (len >= lease + grace)
                        moves_note(a, t0);
                if (net_link(false) != 0)
                        violation("cannot cut the link of %s", ag->name);
                wait_polling(len);
                if (net_link(true) != 0) {
                        violation("cannot restore the link of %s", ag->name);
                        g_stop = 1;
                }
                snprintf(what, sizeof(what), "%s of %s (%s) for %.1f s", fk_names[k], ag->name, dk_names[ag->kind],
                         (double)len / 1e6);
                break;
        }
        case FK_LSCD_KILL: {
                int64_t down = rnd_range(0, 500000);
                kill(C.lscd_pid, SIGKILL);
                waitpid(C.lscd_pid, NULL, 0);
                C.lscd_pid = 0;
                sleep_us(down);
                lscd_start();
                snprintf(what, sizeof(what), "%s, restarted after %.1f s", fk_names[k], (double)down / 1e6);
                break;
        }
        case FK_PG_KILL: {
                int64_t down = rnd_range(500000, lease + 2000000);
                pg_kill(SIGKILL);
                wait_polling(down);
                if (pg_start() < 0) {
                        violation("PostgreSQL did not restart");
                        g_stop = 1;
                }
                snprintf(what, sizeof(what), "%s, down %.1f s", fk_names[k], (double)down / 1e6);
                break;
        }
        default:
                return;
        }
        /* lscd and PostgreSQL faults: watch a whole lease and grace for needless fencing */
        bool ok = settle(k == FK_LSCD_KILL || k == FK_PG_KILL ? lease + grace : 0, &settled);
        say("fault %d: %s; %s in %.1f s", C.fault_no, what, ok ? "converged" : "NOT converged",
            (double)settled / 1e6);
        if (!ok && !g_stop)
                violation("fault %d: no convergence within %d s", C.fault_no, C.o.settle_seconds);
        check_all(what);
        for (size_t m = 0; m < C.n_moves; m++)
                C.moves[m].closed = true;
}

/* Real VMs only where the identities are: a qemu host emptied by a fault gets two
 * back by `lsc server migrate --to` (break-before-make, checked like any move). */
static void qemu_fill(void)
{
        for (int a = 0; a < C.n_agents; a++) {
                struct agent *ag = &C.agents[a];
                int have = 0, moved = 0;
                int64_t took = 0;
                char names[200] = "";
                if (ag->kind != DK_QEMU || ag->pid <= 0 || ag->frozen)
                        continue;
                for (int k = 0; k < C.n_ids; k++)
                        have += strcmp(C.ids[k].host, ag->name) == 0;
                for (int k = 0; k < C.n_ids && have + moved < 2; k++) {
                        struct ident *id = &C.ids[(k + C.fault_no) % C.n_ids];
                        char *argv[] = { "server", "migrate", id->name, "--to", ag->name };
                        if (strcmp(id->host, ag->name) == 0 || strcmp(id->state, "running") != 0)
                                continue;
                        if (lsc_cmd(argv, 5) == 0) {
                                moved++;
                                snprintf(names + strlen(names), sizeof(names) - strlen(names), " %s", id->name);
                        }
                }
                if (!moved)
                        continue;
                bool ok = settle(0, &took);
                say("migrated%s to %s: %s in %.1f s", names, ag->name, ok ? "converged" : "NOT converged",
                    (double)took / 1e6);
                if (!ok && !g_stop)
                        violation("migrations to %s: no convergence within %d s", ag->name, C.o.settle_seconds);
                check_all("migrate");
        }
}

/* ---- set-up and the end ---------------------------------------------------------------------- */

static void cleanup(void)
{
        if (C.cleaned)
                return;
        C.cleaned = true;
        C.sampler_on = false;
        for (int a = 0; a < C.n_agents; a++)
                child_stop(&C.agents[a].pid, SIGTERM, 15000000);
        if (C.o.n_qemu)
                qemu_sweep();            /* the agents leave their VMs running */
        for (int a = 0; a < C.n_agents; a++)
                child_stop(&C.agents[a].fenced_pid, SIGTERM, 10000000);
        child_stop(&C.lscd_pid, SIGTERM, 30000000);
        if (C.pg_pid > 0)
                pg_kill(SIGQUIT);        /* PostgreSQL's immediate shutdown */
        net_teardown();
        if (C.libvirtd_started[0]) {
                char script[1024];
                snprintf(script, sizeof(script), ". '%s/tests/lib/libvirtd.sh' && LIBVIRTD_STARTED=(%s) && "
                         "libvirtd_stop_started", LSC_SOURCE_DIR, C.libvirtd_started);
                sh(script, NULL);
        }
        /* kept for a look after violations, unless they were the point (--broken) */
        if (C.dir[0] && !C.o.keep && (C.violations == 0 || C.o.no_fenced)) {
                char cmd[400];
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", C.dir);
                if (system(cmd) != 0)
                        fprintf(stderr, "lsc-chaos: could not remove %s\n", C.dir);
        } else if (C.dir[0]) {
                fprintf(stderr, "lsc-chaos: scratch kept: %s\n", C.dir);
        }
}

static void usage(FILE *f)
{
        fputs("Usage: lsc-chaos [--seed N] [--faults N] [--max-seconds N] [--settle-seconds N]\n"
              "                 [--servers N] [--fake N] [--test N] [--qemu N] [--partition 0|1] [--wire-faults 0|1]\n"
              "                 [--lease-ms N] [--grace-ms N] [--heartbeat-ms N] [--keep] [--broken no-fenced]\n"
              "Starts a private PostgreSQL, lscd, lsc-fenced and agents (fake, libvirt test:///default,\n"
              "qemu:///system), injects seeded random faults and checks lsc's invariants.\n"
              "Defaults: --seed 1 --faults 30 --max-seconds 900 --settle-seconds 120 --servers 12\n"
              "          --fake 2 --test 2 --qemu 1 --lease-ms 4000 --grace-ms 2000 --heartbeat-ms 1000\n"
              "          --partition 1 as root (one more fake agent in a network namespace of its own,\n"
              "          joined by a veth pair whose link is cut and restored), else 0;\n"
              "          --wire-faults 1: the second fake and the second test agent send each message\n"
              "          twice, replay the one before, or hold it back 700 ms, each 10% of the time\n"
              "--broken no-fenced tests the checker: the qemu agent runs without lsc-fenced and every\n"
              "          fault freezes it past lease + grace, so its VMs outlive the lease while lscd\n"
              "          places them again: the run must report two live instances (exit status 1).\n"
              "Exit status: 0 no violation, 1 violations or a failed set-up, 2 bad usage.\n", f);
}

static int parse(int argc, char **argv)
{
        C.o = (struct opts){ .seed = 1, .faults = 30, .max_seconds = 900, .settle_seconds = 120, .servers = 12,
                             .n_fake = 2, .n_test = 2, .n_qemu = 1, .partition = geteuid() == 0, .wire = 1,
                             .lease_ms = 4000, .grace_ms = 2000, .heartbeat_ms = 1000 };
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                char *end;
                long long v;
                if (strcmp(a, "--keep") == 0) {
                        C.o.keep = true;
                        continue;
                }
                if (strcmp(a, "--broken") == 0) {
                        if (i + 1 >= argc || strcmp(argv[i + 1], "no-fenced") != 0) {
                                fprintf(stderr, "lsc-chaos: --broken takes no-fenced (the only broken deployment "
                                                "it knows)\n");
                                return -1;
                        }
                        C.o.no_fenced = true;
                        i++;
                        continue;
                }
                if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
                        usage(stdout);
                        exit(0);
                }
                if (i + 1 >= argc) {
                        usage(stderr);
                        return -1;
                }
                errno = 0;
                v = strtoll(argv[++i], &end, 10);
                if (errno || *end || v < 0 || v > 100000000) {
                        fprintf(stderr, "lsc-chaos: %s wants a number, not '%s'\n", a, argv[i]);
                        return -1;
                }
                if (strcmp(a, "--seed") == 0) C.o.seed = (uint64_t)v;
                else if (strcmp(a, "--faults") == 0) C.o.faults = (int)v;
                else if (strcmp(a, "--max-seconds") == 0) C.o.max_seconds = (int)v;
                else if (strcmp(a, "--settle-seconds") == 0) C.o.settle_seconds = (int)v;
                else if (strcmp(a, "--servers") == 0) C.o.servers = (int)v;
                else if (strcmp(a, "--fake") == 0) C.o.n_fake = (int)v;
                else if (strcmp(a, "--test") == 0) C.o.n_test = (int)v;
                else if (strcmp(a, "--qemu") == 0) C.o.n_qemu = (int)v;
                else if (strcmp(a, "--partition") == 0) C.o.partition = (int)v;
                else if (strcmp(a, "--wire-faults") == 0) C.o.wire = (int)v;
                else if (strcmp(a, "--lease-ms") == 0) C.o.lease_ms = (int)v;
                else if (strcmp(a, "--grace-ms") == 0) C.o.grace_ms = (int)v;
                else if (strcmp(a, "--heartbeat-ms") == 0) C.o.heartbeat_ms = (int)v;
                else {
                        fprintf(stderr, "lsc-chaos: unknown option %s\n", a);
                        usage(stderr);
                        return -1;
                }
        }
        if (C.o.servers < 1 || C.o.servers > SERVERS_MAX || C.o.n_qemu > 1 || C.o.partition > 1 ||
            C.o.n_fake + C.o.n_test + C.o.n_qemu < 2 || C.o.n_fake + C.o.n_test + C.o.n_qemu + C.o.partition > AGENTS_MAX ||
            C.o.lease_ms < 1000 ||
            C.o.heartbeat_ms < 50 || C.o.heartbeat_ms > 60000 || (C.o.no_fenced && C.o.n_qemu != 1)) {
                fprintf(stderr, "lsc-chaos: 1-%d servers, 2-%d agents (at most one on qemu:///system: there is one "
                                "libvirtd, and --broken no-fenced needs it), a lease of at least 1000 ms, a "
                                "heartbeat of 50-60000 ms\n", SERVERS_MAX, AGENTS_MAX);
                return -1;
        }
        return 0;
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

static double quantile_ms(int64_t *v, size_t n, double q)
{
        size_t i;

        if (!n)
                return -1;
        qsort(v, n, sizeof(*v), cmp_i64);
        i = (size_t)(q * (double)(n - 1) + 0.5);
        return (double)v[i] / 1000.0;
}

static int servers_create(void)
{
        char *start[SERVERS_MAX + 4];
        int ns = 0;

        start[ns++] = "server";
        start[ns++] = "start";
        for (int i = 0; i < C.o.servers; i++) {
                struct ident *id = &C.ids[i];
                char lsc[PATH_MAX + 8], *out = NULL, mem[8];
                json_t *o;
                snprintf(id->name, sizeof(id->name), "%s%02d", C.prefix, i + 1);
                snprintf(lsc, sizeof(lsc), "%s/lsc", C.bindir);
                snprintf(mem, sizeof(mem), "%d", (int)rnd_range(1, 3) * 32 + 32);   /* 64-128 MiB */
                char *argv[] = { lsc, "--timeout", "10", "--json", "server", "create", id->name, "--vcpus", "1",
                                 "--memory", mem, "--disk", "0", NULL };
                if (run(argv, &out, NULL) != 0 || !(o = json_loads(out, 0, NULL))) {
                        fprintf(stderr, "lsc-chaos: cannot create server %s: %s\n", id->name, out ? out : "");
                        free(out);
                        return -1;
                }
                free(out);
                snprintf(id->uuid, sizeof(id->uuid), "%s", jstr(o, "uuid"));
                id->orig = ident_core(o);
                json_decref(o);
                start[ns++] = id->name;
                C.n_ids++;
        }
        return lsc_cmd(start, ns) == 0 ? 0 : -1;
}

static int libvirt_ready(void)
{
        virConnectPtr conn = virConnectOpen(QEMU_URI);
        char script[600], *out = NULL;
        int rc;

        if (conn) {
                virConnectClose(conn);
                return 0;
        }
        /* the private test libvirtd (root only); the daemons it started are stopped at the end */
        snprintf(script, sizeof(script), ". '%s/tests/lib/libvirtd.sh' && libvirtd_ensure && "
                 "for s in \"${LIBVIRTD_STARTED[@]}\"; do printf '\"%%s\" ' \"$s\"; done",
                 LSC_SOURCE_DIR);
        rc = sh(script, &out);
        if (out)
                snprintf(C.libvirtd_started, sizeof(C.libvirtd_started), "%s", out);
        free(out);
        if (rc != 0 || !(conn = virConnectOpen(QEMU_URI))) {
                fprintf(stderr, "lsc-chaos: " QEMU_URI " does not answer (see %s/sh.log); --qemu 0 runs without "
                                "real VMs\n", C.dir);
                return -1;
        }
        virConnectClose(conn);
        return 0;
}

int main(int argc, char **argv)
{
        struct sigaction sa = { .sa_handler = on_signal };
        char exe[PATH_MAX], path[200];
        ssize_t n;
        int64_t settled = 0, wall0;
        int r = 1;

        if (parse(argc, argv) < 0)
                return 2;
        t_begin = wall0 = now_us();
        C.rng = C.o.seed;
        pthread_mutex_init(&C.lock, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        virSetErrorFunc(NULL, virt_quiet);
        atexit(cleanup);

        if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) < 0)
                return 1;
        exe[n] = '\0';
        *strrchr(exe, '/') = '\0';
        if (strlen(exe) >= sizeof(C.bindir)) {
                fprintf(stderr, "lsc-chaos: the path of bin/ is too long: %s\n", exe);
                return 1;
        }
        snprintf(C.bindir, sizeof(C.bindir), "%s", exe);
        /* PostgreSQL runs as an unprivileged user: the scratch must be traversable */
        snprintf(C.dir, sizeof(C.dir), "/var/tmp/lsc-chaos.XXXXXX");
        if (!mkdtemp(C.dir) || chmod(C.dir, 0755) < 0) {
                C.dir[0] = '\0';
                perror("lsc-chaos: mkdtemp");
                return 1;
        }
        /* domain names carry the run's suffix: the sweep touches nobody else's */
        snprintf(C.prefix, sizeof(C.prefix), "cx%s-", strrchr(C.dir, '.') + 1);
        for (char *p = C.prefix; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p = (char)(*p - 'A' + 'a');
        snprintf(path, sizeof(path), "%s/lscd.sock", C.dir);
        {
                char ep[420];
                snprintf(ep, sizeof(ep), "ipc://%s", path);
                setenv("LSC_MANAGER", ep, 1);
        }
        say("lsc-chaos: seed %llu, %d faults at most in %d s, %d servers on %d fake, %d test, %d qemu agents%s; "
            "lease %d ms, grace %d ms, heartbeat %d ms; scratch %s", (unsigned long long)C.o.seed, C.o.faults, C.o.max_seconds,
            C.o.servers, C.o.n_fake, C.o.n_test, C.o.n_qemu,
            C.o.partition ? " and 1 fake agent behind a veth in a network namespace of its own" : "",
            C.o.lease_ms, C.o.grace_ms, C.o.heartbeat_ms, C.dir);
        if (C.o.no_fenced)
                say("BROKEN ON PURPOSE (--broken no-fenced): the qemu agent runs without lsc-fenced and every fault "
                    "freezes it past lease + grace; the checker must report two live instances");

        if (C.o.n_qemu && libvirt_ready() < 0)
                goto out;
        if (C.o.partition && net_setup() < 0)
                goto out;
        if (pg_start() < 0)
                goto out;
        {
                char script[800];
                snprintf(script, sizeof(script), "mkdir -p '%s/keys' && '%s/lscd' --curve-key '%s/lscd.key' "
                         "--print-public-key >'%s/lscd.pub'", C.dir, C.bindir, C.dir, C.dir);
                if (sh(script, NULL) != 0)
                        goto out;
        }
        /* a port below the ephemeral range that nothing holds: pg.sh's helper */
        {
                char script[300], *out = NULL;
                snprintf(script, sizeof(script), ". '%s/tests/lib/pg.sh' && pg_free_port", LSC_SOURCE_DIR);
                if (sh(script, &out) == 0)
                        C.agent_port = atoi(out);
                free(out);
                if (C.agent_port <= 0)
                        goto out;
        }
        if (lscd_start() < 0)
                goto out;
        for (int i = 0; i < 200 && !lscd_answers(); i++)
                sleep_us(100000);
        if (!lscd_answers()) {
                fprintf(stderr, "lsc-chaos: lscd does not answer (log: %s/lscd.log)\n", C.dir);
                goto out;
        }
        {
                int a = 0;
                for (int i = 0; i < C.o.n_fake; i++, a++)
                        if (agent_setup(a, DK_FAKE) < 0)
                                goto out;
                for (int i = 0; i < C.o.n_test; i++, a++)
                        if (agent_setup(a, DK_TEST) < 0)
                                goto out;
                for (int i = 0; i < C.o.n_qemu; i++, a++)
                        if (agent_setup(a, DK_QEMU) < 0)
                                goto out;
                for (int i = 0; i < C.o.partition; i++, a++) {
                        if (agent_setup(a, DK_FAKE) < 0)
                                goto out;
                        C.agents[a].partitioned = true;
                }
                C.n_agents = a;
                for (a = 0; a < C.n_agents; a++)
                        if (agent_start(a) < 0)
                                goto out;
        }
        if (C.o.n_qemu) {
                C.sampler_on = true;
                if (pthread_create(&C.sampler, NULL, sampler_main, NULL) != 0)
                        goto out;
        }
        {
                bool conv = false;
                for (int i = 0; i < 600 && !g_stop; i++) {
                        if (view_poll(false, &conv) && conv)
                                break;
                        sleep_us(100000);
                }
        }
        if (servers_create() < 0)
                goto out;
        if (!settle(0, &settled)) {
                violation("the servers did not all run within %d s of their start", C.o.settle_seconds);
                goto out;
        }
        say("%d servers running after %.1f s; faults begin", C.n_ids, (double)settled / 1e6);
        check_all("start");

        while (!g_stop && C.fault_no < C.o.faults && now_us() - wall0 < (int64_t)C.o.max_seconds * 1000000) {
                qemu_fill();
                if (!g_stop)
                        fault_one();
        }
        check_all("end");
        r = g_stop ? -1 : 0;            /* interrupted: not a full run */
        if (g_stop)
                say("interrupted after %d faults", C.fault_no);
out:
        if (C.sampler_on) {
                C.sampler_on = false;
                pthread_join(C.sampler, NULL);
        }
        cleanup();
        {
                double wall = (double)(now_us() - wall0) / 1e6;
                char json[2048];
                size_t off = 0;
                printf("faults injected: %d in %.0f s (", C.fault_no, wall);
                for (int k = 0; k < FK_COUNT; k++)
                        printf("%s%s %d", k ? ", " : "", fk_names[k], C.kind_count[k]);
                pthread_mutex_lock(&C.lock);
                size_t nl = 0, nq = 0;
                for (size_t k = 0; k < C.n_ivals; k++)
                        C.ivals[k].agent < 0 ? nq++ : nl++;
                pthread_mutex_unlock(&C.lock);
                printf(")\nground truth: %zu instance lives from the in-process agents' stamped driver calls, %zu "
                       "from libvirt samples of " QEMU_URI "\n", nl, nq);
                printf("lease-only rule (in-process instances alive until a killed agent's lease deadline, though "
                       "its process died and its restart re-registered without them): %ld overlaps\n",
                       check_overlaps(false, false));
                printf("wire faults (agents' test-only chaos_* keys): %ld duplicated, %ld replayed, %ld delayed "
                       "messages\n", C.wire_dup, C.wire_replay, C.wire_delay);
                printf("violations: %ld\nneedless self-fencings: %ld (expected ones, on a faulted host: %ld)\n",
                       C.violations, C.needless, C.fences_expected);
                off += (size_t)snprintf(json + off, sizeof(json) - off,
                                        "{\"seed\": %llu, \"faults\": %d, \"wall_s\": %.0f, ", (unsigned long long)C.o.seed,
                                        C.fault_no, wall);
                for (int k = 0; k < FK_COUNT; k++)
                        off += (size_t)snprintf(json + off, sizeof(json) - off, "\"%s\": %d, ", fk_names[k],
                                                C.kind_count[k]);
                off += (size_t)snprintf(json + off, sizeof(json) - off,
                                        "\"wire_duplicated\": %ld, \"wire_replayed\": %ld, \"wire_delayed\": %ld, "
                                        "\"violations\": %ld, \"needless_self_fencings\": %ld", C.wire_dup,
                                        C.wire_replay, C.wire_delay, C.violations, C.needless);
                for (int d = 0; d < DK_COUNT; d++) {
                        int64_t *v = calloc(C.n_moves + 1, sizeof(*v));
                        size_t nv = 0, late = 0;
                        for (size_t m = 0; m < C.n_moves; m++)
                                if (C.moves[m].kind == (enum drv_kind)d) {
                                        if (C.moves[m].done)
                                                v[nv++] = C.moves[m].done - C.moves[m].t0;
                                        else
                                                late++;
                                }
                        double p50 = quantile_ms(v, nv, 0.5), p99 = quantile_ms(v, nv, 0.99);
                        if (nv)
                                printf("host loss -> running elsewhere, %s hosts: p50 %.0f ms, p99 %.0f ms (%zu "
                                       "identities moved, %zu stayed or returned on their host)\n",
                                       dk_names[d], p50, p99, nv, late);
                        else
                                printf("host loss -> running elsewhere, %s hosts: no identity moved (%zu stayed)\n",
                                       dk_names[d], late);
                        if (nv)
                                off += (size_t)snprintf(json + off, sizeof(json) - off,
                                                        ", \"%s_moved\": %zu, \"%s_p50_ms\": %.0f, \"%s_p99_ms\": %.0f",
                                                        dk_names[d], nv, dk_names[d], p50, dk_names[d], p99);
                        else
                                off += (size_t)snprintf(json + off, sizeof(json) - off,
                                                        ", \"%s_moved\": 0, \"%s_p50_ms\": null, \"%s_p99_ms\": null",
                                                        dk_names[d], dk_names[d], dk_names[d]);
                        free(v);
                }
                printf("%s}\n", json);
        }
        return r != 0 || C.violations ? 1 : 0;
}
