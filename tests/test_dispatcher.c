/*  test_dispatcher.c - the broker's queue and dispatch logic, without
    sockets (SPEC.md section 7).
*/
#include "dispatcher.h"
#include "id_index.h"
#include "task_list.h"
#include "task_payload.h"

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
s_new_config (dispatcher_config_t config)
{
    s_payloads_freed = 0;
    return dispatcher_new (&config, s_free_payload);
}

static dispatcher_t *
s_new (uint32_t max_attempts, uint64_t max_queued)
{
    return s_new_config ((dispatcher_config_t){.max_attempts = max_attempts,
                                               .max_losses = 2,
                                               .max_queued = max_queued,
                                               .max_dead = 100});
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
                                queue ? 1 : 0, false, peer);
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
    cr_assert_str_eq (dispatcher_task_queue (task), "default");
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

LEAK_CHECKED_TEST (dispatcher, chunks_go_only_to_nodes_that_run_chunks)
{
    dispatcher_t *d = s_new (1, 100);
    drover_task_t spec = {.handler = "echo", .items = 3};
    void *payload = strdup ("chunk");
    uint64_t chunk = dispatcher_submit (d, &spec, &payload);
    cr_assert (chunk);
    cr_assert_eq (dispatcher_lookup (d, chunk)->items, 3);
    uint64_t plain = s_submit (d, NULL, "echo");
    const char *handlers[] = {"echo"};
    dispatcher_node_t *old =
        dispatcher_node_add (d, "old", 1, handlers, 1, NULL, 0, false, NULL);
    dispatcher_node_credit (d, old, 5);
    dispatcher_node_t *which;
    dispatcher_task_t *tasks[64];
    cr_assert_eq (s_next (d, &which, tasks), 1, "only the plain task");
    cr_assert_eq (tasks[0]->id, plain);
    cr_assert_eq (s_next (d, &which, tasks), 0, "the chunk waits");
    dispatcher_node_t *new_node =
        dispatcher_node_add (d, "new", 1, handlers, 1, NULL, 0, true, NULL);
    dispatcher_node_credit (d, new_node, 1);
    cr_assert_eq (s_next (d, &which, tasks), 1);
    cr_assert_eq (which, new_node);
    cr_assert_eq (tasks[0]->id, chunk);
    cr_assert_eq (tasks[0]->items, 3);
    //  A chunk node takes plain tasks too
    uint64_t later = s_submit (d, NULL, "echo");
    dispatcher_node_credit (d, new_node, 1);
    dispatcher_node_remove (d, &old);
    cr_assert_eq (s_next (d, &which, tasks), 1);
    cr_assert_eq (tasks[0]->id, plain, "requeued from the removed node");
    cr_assert_eq (which, new_node);
    (void)later;
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
    cr_assert_eq (dispatcher_fail (d, node, &outcome, 1000), 0);
    cr_assert_eq (task->state, DROVER_STATE_RETRY, "retried after a backoff");
    cr_assert_null (dispatcher_report_first (d));
    cr_assert_eq (dispatcher_tick (d, 1000 + 499), 0, "not before d/2");
    cr_assert_eq (dispatcher_tick (d, 1000 + 1000), 1, "default 1000 ms");
    cr_assert_eq (task->state, DROVER_STATE_QUEUED);
    task = s_lease_one (d, node);
    cr_assert_eq (task->attempt, 2);
    outcome.attempt = 2;
    outcome.code = DROVER_ECRASHED;
    outcome.signal = 6;
    outcome.reason = "second";
    cr_assert_eq (dispatcher_fail (d, node, &outcome, 3000), 0);
    cr_assert_eq (task->state, DROVER_STATE_REPORTING);
    cr_assert_eq (dispatcher_report_first (d), task);
    cr_assert_eq (task->code, DROVER_ECRASHED);
    cr_assert_str_eq (dispatcher_task_reason (task), "second");
    cr_assert_eq (task->trouble->outcome.signal, 6);
    cr_assert_not_null (task->payload, "a dead letter keeps its payload");
    cr_assert_eq (dispatcher_counters (d)->retried, 1);
    cr_assert_eq (dispatcher_counters (d)->failed, 1);
    cr_assert_eq (dispatcher_done (d, id, 2, DROVER_ECRASHED), 0);
    cr_assert_null (dispatcher_lookup (d, id));
    cr_assert_null (dispatcher_report_first (d));
    cr_assert_eq (dispatcher_dead_lookup (d, id), task, "still a dead letter");
    cr_assert_eq (task->state, DROVER_STATE_FAILED);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, handler_missing_is_not_retried)
{
    dispatcher_t *d = s_new (5, 100);
    uint64_t id = s_submit (d, NULL, "echo");
    dispatcher_node_t *node = s_node (d, "n1", "echo", NULL, NULL);
    dispatcher_task_t *task = s_lease_one (d, node);
    drover_task_t outcome = {.id = id, .attempt = 1, .code = DROVER_EHANDLER};
    cr_assert_eq (dispatcher_fail (d, node, &outcome, 0), 0);
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
    cr_assert_eq (dispatcher_fail (d, a, &outcome, 0), DROVER_ESTALE,
                  "wrong attempt");
    outcome.attempt = 1;
    cr_assert_eq (dispatcher_fail (d, b, &outcome, 0), DROVER_ESTALE,
                  "wrong node");
    outcome.id = 999;
    cr_assert_eq (dispatcher_fail (d, a, &outcome, 0), DROVER_ESTALE,
                  "unknown task");
    cr_assert_eq (task->state, DROVER_STATE_LEASED);
    cr_assert_null (task->trouble, "a stale FAIL leaves no trace");
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
    cr_assert_eq (tasks[0]->trouble->losses, 1);
    cr_assert_eq (tasks[0]->trouble->failures, 0, "a loss is not a failure");
    cr_assert_null (tasks[2]->trouble, "a task that never failed is small");
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
    cr_assert_eq (dispatcher_dead_lookup (d, id), task, "a dead letter");
    cr_assert_eq (dispatcher_history_size (dispatcher_task_history (task)), 3,
                  "each loss is in the history");
    const dispatcher_attempt_t *last =
        dispatcher_history_get (dispatcher_task_history (task), 2);
    cr_assert_eq (last->attempt, 3);
    cr_assert_eq (last->code, DROVER_ELOST);
    cr_assert_str_eq (last->node, "n");
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
    cr_assert_eq (dispatcher_done (d, id, 1, 0), 0,
                  "attempt 1 won at the sink");
    cr_assert_null (dispatcher_lookup (d, id));
    dispatcher_revoke_t revoke;
    cr_assert (dispatcher_revoke_pop (d, &revoke));
    cr_assert_eq (revoke.peer, (void *)0xb);
    cr_assert_eq (revoke.id, id);
    cr_assert_eq (revoke.attempt, 2);
    cr_assert_not (dispatcher_revoke_pop (d, &revoke));
    cr_assert_eq (dispatcher_node_leased (b), 0);
    cr_assert_eq (dispatcher_done (d, id, 2, 0), DROVER_ENOTFOUND);
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

//  --------------------------------------------------------------------------
//  Retries with fake time, and dead letters

//  Submits one task with retry options; the payload is "input".
static uint64_t
s_submit_spec (dispatcher_t *d, drover_task_t spec)
{
    if (!spec.handler)
        spec.handler = "echo";
    void *payload = strdup ("input");
    uint64_t id = dispatcher_submit (d, &spec, &payload);
    cr_assert_neq (id, 0);
    return id;
}

//  Leases the task to node and fails its attempt with code at now_ms.
static dispatcher_task_t *
s_lease_and_fail (dispatcher_t *d, dispatcher_node_t *node, uint64_t id,
                  int32_t code, int64_t now_ms)
{
    dispatcher_task_t *task = s_lease_one (d, node);
    cr_assert_eq (task->id, id, "leased %llu, expected %llu",
                  (unsigned long long)task->id, (unsigned long long)id);
    drover_task_t outcome = {.id = id,
                             .attempt = task->attempt,
                             .code = code,
                             .reason = "boom",
                             .elapsed_us = 1000u * task->attempt,
                             .cpu_us = 500u * task->attempt,
                             .exit_status = (int32_t)task->attempt,
                             .max_rss_kb = 2048};
    cr_assert_eq (dispatcher_fail (d, node, &outcome, now_ms), 0);
    return task;
}

LEAK_CHECKED_TEST (dispatcher, backoff_doubles_with_jitter_up_to_its_cap)
{
    dispatcher_t *d = s_new (20, 100);
    uint64_t id =
        s_submit_spec (d, (drover_task_t){.max_attempts = 12,
                                          .retry_delay_ms = 100,
                                          .retry_max_delay_ms = 3000});
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    int64_t now = 1000000;
    for (uint32_t n = 1; n < 12; n++) {
        dispatcher_task_t *task =
            s_lease_and_fail (d, node, id, DROVER_EFAILED, now);
        cr_assert_eq (task->state, DROVER_STATE_RETRY);
        uint64_t d_ms = 100ull << (n - 1);
        if (d_ms > 3000)
            d_ms = 3000;
        int64_t delay = task->trouble->due_ms - now;
        cr_assert (delay >= (int64_t)(d_ms / 2) && delay <= (int64_t)d_ms,
                   "failure %u: delay %lld not in [%llu, %llu]", n,
                   (long long)delay, (unsigned long long)d_ms / 2,
                   (unsigned long long)d_ms);
        cr_assert_eq (dispatcher_next_due (d), task->trouble->due_ms);
        cr_assert_eq (dispatcher_tick (d, task->trouble->due_ms - 1), 0,
                      "failure %u: requeued early", n);
        cr_assert_eq (task->state, DROVER_STATE_RETRY);
        now = task->trouble->due_ms;
        cr_assert_eq (dispatcher_tick (d, now), 1);
        cr_assert_eq (task->state, DROVER_STATE_QUEUED);
        cr_assert_eq (dispatcher_next_due (d), -1);
    }
    //  The 12th failure uses up the attempts
    dispatcher_task_t *task =
        s_lease_and_fail (d, node, id, DROVER_EFAILED, now);
    cr_assert_eq (task->state, DROVER_STATE_REPORTING);
    cr_assert_eq (dispatcher_counters (d)->retried, 11);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, jitter_spreads_retries_within_half_to_full_delay)
{
    dispatcher_t *d = s_new (2, 1000);
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    bool seen[101] = {false};
    size_t distinct = 0;
    for (int i = 0; i < 200; i++) {
        uint64_t id = s_submit_spec (
            d, (drover_task_t){.retry_delay_ms = 100, .max_attempts = 2});
        dispatcher_task_t *task =
            s_lease_and_fail (d, node, id, DROVER_ECRASHED, 5000);
        int64_t delay = task->trouble->due_ms - 5000;
        cr_assert (delay >= 50 && delay <= 100, "delay %lld", (long long)delay);
        distinct += !seen[delay];
        seen[delay] = true;
    }
    cr_assert (distinct >= 20, "only %zu distinct delays in 200", distinct);
    cr_assert_eq (dispatcher_retrying (d), 200);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, zero_retry_options_take_the_configured_defaults)
{
    dispatcher_t *d =
        s_new_config ((dispatcher_config_t){.max_attempts = 5,
                                            .max_losses = 2,
                                            .max_queued = 100,
                                            .retry_delay_ms = 40,
                                            .retry_max_delay_ms = 60,
                                            .max_dead = 10});
    uint64_t id = s_submit_spec (d, (drover_task_t){0});
    dispatcher_task_t *task = dispatcher_lookup (d, id);
    cr_assert_eq (task->max_attempts, 5);
    cr_assert_eq (task->retry_on, DROVER_RETRY_ON_DEFAULT);
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    int64_t now = 0;
    for (int n = 1; n <= 3; n++) {
        s_lease_and_fail (d, node, id, DROVER_ETIMELIMIT, now);
        int64_t cap = n == 1 ? 40 : 60;
        cr_assert (task->trouble->due_ms - now >= cap / 2
                       && task->trouble->due_ms - now <= cap,
                   "failure %d: delay %lld", n,
                   (long long)(task->trouble->due_ms - now));
        now = task->trouble->due_ms;
        dispatcher_tick (d, now);
    }
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, only_codes_in_retry_on_retry)
{
    dispatcher_t *d = s_new (1, 100);
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    //  Only time limits retry: a handler failure fails for good at once
    drover_task_t spec = {.max_attempts = 3,
                          .retry_on = DROVER_RETRY_BIT (DROVER_ETIMELIMIT)};
    uint64_t strict = s_submit_spec (d, spec);
    dispatcher_task_t *task =
        s_lease_and_fail (d, node, strict, DROVER_EFAILED, 0);
    cr_assert_eq (task->state, DROVER_STATE_REPORTING);
    cr_assert_eq (dispatcher_dead_lookup (d, strict), task);
    uint64_t timed = s_submit_spec (d, spec);
    task = s_lease_and_fail (d, node, timed, DROVER_ETIMELIMIT, 0);
    cr_assert_eq (task->state, DROVER_STATE_RETRY);
    //  The default set has the memory limit, not a missing handler
    spec.retry_on = 0;
    uint64_t memory = s_submit_spec (d, spec);
    task = s_lease_and_fail (d, node, memory, DROVER_EMEMLIMIT, 0);
    cr_assert_eq (task->state, DROVER_STATE_RETRY);
    uint64_t handler = s_submit_spec (d, spec);
    task = s_lease_and_fail (d, node, handler, DROVER_EHANDLER, 0);
    cr_assert_eq (task->state, DROVER_STATE_REPORTING);
    cr_assert_eq (task->code, DROVER_EHANDLER);
    //  A FAIL with code 0 is still a failure
    uint64_t zero = s_submit_spec (d, spec);
    task = s_lease_and_fail (d, node, zero, 0, 0);
    cr_assert_eq (task->code, DROVER_EFAILED);
    cr_assert_eq (task->state, DROVER_STATE_RETRY);
    cr_assert_eq (dispatcher_retrying (d), 3);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, due_retries_requeue_earliest_first)
{
    dispatcher_t *d = s_new (2, 1000);
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    uint64_t ids[100];
    for (int i = 0; i < 100; i++) {
        //  Delays of 10 to 1000 ms, shuffled by a stride
        uint64_t delay = 10 + (uint64_t)((i * 37) % 100) * 10;
        ids[i] = s_submit_spec (
            d, (drover_task_t){.retry_delay_ms = delay, .max_attempts = 2});
        s_lease_and_fail (d, node, ids[i], DROVER_EFAILED, 0);
    }
    //  Cancel one that is retrying: it leaves the heap at once
    cr_assert_eq (dispatcher_cancel (d, ids[50]), DROVER_STATE_REPORTING);
    cr_assert_eq (dispatcher_retrying (d), 99);
    int64_t last_due = -1;
    size_t requeued = 0;
    //  Ticks up to 1001 ms: backoffs reach 1000 ms
    for (int64_t now = 0; now <= 1000 + 7; now += 7) {
        int64_t due = dispatcher_next_due (d);
        if (due >= 0)
            cr_assert (due >= last_due, "due times go forward");
        size_t count = dispatcher_tick (d, now);
        requeued += count;
        if (count)
            last_due = due;
        cr_assert (dispatcher_next_due (d) == -1
                       || dispatcher_next_due (d) > now,
                   "nothing due is left behind");
    }
    cr_assert_eq (requeued, 99);
    cr_assert_eq (dispatcher_retrying (d), 0);
    cr_assert_eq (dispatcher_next_due (d), -1);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, the_history_keeps_every_attempts_details)
{
    dispatcher_t *d = s_new (1, 100);
    dispatcher_node_t *a = s_node (d, "a", "echo", NULL, NULL);
    dispatcher_node_t *b = s_node (d, "b", "echo", NULL, NULL);
    uint64_t id = s_submit_spec (
        d, (drover_task_t){.max_attempts = 3, .retry_delay_ms = 10});
    dispatcher_task_t *task = s_lease_and_fail (d, a, id, DROVER_EFAILED, 0);
    dispatcher_tick (d, 100);
    s_lease_and_fail (d, b, id, DROVER_ECRASHED, 100);
    dispatcher_tick (d, 200);
    s_lease_and_fail (d, a, id, DROVER_EMEMLIMIT, 200);
    cr_assert_eq (task->state, DROVER_STATE_REPORTING);
    cr_assert_eq (task->code, DROVER_EMEMLIMIT);
    cr_assert_eq (dispatcher_history_size (dispatcher_task_history (task)), 3);
    const int32_t codes[] = {DROVER_EFAILED, DROVER_ECRASHED, DROVER_EMEMLIMIT};
    const char *nodes[] = {"a", "b", "a"};
    for (size_t i = 0; i < 3; i++) {
        const dispatcher_attempt_t *attempt =
            dispatcher_history_get (dispatcher_task_history (task), i);
        cr_assert_eq (attempt->attempt, i + 1);
        cr_assert_eq (attempt->code, codes[i]);
        cr_assert_str_eq (attempt->node, nodes[i]);
        cr_assert_str_eq (attempt->reason, "boom");
        cr_assert_eq (attempt->elapsed_us, 1000 * (i + 1));
        cr_assert_eq (attempt->cpu_us, 500 * (i + 1));
        cr_assert_eq (attempt->exit_status, (int32_t)(i + 1));
        cr_assert_eq (attempt->max_rss_kb, 2048);
    }
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, the_history_keeps_the_last_16_attempts)
{
    dispatcher_t *d = s_new (1, 100);
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    uint64_t id = s_submit_spec (d, (drover_task_t){.max_attempts = 20,
                                                    .retry_delay_ms = 1,
                                                    .retry_max_delay_ms = 1});
    dispatcher_task_t *task = NULL;
    for (int64_t now = 0; now < 20; now++) {
        task = s_lease_and_fail (d, node, id, DROVER_EFAILED, now * 10);
        dispatcher_tick (d, now * 10 + 5);
    }
    cr_assert_eq (task->state, DROVER_STATE_REPORTING);
    cr_assert_eq (dispatcher_task_history (task)->recorded, 20);
    cr_assert_eq (dispatcher_history_size (dispatcher_task_history (task)),
                  DISPATCHER_HISTORY);
    for (size_t i = 0; i < DISPATCHER_HISTORY; i++)
        cr_assert_eq (
            dispatcher_history_get (dispatcher_task_history (task), i)->attempt,
            20 - DISPATCHER_HISTORY + 1 + i);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, the_dead_letter_list_is_bounded)
{
    dispatcher_t *d = s_new_config ((dispatcher_config_t){
        .max_attempts = 1, .max_losses = 2, .max_queued = 100, .max_dead = 2});
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) {
        ids[i] = s_submit_spec (d, (drover_task_t){0});
        s_lease_and_fail (d, node, ids[i], DROVER_EFAILED, 0);
        //  The sink stores each failure
        cr_assert_eq (dispatcher_done (d, ids[i], 1, DROVER_EFAILED), 0);
    }
    cr_assert_eq (dispatcher_dead_count (d), 2);
    cr_assert_null (dispatcher_dead_lookup (d, ids[0]), "the oldest dropped");
    cr_assert_eq (dispatcher_counters (d)->dead_dropped, 1);
    cr_assert_eq (s_payloads_freed, 1, "with its payload");
    cr_assert_eq (dispatcher_dead_first (d)->id, ids[1]);
    cr_assert_eq (dispatcher_dead_next (d)->id, ids[2]);
    cr_assert_null (dispatcher_dead_next (d));
    cr_assert_eq (dispatcher_task_count (d), 0, "none is held any more");
    cr_assert_eq (dispatcher_dead_lookup (d, ids[2])->state,
                  DROVER_STATE_FAILED);
    //  Evicting a dead letter still reporting keeps it until DONE
    uint64_t fourth = s_submit_spec (d, (drover_task_t){0});
    s_lease_and_fail (d, node, fourth, DROVER_EFAILED, 0);
    uint64_t fifth = s_submit_spec (d, (drover_task_t){0});
    s_lease_and_fail (d, node, fifth, DROVER_EFAILED, 0);
    cr_assert_eq (dispatcher_dead_count (d), 2);
    cr_assert_eq (dispatcher_counters (d)->dead_dropped, 3);
    dispatcher_destroy (&d);
    cr_assert_eq (s_payloads_freed, 5);
}

