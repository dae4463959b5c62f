/* store_check: the request checks lscd makes on arrival, before any database work. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include "store.h"
#include "err.h"

struct create {
        Lsc__Request req;
        Lsc__ServerCreate create;
        Lsc__ServerSpec spec;
};

static void create_init(struct create *c)
{
        lsc__request__init(&c->req);
        lsc__server_create__init(&c->create);
        lsc__server_spec__init(&c->spec);
        c->req.op_case = LSC__REQUEST__OP_SERVER_CREATE;
        c->req.server_create = &c->create;
        c->create.spec = &c->spec;
        c->spec.name = "web1";
        c->spec.has_vcpus = 1;
        c->spec.vcpus = 2;
        c->spec.has_memory_mib = 1;
        c->spec.memory_mib = 2048;
}

static void refused_with(const Lsc__Request *req, const char *needle)
{
        lsc_err_clear();
        assert_int_equal(store_check(req), -EINVAL);
        if (!strstr(lsc_err_msg(-EINVAL), needle))
                fail_msg("message \"%s\" does not mention \"%s\"", lsc_err_msg(-EINVAL), needle);
}

static void minimal_create_is_accepted(void **state)
{
        struct create c;
        (void)state;
        create_init(&c);
        assert_int_equal(store_check(&c.req), 0);
}

static void create_without_vcpus_is_refused(void **state)
{
        struct create c;
        (void)state;
        create_init(&c);
        c.spec.has_vcpus = 0;
        refused_with(&c.req, "vcpus");
}

static void create_with_bad_name_is_refused(void **state)
{
        struct create c;
        (void)state;
        create_init(&c);
        c.spec.name = "Web_1";
        refused_with(&c.req, "Web_1");
}

static void create_with_unknown_kind_is_refused(void **state)
{
        struct create c;
        (void)state;
        create_init(&c);
        c.spec.kind = "toaster";
        refused_with(&c.req, "toaster");
}

static void create_with_bad_mac_is_refused(void **state)
{
        struct create c;
        char *macs[] = { "02:00:00:00:00:zz" };
        (void)state;
        create_init(&c);
        c.spec.n_macs = 1;
        c.spec.macs = macs;
        refused_with(&c.req, "02:00:00:00:00:zz");
}

static void create_with_bad_label_is_refused(void **state)
{
        struct create c;
        Lsc__Label label = LSC__LABEL__INIT;
        Lsc__Label *labels[] = { &label };
        (void)state;
        create_init(&c);
        label.key = "tier";
        label.value = "front end";
        c.spec.n_labels = 1;
        c.spec.labels = labels;
        refused_with(&c.req, "label value");
}

static void create_with_too_many_vcpus_is_refused(void **state)
{
        struct create c;
        (void)state;
        create_init(&c);
        c.spec.vcpus = 1025;
        refused_with(&c.req, "1025");
}

static void edit_without_ref_is_refused(void **state)
{
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__ServerEdit edit = LSC__SERVER_EDIT__INIT;
        (void)state;
        req.op_case = LSC__REQUEST__OP_SERVER_EDIT;
        req.server_edit = &edit;
        refused_with(&req, "which server");
}

static void pool_gateway_outside_cidr_is_refused(void **state)
{
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__PoolCreate p = LSC__POOL_CREATE__INIT;
        (void)state;
        req.op_case = LSC__REQUEST__OP_POOL_CREATE;
        req.pool_create = &p;
        p.name = "lan";
        p.cidr = "10.1.0.0/24";
        p.gateway = "10.2.0.1";
        refused_with(&req, "10.2.0.1");
        p.gateway = "10.1.0.0";        /* the network address is no gateway either */
        refused_with(&req, "10.1.0.0");
        p.gateway = "10.1.0.1";
        assert_int_equal(store_check(&req), 0);
}

static void event_limit_out_of_range_is_refused(void **state)
{
        Lsc__Request req = LSC__REQUEST__INIT;
        Lsc__EventList ev = LSC__EVENT_LIST__INIT;
        (void)state;
        req.op_case = LSC__REQUEST__OP_EVENT_LIST;
        req.event_list = &ev;
        ev.has_limit = 1;
        ev.limit = 0;
        refused_with(&req, "limit");
        ev.limit = 10001;
        refused_with(&req, "limit");
        ev.limit = 10;
        assert_int_equal(store_check(&req), 0);
}

static void request_without_operation_is_refused(void **state)
{
        Lsc__Request req = LSC__REQUEST__INIT;
        (void)state;
        refused_with(&req, "unknown request");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(minimal_create_is_accepted),
                cmocka_unit_test(create_without_vcpus_is_refused),
                cmocka_unit_test(create_with_bad_name_is_refused),
                cmocka_unit_test(create_with_unknown_kind_is_refused),
                cmocka_unit_test(create_with_bad_mac_is_refused),
                cmocka_unit_test(create_with_bad_label_is_refused),
                cmocka_unit_test(create_with_too_many_vcpus_is_refused),
                cmocka_unit_test(edit_without_ref_is_refused),
                cmocka_unit_test(pool_gateway_outside_cidr_is_refused),
                cmocka_unit_test(event_limit_out_of_range_is_refused),
                cmocka_unit_test(request_without_operation_is_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
