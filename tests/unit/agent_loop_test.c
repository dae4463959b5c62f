/* agent/loop.c: the real agent loop, in a thread, against a tiny fake manager in this
 * file (a CURVE ROUTER on tcp://127.0.0.1 with a ZAP handler that admits the agent's key
 * only), on the fake driver: registration, heartbeats, re-registration, commands with
 * epochs and tombstones, a hung driver that must not stop the heartbeats, and the
 * lease: pets to a socket standing in for lsc-fenced, and every instance destroyed
 * before the deadline when no ack comes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "config.h"
#include "curve.h"
#include "driver.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "pet.h"
#include "state.h"
#include "util.h"
#include "wire.h"

#define HOST "test1"
#define HEARTBEAT_MS 100
#define SLOW_MS 300
#define EPOCH 7
#define INC1 0x1111111111111111ull
#define INC2 0x2222222222222222ull

#define U1 "5a1e0c3d-2b4f-4c6d-8e7f-000000000001"
#define U2 "5a1e0c3d-2b4f-4c6d-8e7f-000000000002"
#define U3 "5a1e0c3d-2b4f-4c6d-8e7f-000000000003"
#define U4 "5a1e0c3d-2b4f-4c6d-8e7f-000000000004"
#define U5 "5a1e0c3d-2b4f-4c6d-8e7f-000000000005"
#define U6 "5a1e0c3d-2b4f-4c6d-8e7f-000000000006"
#define U7 "5a1e0c3d-2b4f-4c6d-8e7f-000000000007"

struct fixture {
        char dir[64], state_dir[96], key_file[96];
        /* the fake manager */
        void *zctx, *router, *zap;
        char endpoint[128];
        char agent_key[LSC_Z85_KEY];
        struct lsc_route agent;          /* where the agent's messages came from */
        uint64_t epoch, incarnation;     /* what skipped heartbeats are acked with */
        uint64_t seq;
        int zap_refused;
        uint32_t lease_ttl_ms;           /* what acks grant */
        bool silent;                     /* skipped heartbeats are not acked */
        /* lsc-fenced, as far as the agent can tell: a datagram socket */
        char pet_path[96];
        int pet_fd;
        /* the agent */
        struct agent_config cfg;
        struct agent_loop *loop;
        pthread_t thread;
        bool running;
        int rc;
};

/* ---- the fake manager ---- */

/* Admits the agent's key only, as the host HOST (ZAP, RFC 27). */
static void zap_answer(struct fixture *f)
{
        zmq_msg_t part[8];
        int n = 0, more = 1;
        size_t sz = sizeof(more);
        char key[LSC_Z85_KEY] = "";
        bool ok;

        while (more && n < 8) {
                zmq_msg_init(&part[n]);
                if (zmq_msg_recv(&part[n], f->zap, 0) < 0)
                        break;
                n++;
                zmq_getsockopt(f->zap, ZMQ_RCVMORE, &more, &sz);
        }
        assert_true(n >= 6);
        if (n == 7 && zmq_msg_size(&part[6]) == 32)
                zmq_z85_encode(key, zmq_msg_data(&part[6]), 32);
        ok = strcmp(key, f->agent_key) == 0;
        if (!ok)
                f->zap_refused++;
        zmq_send(f->zap, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(f->zap, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
        zmq_send(f->zap, ok ? "200" : "400", 3, ZMQ_SNDMORE);
        zmq_send(f->zap, ok ? "OK" : "not enrolled", ok ? 2 : 12, ZMQ_SNDMORE);
        zmq_send(f->zap, ok ? HOST : "", ok ? strlen(HOST) : 0, ZMQ_SNDMORE);
        zmq_send(f->zap, "", 0, 0);
        for (int i = 0; i < n; i++)
                zmq_msg_close(&part[i]);
}

/* seq 0: the manager's own next; else the seq of the message answered */
static void mgr_send(struct fixture *f, Lsc__Envelope *env, uint64_t seq)
{
        env->sender = "lscd:test";
        env->has_seq = 1;
        env->seq = seq ? seq : ++f->seq;
        assert_int_equal(lsc_wire_send(f->router, &f->agent, env), 0);
}

static void mgr_ack(struct fixture *f, uint64_t seq, int64_t echo, uint64_t epoch, uint64_t incarnation, bool reregister,
                    Lsc__Status status, const char *error)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Ack ack = LSC__ACK__INIT;

        ack.has_echo_sent_us = ack.has_incarnation = ack.has_epoch = ack.has_lease_ttl_ms = 1;
        ack.has_reregister = ack.has_status = 1;
        ack.echo_sent_us = echo;
        ack.incarnation = incarnation;
        ack.epoch = epoch;
        ack.lease_ttl_ms = f->lease_ttl_ms;
        ack.reregister = reregister;
        ack.status = status;
        ack.error = (char *)error;
        env.has_epoch = 1;
        env.epoch = epoch;
        env.body_case = LSC__ENVELOPE__BODY_ACK;
        env.ack = &ack;
        mgr_send(f, &env, seq);
}

static void ack_heartbeat(struct fixture *f, const Lsc__Envelope *hb)
{
        mgr_ack(f, hb->seq, hb->heartbeat->sent_us, f->epoch, f->incarnation, false, LSC__STATUS__OK, NULL);
}

/* The next message of kind want from the agent within timeout_ms, or NULL. On the way
 * it answers ZAP and acks the heartbeats it skips; other messages it drops. */
static Lsc__Envelope *expect(struct fixture *f, Lsc__Envelope__BodyCase want, int timeout_ms)
{
        int64_t deadline = lsc_now_us() + (int64_t)timeout_ms * 1000;

        for (;;) {
                zmq_pollitem_t items[] = {
                        { .socket = f->router, .events = ZMQ_POLLIN },
                        { .socket = f->zap, .events = ZMQ_POLLIN },
                };
                int64_t left = deadline - lsc_now_us();
                Lsc__Envelope *env = NULL;

                if (left <= 0)
                        return NULL;
                assert_true(zmq_poll(items, 2, (long)(left / 1000) + 1) >= 0);
                if (items[1].revents & ZMQ_POLLIN)
                        zap_answer(f);
                if (!(items[0].revents & ZMQ_POLLIN))
                        continue;
                assert_int_equal(lsc_wire_recv(f->router, true, &f->agent, &env), 0);
                /* the ZAP handler's verdict: this connection speaks for HOST */
                assert_string_equal(f->agent.peer, HOST);
                assert_string_equal(env->sender, "agent:" HOST);
                if (env->body_case == want)
                        return env;
                if (env->body_case == LSC__ENVELOPE__BODY_HEARTBEAT && !f->silent)
                        ack_heartbeat(f, env);
                lsc_wire_free(env);
        }
}

static Lsc__Envelope *expect_ok(struct fixture *f, Lsc__Envelope__BodyCase want, int timeout_ms)
{
        Lsc__Envelope *env = expect(f, want, timeout_ms);

        if (!env)
                fail_msg("no message of kind %d from the agent within %d ms", (int)want, timeout_ms);
        return env;
}

/* Waits for the Register and acknowledges it: a session at epoch, incarnation. */
static void registered(struct fixture *f, uint64_t epoch, uint64_t incarnation)
{
        _cleanup_envelope_ Lsc__Envelope *env = expect_ok(f, LSC__ENVELOPE__BODY_REGISTER, 5000);

        f->epoch = epoch;
        f->incarnation = incarnation;
        mgr_ack(f, env->seq, 0, epoch, incarnation, false, LSC__STATUS__OK, NULL);
}

static void command(struct fixture *f, Lsc__Command__Op op, const char *uuid, uint64_t generation,
                    uint64_t epoch, const char *name)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Command cmd = LSC__COMMAND__INIT;
        Lsc__ServerSpec spec = LSC__SERVER_SPEC__INIT;
        char *macs[] = { "02:4c:53:00:00:01" }, *ips[] = { "10.0.0.5" };

        cmd.has_op = cmd.has_generation = cmd.has_epoch = 1;
        cmd.op = op;
        cmd.uuid = (char *)uuid;
        cmd.generation = generation;
        cmd.epoch = epoch;
        if (op == LSC__COMMAND__OP__INSTANTIATE) {
                spec.name = (char *)name;
                spec.kind = "vm";
                spec.has_vcpus = spec.has_memory_mib = 1;
                spec.vcpus = 1;
                spec.memory_mib = 256;
                spec.disk_mode = "ephemeral";
                spec.n_macs = 1;
                spec.macs = macs;
                spec.n_ips = 1;
                spec.ips = ips;
                cmd.spec = &spec;
        }
        env.has_epoch = 1;
        env.epoch = epoch;
        env.body_case = LSC__ENVELOPE__BODY_COMMAND;
        env.command = &cmd;
        mgr_send(f, &env, 0);
}

