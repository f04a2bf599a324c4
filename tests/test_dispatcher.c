/*  test_dispatcher.c - the broker's queue and dispatch logic, without
    sockets (SPEC.md section 7).
*/
#include "dispatcher.h"

#include "leak_check.h"

#include <criterion/criterion.h>
#include <stdlib.h>

TestSuite (dispatcher, .timeout = 30);

static int s_payloads_freed;

static void
s_free_payload (void **payload)
{
    free (*payload);
    *payload = NULL;
    s_payloads_freed++;
}

static dispatcher_t *
s_new (uint32_t max_attempts, uint64_t max_queued)
{
    dispatcher_config_t config = {max_attempts, 2, max_queued};
    s_payloads_freed = 0;
    return dispatcher_new (&config, s_free_payload);
}

static uint64_t
s_submit (dispatcher_t *d, const char *queue, const char *handler)
{
    drover_task_t spec = {.handler = handler, .queue = queue};
    void *payload = strdup ("input");
    uint64_t id = dispatcher_submit (d, &spec, &payload);
    cr_assert_null (payload, "the dispatcher takes the payload");
    return id;
}

static dispatcher_node_t *
s_node (dispatcher_t *d, const char *name, const char *handler,
        const char *queue, void *peer)
{
    const char *handlers[] = {handler, "echo"};
    return dispatcher_node_add (d, name, 2, handlers, 2, queue ? &queue : NULL,
                                queue ? 1 : 0, peer);
}

//  Dispatches to whichever node is next; returns the count.
static size_t
s_next (dispatcher_t *d, dispatcher_node_t **node, dispatcher_task_t **tasks)
{
    return dispatcher_next (d, node, tasks, 64);
}

LEAK_CHECKED_TEST (dispatcher, ids_are_sequential_and_tasks_queued)
{
    dispatcher_t *d = s_new (1, 100);
    cr_assert_eq (s_submit (d, NULL, "echo"), 1);
    cr_assert_eq (s_submit (d, NULL, "echo"), 2);
    dispatcher_task_t *task = dispatcher_lookup (d, 2);
    cr_assert_not_null (task);
    cr_assert_eq (task->state, DROVER_STATE_QUEUED);
    cr_assert_str_eq (task->queue, "default");
    cr_assert_eq (dispatcher_room (d), 98);
    cr_assert_null (dispatcher_lookup (d, 3));
    dispatcher_destroy (&d);
    cr_assert_null (d);
    cr_assert_eq (s_payloads_freed, 2, "payloads are freed with the tasks");
}