LEAK_CHECKED_TEST (dispatcher, no_dead_letters_with_max_dead_zero)
{
    dispatcher_t *d = s_new_config ((dispatcher_config_t){
        .max_attempts = 1, .max_losses = 2, .max_queued = 100, .max_dead = 0});
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    uint64_t id = s_submit_spec (d, (drover_task_t){0});
    dispatcher_task_t *task = s_lease_and_fail (d, node, id, DROVER_EFAILED, 0);
    cr_assert_eq (task->state, DROVER_STATE_REPORTING);
    cr_assert_null (task->payload);
    cr_assert_eq (dispatcher_dead_count (d), 0);
    cr_assert_eq (dispatcher_counters (d)->dead_dropped, 1);
    cr_assert_eq (dispatcher_done (d, id, 1, DROVER_EFAILED), 0);
    cr_assert_null (dispatcher_dead_lookup (d, id));
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, cancelled_tasks_are_not_dead_letters)
{
    dispatcher_t *d = s_new (1, 100);
    uint64_t id = s_submit_spec (d, (drover_task_t){0});
    cr_assert_eq (dispatcher_cancel (d, id), DROVER_STATE_REPORTING);
    cr_assert_null (dispatcher_dead_lookup (d, id));
    cr_assert_eq (s_payloads_freed, 1, "its payload is freed at once");
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, a_success_stored_first_takes_a_task_off_the_list)
{
    dispatcher_t *d = s_new (1, 100);
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    uint64_t id = s_submit_spec (d, (drover_task_t){0});
    s_lease_and_fail (d, node, id, DROVER_EFAILED, 0);
    cr_assert_not_null (dispatcher_dead_lookup (d, id));
    cr_assert_eq (dispatcher_done (d, id, 1, 0), 0, "a success won");
    cr_assert_null (dispatcher_dead_lookup (d, id));
    cr_assert_eq (dispatcher_dead_count (d), 0);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, retrying_a_dead_letter_submits_a_new_task)
{
    dispatcher_t *d = s_new (1, 100);
    dispatcher_node_t *node = s_node (d, "n", "sleep", "slow", NULL), *which;
    drover_task_t spec = {.handler = "sleep",
                          .queue = "slow",
                          .key = "k1",
                          .timeout_ms = 500,
                          .soft_timeout_ms = 400,
                          .max_attempts = 1,
                          .retry_delay_ms = 20,
                          .retry_max_delay_ms = 80,
                          .retry_on = DROVER_RETRY_BIT (DROVER_ECRASHED)};
    uint64_t id = s_submit_spec (d, spec);
    dispatcher_task_t *dead = s_lease_and_fail (d, node, id, DROVER_EFAILED, 0);
    void *payload = dead->payload;
    cr_assert_not_null (payload);
    cr_assert_eq (dispatcher_done (d, id, 1, DROVER_EFAILED), 0);
    cr_assert_eq (dispatcher_dead_retry (d, 999), 0, "no such dead letter");

    uint64_t new_id = dispatcher_dead_retry (d, id);
    cr_assert_gt (new_id, id);
    cr_assert_null (dispatcher_dead_lookup (d, id), "off the list");
    cr_assert_eq (dispatcher_dead_count (d), 0);
    cr_assert_eq (dispatcher_dead_retry (d, id), 0, "only once");
    dispatcher_task_t *task = dispatcher_lookup (d, new_id);
    cr_assert_not_null (task);
    cr_assert_eq (task->state, DROVER_STATE_QUEUED);
    cr_assert_eq (task->payload, payload, "the same payload, not a copy");
    cr_assert_str_eq (dispatcher_task_handler (task), "sleep");
    cr_assert_str_eq (dispatcher_task_queue (task), "slow");
    cr_assert_str_eq (task->key, "k1");
    cr_assert_eq (task->timeout_ms, 500);
    cr_assert_eq (task->soft_timeout_ms, 400);
    cr_assert_eq (task->max_attempts, 1);
    cr_assert_eq (task->retry_delay_ms, 20);
    cr_assert_eq (task->retry_max_delay_ms, 80);
    cr_assert_eq (task->retry_on, DROVER_RETRY_BIT (DROVER_ECRASHED));
    cr_assert_eq (task->attempt, 0);
    cr_assert_null (dispatcher_task_history (task),
                    "a new task, a new history");
    dispatcher_task_t *tasks[64];
    dispatcher_node_credit (d, node, 1);
    cr_assert_eq (s_next (d, &which, tasks), 1);
    cr_assert_eq (tasks[0]->id, new_id);
    cr_assert_eq (tasks[0]->attempt, 1);

    //  A dead letter may be retried before the sink stored its failure
    uint64_t second = s_submit_spec (d, spec);
    s_lease_and_fail (d, node, second, DROVER_EFAILED, 0);
    uint64_t again = dispatcher_dead_retry (d, second);
    cr_assert_neq (again, 0);
    cr_assert_eq (dispatcher_lookup (d, second)->state, DROVER_STATE_REPORTING,
                  "the old id still reports");
    cr_assert_null (dispatcher_lookup (d, second)->payload);
    cr_assert_eq (dispatcher_done (d, second, 1, DROVER_EFAILED), 0);
    cr_assert_null (dispatcher_lookup (d, second));
    cr_assert_null (dispatcher_dead_lookup (d, second));

    dispatcher_destroy (&d);
    cr_assert_eq (s_payloads_freed, 2);
}