/* The Report for (uuid, generation), within timeout_ms. Reports for others are dropped:
 * tests wait for one command's report before sending the next. */
static Lsc__Envelope *report(struct fixture *f, const char *uuid, uint64_t generation, int timeout_ms)
{
        int64_t deadline = lsc_now_us() + (int64_t)timeout_ms * 1000;

        for (;;) {
                int left = (int)((deadline - lsc_now_us()) / 1000);
                Lsc__Envelope *env = expect(f, LSC__ENVELOPE__BODY_REPORT, left > 0 ? left : 1);

                if (!env)
                        fail_msg("no report for %s generation %llu within %d ms", uuid,
                                 (unsigned long long)generation, timeout_ms);
                if (strcmp(env->report->uuid, uuid) == 0 && env->report->generation == generation)
                        return env;
                lsc_wire_free(env);
        }
}

static bool has_instance(const Lsc__Heartbeat *hb, const char *uuid, uint64_t generation)
{
        for (size_t i = 0; i < hb->n_instances; i++)
                if (strcmp(hb->instances[i]->uuid, uuid) == 0 && hb->instances[i]->generation == generation)
                        return true;
        return false;
}

/* The next heartbeat sent in the current session (earlier ones are acked and skipped):
 * the agent ignores what an ack says about the session when its heartbeat predates it. */
static Lsc__Envelope *session_heartbeat(struct fixture *f)
{
        for (int i = 0; i < 20; i++) {
                Lsc__Envelope *hb = expect_ok(f, LSC__ENVELOPE__BODY_HEARTBEAT, 1000);

                if (hb->epoch == f->epoch)
                        return hb;
                ack_heartbeat(f, hb);
                lsc_wire_free(hb);
        }
        fail_msg("no heartbeat in epoch %llu", (unsigned long long)f->epoch);
        return NULL;
}

/* Waits for a heartbeat that has (or lacks) the instance; acks every one. */
static void inventory_shows(struct fixture *f, const char *uuid, uint64_t generation, bool present)
{
        int64_t deadline = lsc_now_us() + 3000000;

        while (lsc_now_us() < deadline) {
                _cleanup_envelope_ Lsc__Envelope *hb = expect_ok(f, LSC__ENVELOPE__BODY_HEARTBEAT, 2000);

                ack_heartbeat(f, hb);
                if (has_instance(hb->heartbeat, uuid, generation) == present)
                        return;
        }
        fail_msg("no heartbeat %s %s generation %llu", present ? "with" : "without", uuid,
                 (unsigned long long)generation);
}

/* ---- the agent ---- */

static void *run(void *arg)
{
        struct fixture *f = arg;

        f->rc = agent_loop_run(f->loop);
        return NULL;
}