LEAK_CHECKED_TEST (dispatcher, a_node_gets_no_more_than_its_credit)
{
    dispatcher_t *d = s_new (1, 100);
    for (int i = 0; i < 5; i++)
        s_submit (d, NULL, "echo");
    dispatcher_node_t *node = s_node (d, "n1", "echo", NULL, NULL), *which;
    dispatcher_task_t *tasks[64];
    cr_assert_eq (s_next (d, &which, tasks), 0, "no credit, no task");
    dispatcher_node_credit (d, node, 2);
    cr_assert_eq (s_next (d, &which, tasks), 2);
    cr_assert_eq (which, node);
    cr_assert_eq (tasks[0]->id, 1);
    cr_assert_eq (tasks[1]->id, 2);
    cr_assert_eq (tasks[0]->state, DROVER_STATE_LEASED);
    cr_assert_eq (tasks[0]->attempt, 1);
    cr_assert_eq (s_next (d, &which, tasks), 0, "credit used up");
    dispatcher_node_credit (d, node, 1);
    cr_assert_eq (s_next (d, &which, tasks), 1);
    cr_assert_eq (tasks[0]->id, 3);
    cr_assert_eq (dispatcher_node_leased (node), 3);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher,
                   tasks_go_only_to_nodes_with_their_handler_and_queue)
{
    dispatcher_t *d = s_new (1, 100);
    uint64_t sha = s_submit (d, NULL, "sha256");
    uint64_t other_queue = s_submit (d, "slow", "echo");
    uint64_t echo = s_submit (d, NULL, "echo");
    dispatcher_node_t *node = s_node (d, "n1", "sleep", NULL, NULL), *which;
    dispatcher_node_credit (d, node, 10);
    dispatcher_task_t *tasks[64];
    cr_assert_eq (s_next (d, &which, tasks), 1);
    cr_assert_eq (tasks[0]->id, echo);
    cr_assert_eq (s_next (d, &which, tasks), 0);
    cr_assert_eq (dispatcher_lookup (d, sha)->state, DROVER_STATE_QUEUED);
    dispatcher_node_t *slow = s_node (d, "n2", "sleep", "slow", NULL);
    dispatcher_node_credit (d, slow, 10);
    cr_assert_eq (s_next (d, &which, tasks), 1);
    cr_assert_eq (which, slow);
    cr_assert_eq (tasks[0]->id, other_queue);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, a_node_takes_the_oldest_task_across_its_lanes)
{
    dispatcher_t *d = s_new (1, 100);
    s_submit (d, NULL, "sleep");
    s_submit (d, NULL, "echo");
    s_submit (d, NULL, "sleep");
    dispatcher_node_t *node = s_node (d, "n1", "sleep", NULL, NULL), *which;
    dispatcher_node_credit (d, node, 3);
    dispatcher_task_t *tasks[64];
    cr_assert_eq (s_next (d, &which, tasks), 3);
    for (uint64_t i = 0; i < 3; i++)
        cr_assert_eq (tasks[i]->id, i + 1);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, nodes_are_served_least_recently_served_first)
{
    dispatcher_t *d = s_new (1, 100);
    dispatcher_node_t *a = s_node (d, "a", "echo", NULL, NULL);
    dispatcher_node_t *b = s_node (d, "b", "echo", NULL, NULL), *which;
    dispatcher_node_credit (d, a, 2);
    dispatcher_node_credit (d, b, 2);
    dispatcher_task_t *tasks[64];
    s_submit (d, NULL, "echo");
    cr_assert_eq (s_next (d, &which, tasks), 1);
    cr_assert_eq (which, a);
    s_submit (d, NULL, "echo");
    cr_assert_eq (s_next (d, &which, tasks), 1);
    cr_assert_eq (which, b, "b waited longer than a");
    s_submit (d, NULL, "echo");
    cr_assert_eq (s_next (d, &which, tasks), 1);
    cr_assert_eq (which, a);
    dispatcher_destroy (&d);
}

static dispatcher_task_t *
s_lease_one (dispatcher_t *d, dispatcher_node_t *node)
{
    dispatcher_node_t *which;
    dispatcher_task_t *tasks[64];
    dispatcher_node_credit (d, node, 1);
    cr_assert_eq (s_next (d, &which, tasks), 1);
    cr_assert_eq (which, node);
    return tasks[0];
}