LEAK_CHECKED_TEST (dispatcher, a_dead_letter_is_not_retried_without_room)
{
    dispatcher_t *d = s_new (1, 1);
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    uint64_t id = s_submit_spec (d, (drover_task_t){0});
    s_lease_and_fail (d, node, id, DROVER_EFAILED, 0);
    cr_assert_eq (dispatcher_room (d), 0, "it still reports");
    cr_assert_eq (dispatcher_dead_retry (d, id), 0);
    cr_assert_not_null (dispatcher_dead_lookup (d, id), "still dead");
    cr_assert_eq (dispatcher_done (d, id, 1, DROVER_EFAILED), 0);
    cr_assert_neq (dispatcher_dead_retry (d, id), 0);
    dispatcher_destroy (&d);
}

//  --------------------------------------------------------------------------
//  Claims (SPEC 5.18) and resubmission (SPEC 7.6)

LEAK_CHECKED_TEST (dispatcher,
                   a_claim_of_the_current_attempt_waits_for_the_sink_to_store)
{
    dispatcher_t *d = s_new (1, 100);
    uint64_t id = s_submit (d, NULL, "echo");
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    s_lease_one (d, node);
    cr_assert_eq (dispatcher_claim (d, id, 1, 100), 0);
    dispatcher_task_t *task = dispatcher_lookup (d, id);
    cr_assert_not_null (task, "held until the sink stored the result");
    cr_assert_eq (task->state, DROVER_STATE_REPORTING);
    cr_assert_eq (dispatcher_node_leased (node), 0, "the lease is released");
    cr_assert_eq (dispatcher_counters (d)->done, 1);
    cr_assert_eq (dispatcher_claim (d, id, 1, 200), 0,
                  "a sink that restarted before storing is granted again");
    cr_assert_eq (dispatcher_counters (d)->done, 1);
    cr_assert_eq (dispatcher_claim (d, id, 2, 200), DROVER_ESTALE);
    cr_assert_eq (dispatcher_done (d, id, 1, 0), 0);
    cr_assert_null (dispatcher_lookup (d, id));
    cr_assert_eq (dispatcher_counters (d)->done, 1);
    cr_assert_eq (dispatcher_claim (d, id, 1, 300), DROVER_ESTALE,
                  "a claim after the end finds nothing");
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, a_claim_never_confirmed_queues_the_task_again)
{
    dispatcher_t *d = s_new (1, 100);
    uint64_t id = s_submit (d, NULL, "echo");
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    s_lease_one (d, node);
    cr_assert_eq (dispatcher_claim (d, id, 1, 100), 0);
    cr_assert_eq (dispatcher_expire_claims (d, 100), 0, "not older than 100");
    cr_assert_eq (dispatcher_expire_claims (d, 101), 1);
    dispatcher_task_t *task = dispatcher_lookup (d, id);
    cr_assert_eq (task->state, DROVER_STATE_QUEUED);
    cr_assert_eq (dispatcher_counters (d)->done, 0);
    dispatcher_node_credit (d, node, 1);
    cr_assert_eq (s_lease_one (d, node)->attempt, 2, "it runs again");
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, a_claim_of_a_superseded_attempt_is_stale)
{
    dispatcher_t *d = s_new (1, 100);
    uint64_t id = s_submit (d, NULL, "echo");
    dispatcher_node_t *lost = s_node (d, "lost", "echo", NULL, NULL);
    s_lease_one (d, lost);
    dispatcher_node_remove (d, &lost);
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    dispatcher_task_t *task = s_lease_one (d, node);
    cr_assert_eq (task->attempt, 2);
    cr_assert_eq (dispatcher_claim (d, id, 1, 0), DROVER_ESTALE);
    cr_assert_eq (task->state, DROVER_STATE_LEASED, "attempt 2 goes on");
    cr_assert_eq (dispatcher_counters (d)->stale, 1);
    cr_assert_eq (dispatcher_claim (d, id, 3, 0), DROVER_ESTALE,
                  "an attempt never dispatched");
    cr_assert_eq (dispatcher_claim (d, id, 2, 0), 0);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, a_lost_attempt_may_still_deliver_its_result)
{
    dispatcher_t *d = s_new (1, 100);
    uint64_t id = s_submit (d, NULL, "echo");
    dispatcher_node_t *lost = s_node (d, "lost", "echo", NULL, NULL);
    s_lease_one (d, lost);
    dispatcher_node_remove (d, &lost);
    cr_assert_eq (dispatcher_lookup (d, id)->state, DROVER_STATE_QUEUED);
    cr_assert_eq (dispatcher_claim (d, id, 1, 0), 0,
                  "no newer attempt exists: the result is the task's");
    cr_assert_eq (dispatcher_lookup (d, id)->state, DROVER_STATE_REPORTING);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, a_claim_after_a_fail_or_a_final_outcome_is_stale)
{
    dispatcher_t *d = s_new (3, 100);
    uint64_t id = s_submit (d, NULL, "echo");
    dispatcher_node_t *node = s_node (d, "n", "echo", NULL, NULL);
    s_lease_one (d, node);
    drover_task_t outcome = {.id = id, .attempt = 1, .code = DROVER_EFAILED};
    cr_assert_eq (dispatcher_fail (d, node, &outcome, 0), 0);
    cr_assert_eq (dispatcher_claim (d, id, 1, 0), DROVER_ESTALE,
                  "attempt 1 failed: a result of it contradicts its node");
    uint64_t cancelled = s_submit (d, NULL, "echo");
    dispatcher_cancel (d, cancelled);
    cr_assert_eq (dispatcher_claim (d, cancelled, 0, 0), DROVER_ESTALE);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, resubmissions_keep_their_id_and_are_deduplicated)
{
    dispatcher_config_t config = {
        .max_attempts = 1, .max_queued = 100, .first_id = 1000};
    dispatcher_t *d = s_new_config (config);
    cr_assert_eq (s_submit (d, NULL, "echo"), 1000, "numbering starts there");
    //  A client resubmits task 1001 (lost by an earlier broker run)
    drover_task_t spec = {.id = 1001, .handler = "echo"};
    void *payload = strdup ("again");
    cr_assert_eq (dispatcher_submit (d, &spec, &payload), 1001);
    cr_assert_null (payload, "a new task under the given id");
    cr_assert_eq (dispatcher_lookup (d, 1001)->state, DROVER_STATE_QUEUED);
    //  The same resubmission again is deduplicated
    payload = strdup ("twice");
    cr_assert_eq (dispatcher_submit (d, &spec, &payload), 1001);
    cr_assert_not_null (payload, "not taken: the task exists");
    free (payload);
    cr_assert_eq (dispatcher_task_count (d), 2);
    //  New ids skip the one a resubmission took
    cr_assert_eq (s_submit (d, NULL, "echo"), 1002);
    //  A submission withdrawn before dispatch leaves no trace
    dispatcher_withdraw (d, 1002);
    cr_assert_null (dispatcher_lookup (d, 1002));
    cr_assert_eq (dispatcher_counters (d)->submitted, 2);
    dispatcher_destroy (&d);
}

