/*  test_codec.c - the wire codec (proto/drover_msg.c) against SPEC.md.

    Round trips of every command with realistic and extreme values, and the
    hostile cases: truncation, wrong types, missing and duplicate keys,
    unknown commands and versions, over-limit values, lying lengths, deep
    nesting, trailing garbage. Hostile headers are written with a small
    msgpack writer of our own (s_mp_*), driven by a copy of SPEC.md's key
    tables (s_spec_*): the tests do not trust the codec's own schema.

    Every test runs in a forked child (Criterion), so the tests that lower
    RLIMIT_AS or map 256 MiB affect nobody else. Every test checks for
    leaks when it ends, under ASan and under valgrind (leak_check.h).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_chunk.h"
#include "drover_msg.h"
#include "leak_check.h"
#include "msg_fixtures.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#if defined(__SANITIZE_ADDRESS__)
#define S_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define S_ASAN 1
#endif
#endif

TestSuite (codec, .timeout = 120);

//  Every command, for the tests that run once per command
static const int s_commands[] = {
    DROVER_HELLO,    DROVER_WELCOME,      DROVER_HEARTBEAT, DROVER_BYE,
    DROVER_ERROR,    DROVER_SUBMIT,       DROVER_SUBMITTED, DROVER_CANCEL,
    DROVER_STATUS,   DROVER_STATUS_REPLY, DROVER_STATS,     DROVER_STATS_REPLY,
    DROVER_DEAD,     DROVER_DEAD_REPLY,   DROVER_RETRY,     DROVER_CREDIT,
    DROVER_DISPATCH, DROVER_FAIL,         DROVER_REVOKE,    DROVER_DRAIN,
    DROVER_RESULT,   DROVER_STORED,       DROVER_DONE,      DROVER_WATCH,
};
_Static_assert(sizeof s_commands / sizeof s_commands[0] == FX_COMMAND_COUNT,
               "every command");

//  The command a per-command test is checking, named in its failures
static const char *s_running = "";

//  A test whose body runs once for each command, as *command. (One test
//  rather than one per command: under valgrind each test's child process
//  costs a second to start.)
#define PER_COMMAND_TEST(name)                                                 \
    static void s_##name (const int *command);                                 \
    LEAK_CHECKED_TEST (codec, name)                                            \
    {                                                                          \
        for (size_t i_ = 0; i_ < FX_COMMAND_COUNT; i_++) {                     \
            s_running = drover_command_name (s_commands[i_]);                  \
            s_##name (&s_commands[i_]);                                        \
        }                                                                      \
        s_running = "";                                                        \
    }                                                                          \
    static void s_##name (const int *command)

//  Prefixes a message with the command under test, if any
#define AT_FMT           "%s%s%s"
#define AT_ARGS(context) s_running, *s_running ? " " : "", (context)

//  --------------------------------------------------------------------------
//  A growing buffer and a msgpack writer of our own

typedef struct {
    uint8_t *data;   //  octets written
    size_t size;     //  octets in data
    size_t capacity; //  octets allocated
} s_buf_t;

static void
s_put (s_buf_t *buf, const void *data, size_t size)
{
    if (buf->size + size > buf->capacity) {
        size_t capacity = buf->capacity ? buf->capacity : 256;
        while (capacity < buf->size + size)
            capacity *= 2;
        buf->data = (uint8_t *)realloc (buf->data, capacity);
        cr_assert_not_null (buf->data);
        buf->capacity = capacity;
    }
    if (size)
        memcpy (buf->data + buf->size, data, size);
    buf->size += size;
}

static void
s_put_byte (s_buf_t *buf, uint8_t byte)
{
    s_put (buf, &byte, 1);
}

static void
s_put_be (s_buf_t *buf, uint64_t value, int width)
{
    for (int i = width - 1; i >= 0; i--)
        s_put_byte (buf, (uint8_t)(value >> (8 * i)));
}

static void
s_buf_free (s_buf_t *buf)
{
    free (buf->data);
    memset (buf, 0, sizeof *buf);
}

static void
s_mp_uint (s_buf_t *buf, uint64_t value)
{
    if (value <= 0x7f)
        s_put_byte (buf, (uint8_t)value);
    else if (value <= UINT8_MAX) {
        s_put_byte (buf, 0xcc);
        s_put_be (buf, value, 1);
    }
    else if (value <= UINT16_MAX) {
        s_put_byte (buf, 0xcd);
        s_put_be (buf, value, 2);
    }
    else if (value <= UINT32_MAX) {
        s_put_byte (buf, 0xce);
        s_put_be (buf, value, 4);
    }
    else {
        s_put_byte (buf, 0xcf);
        s_put_be (buf, value, 8);
    }
}

static void
s_mp_int (s_buf_t *buf, int64_t value)
{
    if (value >= 0)
        s_mp_uint (buf, (uint64_t)value);
    else if (value >= -32)
        s_put_byte (buf, (uint8_t)(int8_t)value);
    else if (value >= INT8_MIN) {
        s_put_byte (buf, 0xd0);
        s_put_be (buf, (uint64_t)value, 1);
    }
    else if (value >= INT16_MIN) {
        s_put_byte (buf, 0xd1);
        s_put_be (buf, (uint64_t)value, 2);
    }
    else if (value >= INT32_MIN) {
        s_put_byte (buf, 0xd2);
        s_put_be (buf, (uint64_t)value, 4);
    }
    else {
        s_put_byte (buf, 0xd3);
        s_put_be (buf, (uint64_t)value, 8);
    }
}

static void
s_mp_str (s_buf_t *buf, const char *text, size_t size)
{
    if (size < 32)
        s_put_byte (buf, (uint8_t)(0xa0 | size));
    else if (size <= UINT8_MAX) {
        s_put_byte (buf, 0xd9);
        s_put_be (buf, size, 1);
    }
    else if (size <= UINT16_MAX) {
        s_put_byte (buf, 0xda);
        s_put_be (buf, size, 2);
    }
    else {
        s_put_byte (buf, 0xdb);
        s_put_be (buf, size, 4);
    }
    s_put (buf, text, size);
}

static void
s_mp_cstr (s_buf_t *buf, const char *text)
{
    s_mp_str (buf, text, strlen (text));
}

static void
s_mp_bin (s_buf_t *buf, const void *data, size_t size)
{
    if (size <= UINT8_MAX) {
        s_put_byte (buf, 0xc4);
        s_put_be (buf, size, 1);
    }
    else if (size <= UINT16_MAX) {
        s_put_byte (buf, 0xc5);
        s_put_be (buf, size, 2);
    }
    else {
        s_put_byte (buf, 0xc6);
        s_put_be (buf, size, 4);
    }
    s_put (buf, data, size);
}

static void
s_mp_array (s_buf_t *buf, size_t count)
{
    if (count < 16)
        s_put_byte (buf, (uint8_t)(0x90 | count));
    else if (count <= UINT16_MAX) {
        s_put_byte (buf, 0xdc);
        s_put_be (buf, count, 2);
    }
    else {
        s_put_byte (buf, 0xdd);
        s_put_be (buf, count, 4);
    }
}

static void
s_mp_map (s_buf_t *buf, size_t count)
{
    if (count < 16)
        s_put_byte (buf, (uint8_t)(0x80 | count));
    else if (count <= UINT16_MAX) {
        s_put_byte (buf, 0xde);
        s_put_be (buf, count, 2);
    }
    else {
        s_put_byte (buf, 0xdf);
        s_put_be (buf, count, 4);
    }
}

//  --------------------------------------------------------------------------
//  SPEC.md section 5, as tables: every key of every command

typedef enum {
    K_U32,   //  uint with a maximum of at most UINT32_MAX
    K_U64,   //  uint up to 2^64-1
    K_ID,    //  task id: uint, never 0
    K_I32,   //  int, signed 32-bit
    K_I64,   //  int, signed 64-bit
    K_CODE,  //  DROVER_ELAST..0
    K_BOOL,  //  true / false
    K_NAME,  //  1..255 octets 0x21..0x7e
    K_TEXT,  //  up to max octets, no NUL
    K_IDS,   //  array of ids
    K_NAMES, //  array of names
    K_ITEMS, //  array of maps
} s_kind_t;

typedef struct s_spec_map_t s_spec_map_t;

typedef struct {
    const char *key;           //  the key
    s_kind_t kind;             //  its kind
    uint64_t max;              //  K_U32: largest value; K_TEXT: octets
    bool required;             //  R in SPEC.md
    const s_spec_map_t *items; //  K_ITEMS: the keys of each element
} s_spec_key_t;

struct s_spec_map_t {
    const s_spec_key_t *keys; //  the keys of the map
    size_t count;             //  entries in keys
};

#define R true
#define O false
#define SPEC_MAP(array)                                                        \
    {                                                                          \
        array, sizeof (array) / sizeof ((array)[0])                            \
    }

static const s_spec_key_t s_submit_task_keys[] = {
    {"id", K_U64, 0, O, NULL},
    {"handler", K_NAME, 0, R, NULL},
    {"queue", K_NAME, 0, O, NULL},
    {"key", K_TEXT, 255, O, NULL},
    {"timeout_ms", K_U64, 0, O, NULL},
    {"delay_ms", K_U64, 0, O, NULL},
    {"priority", K_I64, 0, O, NULL},
    {"max_attempts", K_U32, UINT32_MAX, O, NULL},
    {"soft_timeout_ms", K_U64, 0, O, NULL},
    {"retry_delay_ms", K_U64, 0, O, NULL},
    {"retry_max_delay_ms", K_U64, 0, O, NULL},
    {"retry_on", K_U64, 0, O, NULL},
    {"items", K_U32, 1048576, O, NULL},
};
static const s_spec_key_t s_dispatch_task_keys[] = {
    {"id", K_ID, 0, R, NULL},
    {"attempt", K_U32, UINT32_MAX, R, NULL},
    {"handler", K_NAME, 0, R, NULL},
    {"queue", K_NAME, 0, O, NULL},
    {"key", K_TEXT, 255, O, NULL},
    {"timeout_ms", K_U64, 0, O, NULL},
    {"soft_timeout_ms", K_U64, 0, O, NULL},
    {"items", K_U32, 1048576, O, NULL},
};
static const s_spec_key_t s_outcome_keys[] = {
    {"id", K_ID, 0, R, NULL},          {"attempt", K_U32, UINT32_MAX, R, NULL},
    {"code", K_CODE, 0, R, NULL},      {"reason", K_TEXT, 4096, O, NULL},
    {"node", K_NAME, 0, O, NULL},      {"elapsed_us", K_U64, 0, O, NULL},
    {"signal", K_I32, 0, O, NULL},     {"exit_status", K_I32, 0, O, NULL},
    {"max_rss_kb", K_U64, 0, O, NULL}, {"cpu_us", K_U64, 0, O, NULL},
};
//  DEAD_REPLY items: one recorded attempt of a dead letter (SPEC.md 5.20)
static const s_spec_key_t s_dead_letter_keys[] = {
    {"id", K_ID, 0, R, NULL},
    {"attempt", K_U32, UINT32_MAX, R, NULL},
    {"code", K_CODE, 0, R, NULL},
    {"handler", K_NAME, 0, O, NULL},
    {"queue", K_NAME, 0, O, NULL},
    {"max_attempts", K_U32, UINT32_MAX, O, NULL},
    {"reason", K_TEXT, 4096, O, NULL},
    {"node", K_NAME, 0, O, NULL},
    {"elapsed_us", K_U64, 0, O, NULL},
    {"cpu_us", K_U64, 0, O, NULL},
    {"signal", K_I32, 0, O, NULL},
    {"exit_status", K_I32, 0, O, NULL},
    {"max_rss_kb", K_U64, 0, O, NULL},
};
static const s_spec_key_t s_attempt_keys[] = {
    {"id", K_ID, 0, R, NULL},
    {"attempt", K_U32, UINT32_MAX, R, NULL},
    {"code", K_CODE, 0, O, NULL},
};
static const s_spec_key_t s_done_keys[] = {
    {"id", K_ID, 0, R, NULL},
    {"attempt", K_U32, UINT32_MAX, R, NULL},
    {"code", K_CODE, 0, R, NULL},
};
static const s_spec_key_t s_status_keys[] = {
    {"id", K_ID, 0, R, NULL},
    {"state", K_U32, 7, R, NULL},
    {"attempt", K_U32, UINT32_MAX, O, NULL},
    {"max_attempts", K_U32, UINT32_MAX, O, NULL},
    {"handler", K_NAME, 0, O, NULL},
    {"queue", K_NAME, 0, O, NULL},
    {"node", K_NAME, 0, O, NULL},
    {"code", K_CODE, 0, O, NULL},
    {"reason", K_TEXT, 4096, O, NULL},
};
static const s_spec_key_t s_queue_info_keys[] = {
    {"name", K_NAME, 0, R, NULL},
    {"queued", K_U64, 0, R, NULL},
    {"leased", K_U64, 0, R, NULL},
};
static const s_spec_key_t s_node_info_keys[] = {
    {"name", K_NAME, 0, R, NULL},  {"children", K_U32, UINT32_MAX, R, NULL},
    {"credit", K_U64, 0, R, NULL}, {"leased", K_U64, 0, R, NULL},
    {"done", K_U64, 0, O, NULL},
};
static const s_spec_key_t s_counter_keys[] = {
    {"name", K_NAME, 0, R, NULL},
    {"value", K_U64, 0, R, NULL},
};

static const s_spec_map_t s_submit_task = SPEC_MAP (s_submit_task_keys);
static const s_spec_map_t s_dispatch_task = SPEC_MAP (s_dispatch_task_keys);
static const s_spec_map_t s_outcome = SPEC_MAP (s_outcome_keys);
static const s_spec_map_t s_dead_letter = SPEC_MAP (s_dead_letter_keys);
static const s_spec_map_t s_attempt = SPEC_MAP (s_attempt_keys);
static const s_spec_map_t s_done = SPEC_MAP (s_done_keys);
static const s_spec_map_t s_status = SPEC_MAP (s_status_keys);
static const s_spec_map_t s_queue_info = SPEC_MAP (s_queue_info_keys);
static const s_spec_map_t s_node_info = SPEC_MAP (s_node_info_keys);
static const s_spec_map_t s_counter = SPEC_MAP (s_counter_keys);

static const s_spec_key_t s_hello_keys[] = {
    {"role", K_NAME, 0, R, NULL},         {"name", K_NAME, 0, R, NULL},
    {"endpoint", K_TEXT, 255, O, NULL},   {"children", K_U32, 65535, O, NULL},
    {"lookahead", K_U32, 65535, O, NULL}, {"handlers", K_NAMES, 0, O, NULL},
    {"queues", K_NAMES, 0, O, NULL},      {"chunks", K_BOOL, 0, O, NULL},
};
static const s_spec_key_t s_welcome_keys[] = {
    {"instance", K_NAME, 0, R, NULL},
    {"endpoint", K_TEXT, 255, O, NULL},
    {"heartbeat_ms", K_U32, UINT32_MAX, R, NULL},
    {"liveness", K_U32, UINT32_MAX, R, NULL},
    {"max_payload", K_U64, 0, R, NULL},
    {"max_batch", K_U32, 4096, R, NULL},
};
static const s_spec_key_t s_bye_keys[] = {
    {"code", K_CODE, 0, O, NULL},
    {"reason", K_TEXT, 4096, O, NULL},
};
static const s_spec_key_t s_error_keys[] = {
    {"ref", K_U64, 0, O, NULL},
    {"code", K_CODE, 0, R, NULL},
    {"reason", K_TEXT, 4096, R, NULL},
};
static const s_spec_key_t s_submit_keys[] = {
    {"ref", K_U64, 0, R, NULL},
    {"tasks", K_ITEMS, 0, R, &s_submit_task},
    {"token", K_TEXT, 64, O, NULL},
};
static const s_spec_key_t s_submitted_keys[] = {
    {"ref", K_U64, 0, R, NULL},
    {"ids", K_IDS, 0, R, NULL},
    {"token", K_TEXT, 64, O, NULL},
};
static const s_spec_key_t s_ids_keys[] = {
    {"ref", K_U64, 0, R, NULL},
    {"ids", K_IDS, 0, R, NULL},
};
static const s_spec_key_t s_status_reply_keys[] = {
    {"ref", K_U64, 0, R, NULL},
    {"tasks", K_ITEMS, 0, R, &s_status},
};
static const s_spec_key_t s_stats_keys[] = {
    {"ref", K_U64, 0, R, NULL},
};
static const s_spec_key_t s_stats_reply_keys[] = {
    {"ref", K_U64, 0, R, NULL},
    {"queues", K_ITEMS, 0, R, &s_queue_info},
    {"nodes", K_ITEMS, 0, R, &s_node_info},
    {"counters", K_ITEMS, 0, R, &s_counter},
};
static const s_spec_key_t s_dead_keys[] = {
    {"ref", K_U64, 0, R, NULL},
    {"ids", K_IDS, 0, O, NULL},
};
static const s_spec_key_t s_dead_reply_keys[] = {
    {"ref", K_U64, 0, R, NULL},
    {"tasks", K_ITEMS, 0, R, &s_dead_letter},
};
static const s_spec_key_t s_retry_keys[] = {
    {"ref", K_U64, 0, R, NULL},
    {"ids", K_IDS, 0, O, NULL},
    {"all", K_BOOL, 0, O, NULL},
};
static const s_spec_key_t s_credit_keys[] = {
    {"credit", K_U32, 65535, R, NULL},
};
static const s_spec_key_t s_dispatch_keys[] = {
    {"tasks", K_ITEMS, 0, R, &s_dispatch_task},
};
static const s_spec_key_t s_outcomes_keys[] = {
    {"tasks", K_ITEMS, 0, R, &s_outcome},
};
static const s_spec_key_t s_attempts_keys[] = {
    {"tasks", K_ITEMS, 0, R, &s_attempt},
};
static const s_spec_key_t s_drain_keys[] = {
    {"reason", K_TEXT, 4096, O, NULL},
};
static const s_spec_key_t s_dones_keys[] = {
    {"tasks", K_ITEMS, 0, R, &s_done},
};
static const s_spec_key_t s_watch_keys[] = {
    {"ids", K_IDS, 0, R, NULL},
    {"release", K_BOOL, 0, O, NULL},
};

//  The keys of a command's header map
static s_spec_map_t
s_spec (int command)
{
    static const s_spec_map_t none = {NULL, 0};
    static const s_spec_map_t hello = SPEC_MAP (s_hello_keys);
    static const s_spec_map_t welcome = SPEC_MAP (s_welcome_keys);
    static const s_spec_map_t bye = SPEC_MAP (s_bye_keys);
    static const s_spec_map_t error = SPEC_MAP (s_error_keys);
    static const s_spec_map_t submit = SPEC_MAP (s_submit_keys);
    static const s_spec_map_t submitted = SPEC_MAP (s_submitted_keys);
    static const s_spec_map_t ids = SPEC_MAP (s_ids_keys);
    static const s_spec_map_t status_reply = SPEC_MAP (s_status_reply_keys);
    static const s_spec_map_t stats = SPEC_MAP (s_stats_keys);
    static const s_spec_map_t stats_reply = SPEC_MAP (s_stats_reply_keys);
    static const s_spec_map_t dead = SPEC_MAP (s_dead_keys);
    static const s_spec_map_t dead_reply = SPEC_MAP (s_dead_reply_keys);
    static const s_spec_map_t retry = SPEC_MAP (s_retry_keys);
    static const s_spec_map_t credit = SPEC_MAP (s_credit_keys);
    static const s_spec_map_t dispatch = SPEC_MAP (s_dispatch_keys);
    static const s_spec_map_t outcomes = SPEC_MAP (s_outcomes_keys);
    static const s_spec_map_t attempts = SPEC_MAP (s_attempts_keys);
    static const s_spec_map_t drain = SPEC_MAP (s_drain_keys);
    static const s_spec_map_t dones = SPEC_MAP (s_dones_keys);
    static const s_spec_map_t watch = SPEC_MAP (s_watch_keys);
    switch (command) {
        case DROVER_HELLO: return hello;
        case DROVER_WELCOME: return welcome;
        case DROVER_HEARTBEAT: return none;
        case DROVER_BYE: return bye;
        case DROVER_ERROR: return error;
        case DROVER_SUBMIT: return submit;
        case DROVER_SUBMITTED: return submitted;
        case DROVER_CANCEL:
        case DROVER_STATUS: return ids;
        case DROVER_STATUS_REPLY: return status_reply;
        case DROVER_STATS: return stats;
        case DROVER_STATS_REPLY: return stats_reply;
        case DROVER_DEAD: return dead;
        case DROVER_DEAD_REPLY: return dead_reply;
        case DROVER_RETRY: return retry;
        case DROVER_CREDIT: return credit;
        case DROVER_DISPATCH: return dispatch;
        case DROVER_FAIL:
        case DROVER_RESULT: return outcomes;
        case DROVER_REVOKE:
        case DROVER_STORED: return attempts;
        case DROVER_DRAIN: return drain;
        case DROVER_DONE: return dones;
        case DROVER_WATCH: return watch;
    }
    cr_assert_fail ("command 0x%02x has no spec", command);
    return none;
}

//  A key of a command, at any depth, with the path the decoder names it by
//  in its errors ("tasks[1].handler": the mutated item is the last one).
typedef struct {
    const s_spec_key_t *key; //  the key
    char path[64];           //  where it is
} s_target_t;

#define MAX_TARGETS 32

//  Lists every key of the command, top-level and in items; items of
//  `length` elements.
static size_t
s_targets (int command, size_t length, s_target_t *targets)
{
    s_spec_map_t spec = s_spec (command);
    size_t count = 0;
    for (size_t i = 0; i < spec.count; i++) {
        const s_spec_key_t *key = &spec.keys[i];
        cr_assert (count < MAX_TARGETS);
        targets[count].key = key;
        snprintf (targets[count].path, sizeof targets[count].path, "%s",
                  key->key);
        count++;
        if (key->kind != K_ITEMS)
            continue;
        for (size_t j = 0; j < key->items->count; j++) {
            cr_assert (count < MAX_TARGETS);
            targets[count].key = &key->items->keys[j];
            snprintf (targets[count].path, sizeof targets[count].path,
                      "%s[%zu].%s", key->key, length - 1,
                      key->items->keys[j].key);
            count++;
        }
    }
    return count;
}

//  --------------------------------------------------------------------------
//  Header generator: a valid header for a command from the spec tables, or
//  one with a single mutation on one key (in the last item, for item keys).

typedef enum {
    MUT_NONE,      //  a valid header
    MUT_OMIT,      //  leave the target key out
    MUT_REPLACE,   //  write value instead of a valid value
    MUT_DUPLICATE, //  write the target key twice
} s_mutation_t;

typedef struct {
    const s_spec_key_t *target; //  the key to mutate, or NULL
    s_mutation_t mutation;      //  what to do to it
    const uint8_t *value;       //  MUT_REPLACE: raw msgpack value
    size_t value_size;          //  its size
    bool optional;              //  write optional keys too
    bool unknown;               //  add unknown keys to every map
    bool unknown_twice;         //  add one unknown key twice to every map
    bool int_key;               //  add an integer key to the top map
    size_t length;              //  elements of every array; 0: 2
} s_gen_t;

static size_t
s_gen_length (const s_gen_t *gen)
{
    return gen->length ? gen->length : 2;
}

//  An unknown key holding nested structures of every msgpack type
static void
s_gen_unknown (s_buf_t *buf)
{
    s_mp_cstr (buf, "x-future-field");
    s_mp_map (buf, 3);
    s_mp_cstr (buf, "list");
    s_mp_array (buf, 9);
    s_mp_uint (buf, 1);
    s_mp_int (buf, -100000);
    s_put_byte (buf, 0xc0);                                 //  nil
    s_put_byte (buf, 0xc3);                                 //  true
    s_put (buf, "\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18", 9); //  pi
    s_mp_bin (buf, "\x00\x01", 2);
    s_put (buf, "\xd6\x05\x01\x02\x03\x04", 6); //  fixext 4
    s_mp_array (buf, 0);
    s_mp_map (buf, 1);
    s_mp_cstr (buf, "id");
    s_mp_cstr (buf, "not an id");
    s_mp_cstr (buf, "tasks"); //  a known key's name, one level down
    s_mp_array (buf, 1);
    s_mp_map (buf, 1);
    s_mp_cstr (buf, "handler");
    s_mp_uint (buf, 7);
    s_mp_cstr (buf, "empty");
    s_mp_map (buf, 0);
}

static void s_gen_map (s_buf_t *buf, const s_spec_map_t *spec,
                       const s_gen_t *gen, bool mutable);

static void
s_gen_value (s_buf_t *buf, const s_spec_key_t *key, const s_gen_t *gen,
             bool mutable)
{
    size_t length = s_gen_length (gen);
    char name[32];
    switch (key->kind) {
        case K_U32: s_mp_uint (buf, 3); break;
        case K_U64: s_mp_uint (buf, 123456789012ull); break;
        case K_ID: s_mp_uint (buf, 42); break;
        case K_I32: s_mp_int (buf, -5); break;
        case K_I64: s_mp_int (buf, -9000000000ll); break;
        case K_CODE: s_mp_int (buf, DROVER_EFAILED); break;
        case K_BOOL: s_put_byte (buf, 0xc3); break;
        case K_NAME: s_mp_cstr (buf, "alpha.beta"); break;
        case K_TEXT: s_mp_cstr (buf, "free text, with spaces"); break;
        case K_IDS:
            s_mp_array (buf, length);
            for (size_t i = 0; i < length; i++)
                s_mp_uint (buf, i + 1);
            break;
        case K_NAMES:
            s_mp_array (buf, length);
            for (size_t i = 0; i < length; i++) {
                snprintf (name, sizeof name, "name-%zu", i);
                s_mp_cstr (buf, name);
            }
            break;
        case K_ITEMS:
            s_mp_array (buf, length);
            for (size_t i = 0; i < length; i++)
                s_gen_map (buf, key->items, gen, mutable && i + 1 == length);
            break;
    }
}

static void
s_gen_map (s_buf_t *buf, const s_spec_map_t *spec, const s_gen_t *gen,
           bool mutable)
{
    size_t entries = 0;
    for (size_t i = 0; i < spec->count; i++) {
        const s_spec_key_t *key = &spec->keys[i];
        bool target = mutable && key == gen->target;
        if (target && gen->mutation == MUT_OMIT)
            continue;
        if (key->required || gen->optional || target)
            entries += target && gen->mutation == MUT_DUPLICATE ? 2 : 1;
    }
    entries += gen->unknown ? 2 : 0;
    entries += gen->unknown_twice ? 2 : 0;
    entries += gen->int_key && mutable ? 1 : 0;
    s_mp_map (buf, entries);
    if (gen->unknown)
        s_gen_unknown (buf);
    if (gen->int_key && mutable) {
        s_mp_uint (buf, 1);
        s_mp_cstr (buf, "value of an integer key");
    }
    for (size_t i = 0; i < spec->count; i++) {
        const s_spec_key_t *key = &spec->keys[i];
        bool target = mutable && key == gen->target;
        if (target && gen->mutation == MUT_OMIT)
            continue;
        if (!key->required && !gen->optional && !target)
            continue;
        int times = target && gen->mutation == MUT_DUPLICATE ? 2 : 1;
        for (int t = 0; t < times; t++) {
            s_mp_cstr (buf, key->key);
            if (target && gen->mutation == MUT_REPLACE)
                s_put (buf, gen->value, gen->value_size);
            else
                s_gen_value (buf, key, gen, mutable);
        }
    }
    if (gen->unknown) {
        s_mp_cstr (buf, "zz");
        s_mp_array (buf, 0);
    }
    for (int t = 0; gen->unknown_twice && t < 2; t++) {
        s_mp_cstr (buf, "again");
        s_mp_uint (buf, (uint64_t)t);
    }
}

//  Writes a whole header for the command
static void
s_gen_header (s_buf_t *buf, int command, const s_gen_t *gen)
{
    s_spec_map_t spec = s_spec (command);
    s_gen_map (buf, &spec, gen, true);
}

//  Payload frames that a generated header needs
static size_t
s_gen_payloads (int command, const s_gen_t *gen)
{
    return drover_command_has_payloads (command) ? s_gen_length (gen) : 0;
}

//  Decodes header as the header frame of a message of command with that
//  many (empty) payload frames. The header is copied to a buffer of its
//  exact size, and freed before returning: reads past its end, and strings
//  that point into it, are caught by ASan and valgrind.
static int
s_decode_header (drover_msg_t *msg, int command, const void *header,
                 size_t size, size_t payloads)
{
    uint8_t *copy = (uint8_t *)malloc (size ? size : 1);
    cr_assert_not_null (copy);
    if (size)
        memcpy (copy, header, size);
    uint8_t octet = (uint8_t)command;
    drover_frame_t *frames =
        (drover_frame_t *)calloc (3 + payloads, sizeof *frames);
    cr_assert_not_null (frames);
    frames[0] = (drover_frame_t){DROVER_SIGNATURE, DROVER_SIGNATURE_SIZE};
    frames[1] = (drover_frame_t){&octet, 1};
    frames[2] = (drover_frame_t){copy, size};
    int rc = drover_msg_decode (msg, frames, 3 + payloads);
    free (frames);
    free (copy);
    return rc;
}

//  Generates a header and decodes it
static int
s_gen_decode (drover_msg_t *msg, int command, const s_gen_t *gen)
{
    s_buf_t buf = {0};
    s_gen_header (&buf, command, gen);
    int rc = s_decode_header (msg, command, buf.data, buf.size,
                              s_gen_payloads (command, gen));
    s_buf_free (&buf);
    return rc;
}

//  Asserts that decoding failed with code, that the error names what,
//  and that the message owns nothing.
#define ASSERT_DECODE_FAILS(msg, rc, code, what, context)                      \
    do {                                                                       \
        cr_assert_eq ((rc), (code), AT_FMT ": got %d (%s) '%s', want %s",      \
                      AT_ARGS (context), (rc), drover_strcode (rc),            \
                      drover_msg_error (msg), drover_strcode (code));          \
        cr_assert (strstr (drover_msg_error (msg), (what)),                    \
                   AT_FMT ": error '%s' does not name '%s'",                   \
                   AT_ARGS (context), drover_msg_error (msg), (what));         \
        cr_assert (fx_msg_owns_nothing (msg),                                  \
                   AT_FMT ": failed decode left memory in the message",        \
                   AT_ARGS (context));                                         \
    } while (0)

#define ASSERT_DECODES(msg, rc, context)                                       \
    cr_assert_eq ((rc), 0, AT_FMT ": got %d (%s) '%s'", AT_ARGS (context),     \
                  (rc), drover_strcode (rc), drover_msg_error (msg))

//  Encodes msg, decodes the frames into out, and asserts they are equal.
static void
s_round_trip (drover_msg_t *msg, const char *context)
{
    fx_wire_t wire;
    int rc = fx_encode (msg, &wire);
    cr_assert_eq (rc, 0, AT_FMT ": encode gave %s: %s", AT_ARGS (context),
                  drover_strcode (rc), drover_msg_error (msg));
    cr_assert_str_empty (drover_msg_error (msg));
    drover_msg_t out;
    drover_msg_init (&out, DROVER_HELLO);
    rc = drover_msg_decode (&out, wire.frames, wire.frame_count);
    ASSERT_DECODES (&out, rc, context);
    cr_assert_str_empty (drover_msg_error (&out));
    char why[256];
    cr_assert (fx_msg_equal (msg, &out, why, sizeof why), AT_FMT ": %s",
               AT_ARGS (context), why);
    //  Payloads are not copied: they point into the frames
    for (size_t i = 0; i < out.task_count; i++)
        if (drover_command_has_payloads (out.command))
            cr_assert (out.tasks[i].payload.data == wire.frames[3 + i].data,
                       AT_FMT ": tasks[%zu].payload was copied",
                       AT_ARGS (context), i);
    drover_msg_reset (&out);
    fx_wire_free (&wire);
}

//  --------------------------------------------------------------------------
//  Names and descriptions

LEAK_CHECKED_TEST (codec, strerror_and_strcode_name_every_code)
{
    static const char *names[] = {
        "DROVER_OK",        "DROVER_EINVAL",     "DROVER_ENOMEM",
        "DROVER_EPROTO",    "DROVER_EVERSION",   "DROVER_ECOMMAND",
        "DROVER_ETOOBIG",   "DROVER_ETIMEDOUT",  "DROVER_EFULL",
        "DROVER_ENOTFOUND", "DROVER_ESTALE",     "DROVER_EHANDLER",
        "DROVER_EFAILED",   "DROVER_ECRASHED",   "DROVER_ECANCELLED",
        "DROVER_EDENIED",   "DROVER_ECONNECT",   "DROVER_EIO",
        "DROVER_ESHUTDOWN", "DROVER_ETIMELIMIT", "DROVER_ELOST",
        "DROVER_ESYSTEM",   "DROVER_EMEMLIMIT",  "DROVER_ESTORAGE",
    };
    _Static_assert(sizeof names / sizeof names[0] == 1 - DROVER_ELAST,
                   "a name per code");
    for (int code = 0; code >= DROVER_ELAST; code--) {
        cr_assert_str_eq (drover_strcode (code), names[-code]);
        const char *text = drover_strerror (code);
        cr_assert_not_null (text);
        cr_assert_str_neq (text, "", "code %d", code);
        cr_assert_str_neq (text, "unknown error", "code %d", code);
        //  Each description is its own
        for (int other = 0; other > code; other--)
            cr_assert_str_neq (text, drover_strerror (other), "codes %d %d",
                               code, other);
    }
    cr_assert_str_eq (drover_strerror (DROVER_EPROTO), "malformed message");
}

LEAK_CHECKED_TEST (codec, strerror_and_strcode_of_unknown_codes)
{
    static const int unknown[] = {1,    2,         100,      DROVER_ELAST - 1,
                                  -100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        cr_assert_str_eq (drover_strerror (unknown[i]), "unknown error");
        cr_assert_str_eq (drover_strcode (unknown[i]), "DROVER_E?");
    }
}

LEAK_CHECKED_TEST (codec, command_names)
{
    static const struct {
        int command;
        const char *name;
    } expected[] = {
        {0x01, "HELLO"},        {0x02, "WELCOME"},    {0x03, "HEARTBEAT"},
        {0x04, "BYE"},          {0x05, "ERROR"},      {0x10, "SUBMIT"},
        {0x11, "SUBMITTED"},    {0x12, "CANCEL"},     {0x13, "STATUS"},
        {0x14, "STATUS_REPLY"}, {0x15, "STATS"},      {0x16, "STATS_REPLY"},
        {0x17, "DEAD"},         {0x18, "DEAD_REPLY"}, {0x19, "RETRY"},
        {0x20, "CREDIT"},       {0x21, "DISPATCH"},   {0x22, "FAIL"},
        {0x23, "REVOKE"},       {0x24, "DRAIN"},      {0x30, "RESULT"},
        {0x31, "STORED"},       {0x32, "DONE"},       {0x33, "WATCH"},
    };
    _Static_assert(sizeof expected / sizeof expected[0] == FX_COMMAND_COUNT,
                   "every command");
    size_t named = 0;
    for (int command = -1; command <= 0x100; command++) {
        const char *name = drover_command_name (command);
        const char *want = NULL;
        for (size_t i = 0; i < FX_COMMAND_COUNT; i++)
            if (expected[i].command == command)
                want = expected[i].name;
        if (want) {
            cr_assert_not_null (name, "0x%02x", command);
            cr_assert_str_eq (name, want);
            named++;
        }
        else
            cr_assert_null (name, "0x%02x is no command but is named %s",
                            command, name);
    }
    cr_assert_eq (named, FX_COMMAND_COUNT);
    cr_assert_null (drover_command_name (INT32_MIN));
    cr_assert_null (drover_command_name (0x101));
}

LEAK_CHECKED_TEST (codec, state_names)
{
    static const char *names[] = {"unknown",   "queued", "leased", "retrying",
                                  "reporting", "done",   "failed", "cancelled"};
    _Static_assert(sizeof names / sizeof names[0] == DROVER_STATE_LAST + 1,
                   "every state");
    for (int state = 0; state <= DROVER_STATE_LAST; state++)
        cr_assert_str_eq (drover_state_name (state), names[state]);
    cr_assert_str_eq (drover_state_name (-1), "unknown");
    cr_assert_str_eq (drover_state_name (DROVER_STATE_LAST + 1), "unknown");
    cr_assert_str_eq (drover_state_name (INT32_MAX), "unknown");
}

LEAK_CHECKED_TEST (codec, only_submit_dispatch_result_carry_payloads)
{
    for (int command = 0; command < 0x100; command++)
        cr_assert_eq (drover_command_has_payloads (command),
                      command == DROVER_SUBMIT || command == DROVER_DISPATCH
                          || command == DROVER_RESULT,
                      "0x%02x", command);
}

//  --------------------------------------------------------------------------
//  Round trips

PER_COMMAND_TEST (round_trip_sample)
{
    drover_msg_t msg;
    fx_sample (&msg, *command);
    s_round_trip (&msg, drover_command_name (*command));
}

//  The encoding of a message is canonical: decoding it and encoding the
//  result gives the same octets.
PER_COMMAND_TEST (reencoding_is_identical)
{
    drover_msg_t msg;
    fx_sample (&msg, *command);
    fx_wire_t wire;
    cr_assert_eq (fx_encode (&msg, &wire), 0);
    drover_msg_t out;
    drover_msg_init (&out, DROVER_HELLO);
    ASSERT_DECODES (&out,
                    drover_msg_decode (&out, wire.frames, wire.frame_count),
                    "decode");
    fx_wire_t again;
    cr_assert_eq (fx_encode (&out, &again), 0, "%s", drover_msg_error (&out));
    cr_assert_eq (again.header_size, wire.header_size);
    cr_assert_arr_eq (again.header, wire.header, wire.header_size);
    fx_wire_free (&again);
    drover_msg_reset (&out);
    fx_wire_free (&wire);
}

//  Headers written from the spec tables decode, with only the required keys
//  and with every key; decoding, encoding and decoding again is lossless.
PER_COMMAND_TEST (spec_headers_decode_and_round_trip)
{
    for (int optional = 0; optional < 2; optional++) {
        s_gen_t gen = {.optional = optional};
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        ASSERT_DECODES (&msg, s_gen_decode (&msg, *command, &gen),
                        optional ? "every key" : "required keys");
        cr_assert_str_empty (drover_msg_error (&msg));
        cr_assert_eq ((int)msg.command, *command);
        s_round_trip (&msg, optional ? "every key" : "required keys");
        drover_msg_reset (&msg);
    }
}

LEAK_CHECKED_TEST (codec, golden_encodings)
{
    //  SPEC.md section 3: signature, command, header map
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_CREDIT);
    msg.credit = 10;
    fx_wire_t wire;
    cr_assert_eq (fx_encode (&msg, &wire), 0);
    static const uint8_t credit[] = {0x81, 0xa6, 'c', 'r', 'e',
                                     'd',  'i',  't', 0x0a};
    cr_assert_eq (wire.header_size, sizeof credit);
    cr_assert_arr_eq (wire.header, credit, sizeof credit);
    cr_assert_eq (wire.frame_count, 3);
    cr_assert_arr_eq (wire.frames[0].data, "DRV\x01", 4);
    cr_assert_eq (*(const uint8_t *)wire.frames[1].data, 0x20);
    fx_wire_free (&wire);

    drover_msg_init (&msg, DROVER_HEARTBEAT);
    cr_assert_eq (fx_encode (&msg, &wire), 0);
    cr_assert_eq (wire.header_size, 1);
    cr_assert_eq (wire.header[0], 0x80, "an empty map");
    fx_wire_free (&wire);
}

LEAK_CHECKED_TEST (codec, every_code_round_trips)
{
    static const int commands[] = {
        DROVER_ERROR,  DROVER_BYE,          DROVER_FAIL,
        DROVER_RESULT, DROVER_REVOKE,       DROVER_STORED,
        DROVER_DONE,   DROVER_STATUS_REPLY, DROVER_DEAD_REPLY,
    };
    for (int code = DROVER_ELAST; code <= 0; code++)
        for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++) {
            drover_msg_t msg;
            fx_sample (&msg, commands[c]);
            msg.code = commands[c] == DROVER_ERROR || commands[c] == DROVER_BYE
                           ? code
                           : 0;
            for (size_t i = 0; i < msg.task_count; i++)
                msg.tasks[i].code = code;
            char context[64];
            snprintf (context, sizeof context, "%s code %d",
                      drover_command_name (commands[c]), code);
            s_round_trip (&msg, context);
        }
}

LEAK_CHECKED_TEST (codec, extreme_integers_round_trip)
{
    drover_msg_t msg;
    fx_sample (&msg, DROVER_WELCOME);
    msg.heartbeat_ms = UINT32_MAX;
    msg.liveness = UINT32_MAX;
    msg.max_payload = UINT64_MAX;
    msg.max_batch = DROVER_MAX_BATCH;
    s_round_trip (&msg, "WELCOME max");

    fx_sample (&msg, DROVER_HELLO);
    msg.children = DROVER_MAX_CREDIT;
    msg.lookahead = DROVER_MAX_CREDIT;
    s_round_trip (&msg, "HELLO max");

    fx_sample (&msg, DROVER_CREDIT);
    msg.credit = DROVER_MAX_CREDIT;
    s_round_trip (&msg, "CREDIT max");
    msg.credit = 0;
    s_round_trip (&msg, "CREDIT 0");

    fx_sample (&msg, DROVER_SUBMIT);
    msg.ref = UINT64_MAX;
    msg.tasks[0].timeout_ms = UINT64_MAX;
    msg.tasks[0].delay_ms = UINT64_MAX;
    msg.tasks[0].priority = INT64_MIN;
    msg.tasks[0].max_attempts = UINT32_MAX;
    msg.tasks[0].soft_timeout_ms = UINT64_MAX;
    msg.tasks[0].retry_delay_ms = UINT64_MAX;
    msg.tasks[0].retry_max_delay_ms = UINT64_MAX;
    msg.tasks[0].retry_on = UINT64_MAX;
    msg.tasks[1].priority = INT64_MAX;
    msg.tasks[1].retry_on = 1; //  bit 0: code 0, which is no failure
    msg.tasks[1].retry_delay_ms = 1;
    msg.tasks[1].retry_max_delay_ms = 1;
    msg.tasks[1].soft_timeout_ms = 1;
    msg.tasks[2].priority = -1;
    msg.tasks[2].retry_on = 1ull << 63; //  past DROVER_ELAST: still a uint
    msg.tasks[2].retry_delay_ms = (uint64_t)UINT32_MAX + 1;
    msg.tasks[2].retry_max_delay_ms = UINT32_MAX;
    s_round_trip (&msg, "SUBMIT max");
    msg.ref = 0;
    for (size_t i = 0; i < msg.task_count; i++) {
        const char *handler = msg.tasks[i].handler;
        drover_bytes_t payload = msg.tasks[i].payload;
        memset (&msg.tasks[i], 0, sizeof msg.tasks[i]);
        msg.tasks[i].handler = handler;
        msg.tasks[i].payload = payload;
    }
    s_round_trip (&msg, "SUBMIT zeroes");

    fx_sample (&msg, DROVER_SUBMITTED);
    msg.ids[0] = 1;
    msg.ids[1] = UINT64_MAX;
    msg.ids[2] = (uint64_t)UINT32_MAX + 1;
    s_round_trip (&msg, "SUBMITTED ids");

    fx_sample (&msg, DROVER_DISPATCH);
    msg.tasks[0].id = UINT64_MAX;
    msg.tasks[0].attempt = UINT32_MAX;
    msg.tasks[0].timeout_ms = UINT64_MAX;
    msg.tasks[0].soft_timeout_ms = UINT64_MAX;
    msg.tasks[1].id = 1;
    msg.tasks[1].attempt = 0;
    msg.tasks[1].soft_timeout_ms = 1;
    s_round_trip (&msg, "DISPATCH max");

    static const int outcomes[] = {DROVER_FAIL, DROVER_RESULT};
    for (size_t c = 0; c < 2; c++) {
        fx_sample (&msg, outcomes[c]);
        msg.tasks[0].elapsed_us = UINT64_MAX;
        msg.tasks[0].max_rss_kb = UINT64_MAX;
        msg.tasks[0].cpu_us = UINT64_MAX;
        msg.tasks[1].cpu_us = (uint64_t)UINT32_MAX + 1;
        msg.tasks[0].signal = INT32_MIN;
        msg.tasks[0].exit_status = INT32_MAX;
        msg.tasks[1].signal = INT32_MAX;
        msg.tasks[1].exit_status = INT32_MIN;
        s_round_trip (&msg, drover_command_name (outcomes[c]));
    }

    fx_sample (&msg, DROVER_STATUS_REPLY);
    msg.ref = UINT64_MAX;
    msg.tasks[0].state = DROVER_STATE_LAST;
    msg.tasks[0].attempt = UINT32_MAX;
    msg.tasks[0].max_attempts = UINT32_MAX;
    s_round_trip (&msg, "STATUS_REPLY max");

    fx_sample (&msg, DROVER_DEAD_REPLY);
    msg.ref = UINT64_MAX;
    msg.tasks[0].id = UINT64_MAX;
    msg.tasks[0].attempt = UINT32_MAX;
    msg.tasks[0].max_attempts = UINT32_MAX;
    msg.tasks[0].elapsed_us = UINT64_MAX;
    msg.tasks[0].cpu_us = UINT64_MAX;
    msg.tasks[0].max_rss_kb = UINT64_MAX;
    msg.tasks[0].signal = INT32_MIN;
    msg.tasks[0].exit_status = INT32_MAX;
    msg.tasks[1].signal = INT32_MAX;
    msg.tasks[1].exit_status = INT32_MIN;
    msg.tasks[2].attempt = 0;
    s_round_trip (&msg, "DEAD_REPLY max");

    static const int id_requests[] = {DROVER_DEAD, DROVER_RETRY};
    for (size_t c = 0; c < 2; c++) {
        fx_sample (&msg, id_requests[c]);
        msg.ref = UINT64_MAX;
        msg.ids[0] = UINT64_MAX;
        msg.ids[1] = 1;
        s_round_trip (&msg, drover_command_name (id_requests[c]));
        msg.ref = 0;
        s_round_trip (&msg, drover_command_name (id_requests[c]));
    }

    fx_sample (&msg, DROVER_STATS_REPLY);
    msg.queue_infos[0].queued = UINT64_MAX;
    msg.queue_infos[0].leased = UINT64_MAX;
    msg.node_infos[0].children = UINT32_MAX;
    msg.node_infos[0].credit = UINT64_MAX;
    msg.node_infos[0].leased = UINT64_MAX;
    msg.node_infos[0].done = UINT64_MAX;
    msg.counters[0].value = UINT64_MAX;
    s_round_trip (&msg, "STATS_REPLY max");

    fx_sample (&msg, DROVER_ERROR);
    msg.ref = 0;
    msg.code = 0;
    msg.reason = "";
    s_round_trip (&msg, "ERROR zero, empty reason");
}

//  SPEC.md 5.6: bit N of retry_on stands for code -N; the default set is
//  DROVER_EFAILED, DROVER_ECRASHED, DROVER_ETIMELIMIT and DROVER_EMEMLIMIT.
LEAK_CHECKED_TEST (codec, retry_on_bits_follow_the_spec)
{
    _Static_assert(-DROVER_ELAST < 64, "every code has a bit in retry_on");
    for (int code = DROVER_ELAST; code <= 0; code++)
        cr_assert_eq (DROVER_RETRY_BIT (code), 1ull << -code, "code %d", code);
    cr_assert_eq (DROVER_RETRY_ON_DEFAULT,
                  (1ull << 12) | (1ull << 13) | (1ull << 19) | (1ull << 22));
    //  Every set round trips: none, the default, each code alone, all bits
    drover_msg_t msg;
    fx_sample (&msg, DROVER_SUBMIT);
    msg.tasks[0].retry_on = 0;
    msg.tasks[1].retry_on = DROVER_RETRY_ON_DEFAULT;
    for (int code = DROVER_ELAST; code <= 0; code++) {
        msg.tasks[2].retry_on = DROVER_RETRY_BIT (code);
        char context[32];
        snprintf (context, sizeof context, "retry_on bit %d", -code);
        s_round_trip (&msg, context);
    }
    msg.tasks[2].retry_on = UINT64_MAX;
    s_round_trip (&msg, "retry_on every bit");
}

//  Decodes a header we wrote ourselves, with payloads empty payload frames
static void
s_decode_written (drover_msg_t *msg, int command, s_buf_t *buf, size_t payloads,
                  const char *context)
{
    drover_msg_init (msg, DROVER_HELLO);
    int rc = s_decode_header (msg, command, buf->data, buf->size, payloads);
    ASSERT_DECODES (msg, rc, context);
    s_buf_free (buf);
}

//  The new keys land in their own fields, not in a neighbour's: headers
//  written by hand, each value distinct, read back field by field.
LEAK_CHECKED_TEST (codec, new_keys_land_in_their_fields)
{
    s_buf_t buf = {0};
    drover_msg_t msg;

    //  SUBMIT: soft_timeout_ms, retry_delay_ms, retry_max_delay_ms, retry_on
    s_mp_map (&buf, 2);
    s_mp_cstr (&buf, "ref");
    s_mp_uint (&buf, 1);
    s_mp_cstr (&buf, "tasks");
    s_mp_array (&buf, 1);
    s_mp_map (&buf, 5);
    s_mp_cstr (&buf, "handler");
    s_mp_cstr (&buf, "h");
    s_mp_cstr (&buf, "soft_timeout_ms");
    s_mp_uint (&buf, 11);
    s_mp_cstr (&buf, "retry_delay_ms");
    s_mp_uint (&buf, 22);
    s_mp_cstr (&buf, "retry_max_delay_ms");
    s_mp_uint (&buf, 33);
    s_mp_cstr (&buf, "retry_on");
    s_mp_uint (&buf, UINT64_MAX - 1);
    s_decode_written (&msg, DROVER_SUBMIT, &buf, 1, "SUBMIT");
    cr_assert_eq (msg.task_count, 1);
    cr_assert_eq (msg.tasks[0].soft_timeout_ms, 11);
    cr_assert_eq (msg.tasks[0].retry_delay_ms, 22);
    cr_assert_eq (msg.tasks[0].retry_max_delay_ms, 33);
    cr_assert_eq (msg.tasks[0].retry_on, UINT64_MAX - 1);
    cr_assert_eq (msg.tasks[0].timeout_ms, 0);
    cr_assert_eq (msg.tasks[0].delay_ms, 0);
    cr_assert_eq (msg.tasks[0].max_attempts, 0);
    drover_msg_reset (&msg);

    //  DISPATCH: soft_timeout_ms beside timeout_ms; the SUBMIT-only retry
    //  keys are not DISPATCH keys, and are ignored there
    s_mp_map (&buf, 1);
    s_mp_cstr (&buf, "tasks");
    s_mp_array (&buf, 1);
    s_mp_map (&buf, 7);
    s_mp_cstr (&buf, "id");
    s_mp_uint (&buf, 5);
    s_mp_cstr (&buf, "attempt");
    s_mp_uint (&buf, 2);
    s_mp_cstr (&buf, "handler");
    s_mp_cstr (&buf, "h");
    s_mp_cstr (&buf, "timeout_ms");
    s_mp_uint (&buf, 60000);
    s_mp_cstr (&buf, "soft_timeout_ms");
    s_mp_uint (&buf, 45000);
    s_mp_cstr (&buf, "retry_on");
    s_mp_uint (&buf, 7);
    s_mp_cstr (&buf, "cpu_us");
    s_mp_cstr (&buf, "not even a number");
    s_decode_written (&msg, DROVER_DISPATCH, &buf, 1, "DISPATCH");
    cr_assert_eq (msg.tasks[0].timeout_ms, 60000);
    cr_assert_eq (msg.tasks[0].soft_timeout_ms, 45000);
    cr_assert_eq (msg.tasks[0].retry_on, 0);
    cr_assert_eq (msg.tasks[0].cpu_us, 0);
    drover_msg_reset (&msg);

    //  FAIL and RESULT: cpu_us beside elapsed_us, code DROVER_EMEMLIMIT
    static const int outcomes[] = {DROVER_FAIL, DROVER_RESULT};
    for (size_t c = 0; c < 2; c++) {
        s_mp_map (&buf, 1);
        s_mp_cstr (&buf, "tasks");
        s_mp_array (&buf, 1);
        s_mp_map (&buf, 6);
        s_mp_cstr (&buf, "id");
        s_mp_uint (&buf, 5);
        s_mp_cstr (&buf, "attempt");
        s_mp_uint (&buf, 1);
        s_mp_cstr (&buf, "code");
        s_mp_int (&buf, DROVER_EMEMLIMIT);
        s_mp_cstr (&buf, "elapsed_us");
        s_mp_uint (&buf, 70);
        s_mp_cstr (&buf, "cpu_us");
        s_mp_uint (&buf, 55);
        s_mp_cstr (&buf, "max_rss_kb");
        s_mp_uint (&buf, 1u << 20);
        s_decode_written (&msg, outcomes[c], &buf,
                          outcomes[c] == DROVER_RESULT ? 1 : 0,
                          drover_command_name (outcomes[c]));
        cr_assert_eq (msg.tasks[0].code, DROVER_EMEMLIMIT);
        cr_assert_eq (msg.tasks[0].elapsed_us, 70);
        cr_assert_eq (msg.tasks[0].cpu_us, 55);
        cr_assert_eq (msg.tasks[0].max_rss_kb, 1u << 20);
        drover_msg_reset (&msg);
    }

    //  DEAD_REPLY: every key of an item
    s_mp_map (&buf, 2);
    s_mp_cstr (&buf, "ref");
    s_mp_uint (&buf, 9);
    s_mp_cstr (&buf, "tasks");
    s_mp_array (&buf, 1);
    s_mp_map (&buf, 13);
    s_mp_cstr (&buf, "id");
    s_mp_uint (&buf, 101);
    s_mp_cstr (&buf, "attempt");
    s_mp_uint (&buf, 102);
    s_mp_cstr (&buf, "code");
    s_mp_int (&buf, DROVER_ETIMELIMIT);
    s_mp_cstr (&buf, "handler");
    s_mp_cstr (&buf, "the-handler");
    s_mp_cstr (&buf, "queue");
    s_mp_cstr (&buf, "the-queue");
    s_mp_cstr (&buf, "max_attempts");
    s_mp_uint (&buf, 103);
    s_mp_cstr (&buf, "reason");
    s_mp_cstr (&buf, "the reason");
    s_mp_cstr (&buf, "node");
    s_mp_cstr (&buf, "the-node");
    s_mp_cstr (&buf, "elapsed_us");
    s_mp_uint (&buf, 104);
    s_mp_cstr (&buf, "cpu_us");
    s_mp_uint (&buf, 105);
    s_mp_cstr (&buf, "signal");
    s_mp_int (&buf, 15);
    s_mp_cstr (&buf, "exit_status");
    s_mp_int (&buf, -106);
    s_mp_cstr (&buf, "max_rss_kb");
    s_mp_uint (&buf, 107);
    s_decode_written (&msg, DROVER_DEAD_REPLY, &buf, 0, "DEAD_REPLY");
    cr_assert_eq (msg.ref, 9);
    cr_assert_eq (msg.task_count, 1);
    const drover_task_t *dead = &msg.tasks[0];
    cr_assert_eq (dead->id, 101);
    cr_assert_eq (dead->attempt, 102);
    cr_assert_eq (dead->code, DROVER_ETIMELIMIT);
    cr_assert_str_eq (dead->handler, "the-handler");
    cr_assert_str_eq (dead->queue, "the-queue");
    cr_assert_eq (dead->max_attempts, 103);
    cr_assert_str_eq (dead->reason, "the reason");
    cr_assert_str_eq (dead->node, "the-node");
    cr_assert_eq (dead->elapsed_us, 104);
    cr_assert_eq (dead->cpu_us, 105);
    cr_assert_eq (dead->signal, 15);
    cr_assert_eq (dead->exit_status, -106);
    cr_assert_eq (dead->max_rss_kb, 107);
    cr_assert_eq (dead->state, 0);
    cr_assert_eq (dead->payload.size, 0);
    drover_msg_reset (&msg);

    //  DEAD without ids: the oldest dead letters
    s_mp_map (&buf, 1);
    s_mp_cstr (&buf, "ref");
    s_mp_uint (&buf, 3);
    s_decode_written (&msg, DROVER_DEAD, &buf, 0, "DEAD without ids");
    cr_assert_eq (msg.ref, 3);
    cr_assert_eq (msg.id_count, 0);
    cr_assert_null (msg.ids);
    cr_assert_not (msg.all);
    drover_msg_reset (&msg);

    //  RETRY all, without ids; and RETRY of ids, all false
    s_mp_map (&buf, 2);
    s_mp_cstr (&buf, "all");
    s_put_byte (&buf, 0xc3);
    s_mp_cstr (&buf, "ref");
    s_mp_uint (&buf, 4);
    s_decode_written (&msg, DROVER_RETRY, &buf, 0, "RETRY all");
    cr_assert_eq (msg.ref, 4);
    cr_assert (msg.all);
    cr_assert_eq (msg.id_count, 0);
    cr_assert_null (msg.ids);
    drover_msg_reset (&msg);
    s_mp_map (&buf, 3);
    s_mp_cstr (&buf, "ref");
    s_mp_uint (&buf, 5);
    s_mp_cstr (&buf, "ids");
    s_mp_array (&buf, 2);
    s_mp_uint (&buf, 8);
    s_mp_uint (&buf, UINT64_MAX);
    s_mp_cstr (&buf, "all");
    s_put_byte (&buf, 0xc2);
    s_decode_written (&msg, DROVER_RETRY, &buf, 0, "RETRY ids");
    cr_assert_not (msg.all);
    cr_assert_eq (msg.id_count, 2);
    cr_assert_eq (msg.ids[0], 8);
    cr_assert_eq (msg.ids[1], UINT64_MAX);
    drover_msg_reset (&msg);

    //  `all` is a RETRY key: in WATCH it is unknown, and ignored
    s_mp_map (&buf, 2);
    s_mp_cstr (&buf, "ids");
    s_mp_array (&buf, 1);
    s_mp_uint (&buf, 1);
    s_mp_cstr (&buf, "all");
    s_put_byte (&buf, 0xc3);
    s_decode_written (&msg, DROVER_WATCH, &buf, 0, "WATCH with all");
    cr_assert_not (msg.all);
    cr_assert_not (msg.release);
    drover_msg_reset (&msg);
}

//  The encoder leaves out optional keys at their zero value: DEAD without
//  ids is {"ref": 1}; RETRY all carries `all`, RETRY of ids does not.
LEAK_CHECKED_TEST (codec, dead_and_retry_encodings)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_DEAD);
    msg.ref = 1;
    fx_wire_t wire;
    cr_assert_eq (fx_encode (&msg, &wire), 0, "%s", drover_msg_error (&msg));
    static const uint8_t dead[] = {0x81, 0xa3, 'r', 'e', 'f', 0x01};
    cr_assert_eq (wire.header_size, sizeof dead);
    cr_assert_arr_eq (wire.header, dead, sizeof dead);
    cr_assert_eq (*(const uint8_t *)wire.frames[1].data, 0x17);
    fx_wire_free (&wire);
    s_round_trip (&msg, "DEAD without ids");

    drover_msg_init (&msg, DROVER_RETRY);
    msg.ref = 1;
    msg.all = true;
    cr_assert_eq (fx_encode (&msg, &wire), 0, "%s", drover_msg_error (&msg));
    cr_assert_eq (wire.header[0], 0x82, "ref and all");
    cr_assert_not_null (memmem (wire.header, wire.header_size,
                                "\xa3"
                                "all\xc3",
                                5));
    cr_assert_null (memmem (wire.header, wire.header_size, "ids", 3));
    cr_assert_eq (*(const uint8_t *)wire.frames[1].data, 0x19);
    fx_wire_free (&wire);
    s_round_trip (&msg, "RETRY all");

    fx_sample (&msg, DROVER_RETRY);
    cr_assert_eq (fx_encode (&msg, &wire), 0, "%s", drover_msg_error (&msg));
    cr_assert_eq (wire.header[0], 0x82, "ref and ids");
    cr_assert_null (memmem (wire.header, wire.header_size, "all", 3));
    fx_wire_free (&wire);

    //  A DEAD_REPLY with no dead letters is an empty tasks array, not absent
    drover_msg_init (&msg, DROVER_DEAD_REPLY);
    msg.ref = 2;
    cr_assert_eq (fx_encode (&msg, &wire), 0, "%s", drover_msg_error (&msg));
    cr_assert_not_null (
        memmem (wire.header, wire.header_size, "\xa5tasks\x90", 7));
    cr_assert_eq (*(const uint8_t *)wire.frames[1].data, 0x18);
    fx_wire_free (&wire);
    s_round_trip (&msg, "DEAD_REPLY empty");
}

LEAK_CHECKED_TEST (codec, empty_payloads_round_trip)
{
    static const int commands[] = {DROVER_SUBMIT, DROVER_DISPATCH,
                                   DROVER_RESULT};
    for (size_t c = 0; c < 3; c++) {
        drover_msg_t msg;
        fx_sample (&msg, commands[c]);
        for (size_t i = 0; i < msg.task_count; i++)
            msg.tasks[i].payload = (drover_bytes_t){NULL, 0};
        s_round_trip (&msg, drover_command_name (commands[c]));
    }
}

//  The largest payload, and one octet more: 256 MiB of never-touched,
//  read-only anonymous memory costs no RAM.
LEAK_CHECKED_TEST (codec, payload_size_limit)
{
    size_t size = (size_t)DROVER_MAX_PAYLOAD + 1;
    void *region = mmap (NULL, size, PROT_READ,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    cr_assert_neq (region, MAP_FAILED);

    drover_msg_t msg;
    fx_sample (&msg, DROVER_SUBMIT);
    msg.tasks[1].payload = (drover_bytes_t){region, DROVER_MAX_PAYLOAD};
    s_round_trip (&msg, "largest payload");

    //  One octet over: the encoder refuses it...
    msg.tasks[1].payload.size = DROVER_MAX_PAYLOAD + 1u;
    uint8_t *header = NULL;
    size_t header_size;
    cr_assert_eq (drover_msg_encode (&msg, &header, &header_size),
                  DROVER_EINVAL);
    cr_assert (strstr (drover_msg_error (&msg), "tasks[1].payload"), "%s",
               drover_msg_error (&msg));
    cr_assert_null (header);

    //  ...and the decoder too, as a received frame
    msg.tasks[1].payload.size = 0;
    fx_wire_t wire;
    cr_assert_eq (fx_encode (&msg, &wire), 0);
    wire.frames[4] = (drover_frame_t){region, DROVER_MAX_PAYLOAD + 1u};
    drover_msg_t out;
    drover_msg_init (&out, DROVER_HELLO);
    int rc = drover_msg_decode (&out, wire.frames, wire.frame_count);
    ASSERT_DECODE_FAILS (&out, rc, DROVER_ETOOBIG, "tasks[1]: payload",
                         "payload over the limit");
    fx_wire_free (&wire);
    munmap (region, size);
}

//  Replaces the arrays of a sample with count elements, copied round-robin
//  from the sample's own (so each keeps the fields its command uses).
static void
s_fill_arrays (drover_msg_t *msg, size_t count, drover_task_t *tasks,
               uint64_t *ids, const char **names, drover_queue_info_t *queues,
               drover_node_info_t *nodes, drover_counter_t *counters)
{
    static char name_store[DROVER_MAX_BATCH + 1][24]; //  "n" + a size_t
    for (size_t i = 0; i < count; i++)
        snprintf (name_store[i], sizeof name_store[i], "n%zu", i);
    if (msg->task_count) {
        for (size_t i = 0; i < count; i++) {
            tasks[i] = msg->tasks[i % msg->task_count];
            if (tasks[i].id)
                tasks[i].id = i + 1;
        }
        msg->tasks = tasks;
        msg->task_count = count;
    }
    if (msg->id_count) {
        for (size_t i = 0; i < count; i++)
            ids[i] = UINT64_MAX - i;
        msg->ids = ids;
        msg->id_count = count;
    }
    if (msg->handler_count) {
        for (size_t i = 0; i < count; i++)
            names[i] = name_store[i];
        msg->handlers = names;
        msg->handler_count = count;
        msg->queues = names;
        msg->queue_count = count;
    }
    if (msg->queue_info_count) {
        for (size_t i = 0; i < count; i++) {
            queues[i] = (drover_queue_info_t){name_store[i], i, 2 * i};
            nodes[i] =
                (drover_node_info_t){name_store[i], (uint32_t)i, i, i, i};
            counters[i] = (drover_counter_t){name_store[i], i * 1000};
        }
        msg->queue_infos = queues;
        msg->queue_info_count = count;
        msg->node_infos = nodes;
        msg->node_info_count = count;
        msg->counters = counters;
        msg->counter_count = count;
    }
}

LEAK_CHECKED_TEST (codec, max_batch_round_trips)
{
    size_t count = DROVER_MAX_BATCH;
    drover_task_t *tasks = calloc (count + 1, sizeof *tasks);
    uint64_t *ids = calloc (count + 1, sizeof *ids);
    const char **names = calloc (count + 1, sizeof *names);
    drover_queue_info_t *queues = calloc (count + 1, sizeof *queues);
    drover_node_info_t *nodes = calloc (count + 1, sizeof *nodes);
    drover_counter_t *counters = calloc (count + 1, sizeof *counters);
    cr_assert (tasks && ids && names && queues && nodes && counters);
    size_t tried = 0;
    for (size_t c = 0; c < FX_COMMAND_COUNT; c++) {
        drover_msg_t msg;
        fx_sample (&msg, fx_command (c));
        size_t arrays = msg.task_count + msg.id_count + msg.handler_count
                        + msg.queue_info_count;
        if (arrays == 0)
            continue;
        s_fill_arrays (&msg, count, tasks, ids, names, queues, nodes, counters);
        s_round_trip (&msg, drover_command_name (fx_command (c)));
        tried++;
    }
    cr_assert_eq (tried, 17, "every command with an array");
    free (tasks);
    free (ids);
    free (names);
    free (queues);
    free (nodes);
    free (counters);
}

LEAK_CHECKED_TEST (codec, max_batch_plus_one_is_refused)
{
    size_t count = DROVER_MAX_BATCH + 1;
    drover_task_t *tasks = calloc (count, sizeof *tasks);
    uint64_t *ids = calloc (count, sizeof *ids);
    const char **names = calloc (count, sizeof *names);
    drover_queue_info_t *queues = calloc (count, sizeof *queues);
    drover_node_info_t *nodes = calloc (count, sizeof *nodes);
    drover_counter_t *counters = calloc (count, sizeof *counters);
    cr_assert (tasks && ids && names && queues && nodes && counters);
    size_t tried = 0;
    for (size_t c = 0; c < FX_COMMAND_COUNT; c++) {
        int command = fx_command (c);
        drover_msg_t msg;
        fx_sample (&msg, command);
        size_t arrays = msg.task_count + msg.id_count + msg.handler_count
                        + msg.queue_info_count;
        if (arrays == 0)
            continue;
        tried++;
        //  Encoding refuses one element too many
        s_fill_arrays (&msg, count, tasks, ids, names, queues, nodes, counters);
        uint8_t *header = NULL;
        size_t size;
        cr_assert_eq (drover_msg_encode (&msg, &header, &size), DROVER_EINVAL,
                      "%s", drover_command_name (command));
        cr_assert (strstr (drover_msg_error (&msg), "items, limit"), "%s",
                   drover_msg_error (&msg));
        cr_assert_null (header);

        //  Decoding too; and the limit itself is fine
        for (size_t length = count - 1; length <= count; length++) {
            s_gen_t gen = {.length = length, .optional = true};
            drover_msg_t out;
            drover_msg_init (&out, DROVER_HELLO);
            int rc = s_gen_decode (&out, command, &gen);
            if (length == DROVER_MAX_BATCH)
                ASSERT_DECODES (&out, rc, drover_command_name (command));
            else
                ASSERT_DECODE_FAILS (&out, rc, DROVER_ETOOBIG, "limit 4096",
                                     drover_command_name (command));
            drover_msg_reset (&out);
        }
    }
    cr_assert_eq (tried, 17);
    free (tasks);
    free (ids);
    free (names);
    free (queues);
    free (nodes);
    free (counters);
}

//  A string of size octets, all 'a'; freed by the caller
static char *
s_long_string (size_t size)
{
    char *text = malloc (size + 1);
    cr_assert_not_null (text);
    memset (text, 'a', size);
    text[size] = 0;
    return text;
}

LEAK_CHECKED_TEST (codec, longest_names_and_texts)
{
    char *name = s_long_string (DROVER_MAX_NAME);
    char *name_over = s_long_string (DROVER_MAX_NAME + 1);
    char *text = s_long_string (DROVER_MAX_TEXT);
    char *text_over = s_long_string (DROVER_MAX_TEXT + 1);
    uint8_t *header = NULL;
    size_t size;
    drover_msg_t msg;

    //  Each case: set one field to the longest value, then one octet more
#define LONGEST(command, field, longest, over, what)                           \
    do {                                                                       \
        fx_sample (&msg, command);                                             \
        field = longest;                                                       \
        s_round_trip (&msg, what);                                             \
        field = over;                                                          \
        cr_assert_eq (drover_msg_encode (&msg, &header, &size), DROVER_EINVAL, \
                      "%s", what);                                             \
        cr_assert (strstr (drover_msg_error (&msg), what), "%s: '%s'", what,   \
                   drover_msg_error (&msg));                                   \
        cr_assert_null (header);                                               \
    } while (0)

    LONGEST (DROVER_HELLO, msg.role, name, name_over, "role");
    LONGEST (DROVER_HELLO, msg.name, name, name_over, "name");
    LONGEST (DROVER_HELLO, msg.endpoint, name, name_over, "endpoint");
    LONGEST (DROVER_HELLO, msg.handlers[2], name, name_over, "handlers[2]");
    LONGEST (DROVER_HELLO, msg.queues[0], name, name_over, "queues[0]");
    LONGEST (DROVER_WELCOME, msg.instance, name, name_over, "instance");
    LONGEST (DROVER_WELCOME, msg.endpoint, name, name_over, "endpoint");
    LONGEST (DROVER_BYE, msg.reason, text, text_over, "reason");
    LONGEST (DROVER_ERROR, msg.reason, text, text_over, "reason");
    LONGEST (DROVER_DRAIN, msg.reason, text, text_over, "reason");
    LONGEST (DROVER_SUBMIT, msg.tasks[1].handler, name, name_over,
             "tasks[1].handler");
    LONGEST (DROVER_SUBMIT, msg.tasks[0].queue, name, name_over,
             "tasks[0].queue");
    LONGEST (DROVER_SUBMIT, msg.tasks[0].key, name, name_over, "tasks[0].key");
    LONGEST (DROVER_DISPATCH, msg.tasks[0].key, name, name_over,
             "tasks[0].key");
    LONGEST (DROVER_FAIL, msg.tasks[1].reason, text, text_over,
             "tasks[1].reason");
    LONGEST (DROVER_RESULT, msg.tasks[0].node, name, name_over,
             "tasks[0].node");
    LONGEST (DROVER_STATUS_REPLY, msg.tasks[1].reason, text, text_over,
             "tasks[1].reason");
    LONGEST (DROVER_STATUS_REPLY, msg.tasks[0].node, name, name_over,
             "tasks[0].node");
    LONGEST (DROVER_DEAD_REPLY, msg.tasks[2].reason, text, text_over,
             "tasks[2].reason");
    LONGEST (DROVER_DEAD_REPLY, msg.tasks[0].handler, name, name_over,
             "tasks[0].handler");
    LONGEST (DROVER_DEAD_REPLY, msg.tasks[1].queue, name, name_over,
             "tasks[1].queue");
    LONGEST (DROVER_DEAD_REPLY, msg.tasks[1].node, name, name_over,
             "tasks[1].node");
    LONGEST (DROVER_STATS_REPLY, msg.queue_infos[0].name, name, name_over,
             "queues[0].name");
    LONGEST (DROVER_STATS_REPLY, msg.node_infos[1].name, name, name_over,
             "nodes[1].name");
    LONGEST (DROVER_STATS_REPLY, msg.counters[2].name, name, name_over,
             "counters[2].name");
#undef LONGEST
    free (name);
    free (name_over);
    free (text);
    free (text_over);
}

//  --------------------------------------------------------------------------
//  Encoding refuses what the spec does not allow

//  Asserts that encoding msg fails with DROVER_EINVAL and a reason naming
//  what, and that no header is returned.
static void
s_assert_encode_refuses (drover_msg_t *msg, const char *what)
{
    uint8_t *header = NULL;
    size_t size = 0;
    int rc = drover_msg_encode (msg, &header, &size);
    cr_assert_eq (rc, DROVER_EINVAL, "%s: got %s", what, drover_strcode (rc));
    cr_assert (strstr (drover_msg_error (msg), what),
               "error '%s' does not name '%s'", drover_msg_error (msg), what);
    cr_assert_null (header, "%s", what);
}

LEAK_CHECKED_TEST (codec, encode_refuses_missing_required_strings)
{
    drover_msg_t msg;
    fx_sample (&msg, DROVER_HELLO);
    msg.role = NULL;
    s_assert_encode_refuses (&msg, "role");
    fx_sample (&msg, DROVER_HELLO);
    msg.name = NULL;
    s_assert_encode_refuses (&msg, "name");
    fx_sample (&msg, DROVER_HELLO);
    msg.handlers[1] = NULL;
    s_assert_encode_refuses (&msg, "handlers[1]");
    fx_sample (&msg, DROVER_WELCOME);
    msg.instance = NULL;
    s_assert_encode_refuses (&msg, "instance");
    fx_sample (&msg, DROVER_ERROR);
    msg.reason = NULL;
    s_assert_encode_refuses (&msg, "reason");
    fx_sample (&msg, DROVER_SUBMIT);
    msg.tasks[2].handler = NULL;
    s_assert_encode_refuses (&msg, "tasks[2].handler");
    fx_sample (&msg, DROVER_DISPATCH);
    msg.tasks[0].handler = NULL;
    s_assert_encode_refuses (&msg, "tasks[0].handler");
    fx_sample (&msg, DROVER_STATS_REPLY);
    msg.queue_infos[1].name = NULL;
    s_assert_encode_refuses (&msg, "queues[1].name");
    fx_sample (&msg, DROVER_STATS_REPLY);
    msg.node_infos[0].name = NULL;
    s_assert_encode_refuses (&msg, "nodes[0].name");
    fx_sample (&msg, DROVER_STATS_REPLY);
    msg.counters[2].name = NULL;
    s_assert_encode_refuses (&msg, "counters[2].name");
}

LEAK_CHECKED_TEST (codec, encode_refuses_bad_names)
{
    static const char *bad[] = {
        "",        "two words",   "tab\there", "new\nline", "\x1b[31mred",
        "del\x7f", "caf\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        drover_msg_t msg;
        fx_sample (&msg, DROVER_HELLO);
        msg.role = bad[i];
        s_assert_encode_refuses (&msg, "role");
        fx_sample (&msg, DROVER_HELLO);
        msg.queues[1] = bad[i];
        s_assert_encode_refuses (&msg, "queues[1]");
        fx_sample (&msg, DROVER_SUBMIT);
        msg.tasks[0].queue = bad[i];
        s_assert_encode_refuses (&msg, "tasks[0].queue");
        fx_sample (&msg, DROVER_FAIL);
        msg.tasks[0].node = bad[i];
        s_assert_encode_refuses (&msg, "tasks[0].node");
        fx_sample (&msg, DROVER_STATS_REPLY);
        msg.counters[0].name = bad[i];
        s_assert_encode_refuses (&msg, "counters[0].name");
        fx_sample (&msg, DROVER_DEAD_REPLY);
        msg.tasks[2].handler = bad[i];
        s_assert_encode_refuses (&msg, "tasks[2].handler");
        fx_sample (&msg, DROVER_DEAD_REPLY);
        msg.tasks[1].node = bad[i];
        s_assert_encode_refuses (&msg, "tasks[1].node");
    }
}

LEAK_CHECKED_TEST (codec, encode_refuses_values_out_of_range)
{
    drover_msg_t msg;
    static const int codes[] = {1,    2,         DROVER_ELAST - 1,
                                -100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        fx_sample (&msg, DROVER_ERROR);
        msg.code = codes[i];
        s_assert_encode_refuses (&msg, "code");
        fx_sample (&msg, DROVER_BYE);
        msg.code = codes[i];
        s_assert_encode_refuses (&msg, "code");
        fx_sample (&msg, DROVER_DONE);
        msg.tasks[1].code = codes[i];
        s_assert_encode_refuses (&msg, "tasks[1].code");
        fx_sample (&msg, DROVER_STATUS_REPLY);
        msg.tasks[1].code = codes[i];
        s_assert_encode_refuses (&msg, "tasks[1].code");
        fx_sample (&msg, DROVER_DEAD_REPLY);
        msg.tasks[2].code = codes[i];
        s_assert_encode_refuses (&msg, "tasks[2].code");
        fx_sample (&msg, DROVER_FAIL);
        msg.tasks[0].code = codes[i];
        s_assert_encode_refuses (&msg, "tasks[0].code");
    }
    fx_sample (&msg, DROVER_CREDIT);
    msg.credit = DROVER_MAX_CREDIT + 1;
    s_assert_encode_refuses (&msg, "credit");
    fx_sample (&msg, DROVER_HELLO);
    msg.children = DROVER_MAX_CREDIT + 1;
    s_assert_encode_refuses (&msg, "children");
    fx_sample (&msg, DROVER_HELLO);
    msg.lookahead = UINT32_MAX;
    s_assert_encode_refuses (&msg, "lookahead");
    fx_sample (&msg, DROVER_WELCOME);
    msg.max_batch = DROVER_MAX_BATCH + 1;
    s_assert_encode_refuses (&msg, "max_batch");
    fx_sample (&msg, DROVER_STATUS_REPLY);
    msg.tasks[2].state = DROVER_STATE_LAST + 1;
    s_assert_encode_refuses (&msg, "tasks[2].state");
}

LEAK_CHECKED_TEST (codec, encode_refuses_task_id_0)
{
    static const int commands[] = {
        DROVER_SUBMITTED,    DROVER_CANCEL,   DROVER_STATUS, DROVER_WATCH,
        DROVER_STATUS_REPLY, DROVER_DISPATCH, DROVER_FAIL,   DROVER_REVOKE,
        DROVER_RESULT,       DROVER_STORED,   DROVER_DONE,   DROVER_DEAD,
        DROVER_DEAD_REPLY,   DROVER_RETRY,
    };
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++) {
        drover_msg_t msg;
        fx_sample (&msg, commands[c]);
        if (msg.id_count) {
            msg.ids[1] = 0;
            s_assert_encode_refuses (&msg, "ids[1]");
        }
        else {
            msg.tasks[1].id = 0;
            s_assert_encode_refuses (&msg, "tasks[1].id");
        }
    }
}

LEAK_CHECKED_TEST (codec, encode_refuses_bad_arrays_and_commands)
{
    drover_msg_t msg;
    fx_sample (&msg, DROVER_HELLO);
    msg.handlers = NULL;
    s_assert_encode_refuses (&msg, "handlers");
    fx_sample (&msg, DROVER_SUBMIT);
    msg.tasks = NULL;
    s_assert_encode_refuses (&msg, "tasks");
    fx_sample (&msg, DROVER_WATCH);
    msg.ids = NULL;
    s_assert_encode_refuses (&msg, "ids");
    fx_sample (&msg, DROVER_STATS_REPLY);
    msg.node_infos = NULL;
    s_assert_encode_refuses (&msg, "nodes");
    fx_sample (&msg, DROVER_DEAD_REPLY);
    msg.tasks = NULL;
    s_assert_encode_refuses (&msg, "tasks");
    fx_sample (&msg, DROVER_RETRY);
    msg.ids = NULL;
    s_assert_encode_refuses (&msg, "ids");

    //  A payload that says it has octets must have them
    fx_sample (&msg, DROVER_RESULT);
    msg.tasks[1].payload = (drover_bytes_t){NULL, 10};
    s_assert_encode_refuses (&msg, "tasks[1].payload");

    static const int not_commands[] = {0,    0x06, 0x0f, 0x1a,
                                       0x25, 0x34, 0xff, -1};
    for (size_t i = 0; i < sizeof not_commands / sizeof not_commands[0]; i++) {
        drover_msg_init (&msg, (drover_command_t)not_commands[i]);
        s_assert_encode_refuses (&msg, "does not exist");
    }
}

LEAK_CHECKED_TEST (codec, encode_refuses_header_over_limit)
{
    //  4096 failures with 4096-octet reasons: 16 MiB of header
    drover_msg_t msg;
    fx_sample (&msg, DROVER_FAIL);
    drover_task_t *tasks = calloc (DROVER_MAX_BATCH, sizeof *tasks);
    char *reason = s_long_string (DROVER_MAX_TEXT);
    cr_assert_not_null (tasks);
    for (size_t i = 0; i < DROVER_MAX_BATCH; i++) {
        tasks[i] = msg.tasks[1];
        tasks[i].id = i + 1;
        tasks[i].reason = reason;
    }
    msg.tasks = tasks;
    msg.task_count = DROVER_MAX_BATCH;
    s_assert_encode_refuses (&msg, "header");
    cr_assert (strstr (drover_msg_error (&msg), "limit 1048576"), "%s",
               drover_msg_error (&msg));
    free (reason);
    free (tasks);
}

LEAK_CHECKED_TEST (codec, encode_clears_the_last_error)
{
    drover_msg_t msg;
    fx_sample (&msg, DROVER_HELLO);
    msg.role = NULL;
    s_assert_encode_refuses (&msg, "role");
    msg.role = "client";
    uint8_t *header = NULL;
    size_t size;
    cr_assert_eq (drover_msg_encode (&msg, &header, &size), 0);
    cr_assert_str_empty (drover_msg_error (&msg));
    cr_assert_not_null (header);
    free (header);
}

//  --------------------------------------------------------------------------
//  Decoding: framing

//  Decodes frames built from a sample of command, with frames[index]
//  replaced; returns the code.
static int
s_decode_with_frame (drover_msg_t *msg, int command, size_t index,
                     drover_frame_t frame)
{
    drover_msg_t sample;
    fx_sample (&sample, command);
    fx_wire_t wire;
    cr_assert_eq (fx_encode (&sample, &wire), 0);
    cr_assert (index < wire.frame_count);
    wire.frames[index] = frame;
    int rc = drover_msg_decode (msg, wire.frames, wire.frame_count);
    fx_wire_free (&wire);
    return rc;
}

PER_COMMAND_TEST (truncated_headers_are_refused)
{
    drover_msg_t sample;
    fx_sample (&sample, *command);
    s_buf_t generated = {0};
    s_gen_t gen = {.optional = true};
    s_gen_header (&generated, *command, &gen);
    uint8_t *header;
    size_t header_size;
    cr_assert_eq (drover_msg_encode (&sample, &header, &header_size), 0);
    size_t payloads =
        drover_command_has_payloads (*command) ? sample.task_count : 0;
    for (size_t size = 0; size < header_size; size++) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        int rc = s_decode_header (&msg, *command, header, size, payloads);
        char context[64];
        snprintf (context, sizeof context, "%zu of %zu octets", size,
                  header_size);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "header", context);
    }
    payloads = s_gen_payloads (*command, &gen);
    for (size_t size = 0; size < generated.size; size++) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        int rc =
            s_decode_header (&msg, *command, generated.data, size, payloads);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "header",
                             "generated header");
    }
    //  The whole header is fine (the loops above stopped one short)
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    ASSERT_DECODES (&msg,
                    s_decode_header (&msg, *command, generated.data,
                                     generated.size, payloads),
                    "whole header");
    drover_msg_reset (&msg);
    free (header);
    s_buf_free (&generated);
}

PER_COMMAND_TEST (missing_and_extra_frames_are_refused)
{
    drover_msg_t sample;
    fx_sample (&sample, *command);
    fx_wire_t wire;
    cr_assert_eq (fx_encode (&sample, &wire), 0);
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    for (size_t count = 0; count < 3; count++) {
        int rc = drover_msg_decode (&msg, count ? wire.frames : NULL, count);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "at least 3",
                             "too few frames");
    }
    //  One payload frame fewer than tasks (for commands with payloads)
    if (wire.frame_count > 3) {
        int rc = drover_msg_decode (&msg, wire.frames, wire.frame_count - 1);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "payload frames",
                             "a payload frame missing");
    }
    //  One frame too many, for every command
    drover_frame_t *frames =
        calloc (wire.frame_count + 1, sizeof (drover_frame_t));
    cr_assert_not_null (frames);
    memcpy (frames, wire.frames, wire.frame_count * sizeof *frames);
    frames[wire.frame_count] = (drover_frame_t){"extra", 5};
    int rc = drover_msg_decode (&msg, frames, wire.frame_count + 1);
    ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "payload frames",
                         "a frame too many");
    //  The right count is fine
    ASSERT_DECODES (&msg, drover_msg_decode (&msg, frames, wire.frame_count),
                    "right frames");
    drover_msg_reset (&msg);
    free (frames);
    fx_wire_free (&wire);
}

LEAK_CHECKED_TEST (codec, unknown_commands_are_refused)
{
    size_t known = 0;
    for (int command = 0; command < 0x100; command++) {
        uint8_t octet = (uint8_t)command;
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        int rc = s_decode_with_frame (&msg, DROVER_STATS, 1,
                                      (drover_frame_t){&octet, 1});
        if (drover_command_name (command)) {
            cr_assert_neq (rc, DROVER_ECOMMAND, "0x%02x", command);
            drover_msg_reset (&msg);
            known++;
            continue;
        }
        char what[32];
        snprintf (what, sizeof what, "0x%02x", command);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_ECOMMAND, what, what);
    }
    cr_assert_eq (known, FX_COMMAND_COUNT);
}

LEAK_CHECKED_TEST (codec, wrong_versions_and_signatures_are_refused)
{
    static const struct {
        const char *data;
        size_t size;
        int code;
    } signatures[] = {
        {"DRV\x00", 4, DROVER_EVERSION}, {"DRV\x02", 4, DROVER_EVERSION},
        {"DRV\xff", 4, DROVER_EVERSION}, {"DRW\x01", 4, DROVER_EPROTO},
        {"drv\x01", 4, DROVER_EPROTO},   {"\x00RV\x01", 4, DROVER_EPROTO},
        {"DRV", 3, DROVER_EPROTO},       {"DRV\x01\x01", 5, DROVER_EPROTO},
        {"", 0, DROVER_EPROTO},          {"MDPC", 4, DROVER_EPROTO},
    };
    for (size_t i = 0; i < sizeof signatures / sizeof signatures[0]; i++) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        int rc = s_decode_with_frame (
            &msg, DROVER_SUBMIT, 0,
            (drover_frame_t){signatures[i].data, signatures[i].size});
        char context[32];
        snprintf (context, sizeof context, "signature %zu", i);
        ASSERT_DECODE_FAILS (&msg, rc, signatures[i].code,
                             signatures[i].code == DROVER_EVERSION
                                 ? "version"
                                 : "not a Drover message",
                             context);
    }
}

LEAK_CHECKED_TEST (codec, command_frame_must_be_one_octet)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    int rc =
        s_decode_with_frame (&msg, DROVER_STATS, 1, (drover_frame_t){NULL, 0});
    ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "command frame has 0",
                         "0 octets");
    rc = s_decode_with_frame (&msg, DROVER_STATS, 1,
                              (drover_frame_t){"\x15\x00", 2});
    ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "command frame has 2",
                         "2 octets");
}

//  --------------------------------------------------------------------------
//  Decoding: the header against the spec tables

//  Raw msgpack values of every type
typedef struct {
    const char *name;  //  for messages
    const char *bytes; //  the encoded value
    size_t size;       //  its size
} s_raw_t;

#define RAW(name, bytes)                                                       \
    {                                                                          \
        name, bytes, sizeof (bytes) - 1                                        \
    }

static const s_raw_t s_raw_values[] = {
    RAW ("nil", "\xc0"),
    RAW ("false", "\xc2"),
    RAW ("true", "\xc3"),
    RAW ("positive int", "\x03"),
    RAW ("negative int", "\xfd"),
    RAW ("float 32", "\xca\x3f\x80\x00\x00"),
    RAW ("float 64", "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"),
    RAW ("str", "\xa1x"),
    RAW ("bin", "\xc4\x01x"),
    RAW ("array", "\x91\x01"),
    RAW ("map", "\x81\xa1x\x01"),
    RAW ("ext", "\xd4\x01\x00"),
};

//  True when a value of that raw type has the kind's type
static bool
s_type_fits (s_kind_t kind, const char *name)
{
    switch (kind) {
        case K_U32:
        case K_U64:
        case K_ID: return !strcmp (name, "positive int");
        case K_I32:
        case K_I64:
            return !strcmp (name, "positive int")
                   || !strcmp (name, "negative int");
        case K_CODE: return !strcmp (name, "negative int");
        case K_BOOL: return !strcmp (name, "false") || !strcmp (name, "true");
        case K_NAME:
        case K_TEXT: return !strcmp (name, "str");
        case K_IDS: return !strcmp (name, "array");
        case K_NAMES:
        case K_ITEMS: return false; //  [1] has elements of the wrong type
    }
    return false;
}

PER_COMMAND_TEST (wrong_types_are_refused)
{
    s_target_t targets[MAX_TARGETS];
    size_t count = s_targets (*command, 2, targets);
    size_t tried = 0;
    for (size_t t = 0; t < count; t++)
        for (size_t v = 0; v < sizeof s_raw_values / sizeof s_raw_values[0];
             v++) {
            const s_raw_t *raw = &s_raw_values[v];
            if (s_type_fits (targets[t].key->kind, raw->name))
                continue;
            s_gen_t gen = {.target = targets[t].key,
                           .mutation = MUT_REPLACE,
                           .value = (const uint8_t *)raw->bytes,
                           .value_size = raw->size,
                           .optional = (v % 2) == 0};
            drover_msg_t msg;
            drover_msg_init (&msg, DROVER_HELLO);
            int rc = s_gen_decode (&msg, *command, &gen);
            char context[128];
            snprintf (context, sizeof context, "%s = %s", targets[t].path,
                      raw->name);
            ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, targets[t].path,
                                 context);
            tried++;
        }
    //  Array elements of the wrong type
    static const s_raw_t bad_ids[] = {
        RAW ("[nil]", "\x91\xc0"),       RAW ("[-1]", "\x91\xff"),
        RAW ("[\"1\"]", "\x91\xa1\x31"), RAW ("[1.0]", "\x91\xca\x3f\x80\0\0"),
        RAW ("[[1]]", "\x91\x91\x01"),   RAW ("[true]", "\x91\xc3"),
    };
    static const s_raw_t bad_names[] = {
        RAW ("[1]", "\x91\x01"),        RAW ("[nil]", "\x91\xc0"),
        RAW ("[bin]", "\x91\xc4\x01x"), RAW ("[[]]", "\x91\x90"),
        RAW ("[{}]", "\x91\x80"),
    };
    static const s_raw_t bad_items[] = {
        RAW ("[1]", "\x91\x01"),        RAW ("[\"x\"]", "\x91\xa1x"),
        RAW ("[[]]", "\x91\x90"),       RAW ("[nil]", "\x91\xc0"),
        RAW ("[{},1]", "\x92\x80\x01"),
    };
    for (size_t t = 0; t < count; t++) {
        const s_raw_t *bad = NULL;
        size_t bad_count = 0;
        if (targets[t].key->kind == K_IDS) {
            bad = bad_ids;
            bad_count = sizeof bad_ids / sizeof bad_ids[0];
        }
        else if (targets[t].key->kind == K_NAMES) {
            bad = bad_names;
            bad_count = sizeof bad_names / sizeof bad_names[0];
        }
        else if (targets[t].key->kind == K_ITEMS) {
            bad = bad_items;
            bad_count = sizeof bad_items / sizeof bad_items[0];
        }
        for (size_t v = 0; v < bad_count; v++) {
            s_gen_t gen = {.target = targets[t].key,
                           .mutation = MUT_REPLACE,
                           .value = (const uint8_t *)bad[v].bytes,
                           .value_size = bad[v].size,
                           .optional = true};
            drover_msg_t msg;
            drover_msg_init (&msg, DROVER_HELLO);
            int rc = s_gen_decode (&msg, *command, &gen);
            char path[80];
            snprintf (path, sizeof path, "%s[0]", targets[t].path);
            char context[128];
            snprintf (context, sizeof context, "%s = %s", targets[t].path,
                      bad[v].name);
            ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, path, context);
            tried++;
        }
    }
    //  The header itself must be a map
    static const s_raw_t not_maps[] = {
        RAW ("[]", "\x90"),   RAW ("1", "\x01"),       RAW ("nil", "\xc0"),
        RAW ("\"\"", "\xa0"), RAW ("bin", "\xc4\x00"), RAW ("ext", "\xd4\0\0"),
    };
    for (size_t v = 0; v < sizeof not_maps / sizeof not_maps[0]; v++) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        int rc = s_decode_header (&msg, *command, not_maps[v].bytes,
                                  not_maps[v].size, 0);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "expected a map",
                             not_maps[v].name);
        tried++;
    }
    cr_assert_geq (tried, 6);
}

PER_COMMAND_TEST (missing_required_keys_are_refused)
{
    s_target_t targets[MAX_TARGETS];
    size_t count = s_targets (*command, 2, targets);
    for (size_t t = 0; t < count; t++) {
        s_gen_t gen = {
            .target = targets[t].key, .mutation = MUT_OMIT, .optional = true};
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        int rc = s_gen_decode (&msg, *command, &gen);
        if (targets[t].key->required)
            ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, targets[t].path,
                                 targets[t].path);
        else
            ASSERT_DECODES (&msg, rc, targets[t].path);
        if (targets[t].key->required)
            cr_assert (strstr (drover_msg_error (&msg), "missing"), "%s",
                       drover_msg_error (&msg));
        drover_msg_reset (&msg);
    }
}

PER_COMMAND_TEST (duplicate_keys_are_refused)
{
    s_target_t targets[MAX_TARGETS];
    size_t count = s_targets (*command, 2, targets);
    for (size_t t = 0; t < count; t++) {
        s_gen_t gen = {.target = targets[t].key,
                       .mutation = MUT_DUPLICATE,
                       .optional = t % 2};
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        int rc = s_gen_decode (&msg, *command, &gen);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, targets[t].path,
                             targets[t].path);
        cr_assert (strstr (drover_msg_error (&msg), "twice"), "%s",
                   drover_msg_error (&msg));
    }
    //  An unknown key twice is a duplicate as well (SPEC.md section 4)
    s_gen_t gen = {.unknown_twice = true};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    int rc = s_gen_decode (&msg, *command, &gen);
    ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "again", "unknown key twice");
    cr_assert (strstr (drover_msg_error (&msg), "twice"), "%s",
               drover_msg_error (&msg));
}

PER_COMMAND_TEST (non_string_keys_are_refused)
{
    s_gen_t gen = {.int_key = true, .optional = true};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    int rc = s_gen_decode (&msg, *command, &gen);
    ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "keys must be strings",
                         "integer key");
    //  A known key spelled as bin, nil, or an array is no string either
    static const s_raw_t keys[] = {
        RAW ("bin", "\xc4\x03ref"),
        RAW ("nil", "\xc0"),
        RAW ("array", "\x91\xa3ref"),
        RAW ("map", "\x81\xa3ref\x01"),
    };
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        s_buf_t buf = {0};
        s_mp_map (&buf, 1);
        s_put (&buf, keys[k].bytes, keys[k].size);
        s_mp_uint (&buf, 1);
        rc = s_decode_header (&msg, *command, buf.data, buf.size, 0);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "keys must be strings",
                             keys[k].name);
        s_buf_free (&buf);
    }
}

PER_COMMAND_TEST (unknown_keys_are_ignored)
{
    for (int optional = 0; optional < 2; optional++) {
        s_gen_t plain = {.optional = optional};
        s_gen_t extended = {.optional = optional, .unknown = true};
        drover_msg_t expected, msg;
        drover_msg_init (&expected, DROVER_HELLO);
        drover_msg_init (&msg, DROVER_HELLO);
        ASSERT_DECODES (&expected, s_gen_decode (&expected, *command, &plain),
                        "plain");
        ASSERT_DECODES (&msg, s_gen_decode (&msg, *command, &extended),
                        "with unknown keys");
        char why[256];
        cr_assert (fx_msg_equal (&expected, &msg, why, sizeof why), "%s", why);
        drover_msg_reset (&expected);
        drover_msg_reset (&msg);
    }
}

//  Writes into buf the value v of a kind, for s_value_limits
typedef struct {
    const char *name; //  for messages
    int code;         //  expected result
    const char *what; //  text the error must contain, if code
    void (*write) (s_buf_t *buf, const s_spec_key_t *key, uint64_t arg);
    uint64_t arg; //  passed to write
} s_case_t;

static void
s_write_uint (s_buf_t *buf, const s_spec_key_t *key, uint64_t value)
{
    (void)key;
    s_mp_uint (buf, value);
}

static void
s_write_uint_max (s_buf_t *buf, const s_spec_key_t *key, uint64_t plus)
{
    s_mp_uint (buf, key->max + plus);
}

static void
s_write_int (s_buf_t *buf, const s_spec_key_t *key, uint64_t value)
{
    (void)key;
    s_mp_int (buf, (int64_t)value);
}

static void
s_write_str (s_buf_t *buf, const s_spec_key_t *key, uint64_t text)
{
    (void)key;
    s_mp_cstr (buf, (const char *)(uintptr_t)text);
}

//  Strings with an octet 0: 0: "a\0b", 1: "\0"
static void
s_write_nul_str (s_buf_t *buf, const s_spec_key_t *key, uint64_t which)
{
    (void)key;
    if (which == 0)
        s_mp_str (buf, "a\0b", 3);
    else
        s_mp_str (buf, "", 1);
}

static void
s_write_long_str (s_buf_t *buf, const s_spec_key_t *key, uint64_t plus)
{
    size_t size = (key->kind == K_NAME ? DROVER_MAX_NAME : key->max) + plus;
    char *text = s_long_string (size);
    text[size / 2] = '~'; //  the last printable octet is fine
    s_mp_str (buf, text, size);
    free (text);
}

#define STR_ARG(text) ((uint64_t)(uintptr_t)(text))

//  Valid and invalid values at the edges of each kind
static size_t
s_cases (s_kind_t kind, const s_case_t **cases)
{
    static const s_case_t u32[] = {
        {"max", 0, NULL, s_write_uint_max, 0},
        {"0", 0, NULL, s_write_uint, 0},
        {"max + 1", DROVER_ETOOBIG, "over", s_write_uint_max, 1},
        {"2^64-1", DROVER_ETOOBIG, "over", s_write_uint, UINT64_MAX},
    };
    static const s_case_t u64[] = {
        {"0", 0, NULL, s_write_uint, 0},
        {"2^64-1", 0, NULL, s_write_uint, UINT64_MAX},
        {"-1", DROVER_EPROTO, "unsigned", s_write_int, (uint64_t)-1},
    };
    static const s_case_t id[] = {
        {"1", 0, NULL, s_write_uint, 1},
        {"2^64-1", 0, NULL, s_write_uint, UINT64_MAX},
        {"0", DROVER_EPROTO, "", s_write_uint, 0},
    };
    static const s_case_t i32[] = {
        {"INT32_MIN", 0, NULL, s_write_int, (uint64_t)(int64_t)INT32_MIN},
        {"INT32_MAX", 0, NULL, s_write_int, INT32_MAX},
        {"0", 0, NULL, s_write_int, 0},
        {"INT32_MIN - 1", DROVER_EPROTO, "range", s_write_int,
         (uint64_t)((int64_t)INT32_MIN - 1)},
        {"INT32_MAX + 1", DROVER_EPROTO, "range", s_write_int,
         (uint64_t)INT32_MAX + 1},
        {"2^64-1", DROVER_EPROTO, "range", s_write_uint, UINT64_MAX},
    };
    static const s_case_t i64[] = {
        {"INT64_MIN", 0, NULL, s_write_int, (uint64_t)INT64_MIN},
        {"INT64_MAX", 0, NULL, s_write_int, INT64_MAX},
        {"INT64_MAX + 1", DROVER_EPROTO, "range", s_write_uint,
         (uint64_t)INT64_MAX + 1},
    };
    static const s_case_t code[] = {
        {"DROVER_ELAST", 0, NULL, s_write_int, (uint64_t)DROVER_ELAST},
        {"0", 0, NULL, s_write_int, 0},
        {"-1", 0, NULL, s_write_int, (uint64_t)-1},
        {"1", DROVER_EPROTO, "code", s_write_int, 1},
        {"DROVER_ELAST - 1", DROVER_EPROTO, "code", s_write_int,
         (uint64_t)(DROVER_ELAST - 1)},
        {"INT64_MIN", DROVER_EPROTO, "code", s_write_int, (uint64_t)INT64_MIN},
        {"INT32_MIN", DROVER_EPROTO, "code", s_write_int,
         (uint64_t)(int64_t)INT32_MIN},
        {"2^64-1", DROVER_EPROTO, "range", s_write_uint, UINT64_MAX},
    };
    static const s_case_t boolean[] = {
        {"0", DROVER_EPROTO, "true or false", s_write_uint, 0},
        {"1", DROVER_EPROTO, "true or false", s_write_uint, 1},
    };
    static const s_case_t name[] = {
        {"one octet", 0, NULL, s_write_str, STR_ARG ("a")},
        {"printable", 0, NULL, s_write_str, STR_ARG ("!~:/._-#@")},
        {"longest", 0, NULL, s_write_long_str, 0},
        {"one octet over", DROVER_ETOOBIG, "name", s_write_long_str, 1},
        {"empty", DROVER_EPROTO, "name", s_write_str, STR_ARG ("")},
        {"space", DROVER_EPROTO, "name", s_write_str, STR_ARG ("a b")},
        {"leading space", DROVER_EPROTO, "name", s_write_str, STR_ARG (" a")},
        {"tab", DROVER_EPROTO, "name", s_write_str, STR_ARG ("a\tb")},
        {"newline", DROVER_EPROTO, "name", s_write_str, STR_ARG ("a\n")},
        {"escape", DROVER_EPROTO, "name", s_write_str, STR_ARG ("\x1b[0m")},
        {"DEL", DROVER_EPROTO, "name", s_write_str, STR_ARG ("a\x7f")},
        {"0x80", DROVER_EPROTO, "name", s_write_str, STR_ARG ("\x80")},
        {"UTF-8", DROVER_EPROTO, "name", s_write_str, STR_ARG ("caf\xc3\xa9")},
        {"NUL inside", DROVER_EPROTO, "name", s_write_nul_str, 0},
        {"NUL alone", DROVER_EPROTO, "name", s_write_nul_str, 1},
    };
    static const s_case_t text[] = {
        {"empty", 0, NULL, s_write_str, STR_ARG ("")},
        {"UTF-8 and controls", 0, NULL, s_write_str,
         STR_ARG ("caf\xc3\xa9\ttab\nline\x7f")},
        {"longest", 0, NULL, s_write_long_str, 0},
        {"one octet over", DROVER_ETOOBIG, "limit", s_write_long_str, 1},
        {"NUL inside", DROVER_EPROTO, "NUL", s_write_nul_str, 0},
        {"NUL alone", DROVER_EPROTO, "NUL", s_write_nul_str, 1},
    };
    switch (kind) {
#define CASES(array)                                                           \
    *cases = array;                                                            \
    return sizeof (array) / sizeof ((array)[0])
        case K_U32: CASES (u32);
        case K_U64: CASES (u64);
        case K_ID: CASES (id);
        case K_I32: CASES (i32);
        case K_I64: CASES (i64);
        case K_CODE: CASES (code);
        case K_BOOL: CASES (boolean);
        case K_NAME: CASES (name);
        case K_TEXT: CASES (text);
        case K_IDS:
        case K_NAMES:
        case K_ITEMS: break;
#undef CASES
    }
    *cases = NULL;
    return 0;
}

//  Every key of every command, at and past the edges of its kind: names of
//  255 octets and one more, texts of their limit and one more, names with
//  spaces, control octets and NUL, codes outside DROVER_ELAST..0, id 0...
PER_COMMAND_TEST (values_at_and_over_their_limits)
{
    s_target_t targets[MAX_TARGETS];
    size_t count = s_targets (*command, 2, targets);
    for (size_t t = 0; t < count; t++) {
        const s_case_t *cases;
        size_t case_count = s_cases (targets[t].key->kind, &cases);
        for (size_t c = 0; c < case_count; c++) {
            s_buf_t value = {0};
            cases[c].write (&value, targets[t].key, cases[c].arg);
            s_gen_t gen = {.target = targets[t].key,
                           .mutation = MUT_REPLACE,
                           .value = value.data,
                           .value_size = value.size,
                           .optional = true};
            drover_msg_t msg;
            drover_msg_init (&msg, DROVER_HELLO);
            int rc = s_gen_decode (&msg, *command, &gen);
            char context[128];
            snprintf (context, sizeof context, "%s = %s", targets[t].path,
                      cases[c].name);
            if (cases[c].code == 0)
                ASSERT_DECODES (&msg, rc, context);
            else {
                ASSERT_DECODE_FAILS (&msg, rc, cases[c].code, targets[t].path,
                                     context);
                cr_assert (strstr (drover_msg_error (&msg), cases[c].what),
                           "%s: '%s' does not say '%s'", context,
                           drover_msg_error (&msg), cases[c].what);
            }
            drover_msg_reset (&msg);
            s_buf_free (&value);
        }
    }
}

//  --------------------------------------------------------------------------
//  Decoding: lying lengths, nesting, garbage, size

//  Lowers the address space limit to what the process uses now plus 256
//  MiB, and checks that it bites. Not under ASan, which reserves terabytes
//  of address space for its shadow memory.
static bool
s_limit_address_space (void)
{
#ifdef S_ASAN
    return false;
#else
    FILE *status = fopen ("/proc/self/status", "r");
    cr_assert_not_null (status);
    char line[256];
    unsigned long long vm_kb = 0;
    while (fgets (line, sizeof line, status))
        if (sscanf (line, "VmSize: %llu kB", &vm_kb) == 1)
            break;
    fclose (status);
    cr_assert_gt (vm_kb, 0);
    struct rlimit limit;
    cr_assert_eq (getrlimit (RLIMIT_AS, &limit), 0);
    limit.rlim_cur = (rlim_t)(vm_kb * 1024 + (256ull << 20));
    cr_assert_eq (setrlimit (RLIMIT_AS, &limit), 0);
    //  The limit holds: half a gigabyte is more than we may have now
    void *volatile big = malloc (512u << 20);
    cr_assert_null (big, "RLIMIT_AS does not limit malloc");
    return true;
#endif
}

LEAK_CHECKED_TEST (codec, lying_lengths_allocate_nothing)
{
    bool limited = s_limit_address_space ();
    static const s_raw_t headers[] = {
        RAW ("array 32 of 2^32-1", "\xdd\xff\xff\xff\xff"),
        RAW ("map 32 of 2^32-1", "\xdf\xff\xff\xff\xff"),
        RAW ("str 32 of 2^32-1", "\xdb\xff\xff\xff\xff"),
        RAW ("bin 32 of 2^32-1", "\xc6\xff\xff\xff\xff"),
        RAW ("ext 32 of 2^32-1", "\xc9\xff\xff\xff\xff\x01"),
        RAW ("array 16 of 65535", "\xdc\xff\xff\x01\x02"),
        RAW ("map 16 of 65535", "\xde\xff\xff\xa1x\x01"),
        RAW ("map 32 with some octets", "\xdf\xff\xff\xff\xff\xa3ref\x01"),
        //  The same lies inside valid maps
        RAW ("ids: array 32", "\x82\xa3ref\x01\xa3ids\xdd\xff\xff\xff\xff\x01"),
        RAW ("tasks: array 32",
             "\x82\xa3ref\x01\xa5tasks\xdd\xff\xff\xff\xff\x80\x80"),
        RAW ("tasks[0]: map 32",
             "\x82\xa3ref\x01\xa5tasks\x91\xdf\xff\xff\xff\xff"),
        RAW ("unknown: str 32", "\x82\xa3ref\x01\xa1x\xdb\xff\xff\xff\xffxy"),
        RAW ("ref: str 32", "\x81\xa3ref\xdb\xff\xff\xff\xff"),
        RAW ("key: str 32", "\x81\xdb\xff\xff\xff\xffref\x01"),
    };
    static const int commands[] = {DROVER_SUBMIT, DROVER_STATS, DROVER_WATCH,
                                   DROVER_DEAD_REPLY, DROVER_RETRY};
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
            drover_msg_t msg;
            drover_msg_init (&msg, DROVER_HELLO);
            int rc = s_decode_header (&msg, commands[c], headers[i].bytes,
                                      headers[i].size, 0);
            //  Refused by the prescan, before msgpack-c allocates anything:
            //  its errors say "declares" (a count) or "truncated" (octets).
            const char *error = drover_msg_error (&msg);
            cr_assert_eq (rc, DROVER_EPROTO, "%s: %s '%s'", headers[i].name,
                          drover_strcode (rc), error);
            cr_assert (strstr (error, "declares")
                           || strstr (error, "truncated"),
                       "%s: refused late: '%s'", headers[i].name, error);
            cr_assert (fx_msg_owns_nothing (&msg));
        }
    cr_log_info ("address space %s",
                 limited ? "limited" : "not limited (ASan)");
}

//  depth containers, arrays or maps, one inside the other, around inner
static void
s_nest (s_buf_t *buf, size_t depth, bool maps, bool empty)
{
    for (size_t i = 0; i < depth; i++) {
        if (maps) {
            s_mp_map (buf, i + 1 == depth && empty ? 0 : 1);
            if (i + 1 < depth || !empty)
                s_mp_cstr (buf, "a");
        }
        else
            s_mp_array (buf, i + 1 == depth && empty ? 0 : 1);
    }
    if (!empty)
        s_mp_uint (buf, 1);
}

LEAK_CHECKED_TEST (codec, deep_nesting_is_refused)
{
    for (int maps = 0; maps < 2; maps++) {
        //  1000 levels as the header itself
        s_buf_t buf = {0};
        s_nest (&buf, 1000, maps, false);
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        int rc = s_decode_header (&msg, DROVER_STATS, buf.data, buf.size, 0);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "nested",
                             maps ? "1000 maps" : "1000 arrays");
        s_buf_free (&buf);
        //  ...and in an unknown key
        s_mp_map (&buf, 2);
        s_mp_cstr (&buf, "ref");
        s_mp_uint (&buf, 1);
        s_mp_cstr (&buf, "deep");
        s_nest (&buf, 1000, maps, false);
        rc = s_decode_header (&msg, DROVER_STATS, buf.data, buf.size, 0);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "nested",
                             maps ? "1000 maps in a key"
                                  : "1000 arrays in a key");
        s_buf_free (&buf);
    }
}

//  A CREDIT header of 42 keys: credit first, 40 unknown keys "k00".."k39"
//  (key number twin_of spelled as key twin, when twin >= 0), and last the
//  key last (NULL: "k40") holding 5.
static void
s_many_keys (s_buf_t *buf, int twin, int twin_of, const char *last)
{
    s_mp_map (buf, 42);
    s_mp_cstr (buf, "credit");
    s_mp_uint (buf, 3);
    for (int k = 0; k < 40; k++) {
        char key[8];
        snprintf (key, sizeof key, "k%02d", k == twin ? twin_of : k);
        s_mp_cstr (buf, key);
        s_mp_uint (buf, (uint64_t)k);
    }
    s_mp_cstr (buf, last ? last : "k40");
    s_mp_uint (buf, 5);
}

//  The decoder remembers the field of the first 32 keys of a map between
//  its duplicate check and its decoding, and sorts the unknown keys when
//  there are more than 16: keys past both limits decode, and duplicates
//  are found among them.
LEAK_CHECKED_TEST (codec,
                   maps_of_many_keys_decode_and_their_duplicates_are_found)
{
    s_buf_t buf = {0};
    s_many_keys (&buf, -1, 0, "credit");
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    int rc = s_decode_header (&msg, DROVER_CREDIT, buf.data, buf.size, 0);
    ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "credit: key twice",
                         "a known key first and 42nd");
    s_buf_free (&buf);

    s_many_keys (&buf, 39, 7, NULL);
    rc = s_decode_header (&msg, DROVER_CREDIT, buf.data, buf.size, 0);
    ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "k07: key twice",
                         "an unknown key 9th and 41st");
    s_buf_free (&buf);

    //  No duplicate: the unknown keys are ignored, credit decodes
    s_many_keys (&buf, -1, 0, NULL);
    rc = s_decode_header (&msg, DROVER_CREDIT, buf.data, buf.size, 0);
    ASSERT_DECODES (&msg, rc, "40 unknown keys");
    cr_assert_eq (msg.credit, 3);
    drover_msg_reset (&msg);
    s_buf_free (&buf);

    //  The known key past the 32 remembered ones is decoded too: a CREDIT
    //  whose only credit key is the 42nd
    s_mp_map (&buf, 41);
    for (int k = 0; k < 40; k++) {
        char key[8];
        snprintf (key, sizeof key, "k%02d", k);
        s_mp_cstr (&buf, key);
        s_mp_uint (&buf, (uint64_t)k);
    }
    s_mp_cstr (&buf, "credit");
    s_mp_uint (&buf, 9);
    rc = s_decode_header (&msg, DROVER_CREDIT, buf.data, buf.size, 0);
    ASSERT_DECODES (&msg, rc, "credit after 40 unknown keys");
    cr_assert_eq (msg.credit, 9);
    drover_msg_reset (&msg);
    s_buf_free (&buf);
}

//  SPEC.md: "nesting of arrays and maps: 16 levels". The header map is the
//  first level; 15 more are fine, 16 more are one too many, even empty.
LEAK_CHECKED_TEST (codec, nesting_limit_is_16_levels)
{
    for (int maps = 0; maps < 2; maps++)
        for (int empty = 0; empty < 2; empty++)
            for (size_t depth = DROVER_MAX_DEPTH - 1; depth <= DROVER_MAX_DEPTH;
                 depth++) {
                s_buf_t buf = {0};
                s_mp_map (&buf, 2);
                s_mp_cstr (&buf, "ref");
                s_mp_uint (&buf, 1);
                s_mp_cstr (&buf, "deep");
                if (!empty)
                    //  a scalar inside the innermost container is no level
                    s_nest (&buf, depth, maps, false);
                else
                    s_nest (&buf, depth, maps, true);
                drover_msg_t msg;
                drover_msg_init (&msg, DROVER_HELLO);
                int rc =
                    s_decode_header (&msg, DROVER_STATS, buf.data, buf.size, 0);
                char context[64];
                snprintf (context, sizeof context, "%zu %s%s inside the map",
                          depth, maps ? "maps" : "arrays",
                          empty ? ", innermost empty" : "");
                if (depth + 1 <= DROVER_MAX_DEPTH)
                    ASSERT_DECODES (&msg, rc, context);
                else
                    ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "nested",
                                         context);
                drover_msg_reset (&msg);
                s_buf_free (&buf);
            }
}

LEAK_CHECKED_TEST (codec, trailing_garbage_is_refused)
{
    static const s_raw_t tails[] = {
        RAW ("one octet", "\x00"),
        RAW ("a second map", "\x81\xa3ref\x01"),
        RAW ("nil", "\xc0"),
        RAW ("a truncated value", "\xcf\x00"),
    };
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        s_buf_t buf = {0};
        s_mp_map (&buf, 1);
        s_mp_cstr (&buf, "ref");
        s_mp_uint (&buf, 1);
        s_put (&buf, tails[i].bytes, tails[i].size);
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        int rc = s_decode_header (&msg, DROVER_STATS, buf.data, buf.size, 0);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO,
                             i == 3 ? "header" : "garbage", tails[i].name);
        s_buf_free (&buf);
    }
}

LEAK_CHECKED_TEST (codec, reserved_msgpack_type_is_refused)
{
    //  0xc1 is "never used" in msgpack
    static const s_raw_t headers[] = {
        RAW ("as the header", "\xc1"),
        RAW ("as a value", "\x82\xa3ref\x01\xa1x\xc1"),
        RAW ("as a key", "\x82\xa3ref\x01\xc1\x01"),
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        int rc = s_decode_header (&msg, DROVER_STATS, headers[i].bytes,
                                  headers[i].size, 0);
        ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "0xc1", headers[i].name);
    }
}

LEAK_CHECKED_TEST (codec, header_size_limit)
{
    //  {"ref": 1, "pad": bin 32} of exactly the limit, then one octet more
    for (size_t size = DROVER_MAX_HEADER; size <= DROVER_MAX_HEADER + 1;
         size++) {
        size_t overhead = 1 + 4 + 1 + 4 + 5;
        char *pad = calloc (1, size - overhead);
        cr_assert_not_null (pad);
        s_buf_t buf = {0};
        s_mp_map (&buf, 2);
        s_mp_cstr (&buf, "ref");
        s_mp_uint (&buf, 1);
        s_mp_cstr (&buf, "pad");
        s_put_byte (&buf, 0xc6);
        s_put_be (&buf, size - overhead, 4);
        s_put (&buf, pad, size - overhead);
        free (pad);
        cr_assert_eq (buf.size, size);
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HELLO);
        int rc = s_decode_header (&msg, DROVER_STATS, buf.data, buf.size, 0);
        if (size == DROVER_MAX_HEADER) {
            ASSERT_DECODES (&msg, rc, "header of the largest size");
            cr_assert_eq (msg.ref, 1);
        }
        else
            ASSERT_DECODE_FAILS (&msg, rc, DROVER_ETOOBIG, "limit 1048576",
                                 "header one octet over");
        drover_msg_reset (&msg);
        s_buf_free (&buf);
    }
}

//  --------------------------------------------------------------------------
//  Ownership

LEAK_CHECKED_TEST (codec, reset_is_idempotent)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_WATCH);
    drover_msg_reset (&msg);
    drover_msg_reset (&msg);
    cr_assert (fx_msg_owns_nothing (&msg));
    cr_assert_eq (msg.command, DROVER_WATCH);

    //  A decoded message, reset twice: nothing left, command kept
    drover_msg_t sample;
    fx_sample (&sample, DROVER_STATS_REPLY);
    fx_wire_t wire;
    cr_assert_eq (fx_encode (&sample, &wire), 0);
    ASSERT_DECODES (&msg,
                    drover_msg_decode (&msg, wire.frames, wire.frame_count),
                    "decode");
    cr_assert_not_null (msg.arena_);
    cr_assert_eq (msg.counter_count, 3);
    drover_msg_reset (&msg);
    cr_assert (fx_msg_owns_nothing (&msg));
    cr_assert_eq (msg.command, DROVER_STATS_REPLY);
    cr_assert_eq (msg.ref, 0);
    drover_msg_reset (&msg);
    cr_assert (fx_msg_owns_nothing (&msg));
    cr_assert_eq (msg.command, DROVER_STATS_REPLY);
    fx_wire_free (&wire);
}

LEAK_CHECKED_TEST (codec, decode_replaces_and_frees_a_previous_message)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    for (size_t c = 0; c < FX_COMMAND_COUNT; c++) {
        //  Decoding into a message that holds one frees the old one (a
        //  leak here fails the ASan and valgrind runs)
        drover_msg_t sample;
        fx_sample (&sample, fx_command (c));
        fx_wire_t wire;
        cr_assert_eq (fx_encode (&sample, &wire), 0);
        ASSERT_DECODES (&msg,
                        drover_msg_decode (&msg, wire.frames, wire.frame_count),
                        drover_command_name (fx_command (c)));
        char why[256];
        cr_assert (fx_msg_equal (&sample, &msg, why, sizeof why), "%s", why);
        fx_wire_free (&wire);
    }
    //  A failed decode into a full message leaves it owning nothing, and
    //  keeps the reason
    drover_msg_t sample;
    fx_sample (&sample, DROVER_SUBMIT);
    fx_wire_t wire;
    cr_assert_eq (fx_encode (&sample, &wire), 0);
    ASSERT_DECODES (&msg,
                    drover_msg_decode (&msg, wire.frames, wire.frame_count),
                    "SUBMIT");
    cr_assert_not_null (msg.arena_);
    int rc = drover_msg_decode (&msg, wire.frames, 2);
    ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "2 frames", "2 frames");
    fx_wire_free (&wire);
}

//  A failure in the last item, after the codec allocated the earlier items'
//  strings, leaves nothing behind (checked by ASan/valgrind for leaks).
LEAK_CHECKED_TEST (codec, late_failures_own_nothing)
{
    s_target_t targets[MAX_TARGETS];
    size_t count = s_targets (DROVER_STATUS_REPLY, 50, targets);
    s_gen_t gen = {.target = targets[count - 1].key, //  tasks[49].reason
                   .mutation = MUT_REPLACE,
                   .value = (const uint8_t *)"\xc0",
                   .value_size = 1,
                   .optional = true,
                   .length = 50};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    int rc = s_gen_decode (&msg, DROVER_STATUS_REPLY, &gen);
    ASSERT_DECODE_FAILS (&msg, rc, DROVER_EPROTO, "tasks[49].reason",
                         "last item");
    cr_assert_eq (msg.command, DROVER_STATUS_REPLY);
}

LEAK_CHECKED_TEST (codec, decoded_strings_are_copies)
{
    drover_msg_t sample;
    fx_sample (&sample, DROVER_HELLO);
    fx_wire_t wire;
    cr_assert_eq (fx_encode (&sample, &wire), 0);
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    ASSERT_DECODES (
        &msg, drover_msg_decode (&msg, wire.frames, wire.frame_count), "HELLO");
    //  Scribble over the header and free it: the message is unchanged
    memset (wire.header, 'Z', wire.header_size);
    fx_wire_free (&wire);
    cr_assert_str_eq (msg.role, "node");
    cr_assert_str_eq (msg.name, "build-07:4242");
    cr_assert_str_eq (msg.handlers[2], "ocr.v2");
    cr_assert_str_eq (msg.queues[1], "images");
    drover_msg_reset (&msg);
}

//  --------------------------------------------------------------------------
//  Chunk payloads (SPEC.md 7.7)

LEAK_CHECKED_TEST (codec, chunk_inputs_round_trip_as_a_msgpack_array_of_bin)
{
    static uint8_t big[70000];
    memset (big, 'b', sizeof big);
    drover_chunk_writer_t writer;
    drover_chunk_writer_init (&writer, 0);
    cr_assert_eq (drover_chunk_add (&writer, "one", 3), 0);
    cr_assert_eq (drover_chunk_add (&writer, NULL, 0), 0);
    cr_assert_eq (drover_chunk_add (&writer, big, 300), 0);
    size_t expected = drover_chunk_size_with (&writer, sizeof big);
    cr_assert_eq (drover_chunk_add (&writer, big, sizeof big), 0);
    uint8_t *data;
    size_t size;
    cr_assert_eq (drover_chunk_finish (&writer, &data, &size), 0);
    cr_assert_eq (size, expected);
    //  msgpack-c reads it as an array of 4 bin
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    cr_assert_eq (
        msgpack_unpack_next (&unpacked, (const char *)data, size, &offset),
        MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq (offset, size);
    cr_assert_eq (unpacked.data.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq (unpacked.data.via.array.size, 4);
    cr_assert_eq (unpacked.data.via.array.ptr[3].type, MSGPACK_OBJECT_BIN);
    cr_assert_eq (unpacked.data.via.array.ptr[3].via.bin.size, sizeof big);
    msgpack_unpacked_destroy (&unpacked);
    //  And so does the reader, without copies
    drover_chunk_reader_t reader;
    cr_assert_eq (drover_chunk_open (&reader, data, size, 5), DROVER_EINVAL,
                  "the count must match");
    cr_assert_eq (drover_chunk_open (&reader, data, size, 4), 0);
    const void *input;
    size_t input_size;
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &input_size), 1);
    cr_assert_eq (input_size, 3);
    cr_assert (!memcmp (input, "one", 3));
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &input_size), 1);
    cr_assert_eq (input_size, 0);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &input_size), 1);
    cr_assert_eq (input_size, 300);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &input_size), 1);
    cr_assert_eq (input_size, sizeof big);
    cr_assert ((const uint8_t *)input > data
               && (const uint8_t *)input < data + size);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &input_size), 0);
    free (data);
}

LEAK_CHECKED_TEST (codec, chunk_outcomes_are_bin_or_code_and_reason)
{
    drover_chunk_writer_t writer;
    drover_chunk_writer_init (&writer, 0);
    cr_assert_eq (drover_chunk_add (&writer, "ok", 2), 0);
    cr_assert_eq (drover_chunk_add_failure (&writer, DROVER_EFAILED, "bad"), 0);
    cr_assert_eq (drover_chunk_add_failure (&writer, -300, NULL), 0);
    uint8_t *data;
    size_t size;
    cr_assert_eq (drover_chunk_finish (&writer, &data, &size), 0);
    drover_chunk_reader_t reader;
    cr_assert_eq (drover_chunk_open (&reader, data, size, 3), 0);
    int32_t code;
    const void *output;
    size_t output_size;
    cr_assert_eq (
        drover_chunk_next_outcome (&reader, &code, &output, &output_size), 1);
    cr_assert_eq (code, 0);
    cr_assert_eq (output_size, 2);
    cr_assert_eq (
        drover_chunk_next_outcome (&reader, &code, &output, &output_size), 1);
    cr_assert_eq (code, DROVER_EFAILED);
    cr_assert_eq (output_size, 3);
    cr_assert (!memcmp (output, "bad", 3));
    cr_assert_eq (
        drover_chunk_next_outcome (&reader, &code, &output, &output_size), 1);
    cr_assert_eq (code, -300);
    cr_assert_eq (output_size, 0);
    cr_assert_eq (
        drover_chunk_next_outcome (&reader, &code, &output, &output_size), 0);
    //  An input reader refuses the failure element
    cr_assert_eq (drover_chunk_open (&reader, data, size, 3), 0);
    const void *input;
    size_t input_size;
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &input_size), 1);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &input_size),
                  DROVER_EINVAL);
    //  Counted without knowing the inputs: two failures; cut short or with
    //  octets after it, the result is malformed
    cr_assert_eq (drover_chunk_failures (data, size), 2);
    cr_assert_eq (drover_chunk_failures (data, size - 1), DROVER_EINVAL);
    uint8_t *longer = (uint8_t *)malloc (size + 1);
    memcpy (longer, data, size);
    longer[size] = 0xc0;
    cr_assert_eq (drover_chunk_failures (longer, size + 1), DROVER_EINVAL);
    free (longer);
    cr_assert_eq (drover_chunk_failures (NULL, 0), DROVER_EINVAL);
    free (data);
    //  All well: none
    drover_chunk_writer_init (&writer, 0);
    cr_assert_eq (drover_chunk_add (&writer, "a", 1), 0);
    cr_assert_eq (drover_chunk_add (&writer, "", 0), 0);
    cr_assert_eq (drover_chunk_finish (&writer, &data, &size), 0);
    cr_assert_eq (drover_chunk_failures (data, size), 0);
    free (data);
}

LEAK_CHECKED_TEST (codec, malformed_chunks_are_refused)
{
    drover_chunk_reader_t reader;
    const void *input;
    size_t size;
    //  Not an array; a map; empty
    cr_assert_eq (drover_chunk_open (&reader, "\xc4\x01x", 3, 1),
                  DROVER_EINVAL);
    cr_assert_eq (drover_chunk_open (&reader, "\x81\xc4\x00\xc4\x00", 5, 1),
                  DROVER_EINVAL);
    cr_assert_eq (drover_chunk_open (&reader, NULL, 0, 0), DROVER_EINVAL);
    //  A fixarray of 2 with one element: truncated
    cr_assert_eq (drover_chunk_open (&reader, "\x92\xc4\x01x", 4, 2), 0);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &size), 1);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &size),
                  DROVER_EINVAL);
    //  A bin whose length passes the end
    cr_assert_eq (drover_chunk_open (&reader, "\x91\xc5\xff\xff", 4, 1), 0);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &size),
                  DROVER_EINVAL);
    //  Trailing octets after the last element
    cr_assert_eq (drover_chunk_open (&reader, "\x91\xc4\x00\x00", 4, 1), 0);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &size), 1);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &size),
                  DROVER_EINVAL);
    //  A str is not an input; array16 and array32 headers are read
    cr_assert_eq (drover_chunk_open (&reader, "\x91\xa1x", 3, 1), 0);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &size),
                  DROVER_EINVAL);
    cr_assert_eq (drover_chunk_open (&reader, "\xdc\x00\x01\xc4\x00", 5, 1), 0);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &size), 1);
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &size), 0);
    //  A failure with a positive code, or a reason over 4096 octets
    int32_t code;
    cr_assert_eq (drover_chunk_open (&reader, "\x91\x92\x05\xa0", 4, 1), 0);
    cr_assert_eq (drover_chunk_next_outcome (&reader, &code, &input, &size),
                  DROVER_EINVAL);
    static uint8_t long_reason[6 + 4097];
    memcpy (long_reason, "\x91\x92\xff\xda\x10\x01", 6);
    cr_assert_eq (
        drover_chunk_open (&reader, long_reason, sizeof long_reason, 1), 0);
    cr_assert_eq (drover_chunk_next_outcome (&reader, &code, &input, &size),
                  DROVER_EINVAL);
}

LEAK_CHECKED_TEST (codec, a_chunk_writer_keeps_to_its_limit)
{
    drover_chunk_writer_t writer;
    drover_chunk_writer_init (&writer, 20);
    cr_assert_eq (drover_chunk_add (&writer, "0123456789", 10), 0);
    cr_assert_eq (drover_chunk_add (&writer, "0123456789", 10), DROVER_ETOOBIG);
    cr_assert_eq (drover_chunk_add (&writer, "x", 1), DROVER_ETOOBIG,
                  "nothing more after an error");
    uint8_t *data = NULL;
    size_t size = 0;
    cr_assert_eq (drover_chunk_finish (&writer, &data, &size), DROVER_ETOOBIG);
    cr_assert_null (data);
    //  Empty again: an empty chunk is an array of 0
    cr_assert_eq (drover_chunk_finish (&writer, &data, &size), 0);
    cr_assert_eq (size, 5);
    drover_chunk_reader_t reader;
    cr_assert_eq (drover_chunk_open (&reader, data, size, 0), 0);
    const void *input;
    cr_assert_eq (drover_chunk_next_input (&reader, &input, &size), 0);
    free (data);
}