static void agent_start(struct fixture *f)
{
        int r = agent_loop_new(&f->cfg, &f->loop);

        if (r < 0)
                fail_msg("agent_loop_new: %s", lsc_err_msg(r));
        assert_int_equal(pthread_create(&f->thread, NULL, run, f), 0);
        f->running = true;
}

static void agent_stop(struct fixture *f)
{
        if (!f->running)
                return;
        agent_loop_stop(f->loop);
        pthread_join(f->thread, NULL);
        f->running = false;
        assert_int_equal(f->rc, 0);
        agent_loop_destroy(&f->loop);
        assert_null(f->loop);
}

static void set(struct fixture *f, const char *key, const char *value)
{
        int r = agent_config_set(&f->cfg, key, value, false);

        if (r < 0)
                fail_msg("%s = %s: %s", key, value, lsc_err_msg(r));
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        char pub[LSC_Z85_KEY], sec[LSC_Z85_KEY], agent_sec[LSC_Z85_KEY], path[160], pubpath[160];
        int one = 1, zero = 0, r;
        size_t len;
        FILE *fp;

        snprintf(f->dir, sizeof(f->dir), "/tmp/lsc-agent-loop-test-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->state_dir, sizeof(f->state_dir), "%s/state", f->dir);
        snprintf(f->key_file, sizeof(f->key_file), "%s/manager.pub", f->dir);
        assert_int_equal(mkdir(f->state_dir, 0700), 0);

        /* the agent's key exists before it starts, so the ZAP handler knows it */
        snprintf(path, sizeof(path), "%s/%s", f->state_dir, AGENT_KEY_FILE);
        snprintf(pubpath, sizeof(pubpath), "%s/%s", f->state_dir, AGENT_PUB_FILE);
        assert_int_equal(lsc_curve_load_or_create(path, pubpath, f->agent_key, agent_sec), 0);

        /* the manager: keypair, ZAP handler first, then the CURVE ROUTER */
        assert_int_equal(zmq_curve_keypair(pub, sec), 0);
        fp = fopen(f->key_file, "we");
        assert_non_null(fp);
        fprintf(fp, "%s\n", pub);
        fclose(fp);
        f->zctx = zmq_ctx_new();
        f->zap = zmq_socket(f->zctx, ZMQ_REP);
        zmq_setsockopt(f->zap, ZMQ_LINGER, &zero, sizeof(zero));
        assert_int_equal(zmq_bind(f->zap, "inproc://zeromq.zap.01"), 0);
        f->router = zmq_socket(f->zctx, ZMQ_ROUTER);
        zmq_setsockopt(f->router, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(f->router, ZMQ_CURVE_SERVER, &one, sizeof(one));
        zmq_setsockopt(f->router, ZMQ_CURVE_SECRETKEY, sec, 40);
        zmq_setsockopt(f->router, ZMQ_ROUTER_HANDOVER, &one, sizeof(one));
        zmq_setsockopt(f->router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
        zmq_setsockopt(f->router, ZMQ_ZAP_DOMAIN, "lsc", 3);
        assert_int_equal(zmq_bind(f->router, "tcp://127.0.0.1:*"), 0);
        len = sizeof(f->endpoint);
        assert_int_equal(zmq_getsockopt(f->router, ZMQ_LAST_ENDPOINT, f->endpoint, &len), 0);

        {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };

                snprintf(f->pet_path, sizeof(f->pet_path), "%s/fenced.sock", f->dir);
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->pet_path);
                f->pet_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                assert_true(f->pet_fd >= 0);
                assert_int_equal(bind(f->pet_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        }
        f->lease_ttl_ms = 10000;

        agent_config_init(&f->cfg);
        set(f, "name", HOST);
        set(f, "manager", f->endpoint);
        set(f, "manager_public_key_file", f->key_file);
        set(f, "state_dir", f->state_dir);
        set(f, "driver", "fake");
        set(f, "vcpus", "4");
        set(f, "alloc_ratio", "2.5");
        set(f, "labels", "rack=r1, ssd=yes");
        set(f, "heartbeat_ms", "100");
        set(f, "driver_slow_ms", "300");
        set(f, "register_retry_ms", "300");
        set(f, "fenced_socket", f->pet_path);
        if ((r = agent_config_finish(&f->cfg, true)) < 0)
                fail_msg("config: %s", lsc_err_msg(r));
        agent_start(f);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char cmd[128];

        agent_stop(f);
        agent_config_free(&f->cfg);
        zmq_close(f->router);
        zmq_close(f->zap);
        zmq_ctx_term(f->zctx);
        close(f->pet_fd);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

/* ---- the tests ---- */

static void registers_with_its_capacity_and_labels(void **state)
{
        struct fixture *f = *state;
        _cleanup_envelope_ Lsc__Envelope *env = expect_ok(f, LSC__ENVELOPE__BODY_REGISTER, 5000);
        _cleanup_envelope_ Lsc__Envelope *hb = NULL;
        const Lsc__Register *reg = env->register_;

        assert_string_equal(reg->host, HOST);
        assert_string_equal(reg->driver, "fake");
        assert_string_equal(reg->kind, "vm");
        assert_non_null(reg->capacity);
        assert_int_equal(reg->capacity->vcpus, 4);              /* the override */
        assert_int_equal(reg->capacity->memory_mib, 16384);     /* the fake's own */
        assert_int_equal(reg->capacity->disk_gib, 100);
        assert_true(reg->has_alloc_ratio && reg->alloc_ratio == 2.5);
        assert_int_equal(reg->n_labels, 2);
        assert_string_equal(reg->labels[0]->key, "rack");
        assert_string_equal(reg->labels[0]->value, "r1");
        assert_string_equal(reg->labels[1]->key, "ssd");
        assert_string_equal(reg->labels[1]->value, "yes");
        assert_int_equal(reg->n_instances, 0);
        assert_true(reg->has_healthy && reg->healthy);
        assert_non_null(reg->agent_version);
        assert_int_equal(f->zap_refused, 0);

        f->epoch = EPOCH;
        f->incarnation = INC1;
        mgr_ack(f, env->seq, 0, EPOCH, INC1, false, LSC__STATUS__OK, NULL);
        /* from then on, everything it sends is in the session's epoch */
        hb = expect_ok(f, LSC__ENVELOPE__BODY_HEARTBEAT, 2000);
        assert_int_equal(hb->epoch, EPOCH);
}

static void heartbeats_come_every_interval_with_rising_stamps(void **state)
{
        struct fixture *f = *state;
        int64_t first_us = 0, last_sent = 0;
        uint64_t last_seq = 0;
        bool util = false;
        const int n = 12;

        registered(f, EPOCH, INC1);
        for (int i = 0; i < n; i++) {
                _cleanup_envelope_ Lsc__Envelope *env = expect_ok(f, LSC__ENVELOPE__BODY_HEARTBEAT, 1000);
                const Lsc__Heartbeat *hb = env->heartbeat;

                ack_heartbeat(f, env);
                assert_true(hb->has_sent_us);
                assert_true(hb->sent_us > last_sent);
                assert_true(env->seq > last_seq);
                assert_int_equal(env->epoch, EPOCH);
                assert_true(hb->has_healthy && hb->healthy);
                if (i == 1)
                        first_us = hb->sent_us;  /* the first one goes out at once after the ack */
                last_sent = hb->sent_us;
                last_seq = env->seq;
                if (hb->util && hb->util->has_cpu && hb->util->has_memory_mib)
                        util = true;
        }
        /* n - 2 intervals after the first regular beat, about HEARTBEAT_MS each */
        int64_t mean_ms = (last_sent - first_us) / 1000 / (n - 2);
        if (mean_ms < HEARTBEAT_MS * 7 / 10 || mean_ms > HEARTBEAT_MS * 2)
                fail_msg("heartbeats every %lld ms, want about %d", (long long)mean_ms, HEARTBEAT_MS);
        assert_true(util);
}

static void new_incarnation_or_reregister_makes_it_register_again(void **state)
{
        struct fixture *f = *state;
        _cleanup_envelope_ Lsc__Envelope *hb = NULL, *reg = NULL, *hb2 = NULL, *reg2 = NULL;

        registered(f, EPOCH, INC1);
        hb = session_heartbeat(f);
        /* the manager restarted: a new incarnation in an ack */
        mgr_ack(f, hb->seq, hb->heartbeat->sent_us, EPOCH, INC2, false, LSC__STATUS__OK, NULL);
        f->incarnation = INC2;
        reg = expect_ok(f, LSC__ENVELOPE__BODY_REGISTER, 2000);
        assert_string_equal(reg->register_->host, HOST);
        f->epoch = EPOCH + 1;
        mgr_ack(f, reg->seq, 0, EPOCH + 1, INC2, false, LSC__STATUS__OK, NULL);
        hb2 = session_heartbeat(f);
        assert_int_equal(hb2->epoch, EPOCH + 1);

        /* the manager lost the session without restarting */
        mgr_ack(f, hb2->seq, hb2->heartbeat->sent_us, EPOCH + 1, INC2, true, LSC__STATUS__OK, NULL);
        reg2 = expect_ok(f, LSC__ENVELOPE__BODY_REGISTER, 2000);
        mgr_ack(f, reg2->seq, 0, EPOCH + 2, INC2, false, LSC__STATUS__OK, NULL);
}

static void refused_registration_is_retried(void **state)
{
        struct fixture *f = *state;
        _cleanup_envelope_ Lsc__Envelope *reg = expect_ok(f, LSC__ENVELOPE__BODY_REGISTER, 5000);
        _cleanup_envelope_ Lsc__Envelope *again = NULL, *rep = NULL;

        mgr_ack(f, reg->seq, 0, 0, INC1, false, LSC__STATUS__ERR_INVALID, "this key is enrolled for another host");
        /* no session: a command is refused, whatever epoch it names */
        command(f, LSC__COMMAND__OP__INSTANTIATE, U1, 1, 0, "web1");
        rep = report(f, U1, 1, 2000);
        assert_false(rep->report->ok);
        again = expect_ok(f, LSC__ENVELOPE__BODY_REGISTER, 2000);
        assert_true(again->seq > reg->seq);
}

static void instantiate_at_the_current_epoch_runs(void **state)
{
        struct fixture *f = *state;
        _cleanup_envelope_ Lsc__Envelope *rep = NULL, *rep2 = NULL;

        registered(f, EPOCH, INC1);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U1, 1, EPOCH, "web1");
        rep = report(f, U1, 1, 5000);
        assert_true(rep->report->ok);
        assert_int_equal(rep->report->op, LSC__COMMAND__OP__INSTANTIATE);
        assert_int_equal(rep->report->epoch, EPOCH);
        assert_int_equal(rep->epoch, EPOCH);
        inventory_shows(f, U1, 1, true);

        /* idempotent: the same command again, the same outcome */
        command(f, LSC__COMMAND__OP__INSTANTIATE, U1, 1, EPOCH, "web1");
        rep2 = report(f, U1, 1, 5000);
        assert_true(rep2->report->ok);
        inventory_shows(f, U1, 1, true);
}

static const Lsc__Instance *instance_in(const Lsc__Heartbeat *hb, const char *uuid)
{
        for (size_t i = 0; i < hb->n_instances; i++)
                if (strcmp(hb->instances[i]->uuid, uuid) == 0)
                        return hb->instances[i];
        return NULL;
}

/* The fake keeps half of web1's one vCPU busy: the beats say so, with its memory. */
static void heartbeats_carry_each_instances_measured_load(void **state)
{
        struct fixture *f = *state;
        _cleanup_envelope_ Lsc__Envelope *rep = NULL;
        int64_t deadline;
        int seen = 0;

        registered(f, EPOCH, INC1);
        assert_int_equal(drv_fake_inject(agent_loop_driver(f->loop), DRV_FAKE_LOAD, 500, NULL), 0);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U1, 1, EPOCH, "web1");
        rep = report(f, U1, 1, 5000);
        assert_true(rep->report->ok);
        inventory_shows(f, U1, 1, true);
        deadline = lsc_now_us() + 5000000;
        while (seen < 3 && lsc_now_us() < deadline) {
                _cleanup_envelope_ Lsc__Envelope *hb = expect_ok(f, LSC__ENVELOPE__BODY_HEARTBEAT, 2000);
                const Lsc__Instance *in = instance_in(hb->heartbeat, U1);

                ack_heartbeat(f, hb);
                if (!in || !in->has_cpu)
                        continue;
                assert_true(in->has_memory_mib);
                assert_int_equal(in->memory_mib, 256);
                if (in->cpu < 0.35 || in->cpu > 0.65)
                        fail_msg("web1 at half of one vCPU measured %.3f", in->cpu);
                seen++;
        }
        assert_int_equal(seen, 3);
}

static void fake_load_setting_is_a_share_or_a_daily_range(void **state)
{
        static const char *const bad[] = { "1.5", "-0.1", "0.8-0.2", "abc", "0.5x", "0.2-", "", "nan", "0.1-0.2-0.3" };
        struct agent_config c;

        agent_config_init(&c);
        assert_int_equal(agent_config_set(&c, "fake_load", "0.1-0.8", false), 0);
        assert_true(c.fake_load_set);
        assert_true(c.fake_load_low == 0.1 && c.fake_load_high == 0.8);
        assert_int_equal(agent_config_set(&c, "fake_load", "0.5", false), 0);
        assert_true(c.fake_load_low == 0.5 && c.fake_load_high == 0.5);
        for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
                assert_int_equal(agent_config_set(&c, "fake_load", bad[i], false), -EINVAL);
                assert_non_null(strstr(lsc_err_msg(-EINVAL), "fake_load"));
                assert_true(c.fake_load_low == 0.5 && c.fake_load_high == 0.5);   /* unchanged */
        }
        agent_config_free(&c);
}

static void command_from_another_epoch_is_refused(void **state)
{
        struct fixture *f = *state;
        _cleanup_envelope_ Lsc__Envelope *rep = NULL, *rep2 = NULL;

        registered(f, EPOCH, INC1);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U1, 1, EPOCH - 1, "web1");
        rep = report(f, U1, 1, 2000);
        assert_false(rep->report->ok);
        assert_non_null(strstr(rep->report->error, "epoch"));
        command(f, LSC__COMMAND__OP__DESTROY, U1, 1, EPOCH + 1, NULL);
        rep2 = report(f, U1, 1, 2000);
        assert_false(rep2->report->ok);
        inventory_shows(f, U1, 1, false);
}

