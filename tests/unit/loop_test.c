/* loop: the real lscd loop (with its store on a real PostgreSQL from with-pg) answers
 * hostile frames with an error reply and keeps serving. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "loop.h"
#include "wire.h"

struct fixture {
        struct loop loop;
        pthread_t thread;
        int rc;
        char endpoint[128];
        void *zctx, *dealer;
};

static void *run(void *arg)
{
        struct fixture *f = arg;
        f->rc = loop_run(&f->loop);
        return NULL;
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct loop_config cfg = { 0 };
        int zero = 0;

        snprintf(f->endpoint, sizeof(f->endpoint), "ipc:///tmp/lsc-loop-test-%d.sock", getpid());
        cfg.cli_endpoint = f->endpoint;
        cfg.store.conninfo = getenv("LSC_TEST_DB");
        assert_non_null(cfg.store.conninfo);
        assert_int_equal(loop_init(&f->loop, &cfg), 0);
        assert_int_equal(pthread_create(&f->thread, NULL, run, f), 0);
        f->zctx = zmq_ctx_new();
        f->dealer = zmq_socket(f->zctx, ZMQ_DEALER);
        zmq_setsockopt(f->dealer, ZMQ_LINGER, &zero, sizeof(zero));
        assert_int_equal(zmq_connect(f->dealer, f->endpoint), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        f->loop.stopping = true;        /* the loop polls at least once a second */
        pthread_join(f->thread, NULL);
        assert_int_equal(f->rc, 0);
        loop_fini(&f->loop);
        zmq_close(f->dealer);
        zmq_ctx_term(f->zctx);
        free(f);
        return 0;
}

/* The next reply, within 10 s (a test never hangs). */
static Lsc__Envelope *reply(struct fixture *f)
{
        zmq_pollitem_t it = { .socket = f->dealer, .events = ZMQ_POLLIN };
        Lsc__Envelope *env = NULL;

        assert_int_equal(zmq_poll(&it, 1, 10000), 1);
        assert_int_equal(lsc_wire_recv(f->dealer, false, NULL, &env), 0);
        assert_int_equal(env->body_case, LSC__ENVELOPE__BODY_REPLY);
        return env;
}

static void ping_ok(struct fixture *f, uint64_t seq)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT, *got;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ping ping = LSC__PING__INIT;

        req.op_case = LSC__REQUEST__OP_PING;
        req.ping = &ping;
        env.has_seq = 1;
        env.seq = seq;
        env.sender = "cli:loop-test";
        env.body_case = LSC__ENVELOPE__BODY_REQUEST;
        env.request = &req;
        assert_int_equal(lsc_wire_send(f->dealer, NULL, &env), 0);
        /* the store may still be migrating: ping answers UNAVAILABLE until it is ready */
        for (int i = 0; i < 100; i++) {
                got = reply(f);
                assert_int_equal(got->seq, seq);
                if (got->reply->status == LSC__STATUS__OK) {
                        lsc_wire_free(got);
                        return;
                }
                assert_int_equal(got->reply->status, LSC__STATUS__ERR_UNAVAILABLE);
                lsc_wire_free(got);
                usleep(100000);
                assert_int_equal(lsc_wire_send(f->dealer, NULL, &env), 0);
        }
        fail_msg("lscd never became ready");
}

static void expect_error(struct fixture *f, Lsc__Status status, const char *needle)
{
        Lsc__Envelope *got = reply(f);

        assert_int_equal(got->reply->status, status);
        assert_non_null(got->reply->error);
        if (!strstr(got->reply->error, needle))
                fail_msg("error \"%s\" does not mention \"%s\"", got->reply->error, needle);
        lsc_wire_free(got);
}

static void hostile_frames_get_error_replies_and_lscd_keeps_serving(void **state)
{
        struct fixture *f = *state;
        static const char garbage[] = "\x0a\xff\xff\xff\xff\x0f not protobuf";
        uint8_t buf[64];

        ping_ok(f, 1);

        /* garbage where the envelope should be */
        zmq_send(f->dealer, "", 0, ZMQ_SNDMORE);
        zmq_send(f->dealer, garbage, sizeof(garbage), 0);
        expect_error(f, LSC__STATUS__ERR_INVALID, "malformed");

        /* a version from the future */
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ping ping = LSC__PING__INIT;
        req.op_case = LSC__REQUEST__OP_PING;
        req.ping = &ping;
        env.has_version = 1;
        env.version = 2;
        env.body_case = LSC__ENVELOPE__BODY_REQUEST;
        env.request = &req;
        size_t len = lsc__envelope__pack(&env, buf);
        zmq_send(f->dealer, "", 0, ZMQ_SNDMORE);
        zmq_send(f->dealer, buf, len, 0);
        expect_error(f, LSC__STATUS__ERR_VERSION, "version 2");

        /* an envelope over the size limit */
        size_t big = LSC_WIRE_MAX_FRAME + 100;
        char *huge = calloc(1, big);
        zmq_send(f->dealer, "", 0, ZMQ_SNDMORE);
        zmq_send(f->dealer, huge, big, 0);
        free(huge);
        expect_error(f, LSC__STATUS__ERR_INVALID, "exceeds");

        /* a request without an operation */
        Lsc__Request empty = LSC__REQUEST__INIT;
        env.version = LSC_WIRE_VERSION;
        env.request = &empty;
        assert_int_equal(lsc_wire_send(f->dealer, NULL, &env), 0);
        expect_error(f, LSC__STATUS__ERR_INVALID, "unknown request");

        /* a reply sent to the manager is not a request */
        Lsc__Reply rep = LSC__REPLY__INIT;
        env.body_case = LSC__ENVELOPE__BODY_REPLY;
        env.reply = &rep;
        assert_int_equal(lsc_wire_send(f->dealer, NULL, &env), 0);
        expect_error(f, LSC__STATUS__ERR_INVALID, "expected a request");

        ping_ok(f, 2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(hostile_frames_get_error_replies_and_lscd_keeps_serving,
                                                setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