LEAK_CHECKED_TEST (dispatcher, reports_are_walked_both_ways)
{
    dispatcher_t *d = s_new (1, 100);
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) {
        ids[i] = s_submit (d, NULL, "echo");
        dispatcher_cancel (d, ids[i]);
    }
    int i = 0;
    for (dispatcher_task_t *task = dispatcher_report_first (d); task;
         task = dispatcher_report_next (d))
        cr_assert_eq (task->id, ids[i++], "oldest first");
    cr_assert_eq (i, 3);
    for (dispatcher_task_t *task = dispatcher_report_last (d); task;
         task = dispatcher_report_prev (d))
        cr_assert_eq (task->id, ids[--i], "newest first");
    cr_assert_eq (i, 0);
    cr_assert_null (dispatcher_report_next (d), "the walk stays ended");
    dispatcher_destroy (&d);
}

//  --------------------------------------------------------------------------
//  The memory of a queued task (issue 6: a million queued tasks at most 256
//  octets each, payload holder and index slots included)

Test (dispatcher, a_queued_task_stays_small)
{
    //  With malloc's 8-octet head: its 160-octet chunk class
    cr_assert_leq (sizeof (dispatcher_task_t), 152,
                   "dispatcher_task_t grew to %zu octets: move what a "
                   "queued task does not need to dispatcher_trouble_t",
                   sizeof (dispatcher_task_t));
}

