/*  msg_fixtures.h - what the codec tests, the wire tests and the fuzzer
    share: a realistic sample message of every command, a field-by-field
    comparison of two messages, and the frames of an encoded message.

    Header-only (static inline), so each test program takes what it uses.
    Needs no test framework: comparisons say what differs in a string.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef MSG_FIXTURES_H_INCLUDED
#define MSG_FIXTURES_H_INCLUDED

#include "drover_msg.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Every command, in protocol order

#define FX_COMMAND_COUNT 24

//  Returns the index'th command of drover_command_t.
static inline int
fx_command (size_t index)
{
    static const int commands[FX_COMMAND_COUNT] = {
        DROVER_HELLO,        DROVER_WELCOME,    DROVER_HEARTBEAT,
        DROVER_BYE,          DROVER_ERROR,      DROVER_SUBMIT,
        DROVER_SUBMITTED,    DROVER_CANCEL,     DROVER_STATUS,
        DROVER_STATUS_REPLY, DROVER_STATS,      DROVER_STATS_REPLY,
        DROVER_DEAD,         DROVER_DEAD_REPLY, DROVER_RETRY,
        DROVER_CREDIT,       DROVER_DISPATCH,   DROVER_FAIL,
        DROVER_REVOKE,       DROVER_DRAIN,      DROVER_RESULT,
        DROVER_STORED,       DROVER_DONE,       DROVER_WATCH,
    };
    assert (index < FX_COMMAND_COUNT);
    return commands[index];
}

//  --------------------------------------------------------------------------
//  Sample messages: realistic values in every field each command uses, and
//  nothing in the fields it does not use (so a round trip that drops a
//  field, or invents one, shows as a difference).

static inline void
fx_sample (drover_msg_t *msg, int command)
{
    //  Static storage, rewritten on every call: callers may change it.
    static const char *handlers[3];
    static const char *queues[2];
    static uint64_t ids[3];
    static drover_task_t tasks[3];
    static drover_queue_info_t queue_infos[2];
    static drover_node_info_t node_infos[2];
    static drover_counter_t counters[3];
    static const uint8_t binary[] = {0x00, 0xff, 0x10, 0x00, 0x7f, 0x80};
    static const char json[] = "{\"src\":\"s3://photos/1.jpg\",\"w\":640}";

    drover_msg_init (msg, (drover_command_t)command);
    memset (tasks, 0, sizeof tasks);
    switch (command) {
        case DROVER_HELLO:
            msg->role = "node";
            msg->name = "build-07:4242";
            msg->endpoint = "tcp://10.0.0.5:5556";
            msg->children = 8;
            msg->lookahead = 2;
            handlers[0] = "resize";
            handlers[1] = "thumbnail";
            handlers[2] = "ocr.v2";
            msg->handlers = handlers;
            msg->handler_count = 3;
            queues[0] = "default";
            queues[1] = "images";
            msg->queues = queues;
            msg->queue_count = 2;
            break;
        case DROVER_WELCOME:
            msg->instance = "b-9f3a2c11";
            msg->endpoint = "tcp://sink.internal:5556";
            msg->heartbeat_ms = 1000;
            msg->liveness = 5;
            msg->max_payload = DROVER_MAX_PAYLOAD;
            msg->max_batch = DROVER_MAX_BATCH;
            break;
        case DROVER_HEARTBEAT: break;
        case DROVER_BYE:
            msg->code = DROVER_ESHUTDOWN;
            msg->reason = "broker shutting down: start a new session later";
            break;
        case DROVER_ERROR:
            msg->ref = 77;
            msg->code = DROVER_EPROTO;
            msg->reason = "tasks[3].handler: expected a string";
            break;
        case DROVER_SUBMIT:
            msg->ref = 1001;
            msg->token = "3f9a0c5e2b7d4e61:1001";
            tasks[0].handler = "resize";
            tasks[0].queue = "images";
            tasks[0].key = "user:42/avatar";
            tasks[0].timeout_ms = 30000;
            tasks[0].delay_ms = 250;
            tasks[0].priority = 5;
            tasks[0].max_attempts = 3;
            tasks[0].soft_timeout_ms = 25000;
            tasks[0].retry_delay_ms = 500;
            tasks[0].retry_max_delay_ms = 20000;
            tasks[0].retry_on = DROVER_RETRY_BIT (DROVER_EFAILED)
                                | DROVER_RETRY_BIT (DROVER_ETIMELIMIT);
            tasks[0].payload.data = json;
            tasks[0].payload.size = sizeof json - 1;
            tasks[1].handler = "ocr.v2";
            tasks[2].handler = "thumbnail";
            tasks[2].priority = -7;
            tasks[2].max_attempts = 5;
            tasks[2].retry_on = DROVER_RETRY_ON_DEFAULT;
            tasks[2].id = 1795675267000123; //  a resubmission
            tasks[2].payload.data = binary;
            tasks[2].payload.size = sizeof binary;
            msg->tasks = tasks;
            msg->task_count = 3;
            break;
        case DROVER_SUBMITTED:
        case DROVER_CANCEL:
        case DROVER_STATUS:
            msg->ref = 1001 + (uint64_t)command;
            if (command == DROVER_SUBMITTED)
                msg->token = "3f9a0c5e2b7d4e61:1001";
            ids[0] = 1;
            ids[1] = 2;
            ids[2] = 9000000000ull;
            msg->ids = ids;
            msg->id_count = 3;
            break;
        case DROVER_STATUS_REPLY:
            msg->ref = 1003;
            tasks[0].id = 1;
            tasks[0].state = DROVER_STATE_DONE;
            tasks[0].attempt = 1;
            tasks[0].max_attempts = 3;
            tasks[0].handler = "resize";
            tasks[0].queue = "images";
            tasks[0].node = "build-07:4242";
            tasks[1].id = 2;
            tasks[1].state = DROVER_STATE_FAILED;
            tasks[1].attempt = 3;
            tasks[1].max_attempts = 3;
            tasks[1].code = DROVER_ECRASHED;
            tasks[1].reason = "child killed by signal 9 (SIGKILL)";
            tasks[2].id = 9000000000ull;
            tasks[2].state = DROVER_STATE_UNKNOWN;
            msg->tasks = tasks;
            msg->task_count = 3;
            break;
        case DROVER_STATS: msg->ref = 5; break;
        case DROVER_STATS_REPLY:
            msg->ref = 5;
            queue_infos[0] = (drover_queue_info_t){"default", 10, 2};
            queue_infos[1] = (drover_queue_info_t){"images", 0, 0};
            msg->queue_infos = queue_infos;
            msg->queue_info_count = 2;
            node_infos[0] = (drover_node_info_t){"build-07:4242", 8, 3, 5, 100};
            node_infos[1] = (drover_node_info_t){"build-08:77", 1, 0, 0, 0};
            msg->node_infos = node_infos;
            msg->node_info_count = 2;
            counters[0] = (drover_counter_t){"submitted", 1000};
            counters[1] = (drover_counter_t){"done", 990};
            counters[2] = (drover_counter_t){"malformed", 0};
            msg->counters = counters;
            msg->counter_count = 3;
            break;
        case DROVER_DEAD:
            msg->ref = 1023;
            ids[0] = 17;
            ids[1] = 18;
            ids[2] = 9000000000ull;
            msg->ids = ids;
            msg->id_count = 3;
            break;
        case DROVER_DEAD_REPLY:
            //  Task 17 crashed, then passed its memory limit; task 18 hung
            msg->ref = 1023;
            tasks[0].id = 17;
            tasks[0].attempt = 1;
            tasks[0].code = DROVER_ECRASHED;
            tasks[0].handler = "resize";
            tasks[0].queue = "images";
            tasks[0].max_attempts = 2;
            tasks[0].reason = "child killed by signal 11 (SIGSEGV)";
            tasks[0].node = "build-07:4242";
            tasks[0].elapsed_us = 1234567;
            tasks[0].cpu_us = 1200000;
            tasks[0].signal = 11;
            tasks[0].max_rss_kb = 20480;
            tasks[1].id = 17;
            tasks[1].attempt = 2;
            tasks[1].code = DROVER_EMEMLIMIT;
            tasks[1].handler = "resize";
            tasks[1].queue = "images";
            tasks[1].max_attempts = 2;
            tasks[1].reason = "resident memory 524288 kB over the limit";
            tasks[1].node = "build-08:77";
            tasks[1].elapsed_us = 800000;
            tasks[1].cpu_us = 790000;
            tasks[1].signal = 9;
            tasks[1].max_rss_kb = 524288;
            tasks[2].id = 18;
            tasks[2].attempt = 1;
            tasks[2].code = DROVER_EFAILED;
            tasks[2].handler = "ocr.v2";
            tasks[2].reason = "exit status 3";
            tasks[2].node = "build-08:77";
            tasks[2].elapsed_us = 5000;
            tasks[2].cpu_us = 4000;
            tasks[2].exit_status = 3;
            tasks[2].max_rss_kb = 8192;
            msg->tasks = tasks;
            msg->task_count = 3;
            break;
        case DROVER_RETRY:
            msg->ref = 1024;
            ids[0] = 17;
            ids[1] = 18;
            msg->ids = ids;
            msg->id_count = 2;
            break;
        case DROVER_CREDIT: msg->credit = 10; break;
        case DROVER_DISPATCH:
            tasks[0].id = 17;
            tasks[0].attempt = 1;
            tasks[0].handler = "resize";
            tasks[0].queue = "images";
            tasks[0].key = "user:42/avatar";
            tasks[0].timeout_ms = 30000;
            tasks[0].soft_timeout_ms = 25000;
            tasks[0].payload.data = json;
            tasks[0].payload.size = sizeof json - 1;
            tasks[1].id = 18;
            tasks[1].attempt = 2;
            tasks[1].handler = "ocr.v2";
            msg->tasks = tasks;
            msg->task_count = 2;
            break;
        case DROVER_FAIL:
        case DROVER_RESULT:
            tasks[0].id = 17;
            tasks[0].attempt = 1;
            tasks[0].code = command == DROVER_FAIL ? DROVER_EFAILED : 0;
            tasks[0].node = "build-07:4242";
            tasks[0].elapsed_us = 1234567;
            tasks[0].cpu_us = 987654;
            tasks[0].exit_status = command == DROVER_FAIL ? 1 : 0;
            tasks[0].max_rss_kb = 20480;
            tasks[1].id = 18;
            tasks[1].attempt = 2;
            tasks[1].code = DROVER_ECRASHED;
            tasks[1].reason = "Traceback (most recent call last):\n"
                              "  File \"resize.py\", line 3\n"
                              "MemoryError\n";
            tasks[1].signal = 9;
            tasks[1].cpu_us = 31;
            if (command == DROVER_RESULT) {
                tasks[0].payload.data = binary;
                tasks[0].payload.size = sizeof binary;
            }
            msg->tasks = tasks;
            msg->task_count = 2;
            break;
        case DROVER_REVOKE:
        case DROVER_STORED:
            tasks[0].id = 17;
            tasks[0].attempt = 1;
            tasks[0].code =
                command == DROVER_REVOKE ? DROVER_ECANCELLED : DROVER_ESTALE;
            tasks[1].id = 19;
            tasks[1].attempt = 4;
            msg->tasks = tasks;
            msg->task_count = 2;
            break;
        case DROVER_DRAIN: msg->reason = "SIGTERM: draining 3 tasks"; break;
        case DROVER_DONE:
            tasks[0].id = 17;
            tasks[0].attempt = 1;
            tasks[1].id = 18;
            tasks[1].attempt = 2;
            tasks[1].code = DROVER_EFAILED;
            msg->tasks = tasks;
            msg->task_count = 2;
            break;
        case DROVER_WATCH:
            ids[0] = 17;
            ids[1] = 18;
            ids[2] = 19;
            msg->ids = ids;
            msg->id_count = 3;
            msg->release = true;
            break;
        default: assert (!"not a command");
    }
}

//  --------------------------------------------------------------------------
//  Comparing two messages, every field

#define FX_CHECK_(cond, ...)                                                   \
    do {                                                                       \
        if (!(cond)) {                                                         \
            snprintf (why, why_size, __VA_ARGS__);                             \
            return false;                                                      \
        }                                                                      \
    } while (0)

static inline bool
fx_str_equal (const char *a, const char *b)
{
    return a == b || (a && b && strcmp (a, b) == 0);
}

static inline const char *
fx_str_show (const char *text)
{
    return text ? text : "(null)";
}

#define FX_STR_(what, a, b)                                                    \
    FX_CHECK_ (fx_str_equal (a, b), "%s: '%.60s' != '%.60s'", what,            \
               fx_str_show (a), fx_str_show (b))
#define FX_NUM_(what, a, b)                                                    \
    FX_CHECK_ ((a) == (b), "%s: %lld != %lld", what, (long long)(a),           \
               (long long)(b))

static inline bool
fx_task_equal (const drover_task_t *a, const drover_task_t *b, size_t index,
               char *why, size_t why_size)
{
    char where[96];
#define FX_TASK_NUM_(field)                                                    \
    snprintf (where, sizeof where, "tasks[%zu]." #field, index);               \
    FX_NUM_ (where, a->field, b->field)
#define FX_TASK_STR_(field)                                                    \
    snprintf (where, sizeof where, "tasks[%zu]." #field, index);               \
    FX_STR_ (where, a->field, b->field)
    FX_TASK_NUM_ (id);
    FX_TASK_NUM_ (attempt);
    FX_TASK_NUM_ (max_attempts);
    FX_TASK_STR_ (handler);
    FX_TASK_STR_ (queue);
    FX_TASK_STR_ (key);
    FX_TASK_NUM_ (timeout_ms);
    FX_TASK_NUM_ (delay_ms);
    FX_TASK_NUM_ (priority);
    FX_TASK_NUM_ (state);
    FX_TASK_NUM_ (code);
    FX_TASK_STR_ (reason);
    FX_TASK_STR_ (node);
    FX_TASK_NUM_ (elapsed_us);
    FX_TASK_NUM_ (signal);
    FX_TASK_NUM_ (exit_status);
    FX_TASK_NUM_ (max_rss_kb);
    FX_TASK_NUM_ (cpu_us);
    FX_TASK_NUM_ (soft_timeout_ms);
    FX_TASK_NUM_ (retry_delay_ms);
    FX_TASK_NUM_ (retry_max_delay_ms);
    FX_TASK_NUM_ (retry_on);
    FX_TASK_NUM_ (payload.size);
#undef FX_TASK_NUM_
#undef FX_TASK_STR_
    //  The same buffer is equal to itself: no need to read 256 MiB twice
    FX_CHECK_ (a->payload.data == b->payload.data || a->payload.size == 0
                   || memcmp (a->payload.data, b->payload.data, a->payload.size)
                          == 0,
               "tasks[%zu].payload: different octets", index);
    return true;
}

//  True when a and b carry the same message; else says in why what differs.
static inline bool
fx_msg_equal (const drover_msg_t *a, const drover_msg_t *b, char *why,
              size_t why_size)
{
    char where[96];
    FX_NUM_ ("command", a->command, b->command);
    FX_NUM_ ("ref", a->ref, b->ref);
    FX_STR_ ("role", a->role, b->role);
    FX_STR_ ("name", a->name, b->name);
    FX_STR_ ("endpoint", a->endpoint, b->endpoint);
    FX_STR_ ("instance", a->instance, b->instance);
    FX_STR_ ("token", a->token, b->token);
    FX_NUM_ ("children", a->children, b->children);
    FX_NUM_ ("lookahead", a->lookahead, b->lookahead);
    FX_NUM_ ("heartbeat_ms", a->heartbeat_ms, b->heartbeat_ms);
    FX_NUM_ ("liveness", a->liveness, b->liveness);
    FX_NUM_ ("max_payload", a->max_payload, b->max_payload);
    FX_NUM_ ("max_batch", a->max_batch, b->max_batch);
    FX_NUM_ ("credit", a->credit, b->credit);
    FX_NUM_ ("code", a->code, b->code);
    FX_STR_ ("reason", a->reason, b->reason);
    FX_NUM_ ("release", a->release, b->release);
    FX_NUM_ ("all", a->all, b->all);
    FX_NUM_ ("handler_count", a->handler_count, b->handler_count);
    for (size_t i = 0; i < a->handler_count; i++) {
        snprintf (where, sizeof where, "handlers[%zu]", i);
        FX_STR_ (where, a->handlers[i], b->handlers[i]);
    }
    FX_NUM_ ("queue_count", a->queue_count, b->queue_count);
    for (size_t i = 0; i < a->queue_count; i++) {
        snprintf (where, sizeof where, "queues[%zu]", i);
        FX_STR_ (where, a->queues[i], b->queues[i]);
    }
    FX_NUM_ ("id_count", a->id_count, b->id_count);
    for (size_t i = 0; i < a->id_count; i++) {
        snprintf (where, sizeof where, "ids[%zu]", i);
        FX_NUM_ (where, a->ids[i], b->ids[i]);
    }
    FX_NUM_ ("task_count", a->task_count, b->task_count);
    for (size_t i = 0; i < a->task_count; i++)
        if (!fx_task_equal (&a->tasks[i], &b->tasks[i], i, why, why_size))
            return false;
    FX_NUM_ ("queue_info_count", a->queue_info_count, b->queue_info_count);
    for (size_t i = 0; i < a->queue_info_count; i++) {
        const drover_queue_info_t *x = &a->queue_infos[i];
        const drover_queue_info_t *y = &b->queue_infos[i];
        snprintf (where, sizeof where, "queues[%zu]", i);
        FX_STR_ (where, x->name, y->name);
        FX_NUM_ (where, x->queued, y->queued);
        FX_NUM_ (where, x->leased, y->leased);
    }
    FX_NUM_ ("node_info_count", a->node_info_count, b->node_info_count);
    for (size_t i = 0; i < a->node_info_count; i++) {
        const drover_node_info_t *x = &a->node_infos[i];
        const drover_node_info_t *y = &b->node_infos[i];
        snprintf (where, sizeof where, "nodes[%zu]", i);
        FX_STR_ (where, x->name, y->name);
        FX_NUM_ (where, x->children, y->children);
        FX_NUM_ (where, x->credit, y->credit);
        FX_NUM_ (where, x->leased, y->leased);
        FX_NUM_ (where, x->done, y->done);
    }
    FX_NUM_ ("counter_count", a->counter_count, b->counter_count);
    for (size_t i = 0; i < a->counter_count; i++) {
        snprintf (where, sizeof where, "counters[%zu]", i);
        FX_STR_ (where, a->counters[i].name, b->counters[i].name);
        FX_NUM_ (where, a->counters[i].value, b->counters[i].value);
    }
    return true;
}

//  --------------------------------------------------------------------------
//  The frames of an encoded message, as a receiver sees them

typedef struct {
    uint8_t command;        //  the command frame's octet
    uint8_t *header;        //  encoded header, malloc'd by the encoder
    size_t header_size;     //  its size
    drover_frame_t *frames; //  signature, command, header, payloads
    size_t frame_count;     //  entries in frames
} fx_wire_t;

//  Encodes msg into wire (which must stay where it is while frames are
//  used). Returns the encoder's code; on success free with fx_wire_free.
static inline int
fx_encode (drover_msg_t *msg, fx_wire_t *wire)
{
    memset (wire, 0, sizeof *wire);
    int rc = drover_msg_encode (msg, &wire->header, &wire->header_size);
    if (rc)
        return rc;
    size_t payloads =
        drover_command_has_payloads (msg->command) ? msg->task_count : 0;
    wire->command = (uint8_t)msg->command;
    wire->frame_count = 3 + payloads;
    wire->frames =
        (drover_frame_t *)calloc (wire->frame_count, sizeof *wire->frames);
    assert (wire->frames);
    wire->frames[0].data = DROVER_SIGNATURE;
    wire->frames[0].size = DROVER_SIGNATURE_SIZE;
    wire->frames[1].data = &wire->command;
    wire->frames[1].size = 1;
    wire->frames[2].data = wire->header;
    wire->frames[2].size = wire->header_size;
    for (size_t i = 0; i < payloads; i++) {
        wire->frames[3 + i].data = msg->tasks[i].payload.data;
        wire->frames[3 + i].size = msg->tasks[i].payload.size;
    }
    return 0;
}

static inline void
fx_wire_free (fx_wire_t *wire)
{
    free (wire->header);
    free (wire->frames);
    memset (wire, 0, sizeof *wire);
}

//  True when a message holds no memory and no arrays, as after a failed
//  decode or a reset.
static inline bool
fx_msg_owns_nothing (const drover_msg_t *msg)
{
    return msg->arena_ == NULL && msg->role == NULL && msg->name == NULL
           && msg->endpoint == NULL && msg->instance == NULL
           && msg->token == NULL && msg->reason == NULL && msg->handlers == NULL
           && msg->handler_count == 0 && msg->queues == NULL
           && msg->queue_count == 0 && msg->ids == NULL && msg->id_count == 0
           && msg->tasks == NULL && msg->task_count == 0
           && msg->queue_infos == NULL && msg->queue_info_count == 0
           && msg->node_infos == NULL && msg->node_info_count == 0
           && msg->counters == NULL && msg->counter_count == 0;
}

#endif
