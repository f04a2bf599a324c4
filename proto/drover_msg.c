/*  drover_msg.c - the Drover wire codec.

    Each command has a schema: the keys of its header map, their kinds,
    where they live in drover_msg_t, whether they are required. One generic
    encoder and one generic decoder walk the schemas, so a command is added
    by writing its table, and every command gets the same validation.

    Decoding runs in two passes. s_prescan walks the raw msgpack bytes
    without allocating: it bounds nesting depth and checks that every
    declared string, array and map length fits in the bytes that remain.
    Only then does msgpack-c unpack the header, so its allocation of
    `count * sizeof (msgpack_object)` per array is bounded by the header's
    own size. The second pass copies what the schema names into an arena.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_msg.h"

#include <assert.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Schemas

typedef enum {
    KIND_U32,   //  positive integer up to field.max
    KIND_U64,   //  positive integer up to field.max (0: UINT64_MAX)
    KIND_ID,    //  task id: positive integer, never 0
    KIND_I32,   //  signed 32-bit integer
    KIND_I64,   //  any signed 64-bit integer
    KIND_CODE,  //  DROVER_ELAST..0
    KIND_BOOL,  //  true or false
    KIND_NAME,  //  1..DROVER_MAX_NAME printable ASCII octets, no space
    KIND_TEXT,  //  0..field.max octets, no NUL
    KIND_IDS,   //  array of task ids (positive, non-zero)
    KIND_NAMES, //  array of names
    KIND_ITEMS, //  array of maps, each described by field.items
} s_kind_t;

typedef struct s_schema_t s_schema_t;

typedef struct {
    const char *key;         //  key in the msgpack map
    uint32_t key_size;       //  strlen (key)
    s_kind_t kind;           //  what the value must be
    size_t offset;           //  where it lives in the C struct
    size_t count_offset;     //  arrays: where their length lives
    uint64_t max;            //  limit for the kind (see s_kind_t)
    bool required;           //  decoding fails without it
    const s_schema_t *items; //  KIND_ITEMS: the schema of one element
} s_field_t;

struct s_schema_t {
    const char *name;        //  command name, or item name
    size_t item_size;        //  size of one element struct
    bool payloads;           //  elements carry one payload frame each
    const s_field_t *fields; //  the keys
    size_t field_count;
};

#define MSG_(member)    offsetof (drover_msg_t, member)
#define TASK_(member)   offsetof (drover_task_t, member)
#define OPT             false
#define REQ             true
#define COUNT_OF(array) (sizeof (array) / sizeof ((array)[0]))

#define F_U32(key, base, member, max, req)                                     \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_U32, base (member), 0, max, req, NULL   \
    }
#define F_U64(key, base, member, req)                                          \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_U64, base (member), 0, 0, req, NULL     \
    }
#define F_ID(key, base, member)                                                \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_ID, base (member), 0, 0, REQ, NULL      \
    }
#define F_I32(key, base, member, req)                                          \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_I32, base (member), 0, INT32_MAX, req,  \
            NULL                                                               \
    }
#define F_I64(key, base, member, req)                                          \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_I64, base (member), 0, 0, req, NULL     \
    }
#define F_CODE(key, base, member, req)                                         \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_CODE, base (member), 0, 0, req, NULL    \
    }
#define F_BOOL(key, base, member, req)                                         \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_BOOL, base (member), 0, 0, req, NULL    \
    }
#define F_NAME(key, base, member, req)                                         \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_NAME, base (member), 0,                 \
            DROVER_MAX_NAME, req, NULL                                         \
    }
#define F_TEXT(key, base, member, max, req)                                    \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_TEXT, base (member), 0, max, req, NULL  \
    }
#define F_IDS(key, req)                                                        \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_IDS, MSG_ (ids), MSG_ (id_count),       \
            DROVER_MAX_BATCH, req, NULL                                        \
    }
#define F_NAMES(key, member, count, req)                                       \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_NAMES, MSG_ (member), MSG_ (count),     \
            DROVER_MAX_BATCH, req, NULL                                        \
    }
#define F_ITEMS(key, member, count, schema)                                    \
    {                                                                          \
        key, sizeof ("" key) - 1, KIND_ITEMS, MSG_ (member), MSG_ (count),     \
            DROVER_MAX_BATCH, REQ, &schema                                     \
    }

//  A schema's fields: at most 32, one bit each in the codec's masks (a
//  larger table does not compile: an array of size -1)
#define FIELD_COUNT(fields)                                                    \
    (COUNT_OF (fields) + 0 * sizeof (char[COUNT_OF (fields) <= 32 ? 1 : -1]))
#define SCHEMA(name, type, payloads, fields)                                   \
    {                                                                          \
        name, sizeof (type), payloads, fields, FIELD_COUNT (fields)            \
    }
#define EMPTY_SCHEMA(name)                                                     \
    {                                                                          \
        name, 0, false, NULL, 0                                                \
    }

//  Task items, one table per command that carries them

static const s_field_t s_submit_task_fields[] = {
    F_U64 ("id", TASK_, id, OPT),
    F_NAME ("handler", TASK_, handler, REQ),
    F_NAME ("queue", TASK_, queue, OPT),
    F_TEXT ("key", TASK_, key, DROVER_MAX_NAME, OPT),
    F_U64 ("timeout_ms", TASK_, timeout_ms, OPT),
    F_U64 ("delay_ms", TASK_, delay_ms, OPT),
    F_I64 ("priority", TASK_, priority, OPT),
    F_U32 ("max_attempts", TASK_, max_attempts, UINT32_MAX, OPT),
    F_U64 ("soft_timeout_ms", TASK_, soft_timeout_ms, OPT),
    F_U64 ("retry_delay_ms", TASK_, retry_delay_ms, OPT),
    F_U64 ("retry_max_delay_ms", TASK_, retry_max_delay_ms, OPT),
    F_U64 ("retry_on", TASK_, retry_on, OPT),
    F_U32 ("items", TASK_, items, DROVER_MAX_ITEMS, OPT),
};
static const s_field_t s_dispatch_task_fields[] = {
    F_ID ("id", TASK_, id),
    F_U32 ("attempt", TASK_, attempt, UINT32_MAX, REQ),
    F_NAME ("handler", TASK_, handler, REQ),
    F_NAME ("queue", TASK_, queue, OPT),
    F_TEXT ("key", TASK_, key, DROVER_MAX_NAME, OPT),
    F_U64 ("timeout_ms", TASK_, timeout_ms, OPT),
    F_U64 ("soft_timeout_ms", TASK_, soft_timeout_ms, OPT),
    F_U32 ("items", TASK_, items, DROVER_MAX_ITEMS, OPT),
};
//  FAIL and RESULT items: the outcome of one attempt
static const s_field_t s_outcome_task_fields[] = {
    F_ID ("id", TASK_, id),
    F_U32 ("attempt", TASK_, attempt, UINT32_MAX, REQ),
    F_CODE ("code", TASK_, code, REQ),
    F_TEXT ("reason", TASK_, reason, DROVER_MAX_TEXT, OPT),
    F_NAME ("node", TASK_, node, OPT),
    F_U64 ("elapsed_us", TASK_, elapsed_us, OPT),
    F_I32 ("signal", TASK_, signal, OPT),
    F_I32 ("exit_status", TASK_, exit_status, OPT),
    F_U64 ("max_rss_kb", TASK_, max_rss_kb, OPT),
    F_U64 ("cpu_us", TASK_, cpu_us, OPT),
};
//  REVOKE and STORED items: one attempt
static const s_field_t s_attempt_task_fields[] = {
    F_ID ("id", TASK_, id),
    F_U32 ("attempt", TASK_, attempt, UINT32_MAX, REQ),
    F_CODE ("code", TASK_, code, OPT),
};
static const s_field_t s_done_task_fields[] = {
    F_ID ("id", TASK_, id),
    F_U32 ("attempt", TASK_, attempt, UINT32_MAX, REQ),
    F_CODE ("code", TASK_, code, REQ),
};
static const s_field_t s_status_task_fields[] = {
    F_ID ("id", TASK_, id),
    F_U32 ("state", TASK_, state, DROVER_STATE_LAST, REQ),
    F_U32 ("attempt", TASK_, attempt, UINT32_MAX, OPT),
    F_U32 ("max_attempts", TASK_, max_attempts, UINT32_MAX, OPT),
    F_NAME ("handler", TASK_, handler, OPT),
    F_NAME ("queue", TASK_, queue, OPT),
    F_NAME ("node", TASK_, node, OPT),
    F_CODE ("code", TASK_, code, OPT),
    F_TEXT ("reason", TASK_, reason, DROVER_MAX_TEXT, OPT),
};

static const s_schema_t s_submit_task =
    SCHEMA ("task", drover_task_t, true, s_submit_task_fields);
static const s_schema_t s_dispatch_task =
    SCHEMA ("task", drover_task_t, true, s_dispatch_task_fields);
static const s_schema_t s_fail_task =
    SCHEMA ("task", drover_task_t, false, s_outcome_task_fields);
static const s_schema_t s_result_task =
    SCHEMA ("task", drover_task_t, true, s_outcome_task_fields);
static const s_schema_t s_attempt_task =
    SCHEMA ("task", drover_task_t, false, s_attempt_task_fields);
static const s_schema_t s_done_task =
    SCHEMA ("task", drover_task_t, false, s_done_task_fields);
//  DEAD_REPLY items: one per attempt of each dead letter
static const s_field_t s_dead_task_fields[] = {
    F_ID ("id", TASK_, id),
    F_U32 ("attempt", TASK_, attempt, UINT32_MAX, REQ),
    F_CODE ("code", TASK_, code, REQ),
    F_NAME ("handler", TASK_, handler, OPT),
    F_NAME ("queue", TASK_, queue, OPT),
    F_U32 ("max_attempts", TASK_, max_attempts, UINT32_MAX, OPT),
    F_TEXT ("reason", TASK_, reason, DROVER_MAX_TEXT, OPT),
    F_NAME ("node", TASK_, node, OPT),
    F_U64 ("elapsed_us", TASK_, elapsed_us, OPT),
    F_U64 ("cpu_us", TASK_, cpu_us, OPT),
    F_I32 ("signal", TASK_, signal, OPT),
    F_I32 ("exit_status", TASK_, exit_status, OPT),
    F_U64 ("max_rss_kb", TASK_, max_rss_kb, OPT),
};
static const s_schema_t s_status_task =
    SCHEMA ("task", drover_task_t, false, s_status_task_fields);
static const s_schema_t s_dead_task =
    SCHEMA ("task", drover_task_t, false, s_dead_task_fields);

//  STATS_REPLY items

#define QUEUE_(member)   offsetof (drover_queue_info_t, member)
#define NODE_(member)    offsetof (drover_node_info_t, member)
#define COUNTER_(member) offsetof (drover_counter_t, member)

static const s_field_t s_queue_info_fields[] = {
    F_NAME ("name", QUEUE_, name, REQ),
    F_U64 ("queued", QUEUE_, queued, REQ),
    F_U64 ("leased", QUEUE_, leased, REQ),
};
static const s_field_t s_node_info_fields[] = {
    F_NAME ("name", NODE_, name, REQ),
    F_U32 ("children", NODE_, children, UINT32_MAX, REQ),
    F_U64 ("credit", NODE_, credit, REQ),
    F_U64 ("leased", NODE_, leased, REQ),
    F_U64 ("done", NODE_, done, OPT),
};
static const s_field_t s_counter_fields[] = {
    F_NAME ("name", COUNTER_, name, REQ),
    F_U64 ("value", COUNTER_, value, REQ),
};
static const s_schema_t s_queue_info =
    SCHEMA ("queue", drover_queue_info_t, false, s_queue_info_fields);
static const s_schema_t s_node_info =
    SCHEMA ("node", drover_node_info_t, false, s_node_info_fields);
static const s_schema_t s_counter =
    SCHEMA ("counter", drover_counter_t, false, s_counter_fields);

//  Commands

static const s_field_t s_hello_fields[] = {
    F_NAME ("role", MSG_, role, REQ),
    F_NAME ("name", MSG_, name, REQ),
    F_TEXT ("endpoint", MSG_, endpoint, DROVER_MAX_NAME, OPT),
    F_U32 ("children", MSG_, children, DROVER_MAX_CREDIT, OPT),
    F_U32 ("lookahead", MSG_, lookahead, DROVER_MAX_CREDIT, OPT),
    F_NAMES ("handlers", handlers, handler_count, OPT),
    F_NAMES ("queues", queues, queue_count, OPT),
    F_BOOL ("chunks", MSG_, chunks, OPT),
};
static const s_field_t s_welcome_fields[] = {
    F_NAME ("instance", MSG_, instance, REQ),
    F_TEXT ("endpoint", MSG_, endpoint, DROVER_MAX_NAME, OPT),
    F_U32 ("heartbeat_ms", MSG_, heartbeat_ms, UINT32_MAX, REQ),
    F_U32 ("liveness", MSG_, liveness, UINT32_MAX, REQ),
    F_U64 ("max_payload", MSG_, max_payload, REQ),
    F_U32 ("max_batch", MSG_, max_batch, DROVER_MAX_BATCH, REQ),
};
static const s_field_t s_bye_fields[] = {
    F_CODE ("code", MSG_, code, OPT),
    F_TEXT ("reason", MSG_, reason, DROVER_MAX_TEXT, OPT),
};
static const s_field_t s_error_fields[] = {
    F_U64 ("ref", MSG_, ref, OPT),
    F_CODE ("code", MSG_, code, REQ),
    F_TEXT ("reason", MSG_, reason, DROVER_MAX_TEXT, REQ),
};
static const s_field_t s_submit_fields[] = {
    F_U64 ("ref", MSG_, ref, REQ),
    F_ITEMS ("tasks", tasks, task_count, s_submit_task),
    F_TEXT ("token", MSG_, token, DROVER_MAX_TOKEN, OPT),
};
static const s_field_t s_submitted_fields[] = {
    F_U64 ("ref", MSG_, ref, REQ),
    F_IDS ("ids", REQ),
    F_TEXT ("token", MSG_, token, DROVER_MAX_TOKEN, OPT),
};
static const s_field_t s_ids_fields[] = {
    F_U64 ("ref", MSG_, ref, REQ),
    F_IDS ("ids", REQ),
};
static const s_field_t s_status_reply_fields[] = {
    F_U64 ("ref", MSG_, ref, REQ),
    F_ITEMS ("tasks", tasks, task_count, s_status_task),
};
static const s_field_t s_stats_fields[] = {
    F_U64 ("ref", MSG_, ref, REQ),
};
static const s_field_t s_stats_reply_fields[] = {
    F_U64 ("ref", MSG_, ref, REQ),
    F_ITEMS ("queues", queue_infos, queue_info_count, s_queue_info),
    F_ITEMS ("nodes", node_infos, node_info_count, s_node_info),
    F_ITEMS ("counters", counters, counter_count, s_counter),
};
static const s_field_t s_credit_fields[] = {
    F_U32 ("credit", MSG_, credit, DROVER_MAX_CREDIT, REQ),
};
static const s_field_t s_dispatch_fields[] = {
    F_ITEMS ("tasks", tasks, task_count, s_dispatch_task),
};
static const s_field_t s_fail_fields[] = {
    F_ITEMS ("tasks", tasks, task_count, s_fail_task),
};
static const s_field_t s_attempts_fields[] = {
    F_ITEMS ("tasks", tasks, task_count, s_attempt_task),
};
static const s_field_t s_drain_fields[] = {
    F_TEXT ("reason", MSG_, reason, DROVER_MAX_TEXT, OPT),
};
static const s_field_t s_result_fields[] = {
    F_ITEMS ("tasks", tasks, task_count, s_result_task),
};
static const s_field_t s_done_fields[] = {
    F_ITEMS ("tasks", tasks, task_count, s_done_task),
};
static const s_field_t s_dead_fields[] = {
    F_U64 ("ref", MSG_, ref, REQ),
    F_IDS ("ids", OPT),
};
static const s_field_t s_dead_reply_fields[] = {
    F_U64 ("ref", MSG_, ref, REQ),
    F_ITEMS ("tasks", tasks, task_count, s_dead_task),
};
static const s_field_t s_retry_fields[] = {
    F_U64 ("ref", MSG_, ref, REQ),
    F_IDS ("ids", OPT),
    F_BOOL ("all", MSG_, all, OPT),
};
static const s_field_t s_watch_fields[] = {
    F_IDS ("ids", REQ),
    F_BOOL ("release", MSG_, release, OPT),
};

#define COMMAND(name, fields) SCHEMA (name, drover_msg_t, false, fields)

//  Returns the schema of a command, or NULL if it is not one.
static const s_schema_t *
s_command_schema (int command)
{
    static const s_schema_t hello = COMMAND ("HELLO", s_hello_fields);
    static const s_schema_t welcome = COMMAND ("WELCOME", s_welcome_fields);
    static const s_schema_t heartbeat = EMPTY_SCHEMA ("HEARTBEAT");
    static const s_schema_t bye = COMMAND ("BYE", s_bye_fields);
    static const s_schema_t error = COMMAND ("ERROR", s_error_fields);
    static const s_schema_t submit = COMMAND ("SUBMIT", s_submit_fields);
    static const s_schema_t submitted =
        COMMAND ("SUBMITTED", s_submitted_fields);
    static const s_schema_t cancel = COMMAND ("CANCEL", s_ids_fields);
    static const s_schema_t status = COMMAND ("STATUS", s_ids_fields);
    static const s_schema_t status_reply =
        COMMAND ("STATUS_REPLY", s_status_reply_fields);
    static const s_schema_t stats = COMMAND ("STATS", s_stats_fields);
    static const s_schema_t stats_reply =
        COMMAND ("STATS_REPLY", s_stats_reply_fields);
    static const s_schema_t credit = COMMAND ("CREDIT", s_credit_fields);
    static const s_schema_t dispatch = COMMAND ("DISPATCH", s_dispatch_fields);
    static const s_schema_t fail = COMMAND ("FAIL", s_fail_fields);
    static const s_schema_t revoke = COMMAND ("REVOKE", s_attempts_fields);
    static const s_schema_t drain = COMMAND ("DRAIN", s_drain_fields);
    static const s_schema_t result = COMMAND ("RESULT", s_result_fields);
    static const s_schema_t stored = COMMAND ("STORED", s_attempts_fields);
    static const s_schema_t done = COMMAND ("DONE", s_done_fields);
    static const s_schema_t watch = COMMAND ("WATCH", s_watch_fields);
    static const s_schema_t dead = COMMAND ("DEAD", s_dead_fields);
    static const s_schema_t dead_reply =
        COMMAND ("DEAD_REPLY", s_dead_reply_fields);
    static const s_schema_t retry = COMMAND ("RETRY", s_retry_fields);

    switch (command) {
        case DROVER_HELLO: return &hello;
        case DROVER_WELCOME: return &welcome;
        case DROVER_HEARTBEAT: return &heartbeat;
        case DROVER_BYE: return &bye;
        case DROVER_ERROR: return &error;
        case DROVER_SUBMIT: return &submit;
        case DROVER_SUBMITTED: return &submitted;
        case DROVER_CANCEL: return &cancel;
        case DROVER_STATUS: return &status;
        case DROVER_STATUS_REPLY: return &status_reply;
        case DROVER_STATS: return &stats;
        case DROVER_STATS_REPLY: return &stats_reply;
        case DROVER_CREDIT: return &credit;
        case DROVER_DISPATCH: return &dispatch;
        case DROVER_FAIL: return &fail;
        case DROVER_REVOKE: return &revoke;
        case DROVER_DRAIN: return &drain;
        case DROVER_RESULT: return &result;
        case DROVER_STORED: return &stored;
        case DROVER_DONE: return &done;
        case DROVER_WATCH: return &watch;
        case DROVER_DEAD: return &dead;
        case DROVER_DEAD_REPLY: return &dead_reply;
        case DROVER_RETRY: return &retry;
        default: return NULL;
    }
}

//  --------------------------------------------------------------------------
//  Small helpers

static int
s_fail (drover_msg_t *self, int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->error_, sizeof self->error_, format, args);
    va_end (args);
    return code;
}

static void *
s_at (void *base, size_t offset)
{
    return (char *)base + offset;
}

static const void *
s_at_const (const void *base, size_t offset)
{
    return (const char *)base + offset;
}

static bool
s_name_valid (const char *name, size_t size)
{
    if (size == 0 || size > DROVER_MAX_NAME)
        return false;
    for (size_t i = 0; i < size; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return false;
    return true;
}

static bool
s_text_valid (const char *text, size_t size, uint64_t max)
{
    return size <= max && memchr (text, 0, size) == NULL;
}

void
drover_msg_init (drover_msg_t *self, drover_command_t command)
{
    assert (self);
    memset (self, 0, sizeof *self);
    self->command = command;
}

void
drover_msg_reset (drover_msg_t *self)
{
    assert (self);
    drover_command_t command = self->command;
    if (self->arena_)
        msgpack_zone_free ((msgpack_zone *)self->arena_);
    memset (self, 0, sizeof *self);
    self->command = command;
}

const char *
drover_command_name (int command)
{
    const s_schema_t *schema = s_command_schema (command);
    return schema ? schema->name : NULL;
}

const char *
drover_state_name (int state)
{
    static const char *names[] = {"unknown",   "queued", "leased", "retrying",
                                  "reporting", "done",   "failed", "cancelled"};
    _Static_assert(COUNT_OF (names) == DROVER_STATE_LAST + 1,
                   "one name per state");
    if (state < 0 || state > DROVER_STATE_LAST)
        return "unknown";
    return names[state];
}

bool
drover_command_has_payloads (int command)
{
    return command == DROVER_SUBMIT || command == DROVER_DISPATCH
           || command == DROVER_RESULT;
}

const char *
drover_msg_error (const drover_msg_t *self)
{
    assert (self);
    return self->error_;
}

//  --------------------------------------------------------------------------
//  Encoding

//  True when the field holds its zero value, so an optional field is left
//  out of the map.
static bool
s_field_is_default (const s_field_t *field, const void *base)
{
    const void *value = s_at_const (base, field->offset);
    switch (field->kind) {
        case KIND_U32: return *(const uint32_t *)value == 0;
        case KIND_U64:
        case KIND_ID: return *(const uint64_t *)value == 0;
        case KIND_I32:
        case KIND_CODE: return *(const int32_t *)value == 0;
        case KIND_I64: return *(const int64_t *)value == 0;
        case KIND_BOOL: return !*(const bool *)value;
        case KIND_NAME:
        case KIND_TEXT: return *(const char *const *)value == NULL;
        case KIND_IDS:
        case KIND_NAMES:
        case KIND_ITEMS:
            return *(const size_t *)s_at_const (base, field->count_offset) == 0;
    }
    return true;
}

static int s_encode_map (drover_msg_t *self, msgpack_packer *packer,
                         const s_schema_t *schema, const void *base,
                         const char *where);

//  Checks one value against its field and packs it.
static int
s_encode_field (drover_msg_t *self, msgpack_packer *packer,
                const s_field_t *field, const void *base, const char *where)
{
    const void *value = s_at_const (base, field->offset);
    size_t count = 0;
    if (field->kind == KIND_IDS || field->kind == KIND_NAMES
        || field->kind == KIND_ITEMS) {
        count = *(const size_t *)s_at_const (base, field->count_offset);
        if (count > field->max)
            return s_fail (self, DROVER_EINVAL, "%s%s: %zu items, limit %d",
                           where, field->key, count, DROVER_MAX_BATCH);
        if (count > 0 && *(const void *const *)value == NULL)
            return s_fail (self, DROVER_EINVAL, "%s%s: NULL array", where,
                           field->key);
    }
    msgpack_pack_str_with_body (packer, field->key, field->key_size);
    switch (field->kind) {
        case KIND_U32: {
            uint32_t number = *(const uint32_t *)value;
            if (number > field->max)
                return s_fail (self, DROVER_EINVAL, "%s%s: %u over %llu", where,
                               field->key, number,
                               (unsigned long long)field->max);
            msgpack_pack_uint32 (packer, number);
            break;
        }
        case KIND_U64:
            msgpack_pack_uint64 (packer, *(const uint64_t *)value);
            break;
        case KIND_ID:
            if (*(const uint64_t *)value == 0)
                return s_fail (self, DROVER_EINVAL, "%s%s: id 0", where,
                               field->key);
            msgpack_pack_uint64 (packer, *(const uint64_t *)value);
            break;
        case KIND_I32:
            msgpack_pack_int32 (packer, *(const int32_t *)value);
            break;
        case KIND_CODE: {
            int32_t code = *(const int32_t *)value;
            if (code > 0 || code < DROVER_ELAST)
                return s_fail (self, DROVER_EINVAL, "%s%s: %d is no code",
                               where, field->key, code);
            msgpack_pack_int32 (packer, code);
            break;
        }
        case KIND_I64:
            msgpack_pack_int64 (packer, *(const int64_t *)value);
            break;
        case KIND_BOOL:
            if (*(const bool *)value)
                msgpack_pack_true (packer);
            else
                msgpack_pack_false (packer);
            break;
        case KIND_NAME:
        case KIND_TEXT: {
            const char *text = *(const char *const *)value;
            if (!text)
                return s_fail (self, DROVER_EINVAL, "%s%s: missing", where,
                               field->key);
            size_t size = strlen (text);
            if (field->kind == KIND_NAME ? !s_name_valid (text, size)
                                         : size > field->max)
                return s_fail (self, DROVER_EINVAL,
                               "%s%s: '%.40s' is not a valid %s", where,
                               field->key, text,
                               field->kind == KIND_NAME ? "name" : "text");
            msgpack_pack_str_with_body (packer, text, size);
            break;
        }
        case KIND_IDS: {
            const uint64_t *ids = *(const uint64_t *const *)value;
            msgpack_pack_array (packer, count);
            for (size_t i = 0; i < count; i++) {
                if (ids[i] == 0)
                    return s_fail (self, DROVER_EINVAL, "%s%s[%zu]: id 0",
                                   where, field->key, i);
                msgpack_pack_uint64 (packer, ids[i]);
            }
            break;
        }
        case KIND_NAMES: {
            const char *const *names = *(const char *const *const *)value;
            msgpack_pack_array (packer, count);
            for (size_t i = 0; i < count; i++) {
                size_t size = names[i] ? strlen (names[i]) : 0;
                if (!names[i] || !s_name_valid (names[i], size))
                    return s_fail (self, DROVER_EINVAL,
                                   "%s%s[%zu]: not a valid name", where,
                                   field->key, i);
                msgpack_pack_str_with_body (packer, names[i], size);
            }
            break;
        }
        case KIND_ITEMS: {
            const char *items = *(const char *const *)value;
            msgpack_pack_array (packer, count);
            for (size_t i = 0; i < count; i++) {
                const void *item = items + i * field->items->item_size;
                //  Where an error is, for its message: formatted only when
                //  there is one (a snprintf per item cost 10 % of the
                //  broker's time under load)
                char item_where[48];
                int rc = s_encode_map (self, packer, field->items, item, "");
                if (rc) {
                    //  Packed again with its place: the packer's buffer is
                    //  thrown away with the failed message
                    snprintf (item_where, sizeof item_where, "%s[%zu].",
                              field->key, i);
                    return s_encode_map (self, packer, field->items, item,
                                         item_where);
                }
                if (field->items->payloads) {
                    const drover_task_t *task = (const drover_task_t *)item;
                    if (task->payload.size > DROVER_MAX_PAYLOAD)
                        return s_fail (self, DROVER_EINVAL,
                                       "%s[%zu].payload: %zu octets, limit %u",
                                       field->key, i, task->payload.size,
                                       DROVER_MAX_PAYLOAD);
                    if (task->payload.size > 0 && !task->payload.data)
                        return s_fail (self, DROVER_EINVAL,
                                       "%s[%zu].payload: %zu octets at NULL",
                                       field->key, i, task->payload.size);
                }
            }
            break;
        }
    }
    return 0;
}

static int
s_encode_map (drover_msg_t *self, msgpack_packer *packer,
              const s_schema_t *schema, const void *base, const char *where)
{
    uint32_t present = 0; //  one bit per field that goes into the map
    size_t present_count = 0;
    for (size_t i = 0; i < schema->field_count; i++) {
        const s_field_t *field = &schema->fields[i];
        if (field->required || !s_field_is_default (field, base)) {
            present |= 1u << i;
            present_count++;
        }
    }
    msgpack_pack_map (packer, present_count);
    for (size_t i = 0; i < schema->field_count; i++) {
        if (!(present & (1u << i)))
            continue;
        int rc = s_encode_field (self, packer, &schema->fields[i], base, where);
        if (rc)
            return rc;
    }
    return 0;
}

//  msgpack_sbuffer_write with the copy inline: the packer writes a few
//  octets at a time, and a call to memcpy for each was a tenth of the
//  encoder's time.
static int
s_buffer_write (void *data, const char *octets, size_t size)
{
    msgpack_sbuffer *buffer = (msgpack_sbuffer *)data;
    if (size > 16 || buffer->alloc - buffer->size < size)
        return msgpack_sbuffer_write (data, octets, size);
    char *to = buffer->data + buffer->size;
    for (size_t i = 0; i < size; i++)
        to[i] = octets[i];
    buffer->size += size;
    return 0;
}

int
drover_msg_encode (drover_msg_t *self, uint8_t **header, size_t *header_size)
{
    assert (self);
    assert (header);
    assert (header_size);
    self->error_[0] = 0;
    const s_schema_t *schema = s_command_schema (self->command);
    if (!schema)
        return s_fail (self, DROVER_EINVAL, "command %d does not exist",
                       (int)self->command);

    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, s_buffer_write);
    int rc = s_encode_map (self, &packer, schema, self, "");
    if (rc == 0 && buffer.size > DROVER_MAX_HEADER)
        rc = s_fail (self, DROVER_EINVAL, "%s header: %zu octets, limit %u",
                     schema->name, buffer.size, DROVER_MAX_HEADER);
    if (rc == 0 && buffer.data == NULL)
        rc = s_fail (self, DROVER_ENOMEM, "out of memory");
    if (rc) {
        msgpack_sbuffer_destroy (&buffer);
        return rc;
    }
    *header_size = buffer.size;
    *header = (uint8_t *)msgpack_sbuffer_release (&buffer);
    msgpack_sbuffer_destroy (&buffer);
    return 0;
}

//  --------------------------------------------------------------------------
//  Decoding, pass 1: a non-allocating walk over the raw msgpack bytes

typedef struct {
    const uint8_t *data; //  the header
    size_t size;         //  its size
    size_t offset;       //  next octet to read
} s_reader_t;

static bool
s_read_be (s_reader_t *reader, size_t width, uint64_t *value)
{
    if (reader->size - reader->offset < width)
        return false;
    uint64_t number = 0;
    for (size_t i = 0; i < width; i++)
        number = (number << 8) | reader->data[reader->offset + i];
    reader->offset += width;
    *value = number;
    return true;
}

static bool
s_skip (s_reader_t *reader, uint64_t octets)
{
    if (reader->size - reader->offset < octets)
        return false;
    reader->offset += (size_t)octets;
    return true;
}

//  Walks the msgpack object that starts the reader (the header map) and
//  everything in it, without recursion: left[d] counts the objects still
//  to read at nesting level d. Returns 0, or DROVER_EPROTO when the bytes
//  end early, a length cannot fit in what remains, or nesting is too deep.
static int
s_prescan (drover_msg_t *self, s_reader_t *reader)
{
    uint64_t left[DROVER_MAX_DEPTH + 1];
    int depth = 0;
    left[0] = 1;
    while (true) {
        while (left[depth] == 0)
            if (depth-- == 0)
                return 0;
        left[depth]--;
        uint64_t type;
        if (!s_read_be (reader, 1, &type))
            return s_fail (self, DROVER_EPROTO, "header truncated at octet %zu",
                           reader->offset);
        uint64_t length = 0;
        uint64_t children = 0; //  objects that follow: 1 per array element,
                               //  2 per map entry
        bool ok = true;
        bool container =
            (type >= 0x80 && type <= 0x9f) || (type >= 0xdc && type <= 0xdf);
        //  The header map is level 1: a container at depth 16 is level 17
        if (container && depth >= DROVER_MAX_DEPTH)
            return s_fail (self, DROVER_EPROTO,
                           "header nested deeper than %d levels",
                           DROVER_MAX_DEPTH);
        if (type <= 0x7f || type >= 0xe0 || type == 0xc0 || type == 0xc2
            || type == 0xc3)
            ; //  fixint, nil, false, true
        else if (type >= 0x80 && type <= 0x8f)
            children = 2 * (type & 0x0f);
        else if (type >= 0x90 && type <= 0x9f)
            children = type & 0x0f;
        else if (type >= 0xa0 && type <= 0xbf)
            ok = s_skip (reader, type & 0x1f);
        else
            switch (type) {
                case 0xc4:
                case 0xd9: //  bin 8, str 8
                    ok = s_read_be (reader, 1, &length)
                         && s_skip (reader, length);
                    break;
                case 0xc5:
                case 0xda: //  bin 16, str 16
                    ok = s_read_be (reader, 2, &length)
                         && s_skip (reader, length);
                    break;
                case 0xc6:
                case 0xdb: //  bin 32, str 32
                    ok = s_read_be (reader, 4, &length)
                         && s_skip (reader, length);
                    break;
                case 0xc7: //  ext 8, 16, 32: type octet and data
                    ok = s_read_be (reader, 1, &length)
                         && s_skip (reader, length + 1);
                    break;
                case 0xc8:
                    ok = s_read_be (reader, 2, &length)
                         && s_skip (reader, length + 1);
                    break;
                case 0xc9:
                    ok = s_read_be (reader, 4, &length)
                         && s_skip (reader, length + 1);
                    break;
                case 0xca:
                case 0xce:
                case 0xd2: ok = s_skip (reader, 4); break;
                case 0xcb:
                case 0xcf:
                case 0xd3: ok = s_skip (reader, 8); break;
                case 0xcc:
                case 0xd0: ok = s_skip (reader, 1); break;
                case 0xcd:
                case 0xd1: ok = s_skip (reader, 2); break;
                case 0xd4: ok = s_skip (reader, 2); break;  //  fixext 1
                case 0xd5: ok = s_skip (reader, 3); break;  //  fixext 2
                case 0xd6: ok = s_skip (reader, 5); break;  //  fixext 4
                case 0xd7: ok = s_skip (reader, 9); break;  //  fixext 8
                case 0xd8: ok = s_skip (reader, 17); break; //  fixext 16
                case 0xdc:                                  //  array 16, 32
                    ok = s_read_be (reader, 2, &children);
                    break;
                case 0xdd: ok = s_read_be (reader, 4, &children); break;
                case 0xde: //  map 16, 32
                    ok = s_read_be (reader, 2, &children);
                    children *= 2;
                    break;
                case 0xdf:
                    ok = s_read_be (reader, 4, &children);
                    children *= 2;
                    break;
                default: //  0xc1 is never used
                    return s_fail (self, DROVER_EPROTO,
                                   "header: invalid msgpack type 0x%02x at "
                                   "octet %zu",
                                   (unsigned)type, reader->offset - 1);
            }
        if (!ok)
            return s_fail (self, DROVER_EPROTO, "header truncated at octet %zu",
                           reader->offset);
        //  Every object takes at least one octet: a declared count larger
        //  than what remains is a lie, and is refused before anything is
        //  allocated.
        if (children > reader->size - reader->offset)
            return s_fail (self, DROVER_EPROTO,
                           "header declares %llu objects with %zu octets left",
                           (unsigned long long)children,
                           reader->size - reader->offset);
        if (children > 0)
            left[++depth] = children;
    }
}

//  --------------------------------------------------------------------------
//  Decoding, pass 2: from msgpack objects into the C structs

static int s_decode_map (drover_msg_t *self, msgpack_zone *arena,
                         const s_schema_t *schema, const msgpack_object *map,
                         void *base, const char *where);

static const char *
s_copy_string (msgpack_zone *arena, const msgpack_object *object)
{
    char *copy = (char *)msgpack_zone_malloc (arena, object->via.str.size + 1);
    if (copy) {
        memcpy (copy, object->via.str.ptr, object->via.str.size);
        copy[object->via.str.size] = 0;
    }
    return copy;
}

static int
s_decode_name (drover_msg_t *self, msgpack_zone *arena,
               const msgpack_object *object, const char **name,
               const char *where, const char *key)
{
    if (object->type != MSGPACK_OBJECT_STR)
        return s_fail (self, DROVER_EPROTO, "%s%s: expected a string", where,
                       key);
    if (!s_name_valid (object->via.str.ptr, object->via.str.size))
        return s_fail (self,
                       object->via.str.size > DROVER_MAX_NAME ? DROVER_ETOOBIG
                                                              : DROVER_EPROTO,
                       "%s%s: not a valid name (1-%d printable octets)", where,
                       key, DROVER_MAX_NAME);
    *name = s_copy_string (arena, object);
    return *name ? 0 : s_fail (self, DROVER_ENOMEM, "out of memory");
}

//  Checks that object is an array of at most field->max elements, and
//  allocates count elements of size octets for it.
static int
s_decode_array (drover_msg_t *self, msgpack_zone *arena, const s_field_t *field,
                const msgpack_object *object, size_t size, void **elements,
                const char *where)
{
    if (object->type != MSGPACK_OBJECT_ARRAY)
        return s_fail (self, DROVER_EPROTO, "%s%s: expected an array", where,
                       field->key);
    if (object->via.array.size > field->max)
        return s_fail (self, DROVER_ETOOBIG, "%s%s: %u items, limit %llu",
                       where, field->key, object->via.array.size,
                       (unsigned long long)field->max);
    *elements = NULL;
    if (object->via.array.size == 0)
        return 0;
    *elements = msgpack_zone_malloc (arena, size * object->via.array.size);
    if (!*elements)
        return s_fail (self, DROVER_ENOMEM, "out of memory");
    memset (*elements, 0, size * object->via.array.size);
    return 0;
}

static int
s_decode_field (drover_msg_t *self, msgpack_zone *arena, const s_field_t *field,
                const msgpack_object *object, void *base, const char *where)
{
    void *value = s_at (base, field->offset);
    const char *key = field->key;
    switch (field->kind) {
        case KIND_U32:
        case KIND_U64:
        case KIND_ID: {
            if (object->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return s_fail (self, DROVER_EPROTO,
                               "%s%s: expected an unsigned integer", where,
                               key);
            uint64_t number = object->via.u64;
            if (field->kind == KIND_ID && number == 0)
                return s_fail (self, DROVER_EPROTO,
                               "%s%s: expected a task id, not 0", where, key);
            if (field->kind == KIND_U32) {
                if (number > field->max)
                    return s_fail (self, DROVER_ETOOBIG, "%s%s: %llu over %llu",
                                   where, key, (unsigned long long)number,
                                   (unsigned long long)field->max);
                *(uint32_t *)value = (uint32_t)number;
            }
            else
                *(uint64_t *)value = number;
            return 0;
        }
        case KIND_I32:
        case KIND_CODE:
        case KIND_I64: {
            int64_t number;
            if (object->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                if (object->via.u64 > INT64_MAX)
                    return s_fail (self, DROVER_EPROTO,
                                   "%s%s: integer out of range", where, key);
                number = (int64_t)object->via.u64;
            }
            else if (object->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                number = object->via.i64;
            else
                return s_fail (self, DROVER_EPROTO, "%s%s: expected an integer",
                               where, key);
            if (field->kind == KIND_I64)
                *(int64_t *)value = number;
            else if (field->kind == KIND_CODE
                     && (number > 0 || number < DROVER_ELAST))
                return s_fail (self, DROVER_EPROTO,
                               "%s%s: %lld is not a DROVER_E* code", where, key,
                               (long long)number);
            else if (number > INT32_MAX || number < INT32_MIN)
                return s_fail (self, DROVER_EPROTO,
                               "%s%s: integer out of range", where, key);
            else
                *(int32_t *)value = (int32_t)number;
            return 0;
        }
        case KIND_BOOL:
            if (object->type != MSGPACK_OBJECT_BOOLEAN)
                return s_fail (self, DROVER_EPROTO,
                               "%s%s: expected true or false", where, key);
            *(bool *)value = object->via.boolean;
            return 0;
        case KIND_NAME:
            return s_decode_name (self, arena, object, (const char **)value,
                                  where, key);
        case KIND_TEXT:
            if (object->type != MSGPACK_OBJECT_STR)
                return s_fail (self, DROVER_EPROTO, "%s%s: expected a string",
                               where, key);
            if (object->via.str.size > field->max)
                return s_fail (
                    self, DROVER_ETOOBIG, "%s%s: %u octets, limit %llu", where,
                    key, object->via.str.size, (unsigned long long)field->max);
            if (!s_text_valid (object->via.str.ptr, object->via.str.size,
                               field->max))
                return s_fail (self, DROVER_EPROTO, "%s%s: contains NUL", where,
                               key);
            *(const char **)value = s_copy_string (arena, object);
            return *(const char **)value
                       ? 0
                       : s_fail (self, DROVER_ENOMEM, "out of memory");
        case KIND_IDS:
        case KIND_NAMES:
        case KIND_ITEMS: {
            size_t size = field->kind == KIND_IDS     ? sizeof (uint64_t)
                          : field->kind == KIND_NAMES ? sizeof (char *)
                                                      : field->items->item_size;
            void *elements;
            int rc = s_decode_array (self, arena, field, object, size,
                                     &elements, where);
            if (rc)
                return rc;
            size_t count = object->via.array.size;
            for (size_t i = 0; i < count; i++) {
                const msgpack_object *element = &object->via.array.ptr[i];
                //  Where an error is, for its message: formatted only when
                //  there is one (see s_encode_field), and the element
                //  decoded again with it
                char item_where[48];
                for (const char *at = ""; at;) {
                    if (field->kind == KIND_IDS) {
                        rc = element->type != MSGPACK_OBJECT_POSITIVE_INTEGER
                                     || element->via.u64 == 0
                                 ? s_fail (self, DROVER_EPROTO,
                                           "%s: expected a task id", at)
                                 : 0;
                        if (rc == 0)
                            ((uint64_t *)elements)[i] = element->via.u64;
                    }
                    else if (field->kind == KIND_NAMES)
                        rc = s_decode_name (self, arena, element,
                                            &((const char **)elements)[i], at,
                                            "");
                    else
                        rc = s_decode_map (self, arena, field->items, element,
                                           (char *)elements + i * size, at);
                    if (rc == 0 || at == item_where)
                        break;
                    snprintf (item_where, sizeof item_where, "%s%s[%zu]%s",
                              where, key, i,
                              field->kind == KIND_ITEMS ? "." : "");
                    at = item_where;
                }
                if (rc)
                    return rc;
            }
            *(void **)value = elements;
            *(size_t *)s_at (base, field->count_offset) = count;
            return 0;
        }
    }
    return s_fail (self, DROVER_EPROTO, "%s%s: bad schema", where, key);
}

static bool
s_keys_equal (const msgpack_object_str *x, const msgpack_object_str *y)
{
    return x->size == y->size
           && (x->size == 0 || memcmp (x->ptr, y->ptr, x->size) == 0);
}

//  qsort order of pointers to keys: by size, then octets
static int
s_key_compare (const void *a, const void *b)
{
    const msgpack_object_str *x = *(const msgpack_object_str *const *)a;
    const msgpack_object_str *y = *(const msgpack_object_str *const *)b;
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    return x->size ? memcmp (x->ptr, y->ptr, x->size) : 0;
}

//  The field of schema whose key is key, or -1. Encoders write the keys in
//  schema order, so the search starts after the field found last (*from)
//  and usually ends at its first comparison. Keys are short: compared
//  inline.
static int
s_field_of (const s_schema_t *schema, const msgpack_object_str *key,
            size_t *from)
{
    size_t count = schema->field_count;
    size_t f = *from < count ? *from : 0;
    for (size_t n = 0; n < count; n++, f = f + 1 < count ? f + 1 : 0) {
        const s_field_t *field = &schema->fields[f];
        if (field->key_size != key->size)
            continue;
        size_t i = 0;
        while (i < key->size && field->key[i] == key->ptr[i])
            i++;
        if (i == key->size) {
            *from = f + 1;
            return (int)f;
        }
    }
    return -1;
}

//  The keys of a map up to this many have their field remembered between
//  the check and the decoding; a longer map (many unknown keys) has them
//  matched again.
#define S_KEYS_REMEMBERED 32

//  Checks that every key of the map is a string and that no key occurs
//  twice, known or not (SPEC.md section 4): known keys by the bit of their
//  field, the rarer unknown ones against each other (sorted when there are
//  many, so that a header of many keys costs n log n, not n^2). Puts the
//  field of each of the first S_KEYS_REMEMBERED keys in fields (-1 for an
//  unknown key).
static int
s_check_keys (drover_msg_t *self, const s_schema_t *schema,
              const msgpack_object *map, const char *where, int8_t *fields)
{
    uint32_t count = map->via.map.size;
    uint32_t seen = 0;
    uint32_t unknown = 0;
    size_t from = 0;
    const msgpack_object_str *twice = NULL;
    for (uint32_t i = 0; i < count; i++) {
        const msgpack_object *key = &map->via.map.ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR)
            return s_fail (self, DROVER_EPROTO, "%s%s: keys must be strings",
                           where, schema->name);
        int f = s_field_of (schema, &key->via.str, &from);
        if (i < S_KEYS_REMEMBERED)
            fields[i] = (int8_t)f;
        if (f < 0)
            unknown++;
        else if (seen & (1u << f)) {
            if (!twice)
                twice = &key->via.str;
        }
        else
            seen |= 1u << f;
    }
    if (unknown > 1 && !twice) {
        const msgpack_object_str **keys =
            (const msgpack_object_str **)malloc (unknown * sizeof *keys);
        if (!keys)
            return s_fail (self, DROVER_ENOMEM, "out of memory");
        uint32_t kept = 0;
        from = 0;
        for (uint32_t i = 0; i < count; i++)
            if (s_field_of (schema, &map->via.map.ptr[i].key.via.str, &from)
                < 0)
                keys[kept++] = &map->via.map.ptr[i].key.via.str;
        if (kept <= 16) {
            for (uint32_t i = 1; i < kept && !twice; i++)
                for (uint32_t j = 0; j < i && !twice; j++)
                    if (s_keys_equal (keys[i], keys[j]))
                        twice = keys[i];
        }
        else {
            qsort (keys, kept, sizeof *keys, s_key_compare);
            for (uint32_t i = 1; i < kept && !twice; i++)
                if (s_keys_equal (keys[i - 1], keys[i]))
                    twice = keys[i];
        }
        free (keys);
    }
    if (twice)
        return s_fail (self, DROVER_EPROTO, "%s%.*s: key twice", where,
                       (int)(twice->size < 40 ? twice->size : 40), twice->ptr);
    return 0;
}

static int
s_decode_map (drover_msg_t *self, msgpack_zone *arena, const s_schema_t *schema,
              const msgpack_object *map, void *base, const char *where)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return s_fail (self, DROVER_EPROTO, "%s%s: expected a map", where,
                       schema->name);
    int8_t fields[S_KEYS_REMEMBERED];
    int rc = s_check_keys (self, schema, map, where, fields);
    if (rc)
        return rc;
    uint32_t seen = 0; //  one bit per field of the schema
    size_t from = 0;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        int f =
            i < S_KEYS_REMEMBERED
                ? fields[i]
                : s_field_of (schema, &map->via.map.ptr[i].key.via.str, &from);
        //  A key the schema does not name is ignored (SPEC.md "Versioning")
        if (f < 0)
            continue;
        seen |= 1u << f;
        rc = s_decode_field (self, arena, &schema->fields[f],
                             &map->via.map.ptr[i].val, base, where);
        if (rc)
            return rc;
    }
    for (size_t f = 0; f < schema->field_count; f++)
        if (schema->fields[f].required && !(seen & (1u << f)))
            return s_fail (self, DROVER_EPROTO, "%s%s: required key missing",
                           where, schema->fields[f].key);
    return 0;
}

int
drover_msg_decode (drover_msg_t *self, const drover_frame_t *frames,
                   size_t frame_count)
{
    assert (self);
    assert (frames || frame_count == 0);
    drover_msg_reset (self);
    self->error_[0] = 0;

    if (frame_count < 3)
        return s_fail (self, DROVER_EPROTO,
                       "%zu frames, a message has at least 3", frame_count);
    if (frames[0].size != DROVER_SIGNATURE_SIZE
        || memcmp (frames[0].data, DROVER_SIGNATURE, DROVER_SIGNATURE_SIZE - 1))
        return s_fail (self, DROVER_EPROTO, "not a Drover message");
    uint8_t version = ((const uint8_t *)frames[0].data)[3];
    if (version != DROVER_VERSION_MAJOR)
        return s_fail (self, DROVER_EVERSION,
                       "protocol version %u, this peer speaks %d", version,
                       DROVER_VERSION_MAJOR);
    if (frames[1].size != 1)
        return s_fail (self, DROVER_EPROTO, "command frame has %zu octets",
                       frames[1].size);
    uint8_t command = *(const uint8_t *)frames[1].data;
    const s_schema_t *schema = s_command_schema (command);
    if (!schema)
        return s_fail (self, DROVER_ECOMMAND, "unknown command 0x%02x",
                       command);
    self->command = (drover_command_t)command;

    s_reader_t reader = {(const uint8_t *)frames[2].data, frames[2].size, 0};
    if (reader.size > DROVER_MAX_HEADER)
        return s_fail (self, DROVER_ETOOBIG, "%s header: %zu octets, limit %u",
                       schema->name, reader.size, DROVER_MAX_HEADER);
    int rc = s_prescan (self, &reader);
    if (rc)
        return rc;
    if (reader.offset != reader.size)
        return s_fail (self, DROVER_EPROTO, "%s header: %zu octets of garbage",
                       schema->name, reader.size - reader.offset);

    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    msgpack_unpack_return unpacked_rc = msgpack_unpack_next (
        &unpacked, (const char *)reader.data, reader.size, &offset);
    if (unpacked_rc != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy (&unpacked);
        return s_fail (self,
                       unpacked_rc == MSGPACK_UNPACK_NOMEM_ERROR
                           ? DROVER_ENOMEM
                           : DROVER_EPROTO,
                       "%s header: msgpack cannot parse it", schema->name);
    }
    //  The decoded strings and arrays go into a zone of their own, which
    //  becomes the message's arena; msgpack's objects are freed now.
    msgpack_zone *arena = msgpack_zone_new (MSGPACK_ZONE_CHUNK_SIZE);
    if (!arena) {
        msgpack_unpacked_destroy (&unpacked);
        return s_fail (self, DROVER_ENOMEM, "out of memory");
    }
    rc = s_decode_map (self, arena, schema, &unpacked.data, self, "");
    msgpack_unpacked_destroy (&unpacked);

    size_t payloads = frame_count - 3;
    size_t expected =
        drover_command_has_payloads (command) ? self->task_count : 0;
    if (rc == 0 && payloads != expected)
        rc = s_fail (self, DROVER_EPROTO,
                     "%s has %zu payload frames for %zu tasks", schema->name,
                     payloads, expected);
    for (size_t i = 0; rc == 0 && i < payloads; i++) {
        if (frames[3 + i].size > DROVER_MAX_PAYLOAD)
            rc = s_fail (self, DROVER_ETOOBIG,
                         "tasks[%zu]: payload of %zu octets, limit %u", i,
                         frames[3 + i].size, DROVER_MAX_PAYLOAD);
        else {
            self->tasks[i].payload.data = frames[3 + i].data;
            self->tasks[i].payload.size = frames[3 + i].size;
        }
    }
    if (rc) {
        char error[sizeof self->error_];
        memcpy (error, self->error_, sizeof error);
        msgpack_zone_free (arena);
        drover_msg_reset (self);
        memcpy (self->error_, error, sizeof error);
        self->command = (drover_command_t)command;
        return rc;
    }
    self->arena_ = arena;
    return 0;
}