//  --------------------------------------------------------------------------
//  id_index: items by the id they hold

typedef struct {
    char other[3]; //  the id need not come first
    uint64_t id;
} s_item_t;

//  Every item of items[0, count) that is indexed (present[i]) is found,
//  and no other.
static void
s_assert_index (id_index_t *index, s_item_t *items, bool *present, size_t count)
{
    size_t held = 0;
    for (size_t i = 0; i < count; i++) {
        void *found = id_index_lookup (index, items[i].id);
        cr_assert_eq (found, present[i] ? &items[i] : NULL, "id %llu",
                      (unsigned long long)items[i].id);
        held += present[i];
    }
    cr_assert_eq (id_index_size (index), held);
}

LEAK_CHECKED_TEST (dispatcher, id_index_finds_what_it_holds)
{
    enum { COUNT = 2000 };
    s_item_t *items = (s_item_t *)calloc (COUNT, sizeof (s_item_t));
    bool *present = (bool *)calloc (COUNT, sizeof (bool));
    cr_assert (items && present);
    id_index_t *index = id_index_new (offsetof (s_item_t, id));
    cr_assert_null (id_index_first (index), "empty");
    cr_assert_null (id_index_remove (index, 1));
    //  Sequential ids (as tasks have), then scattered ones
    for (size_t i = 0; i < COUNT; i++) {
        items[i].id = i < COUNT / 2 ? 1000 + i : (i * 0x9e3779b97f4a7c15ULL);
        id_index_insert (index, &items[i]);
        present[i] = true;
    }
    s_assert_index (index, items, present, COUNT);
    //  Iteration sees each item once
    size_t seen = 0;
    for (s_item_t *item = (s_item_t *)id_index_first (index); item;
         item = (s_item_t *)id_index_next (index)) {
        size_t i = (size_t)(item - items);
        cr_assert (i < COUNT && present[i]);
        present[i] = false;
        seen++;
    }
    cr_assert_eq (seen, COUNT);
    //  Removal in a scrambled order keeps every other item reachable (items
    //  move back into the holes), and the index shrinks as it empties
    for (size_t i = 0; i < COUNT; i++)
        present[i] = true;
    for (size_t step = 0; step < COUNT; step++) {
        size_t i = (step * 769) % COUNT;
        cr_assert_eq (id_index_remove (index, items[i].id), &items[i]);
        cr_assert_null (id_index_remove (index, items[i].id), "gone");
        present[i] = false;
        if (step % 97 == 0)
            s_assert_index (index, items, present, COUNT);
    }
    s_assert_index (index, items, present, COUNT);
    //  Empty again, it still works
    id_index_insert (index, &items[7]);
    cr_assert_eq (id_index_lookup (index, items[7].id), &items[7]);
    id_index_destroy (&index);
    cr_assert_null (index);
    free (present);
    free (items);
}