static void instantiate_at_a_destroyed_generation_is_refused(void **state)
{
        struct fixture *f = *state;
        Lsc__Envelope *rep;

        registered(f, EPOCH, INC1);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U2, 2, EPOCH, "db1");
        rep = report(f, U2, 2, 5000);
        assert_true(rep->report->ok);
        lsc_wire_free(rep);
        command(f, LSC__COMMAND__OP__DESTROY, U2, 2, EPOCH, NULL);
        rep = report(f, U2, 2, 5000);
        assert_true(rep->report->ok);
        assert_int_equal(rep->report->op, LSC__COMMAND__OP__DESTROY);
        lsc_wire_free(rep);
        inventory_shows(f, U2, 2, false);

        command(f, LSC__COMMAND__OP__INSTANTIATE, U2, 2, EPOCH, "db1");
        rep = report(f, U2, 2, 5000);
        assert_false(rep->report->ok);
        assert_non_null(strstr(rep->report->error, "tombstone"));
        lsc_wire_free(rep);
        inventory_shows(f, U2, 2, false);

        /* the next binding of the identity is welcome */
        command(f, LSC__COMMAND__OP__INSTANTIATE, U2, 3, EPOCH, "db1");
        rep = report(f, U2, 3, 5000);
        assert_true(rep->report->ok);
        lsc_wire_free(rep);
        inventory_shows(f, U2, 3, true);
}

