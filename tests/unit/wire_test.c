/* wire: envelopes over real zmq sockets (inproc ROUTER/DEALER), including hostile frames. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "util.h"
#include "wire.h"

struct pair {
        void *ctx, *router, *dealer;
};

static int setup(void **state)
{
        struct pair *p = calloc(1, sizeof(*p));
        int zero = 0;

        p->ctx = zmq_ctx_new();
        p->router = zmq_socket(p->ctx, ZMQ_ROUTER);
        p->dealer = zmq_socket(p->ctx, ZMQ_DEALER);
        zmq_setsockopt(p->router, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(p->dealer, ZMQ_LINGER, &zero, sizeof(zero));
        assert_int_equal(zmq_bind(p->router, "inproc://wire"), 0);
        assert_int_equal(zmq_connect(p->dealer, "inproc://wire"), 0);
        *state = p;
        return 0;
}

static int teardown(void **state)
{
        struct pair *p = *state;
        zmq_close(p->router);
        zmq_close(p->dealer);
        zmq_ctx_term(p->ctx);
        free(p);
        return 0;
}

/* Waits (bounded) until sock is readable: a test must never hang. */
static void wait_readable(void *sock)
{
        zmq_pollitem_t it = { .socket = sock, .events = ZMQ_POLLIN };
        assert_int_equal(zmq_poll(&it, 1, 2000), 1);
}

static void send_ping(void *sock, uint64_t seq)
{
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ping ping = LSC__PING__INIT;

        req.op_case = LSC__REQUEST__OP_PING;
        req.ping = &ping;
        env.sender = "cli:test";
        env.has_seq = 1;
        env.seq = seq;
        env.body_case = LSC__ENVELOPE__BODY_REQUEST;
        env.request = &req;
        assert_int_equal(lsc_wire_send(sock, NULL, &env), 0);
}