//  --------------------------------------------------------------------------
//  task_list: tasks threaded through themselves

//  The list holds exactly ids[0, count), in order, linked both ways.
static void
s_assert_list (task_list_t *list, const uint64_t *ids, size_t count)
{
    cr_assert_eq (list->size, count);
    size_t i = 0;
    dispatcher_task_t *before = NULL;
    for (dispatcher_task_t *task = list->head; task; task = task->next) {
        cr_assert (i < count);
        cr_assert_eq (task->id, ids[i], "at %zu", i);
        cr_assert_eq (task->prev, before, "at %zu", i);
        before = task;
        i++;
    }
    cr_assert_eq (i, count);
    cr_assert_eq (list->tail, before);
    for (dispatcher_task_t *task = list->tail; task; task = task->prev)
        cr_assert_eq (task->id, ids[--i]);
}

LEAK_CHECKED_TEST (dispatcher, task_list_keeps_its_order)
{
    dispatcher_task_t tasks[5] = {{.id = 0}};
    for (uint64_t i = 0; i < 5; i++)
        tasks[i].id = i;
    task_list_t list = {0};
    s_assert_list (&list, NULL, 0);
    task_list_add_end (&list, &tasks[1]);
    task_list_add_end (&list, &tasks[2]);
    task_list_add_start (&list, &tasks[0]);
    task_list_add_end (&list, &tasks[3]);
    s_assert_list (&list, (uint64_t[]){0, 1, 2, 3}, 4);
    task_list_remove (&list, &tasks[2]);
    s_assert_list (&list, (uint64_t[]){0, 1, 3}, 3);
    cr_assert (!tasks[2].prev && !tasks[2].next, "out of the list");
    task_list_move_end (&list, &tasks[0]);
    s_assert_list (&list, (uint64_t[]){1, 3, 0}, 3);
    task_list_move_end (&list, &tasks[0]);
    s_assert_list (&list, (uint64_t[]){1, 3, 0}, 3);
    task_list_remove (&list, &tasks[0]);
    task_list_remove (&list, &tasks[1]);
    s_assert_list (&list, (uint64_t[]){3}, 1);
    task_list_remove (&list, &tasks[3]);
    s_assert_list (&list, NULL, 0);
    cr_assert_null (list.tail);
    task_list_add_start (&list, &tasks[4]);
    s_assert_list (&list, (uint64_t[]){4}, 1);
}