static void hung_driver_keeps_heartbeats_and_says_unhealthy(void **state)
{
        struct fixture *f = *state;
        int64_t start, prev = 0, max_gap = 0;
        struct drv *d;
        char health[256] = "";
        int beats = 0, measured = 0;
        Lsc__Envelope *rep;

        registered(f, EPOCH, INC1);
        inventory_shows(f, U3, 1, false);        /* running, driver open */
        d = agent_loop_driver(f->loop);
        assert_non_null(d);
        assert_int_equal(drv_fake_inject(d, DRV_FAKE_HANG, 1, NULL), 0);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U3, 1, EPOCH, "app1");

        start = lsc_now_us();
        while (lsc_now_us() - start < 1500000) {
                _cleanup_envelope_ Lsc__Envelope *env = expect(f, LSC__ENVELOPE__BODY_HEARTBEAT, 1000);
                int64_t now = lsc_now_us();

                assert_non_null(env);
                ack_heartbeat(f, env);
                if (prev && now - prev > max_gap)
                        max_gap = now - prev;
                prev = now;
                beats++;
                if (!env->heartbeat->healthy)
                        snprintf(health, sizeof(health), "%s", env->heartbeat->health);
                measured += env->heartbeat->util != NULL;
        }
        /* generous for loaded CI machines: a beat waiting on the driver would wait it all */
        if (max_gap > 10 * HEARTBEAT_MS * 1000)
                fail_msg("a heartbeat gap of %lld ms while the driver hung", (long long)(max_gap / 1000));
        assert_true(beats >= 5);
        if (!strstr(health, "running for"))
                fail_msg("heartbeats never said the driver hangs (last health \"%s\")", health);
        /* each sample goes out once: at most the one taken as the hang began, never repeated */
        if (measured > 1)
                fail_msg("%d of %d beats carried utilisation while the driver hung", measured, beats);

        /* released: the command completes, and the host is healthy again */
        assert_int_equal(drv_fake_inject(d, DRV_FAKE_HANG, 0, NULL), 0);
        rep = report(f, U3, 1, 5000);
        assert_true(rep->report->ok);
        lsc_wire_free(rep);
        for (int i = 0;; i++) {
                _cleanup_envelope_ Lsc__Envelope *env = expect_ok(f, LSC__ENVELOPE__BODY_HEARTBEAT, 1000);

                ack_heartbeat(f, env);
                if (env->heartbeat->healthy && has_instance(env->heartbeat, U3, 1))
                        break;
                if (i > 30)
                        fail_msg("the host stays unhealthy after the driver recovered: %s", env->heartbeat->health);
        }
}