/* Sends raw parts as given (NULL-terminated list of {data,len}). */
static void send_raw(void *sock, int n, const void *const *data, const size_t *len)
{
        for (int i = 0; i < n; i++)
                assert_true(zmq_send(sock, data[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
}

/* The router still decodes a good message after whatever came before. */
static void expect_ping(struct pair *p, uint64_t seq)
{
        struct lsc_route route;
        Lsc__Envelope *env = NULL;

        wait_readable(p->router);
        assert_int_equal(lsc_wire_recv(p->router, true, &route, &env), 0);
        assert_non_null(env);
        assert_true(route.len > 0);
        assert_int_equal(env->body_case, LSC__ENVELOPE__BODY_REQUEST);
        assert_int_equal(env->request->op_case, LSC__REQUEST__OP_PING);
        assert_int_equal(env->seq, seq);
        assert_string_equal(env->sender, "cli:test");
        lsc_wire_free(env);
}

static void envelope_round_trips_through_router(void **state)
{
        struct pair *p = *state;
        struct lsc_route route;
        Lsc__Envelope *env = NULL;

        send_ping(p->dealer, 42);
        wait_readable(p->router);
        assert_int_equal(lsc_wire_recv(p->router, true, &route, &env), 0);
        assert_int_equal(env->version, LSC_WIRE_VERSION);
        lsc_wire_free(env);

        /* and the reply finds its way back to the same peer */
        assert_int_equal(lsc_wire_send_error(p->router, &route, 42, LSC__STATUS__ERR_NOTFOUND, "nope"), 0);
        wait_readable(p->dealer);
        assert_int_equal(lsc_wire_recv(p->dealer, false, NULL, &env), 0);
        assert_int_equal(env->body_case, LSC__ENVELOPE__BODY_REPLY);
        assert_int_equal(env->reply->status, LSC__STATUS__ERR_NOTFOUND);
        assert_string_equal(env->reply->error, "nope");
        assert_int_equal(env->seq, 42);
        lsc_wire_free(env);
}

static void garbage_bytes_are_rejected_and_route_is_kept(void **state)
{
        struct pair *p = *state;
        const char garbage[] = "\xff\xff\xff\xff\xff\x01\x02garbage";
        const void *d[] = { "", garbage };
        size_t l[] = { 0, sizeof(garbage) };
        struct lsc_route route;
        Lsc__Envelope *env = NULL;

        send_raw(p->dealer, 2, d, l);
        wait_readable(p->router);
        assert_int_equal(lsc_wire_recv(p->router, true, &route, &env), -EBADMSG);
        assert_null(env);
        assert_true(route.len > 0);     /* so the caller can answer */
        send_ping(p->dealer, 1);
        expect_ping(p, 1);
}

static void truncated_envelope_is_rejected(void **state)
{
        struct pair *p = *state;
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ref ref = LSC__REF__INIT;
        uint8_t buf[256];
        size_t len;
        struct lsc_route route;
        Lsc__Envelope *got = NULL;

        ref.ref = "a-long-enough-server-name-to-cut";
        req.op_case = LSC__REQUEST__OP_SERVER_GET;
        req.server_get = &ref;
        env.has_version = 1;
        env.version = LSC_WIRE_VERSION;
        env.body_case = LSC__ENVELOPE__BODY_REQUEST;
        env.request = &req;
        len = lsc__envelope__pack(&env, buf);
        assert_true(len > 10);
        /* cut inside the nested message: the length prefix promises more than follows */
        const void *d[] = { "", buf };
        size_t l[] = { 0, len - 5 };
        send_raw(p->dealer, 2, d, l);
        wait_readable(p->router);
        assert_int_equal(lsc_wire_recv(p->router, true, &route, &got), -EBADMSG);
        assert_null(got);
}

static void oversized_envelope_is_rejected_before_parsing(void **state)
{
        struct pair *p = *state;
        size_t big = LSC_WIRE_MAX_FRAME + 1;
        _cleanup_free_ char *buf = calloc(1, big);
        const void *d[] = { "", buf };
        size_t l[] = { 0, big };
        struct lsc_route route;
        Lsc__Envelope *env = NULL;

        send_raw(p->dealer, 2, d, l);
        wait_readable(p->router);
        assert_int_equal(lsc_wire_recv(p->router, true, &route, &env), -EMSGSIZE);
        assert_null(env);
        assert_non_null(strstr(lsc_err_msg(-EMSGSIZE), "exceeds"));
        send_ping(p->dealer, 2);
        expect_ping(p, 2);
}

/* A reply too large to send goes out as an error that says so: the peer is never left
 * waiting for its timeout. One that fits goes out as it is. */
static void oversized_reply_is_answered_with_an_error(void **state)
{
        struct pair *p = *state;
        _cleanup_free_ char *big = malloc(LSC_WIRE_MAX_FRAME + 1);
        Lsc__Reply reply = LSC__REPLY__INIT;
        struct lsc_route route;
        Lsc__Envelope *env = NULL;

        send_ping(p->dealer, 7);
        wait_readable(p->router);
        assert_int_equal(lsc_wire_recv(p->router, true, &route, &env), 0);
        lsc_wire_free(env);

        memset(big, 'x', LSC_WIRE_MAX_FRAME);
        big[LSC_WIRE_MAX_FRAME] = '\0';
        reply.has_status = 1;
        reply.status = LSC__STATUS__OK;
        reply.next = big;
        assert_int_equal(lsc_wire_send_reply(p->router, &route, 7, &reply), -EMSGSIZE);
        assert_non_null(strstr(lsc_err_msg(-EMSGSIZE), "reply too large"));
        wait_readable(p->dealer);
        assert_int_equal(lsc_wire_recv(p->dealer, false, NULL, &env), 0);
        assert_int_equal(env->seq, 7);
        assert_int_equal(env->reply->status, LSC__STATUS__ERR_INTERNAL);
        assert_non_null(strstr(env->reply->error, "reply too large: "));
        assert_non_null(strstr(env->reply->error, "exceed the limit of 1048576"));
        lsc_wire_free(env);

        reply.next = "web7";
        assert_int_equal(lsc_wire_send_reply(p->router, &route, 8, &reply), 0);
        wait_readable(p->dealer);
        assert_int_equal(lsc_wire_recv(p->dealer, false, NULL, &env), 0);
        assert_int_equal(env->seq, 8);
        assert_int_equal(env->reply->status, LSC__STATUS__OK);
        assert_string_equal(env->reply->next, "web7");
        lsc_wire_free(env);
}

static void wrong_version_is_reported_with_its_seq(void **state)
{
        struct pair *p = *state;
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ping ping = LSC__PING__INIT;
        struct lsc_route route;
        Lsc__Envelope *got = NULL;

        req.op_case = LSC__REQUEST__OP_PING;
        req.ping = &ping;
        env.has_version = 1;
        env.version = 99;
        env.has_seq = 1;
        env.seq = 7;
        env.body_case = LSC__ENVELOPE__BODY_REQUEST;
        env.request = &req;
        assert_int_equal(lsc_wire_send(p->dealer, NULL, &env), 0);
        wait_readable(p->router);
        assert_int_equal(lsc_wire_recv(p->router, true, &route, &got), -EPROTONOSUPPORT);
        assert_non_null(got);
        assert_int_equal(got->seq, 7);
        assert_non_null(strstr(lsc_err_msg(-EPROTONOSUPPORT), "99"));
        lsc_wire_free(got);
}

static void missing_version_is_a_wrong_version(void **state)
{
        struct pair *p = *state;
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__Ping ping = LSC__PING__INIT;
        uint8_t buf[64];
        struct lsc_route route;
        Lsc__Envelope *got = NULL;

        req.op_case = LSC__REQUEST__OP_PING;
        req.ping = &ping;
        env.body_case = LSC__ENVELOPE__BODY_REQUEST;
        env.request = &req;
        size_t len = lsc__envelope__pack(&env, buf);
        const void *d[] = { "", buf };
        size_t l[] = { 0, len };
        send_raw(p->dealer, 2, d, l);
        wait_readable(p->router);
        assert_int_equal(lsc_wire_recv(p->router, true, &route, &got), -EPROTONOSUPPORT);
        lsc_wire_free(got);
}

static void envelope_without_body_is_rejected(void **state)
{
        struct pair *p = *state;
        Lsc__Envelope env = LSC__ENVELOPE__INIT;
        struct lsc_route route;
        Lsc__Envelope *got = NULL;

        env.sender = "cli:test";
        assert_int_equal(lsc_wire_send(p->dealer, NULL, &env), 0);
        wait_readable(p->router);
        assert_int_equal(lsc_wire_recv(p->router, true, &route, &got), -EBADMSG);
        assert_null(got);
}

static void missing_delimiter_is_rejected(void **state)
{
        struct pair *p = *state;
        const void *d[] = { "x" };
        size_t l[] = { 1 };
        struct lsc_route route;
        Lsc__Envelope *env = NULL;

        send_raw(p->dealer, 1, d, l);
        wait_readable(p->router);
        assert_int_equal(lsc_wire_recv(p->router, true, &route, &env), -EBADMSG);
        send_ping(p->dealer, 3);
        expect_ping(p, 3);
}

static void extra_parts_are_drained_and_rejected(void **state)
{
        struct pair *p = *state;
        const void *d[] = { "", "a", "b", "c", "d" };
        size_t l[] = { 0, 1, 1, 1, 1 };
        struct lsc_route route;
        Lsc__Envelope *env = NULL;

        send_raw(p->dealer, 5, d, l);
        wait_readable(p->router);
        assert_int_equal(lsc_wire_recv(p->router, true, &route, &env), -EBADMSG);
        /* nothing of the bad message is left to confuse the next one */
        send_ping(p->dealer, 4);
        expect_ping(p, 4);
}

static void empty_socket_reports_eagain(void **state)
{
        struct pair *p = *state;
        struct lsc_route route;
        Lsc__Envelope *env = NULL;

        assert_int_equal(lsc_wire_recv(p->router, true, &route, &env), -EAGAIN);
}

static void random_frames_never_crash_the_decoder(void **state)
{
        uint8_t buf[512];
        unsigned seed = 12345;

        (void)state;
        for (int i = 0; i < 20000; i++) {
                size_t len = (size_t)(rand_r(&seed) % sizeof(buf));
                Lsc__Envelope *env = NULL;
                for (size_t j = 0; j < len; j++)
                        buf[j] = (uint8_t)rand_r(&seed);
                int r = lsc_wire_decode(buf, len, &env);
                assert_true(r == 0 || r == -EBADMSG || r == -EPROTONOSUPPORT);
                if (r == 0)
                        assert_int_not_equal(env->body_case, LSC__ENVELOPE__BODY__NOT_SET);
                lsc_wire_free(env);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(envelope_round_trips_through_router, setup, teardown),
                cmocka_unit_test_setup_teardown(garbage_bytes_are_rejected_and_route_is_kept, setup, teardown),
                cmocka_unit_test_setup_teardown(truncated_envelope_is_rejected, setup, teardown),
                cmocka_unit_test_setup_teardown(oversized_envelope_is_rejected_before_parsing, setup, teardown),
                cmocka_unit_test_setup_teardown(oversized_reply_is_answered_with_an_error, setup, teardown),
                cmocka_unit_test_setup_teardown(wrong_version_is_reported_with_its_seq, setup, teardown),
                cmocka_unit_test_setup_teardown(missing_version_is_a_wrong_version, setup, teardown),
                cmocka_unit_test_setup_teardown(envelope_without_body_is_rejected, setup, teardown),
                cmocka_unit_test_setup_teardown(missing_delimiter_is_rejected, setup, teardown),
                cmocka_unit_test_setup_teardown(extra_parts_are_drained_and_rejected, setup, teardown),
                cmocka_unit_test_setup_teardown(empty_socket_reports_eagain, setup, teardown),
                cmocka_unit_test(random_frames_never_crash_the_decoder),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