//  --------------------------------------------------------------------------
//  task_payload: small payloads copied, large ones kept in their frame

LEAK_CHECKED_TEST (dispatcher, small_payloads_leave_their_frame)
{
    zframe_t *frame = zframe_new ("sixteen octets!!", 16);
    task_payload_t *payload = task_payload_take (&frame);
    cr_assert_null (frame, "taken, and destroyed");
    cr_assert_eq (task_payload_size (payload), 16);
    cr_assert (!memcmp (task_payload_data (payload), "sixteen octets!!", 16));
    //  Sent in a frame of its own, each time
    zframe_t *sent = task_payload_lend (payload);
    cr_assert (zframe_streq (sent, "sixteen octets!!"));
    zframe_t *again = task_payload_lend (payload);
    cr_assert_neq (again, sent);
    task_payload_unlend (payload, &sent);
    task_payload_unlend (payload, &again);
    cr_assert_null (sent);
    task_payload_destroy (&payload);
    cr_assert_null (payload);
    //  Empty, and at the limit
    payload = task_payload_new (NULL, 0);
    cr_assert_eq (task_payload_size (payload), 0);
    sent = task_payload_lend (payload);
    cr_assert_eq (zframe_size (sent), 0);
    task_payload_unlend (payload, &sent);
    task_payload_destroy (&payload);
    char *octets = (char *)malloc (TASK_PAYLOAD_COPY_MAX + 1);
    cr_assert_not_null (octets);
    memset (octets, 'x', TASK_PAYLOAD_COPY_MAX + 1);
    payload = task_payload_new (octets, TASK_PAYLOAD_COPY_MAX);
    cr_assert_eq (task_payload_size (payload), TASK_PAYLOAD_COPY_MAX);
    sent = task_payload_lend (payload);
    cr_assert_eq (zframe_size (sent), TASK_PAYLOAD_COPY_MAX);
    task_payload_unlend (payload, &sent);
    task_payload_destroy (&payload);
    free (octets);
}