static void restart_keeps_the_tombstone(void **state)
{
        struct fixture *f = *state;
        Lsc__Envelope *rep;

        registered(f, EPOCH, INC1);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U4, 1, EPOCH, "mayfly1");
        rep = report(f, U4, 1, 5000);
        assert_true(rep->report->ok);
        lsc_wire_free(rep);
        command(f, LSC__COMMAND__OP__DESTROY, U4, 1, EPOCH, NULL);
        rep = report(f, U4, 1, 5000);
        assert_true(rep->report->ok);
        lsc_wire_free(rep);

        /* a new agent process on the same state dir (the fake hypervisor starts empty) */
        agent_stop(f);
        agent_start(f);
        registered(f, EPOCH + 1, INC1);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U4, 1, EPOCH + 1, "mayfly1");
        rep = report(f, U4, 1, 5000);
        assert_false(rep->report->ok);
        assert_non_null(strstr(rep->report->error, "tombstone"));
        lsc_wire_free(rep);
}

static void quiet(void *user, virErrorPtr e)
{
}

static bool domain_exists(virConnectPtr c, const char *uuid)
{
        virDomainPtr d = virDomainLookupByUUIDString(c, uuid);

        if (!d)
                return false;
        virDomainFree(d);
        return true;
}

/* On libvirt's test:///default, which outlives the agent while this process holds a
 * connection: the hypervisor is the truth, and the record is reconciled with it. */
static void restart_reconciles_the_record_with_the_hypervisor(void **state)
{
        struct fixture *f = *state;
        struct agent_state *st = NULL;
        virConnectPtr observer;
        Lsc__Envelope *env;

        virSetErrorFunc(NULL, quiet);
        observer = virConnectOpen("test:///default");
        assert_non_null(observer);
        agent_stop(f);
        set(f, "driver", "libvirt");
        set(f, "uri", "test:///default");
        agent_start(f);
        registered(f, EPOCH, INC1);
        for (size_t i = 0; i < 3; i++) {
                const char *u = (const char *[]){ U5, U6, U7 }[i];

                command(f, LSC__COMMAND__OP__INSTANTIATE, u, 1, EPOCH, (const char *[]){ "vm5", "vm6", "vm7" }[i]);
                env = report(f, u, 1, 5000);
                if (!env->report->ok)
                        fail_msg("instantiate %s: %s", u, env->report->error);
                lsc_wire_free(env);
                assert_true(domain_exists(observer, u));
        }
        agent_stop(f);

        /* what a crash can leave: a destroy of vm5 recorded but never run; vm6 recorded
         * as destroyed yet still there; an instantiate of vm7 without its outcome */
        assert_int_equal(agent_state_open(f->state_dir, &st), 0);
        assert_int_equal(agent_state_intent(st, AGENT_STATE_DESTROY, U5, 1, EPOCH), 0);
        assert_int_equal(agent_state_intent(st, AGENT_STATE_DESTROY, U6, 1, EPOCH), 0);
        assert_int_equal(agent_state_outcome(st, AGENT_STATE_DESTROY, U6, 1, EPOCH, true), 0);
        assert_int_equal(agent_state_intent(st, AGENT_STATE_INSTANTIATE, U7, 2, EPOCH), 0);
        agent_state_close(&st);

        agent_start(f);
        env = expect_ok(f, LSC__ENVELOPE__BODY_REGISTER, 5000);
        /* reconciled before it registers: what it reports is what runs */
        assert_int_equal(env->register_->n_instances, 1);
        assert_string_equal(env->register_->instances[0]->uuid, U7);
        assert_int_equal(env->register_->instances[0]->generation, 1);
        lsc_wire_free(env);
        assert_false(domain_exists(observer, U5));
        assert_false(domain_exists(observer, U6));
        assert_true(domain_exists(observer, U7));
        agent_stop(f);

        assert_int_equal(agent_state_open(f->state_dir, &st), 0);
        {
                _cleanup_free_ struct agent_state_intent *p = NULL;
                assert_int_equal(agent_state_pending(st, &p), 0);
        }
        assert_int_equal(agent_state_tombstone(st, U5), 1);
        agent_state_close(&st);

        /* leave the shared test hypervisor as found */
        {
                virDomainPtr d = virDomainLookupByUUIDString(observer, U7);
                assert_non_null(d);
                virDomainDestroy(d);
                virDomainUndefineFlags(d, VIR_DOMAIN_UNDEFINE_KEEP_NVRAM);
                virDomainFree(d);
        }
        virConnectClose(observer);
}

