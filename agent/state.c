/* The agent's write-ahead record: one append-only text file, a CRC-checked record a line,
 * replayed into memory at open and rewritten compactly (tombstones and pending intents
 * only) at open and as it grows. Only this file reads or writes it. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "driver.h"
#include "err.h"
#include "log.h"
#include "state.h"
#include "util.h"

#define STATE_HEADER "lsc-agent-state 1\n"
#define STATE_LOCK_FILE "intents.lock"
#define STATE_MAX_BYTES (256u << 20)
#define STATE_LINE_MAX 256
/* A rewrite is due when this many more records were appended than it would keep. */
#define STATE_COMPACT_SLACK 4096

const char *const agent_state_op_names[AGENT_STATE_OP_COUNT] = {
        [AGENT_STATE_INSTANTIATE] = "instantiate",
        [AGENT_STATE_DESTROY] = "destroy",
};

struct entry {
        char uuid[AGENT_STATE_UUID_STR];
        uint64_t tombstone;
        bool pending;                    /* op/generation/epoch: the intent awaiting its outcome */
        enum agent_state_op op;
        uint64_t generation, epoch;
};

struct agent_state {
        pthread_mutex_t lock;
        char *dir, *path, *tmp;
        int fd, dirfd, lockfd;
        off_t size;                      /* bytes of whole records: a failed append is cut back here */
        size_t appended;                 /* records appended since the last rewrite */
        bool broken;                     /* an append failed: rewrite from memory before the next */
        struct entry *e;                 /* sorted by uuid */
        size_t n, alloc;
};

static uint32_t crc32(const char *p, size_t n)
{
        uint32_t c = 0xffffffffu;

        for (size_t i = 0; i < n; i++) {
                c ^= (uint8_t)p[i];
                for (int k = 0; k < 8; k++)
                        c = (c >> 1) ^ (0xedb88320u & -(c & 1u));
        }
        return ~c;
}

/* ---- the in-memory table ---- */

static const char *entry_uuid(const void *elem)
{
        return ((const struct entry *)elem)->uuid;
}

static size_t find_pos(const struct agent_state *s, const char *uuid, bool *ret_found)
{
        return lsc_sorted_find(s->e, s->n, sizeof(*s->e), uuid, entry_uuid, ret_found);
}

static struct entry *entry_find(const struct agent_state *s, const char *uuid)
{
        bool found;
        size_t i = find_pos(s, uuid, &found);

        return found ? &s->e[i] : NULL;
}

static struct entry *entry_get(struct agent_state *s, const char *uuid)
{
        bool found;
        size_t i = find_pos(s, uuid, &found);

        if (found)
                return &s->e[i];
        if (s->n == s->alloc) {
                size_t alloc = s->alloc ? 2 * s->alloc : 64;
                struct entry *e = realloc(s->e, alloc * sizeof(*e));

                if (!e)
                        return NULL;
                s->e = e;
                s->alloc = alloc;
        }
        memmove(&s->e[i + 1], &s->e[i], (s->n - i) * sizeof(*s->e));
        s->n++;
        memset(&s->e[i], 0, sizeof(s->e[i]));
        snprintf(s->e[i].uuid, sizeof(s->e[i].uuid), "%s", uuid);
        return &s->e[i];
}

/* Records are replayed and written through the same rules. */
static void apply_intent(struct entry *e, enum agent_state_op op, uint64_t generation, uint64_t epoch)
{
        if (op == AGENT_STATE_DESTROY && generation > e->tombstone)
                e->tombstone = generation;
        e->pending = true;
        e->op = op;
        e->generation = generation;
        e->epoch = epoch;
}

static void apply_outcome(struct entry *e, enum agent_state_op op, uint64_t generation, uint64_t epoch)
{
        if (e->pending && e->op == op && e->generation == generation && e->epoch == epoch)
                e->pending = false;
}

/* ---- records: "KIND FIELDS... CRC32\n" ---- */