LEAK_CHECKED_TEST (dispatcher, failures_retry_until_max_attempts_then_report)
{
    dispatcher_t *d = s_new (2, 100);
    uint64_t id = s_submit (d, NULL, "echo");
    dispatcher_node_t *node = s_node (d, "n1", "echo", NULL, NULL);
    dispatcher_task_t *task = s_lease_one (d, node);
    drover_task_t outcome = {
        .id = id, .attempt = 1, .code = DROVER_EFAILED, .reason = "first"};
    cr_assert_eq (dispatcher_fail (d, node, &outcome), 0);
    cr_assert_eq (task->state, DROVER_STATE_QUEUED, "retried");
    cr_assert_null (dispatcher_report_first (d));
    task = s_lease_one (d, node);
    cr_assert_eq (task->attempt, 2);
    outcome.attempt = 2;
    outcome.code = DROVER_ECRASHED;
    outcome.signal = 6;
    outcome.reason = "second";
    cr_assert_eq (dispatcher_fail (d, node, &outcome), 0);
    cr_assert_eq (task->state, DROVER_STATE_REPORTING);
    cr_assert_eq (dispatcher_report_first (d), task);
    cr_assert_eq (task->code, DROVER_ECRASHED);
    cr_assert_str_eq (task->reason, "second");
    cr_assert_eq (task->outcome.signal, 6);
    cr_assert_null (task->payload, "no payload kept once reporting");
    cr_assert_eq (dispatcher_counters (d)->retried, 1);
    cr_assert_eq (dispatcher_counters (d)->failed, 1);
    cr_assert_eq (dispatcher_done (d, id, 2), 0);
    cr_assert_null (dispatcher_lookup (d, id));
    cr_assert_null (dispatcher_report_first (d));
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, handler_missing_is_not_retried)
{
    dispatcher_t *d = s_new (5, 100);
    uint64_t id = s_submit (d, NULL, "echo");
    dispatcher_node_t *node = s_node (d, "n1", "echo", NULL, NULL);
    dispatcher_task_t *task = s_lease_one (d, node);
    drover_task_t outcome = {.id = id, .attempt = 1, .code = DROVER_EHANDLER};
    cr_assert_eq (dispatcher_fail (d, node, &outcome), 0);
    cr_assert_eq (task->state, DROVER_STATE_REPORTING);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, stale_failures_are_fenced_off)
{
    dispatcher_t *d = s_new (3, 100);
    uint64_t id = s_submit (d, NULL, "echo");
    dispatcher_node_t *a = s_node (d, "a", "echo", NULL, NULL);
    dispatcher_node_t *b = s_node (d, "b", "echo", NULL, NULL);
    dispatcher_task_t *task = s_lease_one (d, a);
    drover_task_t outcome = {.id = id, .attempt = 2, .code = DROVER_EFAILED};
    cr_assert_eq (dispatcher_fail (d, a, &outcome), DROVER_ESTALE,
                  "wrong attempt");
    outcome.attempt = 1;
    cr_assert_eq (dispatcher_fail (d, b, &outcome), DROVER_ESTALE,
                  "wrong node");
    outcome.id = 999;
    cr_assert_eq (dispatcher_fail (d, a, &outcome), DROVER_ESTALE,
                  "unknown task");
    cr_assert_eq (task->state, DROVER_STATE_LEASED);
    cr_assert_eq (task->failures, 0);
    cr_assert_eq (dispatcher_counters (d)->stale, 3);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, a_lost_node_gives_its_tasks_back_in_order)
{
    dispatcher_t *d = s_new (1, 100);
    for (int i = 0; i < 4; i++)
        s_submit (d, NULL, "echo");
    dispatcher_node_t *a = s_node (d, "a", "echo", NULL, NULL), *which;
    dispatcher_node_credit (d, a, 2);
    dispatcher_task_t *tasks[64];
    cr_assert_eq (s_next (d, &which, tasks), 2);
    dispatcher_node_remove (d, &a);
    cr_assert_null (a);
    cr_assert_eq (dispatcher_counters (d)->lost, 2);
    dispatcher_node_t *b = s_node (d, "b", "echo", NULL, NULL);
    dispatcher_node_credit (d, b, 4);
    cr_assert_eq (s_next (d, &which, tasks), 4);
    for (uint64_t i = 0; i < 4; i++)
        cr_assert_eq (tasks[i]->id, i + 1, "lost tasks keep their place");
    cr_assert_eq (tasks[0]->attempt, 2);
    cr_assert_eq (tasks[0]->failures, 0, "a loss is not a failure");
    cr_assert_eq (tasks[2]->attempt, 1);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher,
                   a_task_that_loses_nodes_too_often_fails_with_elost)
{
    dispatcher_t *d = s_new (1, 100); //  max_losses 2
    uint64_t id = s_submit (d, NULL, "echo");
    for (int i = 0; i < 3; i++) {
        dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
        s_lease_one (d, node);
        dispatcher_node_remove (d, &node);
    }
    dispatcher_task_t *task = dispatcher_lookup (d, id);
    cr_assert_eq (task->state, DROVER_STATE_REPORTING);
    cr_assert_eq (task->code, DROVER_ELOST);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher,
                   done_from_a_superseded_attempt_revokes_the_current_one)
{
    dispatcher_t *d = s_new (1, 100);
    uint64_t id = s_submit (d, NULL, "echo");
    dispatcher_node_t *a = s_node (d, "a", "echo", NULL, (void *)0xa);
    s_lease_one (d, a);
    dispatcher_node_remove (d, &a);
    dispatcher_node_t *b = s_node (d, "b", "echo", NULL, (void *)0xb);
    dispatcher_task_t *task = s_lease_one (d, b);
    cr_assert_eq (task->attempt, 2);
    cr_assert_eq (dispatcher_done (d, id, 1), 0, "attempt 1 won at the sink");
    cr_assert_null (dispatcher_lookup (d, id));
    dispatcher_revoke_t revoke;
    cr_assert (dispatcher_revoke_pop (d, &revoke));
    cr_assert_eq (revoke.peer, (void *)0xb);
    cr_assert_eq (revoke.id, id);
    cr_assert_eq (revoke.attempt, 2);
    cr_assert_not (dispatcher_revoke_pop (d, &revoke));
    cr_assert_eq (dispatcher_node_leased (b), 0);
    cr_assert_eq (dispatcher_done (d, id, 2), DROVER_ENOTFOUND);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, cancel_queued_and_leased_tasks)
{
    dispatcher_t *d = s_new (1, 100);
    uint64_t leased = s_submit (d, NULL, "echo");
    uint64_t queued = s_submit (d, NULL, "echo");
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, (void *)0x1);
    s_lease_one (d, node);
    cr_assert_eq (dispatcher_cancel (d, queued), DROVER_STATE_REPORTING);
    cr_assert_eq (dispatcher_cancel (d, leased), DROVER_STATE_REPORTING);
    cr_assert_eq (dispatcher_cancel (d, leased), DROVER_STATE_REPORTING,
                  "a second cancel changes nothing");
    cr_assert_eq (dispatcher_cancel (d, 77), DROVER_STATE_UNKNOWN);
    dispatcher_revoke_t revoke;
    cr_assert (dispatcher_revoke_pop (d, &revoke));
    cr_assert_eq (revoke.id, leased);
    cr_assert_eq (revoke.code, DROVER_ECANCELLED);
    cr_assert_not (dispatcher_revoke_pop (d, &revoke));
    size_t reports = 0;
    for (dispatcher_task_t *t = dispatcher_report_first (d); t;
         t = dispatcher_report_next (d)) {
        cr_assert_eq (t->code, DROVER_ECANCELLED);
        reports++;
    }
    cr_assert_eq (reports, 2);
    cr_assert_eq (dispatcher_counters (d)->cancelled, 2);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, a_draining_node_gets_nothing)
{
    dispatcher_t *d = s_new (1, 100);
    s_submit (d, NULL, "echo");
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL), *which;
    dispatcher_node_credit (d, node, 5);
    dispatcher_node_drain (d, node);
    dispatcher_node_credit (d, node, 5);
    dispatcher_task_t *tasks[64];
    cr_assert_eq (s_next (d, &which, tasks), 0);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, the_task_limit_is_enforced)
{
    dispatcher_t *d = s_new (1, 2);
    cr_assert_neq (s_submit (d, NULL, "echo"), 0);
    cr_assert_neq (s_submit (d, NULL, "echo"), 0);
    cr_assert_eq (dispatcher_room (d), 0);
    drover_task_t spec = {.handler = "echo"};
    void *payload = strdup ("x");
    cr_assert_eq (dispatcher_submit (d, &spec, &payload), 0);
    cr_assert_not_null (payload, "a refused payload stays the caller's");
    free (payload);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, queue_and_node_statistics)
{
    dispatcher_t *d = s_new (1, 100);
    s_submit (d, NULL, "echo");
    s_submit (d, NULL, "sleep");
    s_submit (d, "other", "echo");
    dispatcher_node_t *node = s_node (d, "n", "sleep", NULL, NULL);
    s_lease_one (d, node);
    drover_queue_info_t queues[8];
    size_t count = dispatcher_queue_infos (d, queues, 8);
    cr_assert_eq (count, 2);
    for (size_t i = 0; i < count; i++)
        if (strcmp (queues[i].name, "default") == 0) {
            cr_assert_eq (queues[i].queued, 1);
            cr_assert_eq (queues[i].leased, 1);
        }
        else {
            cr_assert_str_eq (queues[i].name, "other");
            cr_assert_eq (queues[i].queued, 1);
        }
    drover_node_info_t nodes[8];
    cr_assert_eq (dispatcher_node_infos (d, nodes, 8), 1);
    cr_assert_str_eq (nodes[0].name, "n");
    cr_assert_eq (nodes[0].children, 2);
    cr_assert_eq (nodes[0].leased, 1);
    dispatcher_destroy (&d);
}