/* The latest deadline petted since the last call, 0 when none came. */
static int64_t last_pet(struct fixture *f)
{
        int64_t last = 0;
        char buf[LSC_PET_MAX + 1];
        ssize_t n;

        while ((n = recv(f->pet_fd, buf, sizeof(buf), 0)) > 0) {
                int64_t d = 0;

                assert_int_equal(lsc_pet_parse(buf, (size_t)n, &d), 0);
                assert_true(d >= last);  /* never backwards */
                last = d;
        }
        return last;
}

/* The next heartbeat, not acked. */
static Lsc__Envelope *unacked_heartbeat(struct fixture *f)
{
        return expect_ok(f, LSC__ENVELOPE__BODY_HEARTBEAT, 2000);
}

static void acks_pet_the_fencing_daemon_with_the_deadline(void **state)
{
        struct fixture *f = *state;
        _cleanup_envelope_ Lsc__Envelope *hb = NULL;
        int64_t d;

        registered(f, EPOCH, INC1);
        hb = session_heartbeat(f);
        last_pet(f);
        ack_heartbeat(f, hb);
        for (int i = 0; !(d = last_pet(f)); i++) {
                assert_true(i < 200);
                usleep(10000);
        }
        /* the heartbeat's stamp is CLOCK_BOOTTIME, the deadline that plus the lease */
        assert_int_equal(d, hb->heartbeat->sent_us + 10000 * 1000LL);
        assert_true(d > lsc_boot_us() + 8000 * 1000LL && d <= lsc_boot_us() + 10000 * 1000LL);
}

/* With no ack, every instance goes destroy_budget_ms (here half the 1 s lease, since
 * the default 3 s budget is more than half) before the deadline, and nothing new
 * starts; an ack renews the lease and the host takes work again. */
static void lease_ending_destroys_every_instance_before_the_deadline(void **state)
{
        struct fixture *f = *state;
        Lsc__Envelope *rep, *hb;
        int64_t deadline = 0, gone_us = 0;

        f->lease_ttl_ms = 1000;
        registered(f, EPOCH, INC1);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U1, 1, EPOCH, "web1");
        rep = report(f, U1, 1, 5000);
        assert_true(rep->report->ok);
        lsc_wire_free(rep);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U2, 4, EPOCH, "web2");
        rep = report(f, U2, 4, 5000);
        assert_true(rep->report->ok);
        lsc_wire_free(rep);
        inventory_shows(f, U1, 1, true);

        /* the manager goes quiet (two beats: the last ack has been taken by then) */
        f->silent = true;
        lsc_wire_free(unacked_heartbeat(f));
        lsc_wire_free(unacked_heartbeat(f));
        deadline = last_pet(f);
        assert_true(deadline > lsc_boot_us());
        for (;;) {
                hb = unacked_heartbeat(f);
                if (!has_instance(hb->heartbeat, U1, 1) && !has_instance(hb->heartbeat, U2, 4)) {
                        gone_us = hb->heartbeat->sent_us;
                        lsc_wire_free(hb);
                        break;
                }
                lsc_wire_free(hb);
                assert_true(lsc_boot_us() < deadline + 2000000);
        }
        /* reported gone in a heartbeat sent before the deadline */
        if (gone_us >= deadline)
                fail_msg("instances still listed %lld ms after the deadline",
                         (long long)((gone_us - deadline) / 1000));
        assert_int_equal(last_pet(f), 0);        /* no ack, no pet */

        /* no new instances meanwhile */
        command(f, LSC__COMMAND__OP__INSTANTIATE, U3, 1, EPOCH, "web3");
        rep = report(f, U3, 1, 2000);
        assert_false(rep->report->ok);
        assert_non_null(strstr(rep->report->error, "lease"));
        lsc_wire_free(rep);

        /* an ack renews the lease: a pet, and work is taken again */
        f->silent = false;
        for (int64_t d = 0; d <= deadline;) {
                inventory_shows(f, U1, 1, false);
                d = last_pet(f);
                assert_true(lsc_boot_us() < deadline + 3000000);
        }
        command(f, LSC__COMMAND__OP__INSTANTIATE, U3, 1, EPOCH, "web3");
        rep = report(f, U3, 1, 5000);
        assert_true(rep->report->ok);
        lsc_wire_free(rep);
        /* the destroyed bindings stay destroyed (tombstones), newer ones are welcome */
        command(f, LSC__COMMAND__OP__INSTANTIATE, U1, 1, EPOCH, "web1");
        rep = report(f, U1, 1, 5000);
        assert_false(rep->report->ok);
        lsc_wire_free(rep);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U1, 2, EPOCH, "web1");
        rep = report(f, U1, 2, 5000);
        assert_true(rep->report->ok);
        lsc_wire_free(rep);
}

/* Pets read from the FIFO standing in for /dev/watchdog until `until` (boot µs): the
 * CLOCK_BOOTTIME time each was read, the byte in *ret_last; returns how many. */
static int watchdog_reads(int fd, int64_t until, int64_t *times, int cap, char *ret_last)
{
        int n = 0;

        while (lsc_boot_us() < until) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                char b;

                if (poll(&p, 1, 10) <= 0)
                        continue;
                if (read(fd, &b, 1) != 1)
                        continue;                /* EOF while nobody writes: poll says POLLHUP */
                if (n < cap)
                        times[n] = lsc_boot_us();
                n++;
                *ret_last = b;
        }
        return n;
}

/* The watchdog (a FIFO here, so pets are bytes): armed at the first lease and petted
 * while the lease runs watchdog_timeout_s + 0.5 s longer; with no ack and instances
 * held, the pets stop in time for a reset before the deadline; once the instances are
 * destroyed there is nothing to fence and the pets resume; a clean stop disarms it. */