/* Formats one record with its checksum; the length, or -ENAMETOOLONG (never for our fields). */
__attribute__((format(printf, 2, 3)))
static int record_format(char buf[STATE_LINE_MAX], const char *fmt, ...)
{
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, STATE_LINE_MAX, fmt, ap);
        va_end(ap);
        if (n < 0 || n + 10 >= STATE_LINE_MAX)
                return -ENAMETOOLONG;
        n += snprintf(buf + n, STATE_LINE_MAX - (size_t)n, " %08x\n", crc32(buf, (size_t)n));
        return n;
}

static bool parse_u64(const char *s, uint64_t *ret)
{
        uint64_t v = 0;

        if (!*s)
                return false;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        *ret = v;
        return true;
}

static int parse_op(const char *s)
{
        for (int i = 0; i < AGENT_STATE_OP_COUNT; i++)
                if (strcmp(s, agent_state_op_names[i]) == 0)
                        return i;
        return -1;
}

/* One line without its '\n', checked and applied; false when damaged. */
static bool replay_line(struct agent_state *s, char *line)
{
        char *crc = strrchr(line, ' '), *tok[7], *save = NULL;
        unsigned long want;
        uint64_t g = 0, epoch = 0;
        struct entry *e;
        size_t n = 0;
        int op = 0;

        if (!crc || strlen(crc + 1) != 8 || strspn(crc + 1, "0123456789abcdef") != 8)
                return false;
        want = strtoul(crc + 1, NULL, 16);
        if (want != crc32(line, (size_t)(crc - line)))
                return false;
        *crc = '\0';
        for (char *t = strtok_r(line, " ", &save); t && n < ARRAY_SIZE(tok); t = strtok_r(NULL, " ", &save))
                tok[n++] = t;
        if (n < 3 || strlen(tok[0]) != 1 || !drv_uuid_valid(tok[1]))
                return false;
        switch (tok[0][0]) {
        case 'I':
        case 'O':
                if (n != (tok[0][0] == 'I' ? 5u : 6u) || (op = parse_op(tok[2])) < 0 ||
                    !parse_u64(tok[3], &g) || !parse_u64(tok[4], &epoch))
                        return false;
                if (tok[0][0] == 'O' && strcmp(tok[5], "ok") != 0 && strcmp(tok[5], "failed") != 0)
                        return false;
                break;
        case 'T':
                if (n != 3 || !parse_u64(tok[2], &g))
                        return false;
                break;
        default:
                return false;
        }
        e = entry_get(s, tok[1]);
        if (!e)
                return false;
        if (tok[0][0] == 'I')
                apply_intent(e, (enum agent_state_op)op, g, epoch);
        else if (tok[0][0] == 'O')
                apply_outcome(e, (enum agent_state_op)op, g, epoch);
        else if (g > e->tombstone)
                e->tombstone = g;
        return true;
}

static int read_all(int fd, const char *path, char **ret, size_t *ret_len)
{
        struct stat st;
        char *buf;
        size_t off = 0;

        if (fstat(fd, &st) < 0)
                return lsc_err_set(-errno, "cannot stat %s: %s", path, strerror(errno));
        if ((uint64_t)st.st_size > STATE_MAX_BYTES)
                return lsc_err_set(-EFBIG, "%s is larger than %u MiB: not an intent record", path,
                                   STATE_MAX_BYTES >> 20);
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return lsc_err_set(-ENOMEM, "out of memory reading %s", path);
        while (off < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;
                        free(buf);
                        return lsc_err_set(r, "cannot read %s: %s", path, strerror(-r));
                }
                if (n == 0)
                        break;
                off += (size_t)n;
        }
        buf[off] = '\0';
        *ret = buf;
        *ret_len = off;
        return 0;
}