LEAK_CHECKED_TEST (dispatcher, large_payloads_keep_their_frame)
{
    size_t size = TASK_PAYLOAD_COPY_MAX + 1;
    zframe_t *frame = zframe_new (NULL, size);
    memset (zframe_data (frame), 'y', size);
    zframe_t *received = frame;
    task_payload_t *payload = task_payload_take (&frame);
    cr_assert_null (frame, "taken");
    cr_assert_eq (task_payload_size (payload), size);
    cr_assert_eq (task_payload_data (payload), zframe_data (received),
                  "not copied");
    //  Sent in the frame it came in: ZeroMQ shares its buffer
    zframe_t *sent = task_payload_lend (payload);
    cr_assert_eq (sent, received);
    task_payload_unlend (payload, &sent);
    cr_assert_null (sent);
    cr_assert_eq (task_payload_data (payload), zframe_data (received),
                  "still the payload's");
    task_payload_destroy (&payload);
    //  One made from octets (a journal's) holds a frame too
    char *octets = (char *)calloc (1, size);
    cr_assert_not_null (octets);
    payload = task_payload_new (octets, size);
    sent = task_payload_lend (payload);
    cr_assert_eq (task_payload_lend (payload), sent, "the same frame");
    task_payload_unlend (payload, &sent);
    task_payload_destroy (&payload);
    free (octets);
}