static void watchdog_petted_only_while_the_lease_outlasts_its_timeout(void **state)
{
        struct fixture *f = *state;
        char fifo[128], last = 0;
        int64_t t[512], deadline;
        int fd, n;
        Lsc__Envelope *rep;

        agent_stop(f);
        snprintf(fifo, sizeof(fifo), "%s/watchdog", f->dir);
        assert_int_equal(mkfifo(fifo, 0600), 0);
        fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(fd >= 0);
        set(f, "watchdog", fifo);
        set(f, "watchdog_timeout_s", "1");
        set(f, "destroy_budget_ms", "0");        /* the agent's own destroys at the deadline */
        f->lease_ttl_ms = 3000;
        agent_start(f);
        registered(f, EPOCH, INC1);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U1, 1, EPOCH, "web1");
        rep = report(f, U1, 1, 5000);
        assert_true(rep->report->ok);
        lsc_wire_free(rep);
        inventory_shows(f, U1, 1, true);
        inventory_shows(f, U1, 1, true);
        assert_true(watchdog_reads(fd, lsc_boot_us() + 300000, t, 512, &last) >= 1);
        assert_int_equal(last, '\0');

        /* the manager goes quiet */
        f->silent = true;
        lsc_wire_free(unacked_heartbeat(f));
        lsc_wire_free(unacked_heartbeat(f));
        deadline = last_pet(f);
        assert_true(deadline > lsc_boot_us() + 1000000);
        n = watchdog_reads(fd, deadline - 1000000, t, 512, &last);
        (void)n;
        /* nothing from 1 s before the deadline on (the rule stops 1.5 s before it) */
        n = watchdog_reads(fd, deadline, t, 512, &last);
        if (n)
                fail_msg("%d watchdog pets in the last second of the lease, the first %lld ms before the "
                         "deadline", n, (long long)((deadline - t[0]) / 1000));
        /* the deadline destroyed the instance: nothing to fence, so pets again */
        n = watchdog_reads(fd, deadline + 2000000, t, 512, &last);
        assert_true(n >= 1);
        f->silent = false;
        inventory_shows(f, U1, 1, false);

        /* a clean stop: the magic close */
        agent_stop(f);
        watchdog_reads(fd, lsc_boot_us() + 200000, t, 512, &last);
        assert_int_equal(last, 'V');
        close(fd);
}

/* The decision is the loop's: with every driver call hung, the agent still refuses new
 * instances when the lease is ending, and destroys as soon as the driver answers. */
static void hung_driver_does_not_delay_the_lease_decision(void **state)
{
        struct fixture *f = *state;
        Lsc__Envelope *rep, *hb;
        struct drv *d;
        int64_t deadline = 0;

        f->lease_ttl_ms = 1000;
        registered(f, EPOCH, INC1);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U1, 1, EPOCH, "web1");
        rep = report(f, U1, 1, 5000);
        assert_true(rep->report->ok);
        lsc_wire_free(rep);
        inventory_shows(f, U1, 1, true);
        d = agent_loop_driver(f->loop);
        assert_non_null(d);
        assert_int_equal(drv_fake_inject(d, DRV_FAKE_HANG, 1, NULL), 0);

        f->silent = true;
        lsc_wire_free(unacked_heartbeat(f));
        lsc_wire_free(unacked_heartbeat(f));
        deadline = last_pet(f);
        assert_true(deadline > lsc_boot_us());
        /* past deadline - budget (500 ms): refused at once, by the loop */
        while (lsc_boot_us() < deadline - 400000)
                usleep(10000);
        command(f, LSC__COMMAND__OP__INSTANTIATE, U2, 1, EPOCH, "web2");
        rep = report(f, U2, 1, 2000);
        assert_false(rep->report->ok);
        assert_non_null(strstr(rep->report->error, "lease"));
        lsc_wire_free(rep);

        assert_int_equal(drv_fake_inject(d, DRV_FAKE_HANG, 0, NULL), 0);
        for (;;) {
                hb = unacked_heartbeat(f);
                if (!has_instance(hb->heartbeat, U1, 1)) {
                        lsc_wire_free(hb);
                        break;
                }
                lsc_wire_free(hb);
                assert_true(lsc_boot_us() < deadline + 3000000);
        }
        f->silent = false;
}

int main(void)
{
        if (getenv("LSC_TEST_DEBUG"))
                lsc_log_threshold = LSC_LOG_DEBUG;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(registers_with_its_capacity_and_labels, setup, teardown),
                cmocka_unit_test_setup_teardown(heartbeats_come_every_interval_with_rising_stamps, setup, teardown),
                cmocka_unit_test_setup_teardown(new_incarnation_or_reregister_makes_it_register_again, setup, teardown),
                cmocka_unit_test_setup_teardown(refused_registration_is_retried, setup, teardown),
                cmocka_unit_test_setup_teardown(instantiate_at_the_current_epoch_runs, setup, teardown),
                cmocka_unit_test_setup_teardown(heartbeats_carry_each_instances_measured_load, setup, teardown),
                cmocka_unit_test(fake_load_setting_is_a_share_or_a_daily_range),
                cmocka_unit_test_setup_teardown(command_from_another_epoch_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(instantiate_at_a_destroyed_generation_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(hung_driver_keeps_heartbeats_and_says_unhealthy, setup, teardown),
                cmocka_unit_test_setup_teardown(restart_keeps_the_tombstone, setup, teardown),
                cmocka_unit_test_setup_teardown(restart_reconciles_the_record_with_the_hypervisor, setup, teardown),
                cmocka_unit_test_setup_teardown(acks_pet_the_fencing_daemon_with_the_deadline, setup, teardown),
                cmocka_unit_test_setup_teardown(lease_ending_destroys_every_instance_before_the_deadline, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(hung_driver_does_not_delay_the_lease_decision, setup, teardown),
                cmocka_unit_test_setup_teardown(watchdog_petted_only_while_the_lease_outlasts_its_timeout, setup,
                                                teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