static int load(struct agent_state *s)
{
        _cleanup_free_ char *buf = NULL;
        const size_t hlen = strlen(STATE_HEADER);
        size_t len = 0, lineno = 2, skipped = 0;
        char *p, *end;
        int fd, r;

        fd = open(s->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
                return 0;                /* first start */
        if (fd < 0)
                return lsc_err_set(-errno, "cannot open %s: %s", s->path, strerror(errno));
        r = read_all(fd, s->path, &buf, &len);
        close(fd);
        if (r < 0)
                return r;
        if (len < hlen || memcmp(buf, STATE_HEADER, hlen) != 0) {
                /* Only rewrites create the file, by rename, so a short header means the
                 * file was cut by something else; nothing past it could have survived. */
                if (len < hlen && memcmp(buf, STATE_HEADER, len) == 0) {
                        log_warn("%s: ignoring a truncated record file (%zu bytes)", s->path, len);
                        return 0;
                }
                return lsc_err_set(-EINVAL, "%s is not an lsc-agent intent record: move it away "
                                   "(only if no instance of this host needs its tombstones)", s->path);
        }
        end = buf + len;
        for (p = buf + hlen; p < end; lineno++) {
                char *nl = memchr(p, '\n', (size_t)(end - p));

                if (!nl) {
                        log_warn("%s: ignoring a torn last record (%zu bytes without an end of line)",
                                 s->path, (size_t)(end - p));
                        skipped++;
                        break;
                }
                *nl = '\0';
                if ((size_t)(nl - p) >= STATE_LINE_MAX || memchr(p, '\0', (size_t)(nl - p)) ||
                    !replay_line(s, p)) {
                        log_warn("%s:%zu: ignoring a damaged record%s", s->path, lineno,
                                 nl + 1 == end ? " (the last one: a torn write)" : "");
                        skipped++;
                }
                p = nl + 1;
        }
        log_debug("%s: %zu identities, %zu records skipped", s->path, s->n, skipped);
        return 0;
}

/* ---- writing ---- */

static int rewrite(struct agent_state *s)
{
        char line[STATE_LINE_MAX];
        struct stat st;
        FILE *f;
        size_t keep = 0;
        int fd, r = 0;

        fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return lsc_err_set(-errno, "cannot write %s: %s", s->tmp, strerror(errno));
        f = fdopen(fd, "w");
        if (!f) {
                close(fd);
                return lsc_err_set(-ENOMEM, "cannot write %s: out of memory", s->tmp);
        }
        fputs(STATE_HEADER, f);
        for (size_t i = 0; i < s->n; i++) {
                const struct entry *e = &s->e[i];

                if (e->tombstone && record_format(line, "T %s %llu", e->uuid,
                                                  (unsigned long long)e->tombstone) > 0)
                        fputs(line, f);
                if (e->pending && record_format(line, "I %s %s %llu %llu", e->uuid,
                                                agent_state_op_names[e->op],
                                                (unsigned long long)e->generation,
                                                (unsigned long long)e->epoch) > 0)
                        fputs(line, f);
        }
        if (fflush(f) != 0 || ferror(f) || fsync(fd) < 0)
                r = lsc_err_set(-errno ? -errno : -EIO, "cannot write %s: %s", s->tmp, strerror(errno));
        if (fclose(f) != 0 && r == 0)
                r = lsc_err_set(-errno, "cannot write %s: %s", s->tmp, strerror(errno));
        if (r == 0 && rename(s->tmp, s->path) < 0)
                r = lsc_err_set(-errno, "cannot rename %s: %s", s->tmp, strerror(errno));
        /* the new name must be as durable as the data it names */
        if (r == 0 && fsync(s->dirfd) < 0)
                r = lsc_err_set(-errno, "cannot sync the directory %s: %s", s->dir, strerror(errno));
        if (r < 0) {
                unlink(s->tmp);
                return r;
        }
        fd = open(s->path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = lsc_err_set(-errno, "cannot open %s: %s", s->path, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return r;
        }
        if (s->fd >= 0)
                close(s->fd);
        s->fd = fd;
        s->size = st.st_size;
        s->appended = 0;
        s->broken = false;
        /* what the file no longer holds, memory need not either */
        for (size_t i = 0; i < s->n; i++)
                if (s->e[i].tombstone || s->e[i].pending)
                        s->e[keep++] = s->e[i];
        s->n = keep;
        return 0;
}

/* Before an append: after a failed one, the page cache cannot be trusted, so the whole
 * record is first rewritten from memory. */
static int prepare(struct agent_state *s)
{
        return s->broken || s->fd < 0 ? rewrite(s) : 0;
}

/* Appends one record and makes it durable. The file's directory entry was synced when a
 * rewrite created it, so an append needs only the file's own fsync. */
static int append(struct agent_state *s, const char *line, size_t len)
{
        size_t off = 0;
        int r;

        while (off < len) {
                ssize_t w = write(s->fd, line + off, len - off);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        goto fail;
                off += (size_t)w;
        }
        if (fsync(s->fd) < 0)
                goto fail;
        s->size += (off_t)len;
        s->appended++;
        return 0;
fail:
        r = -errno;
        s->broken = true;
        /* cut the partial line, so the file stays readable should the rewrite fail too */
        if (ftruncate(s->fd, s->size) < 0)
                log_warn("%s: cannot cut a partial record: %s", s->path, strerror(errno));
        return lsc_err_set(r, "cannot write the intent record %s: %s", s->path, strerror(-r));
}

/* After applying a record: a rewrite moves entries, so nobody may hold one across it. */
static void maybe_compact(struct agent_state *s)
{
        int r;

        if (s->appended > STATE_COMPACT_SLACK + s->n && (r = rewrite(s)) < 0)
                log_warn("%s: compaction failed (the record stays as it is): %s", s->path, lsc_err_msg(r));
}

static int check_args(enum agent_state_op op, const char *uuid, uint64_t generation)
{
        if ((unsigned)op >= AGENT_STATE_OP_COUNT)
                return lsc_err_set(-EINVAL, "invalid intent op %d", (int)op);
        if (!drv_uuid_valid(uuid))
                return lsc_err_set(-EINVAL, "invalid uuid in an intent");
        if (generation == 0)
                return lsc_err_set(-EINVAL, "instance %s: generation 0 is never bound", uuid);
        return 0;
}

int agent_state_intent(struct agent_state *s, enum agent_state_op op, const char *uuid,
                       uint64_t generation, uint64_t epoch)
{
        char line[STATE_LINE_MAX];
        struct entry *e;
        int r, len;

        if ((r = check_args(op, uuid, generation)) < 0)
                return r;
        len = record_format(line, "I %s %s %llu %llu", uuid, agent_state_op_names[op],
                            (unsigned long long)generation, (unsigned long long)epoch);
        if (len < 0)
                return lsc_err_set(len, "intent record too long");
        pthread_mutex_lock(&s->lock);
        e = entry_find(s, uuid);
        if (op == AGENT_STATE_INSTANTIATE && e && generation <= e->tombstone) {
                r = lsc_err_set(-ESTALE, "instance %s generation %llu is at or below generation %llu, "
                                "already destroyed on this host (tombstone)", uuid,
                                (unsigned long long)generation, (unsigned long long)e->tombstone);
                goto out;
        }
        if ((r = prepare(s)) < 0)
                goto out;
        /* the entry exists before the record is durable, so applying it cannot fail after */
        if (!(e = entry_get(s, uuid))) {
                r = lsc_err_set(-ENOMEM, "out of memory recording an intent");
                goto out;
        }
        if ((r = append(s, line, (size_t)len)) == 0) {
                apply_intent(e, op, generation, epoch);
                maybe_compact(s);
        }
out:
        pthread_mutex_unlock(&s->lock);
        return r;
}

int agent_state_outcome(struct agent_state *s, enum agent_state_op op, const char *uuid,
                        uint64_t generation, uint64_t epoch, bool ok)
{
        char line[STATE_LINE_MAX];
        struct entry *e;
        int r, len;

        if ((r = check_args(op, uuid, generation)) < 0)
                return r;
        len = record_format(line, "O %s %s %llu %llu %s", uuid, agent_state_op_names[op],
                            (unsigned long long)generation, (unsigned long long)epoch,
                            ok ? "ok" : "failed");
        if (len < 0)
                return lsc_err_set(len, "outcome record too long");
        pthread_mutex_lock(&s->lock);
        if ((r = prepare(s)) == 0 && (r = append(s, line, (size_t)len)) == 0) {
                if ((e = entry_find(s, uuid)))
                        apply_outcome(e, op, generation, epoch);
                maybe_compact(s);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

uint64_t agent_state_tombstone(struct agent_state *s, const char *uuid)
{
        const struct entry *e;
        uint64_t t;

        if (!uuid)
                return 0;
        pthread_mutex_lock(&s->lock);
        e = entry_find(s, uuid);
        t = e ? e->tombstone : 0;
        pthread_mutex_unlock(&s->lock);
        return t;
}

int agent_state_pending(struct agent_state *s, struct agent_state_intent **ret)
{
        struct agent_state_intent *out;
        size_t n = 0;

        pthread_mutex_lock(&s->lock);
        out = calloc(s->n ? s->n : 1, sizeof(*out));
        if (!out) {
                pthread_mutex_unlock(&s->lock);
                return lsc_err_set(-ENOMEM, "out of memory listing pending intents");
        }
        for (size_t i = 0; i < s->n; i++) {
                const struct entry *e = &s->e[i];

                if (!e->pending)
                        continue;
                memcpy(out[n].uuid, e->uuid, sizeof(out[n].uuid));
                out[n].op = e->op;
                out[n].generation = e->generation;
                out[n].epoch = e->epoch;
                n++;
        }
        pthread_mutex_unlock(&s->lock);
        *ret = out;
        return (int)n;
}

int agent_state_compact(struct agent_state *s)
{
        int r;

        pthread_mutex_lock(&s->lock);
        r = rewrite(s);
        pthread_mutex_unlock(&s->lock);
        return r;
}

/* ---- open and close ---- */

void agent_state_close(struct agent_state **sp)
{
        struct agent_state *s = sp ? *sp : NULL;

        if (!s)
                return;
        if (s->fd >= 0)
                close(s->fd);
        if (s->dirfd >= 0)
                close(s->dirfd);
        if (s->lockfd >= 0)
                close(s->lockfd);        /* releases the flock */
        pthread_mutex_destroy(&s->lock);
        free(s->e);
        free(s->dir);
        free(s->path);
        free(s->tmp);
        free(s);
        *sp = NULL;
}

static char *path_join(const char *dir, const char *name)
{
        size_t len = strlen(dir) + strlen(name) + 2;
        char *p = malloc(len);

        if (p)
                snprintf(p, len, "%s/%s", dir, name);
        return p;
}

static void state_closep(struct agent_state **s)
{
        agent_state_close(s);
}

int agent_state_open(const char *dir, struct agent_state **ret)
{
        _cleanup_(state_closep) struct agent_state *s = NULL;
        _cleanup_free_ char *lockpath = NULL;
        int r;

        if (!dir || !*dir)
                return lsc_err_set(-EINVAL, "no state directory");
        s = calloc(1, sizeof(*s));
        if (!s)
                return lsc_err_set(-ENOMEM, "out of memory");
        s->fd = s->dirfd = s->lockfd = -1;
        pthread_mutex_init(&s->lock, NULL);
        s->dir = strdup(dir);
        s->path = path_join(dir, AGENT_STATE_FILE);
        s->tmp = path_join(dir, AGENT_STATE_FILE ".tmp");
        lockpath = path_join(dir, STATE_LOCK_FILE);
        if (!s->dir || !s->path || !s->tmp || !lockpath)
                return lsc_err_set(-ENOMEM, "out of memory");
        s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dirfd < 0)
                return lsc_err_set(-errno, "cannot open the state directory %s: %s", dir, strerror(errno));
        /* two agents appending to one record would interleave their intents */
        s->lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (s->lockfd < 0)
                return lsc_err_set(-errno, "cannot open %s: %s", lockpath, strerror(errno));
        if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0)
                return lsc_err_set(errno == EWOULDBLOCK ? -EBUSY : -errno,
                                   "another lsc-agent is using the state directory %s", dir);
        if ((r = load(s)) < 0)
                return r;
        /* creates the file on first start and leaves no torn tail for appends to follow */
        if ((r = rewrite(s)) < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}
