/*  test_bench.c - `drover bench` end to end: the real binary ($DROVER)
    run with tiny sizes, its JSON parsed and checked (the keys that
    scripts read, every figure a positive number), its table, its usage
    errors and its failure to reach a broker. No timing is asserted.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "procs.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <czmq.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RUN_MS 120000 //  the longest a bench run may take here

static void
s_setup (void)
{
    procs_setup ("bench");
}

//  The scenarios, in the order drover bench prints them.
enum {
    S_THROUGHPUT,
    S_CHUNKED,
    S_LATENCY,
    S_DISPATCH,
    S_PAYLOAD,
    S_DURABLE,
    S_MEMORY,
    S_CEILING,
    S_SCENARIOS
};

TestSuite (bench, .init = s_setup, .fini = procs_teardown, .timeout = 300);

//  --------------------------------------------------------------------------
//  A small JSON parser (RFC 8259), enough to check the output

typedef enum { J_NULL, J_BOOL, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT } j_type_t;

typedef struct j_value_t j_value_t;
struct j_value_t {
    j_type_t type;
    double number;     //  J_NUMBER, J_BOOL
    char *string;      //  J_STRING; a member's key in an object
    j_value_t **items; //  J_ARRAY items, J_OBJECT members
    char **keys;       //  J_OBJECT: the key of each member
    size_t count;      //  items
};

typedef struct {
    const char *at; //  next character
} j_parser_t;

static j_value_t *j_parse_value (j_parser_t *self);

static void
j_destroy (j_value_t *value)
{
    if (!value)
        return;
    for (size_t i = 0; i < value->count; i++) {
        j_destroy (value->items[i]);
        if (value->keys)
            free (value->keys[i]);
    }
    free (value->items);
    free (value->keys);
    free (value->string);
    free (value);
}

static void
j_skip (j_parser_t *self)
{
    while (*self->at == ' ' || *self->at == '\t' || *self->at == '\n'
           || *self->at == '\r')
        self->at++;
}

static j_value_t *
j_new (j_type_t type)
{
    j_value_t *value = (j_value_t *)calloc (1, sizeof *value);
    cr_assert_not_null (value);
    value->type = type;
    return value;
}

//  A string; NULL when it is not valid JSON. \u escapes become '?'.
static char *
j_parse_string (j_parser_t *self)
{
    if (*self->at != '"')
        return NULL;
    self->at++;
    size_t size = 0;
    char *text = (char *)malloc (strlen (self->at) + 1);
    cr_assert_not_null (text);
    while (*self->at && *self->at != '"') {
        char c = *self->at++;
        if ((unsigned char)c < 0x20)
            break;
        if (c == '\\') {
            c = *self->at++;
            if (c == 'u') {
                for (int i = 0; i < 4; i++)
                    if (!isxdigit ((unsigned char)*self->at++)) {
                        free (text);
                        return NULL;
                    }
                c = '?';
            }
            else if (!strchr ("\"\\/bfnrt", c) || !c) {
                free (text);
                return NULL;
            }
        }
        text[size++] = c;
    }
    if (*self->at != '"') {
        free (text);
        return NULL;
    }
    self->at++;
    text[size] = 0;
    return text;
}

static j_value_t *
j_parse_number (j_parser_t *self)
{
    const char *start = self->at;
    if (*self->at == '-')
        self->at++;
    //  JSON has no leading zeros, hex, inf or nan
    if (!isdigit ((unsigned char)self->at[0])
        || (self->at[0] == '0' && isdigit ((unsigned char)self->at[1])))
        return NULL;
    char *end;
    double number = strtod (start, &end);
    for (const char *c = start; c < end; c++)
        if (!strchr ("0123456789+-.eE", *c))
            return NULL;
    self->at = end;
    j_value_t *value = j_new (J_NUMBER);
    value->number = number;
    return value;
}

static void
j_append (j_value_t *container, j_value_t *item, char *key)
{
    container->items = (j_value_t **)realloc (
        container->items, (container->count + 1) * sizeof (j_value_t *));
    cr_assert_not_null (container->items);
    if (container->type == J_OBJECT) {
        container->keys = (char **)realloc (
            container->keys, (container->count + 1) * sizeof (char *));
        cr_assert_not_null (container->keys);
        container->keys[container->count] = key;
    }
    container->items[container->count++] = item;
}

//  An array or object (after its opening bracket); NULL if invalid.
static j_value_t *
j_parse_container (j_parser_t *self, j_type_t type, char close)
{
    j_value_t *container = j_new (type);
    j_skip (self);
    if (*self->at == close) {
        self->at++;
        return container;
    }
    while (true) {
        char *key = NULL;
        j_skip (self);
        if (type == J_OBJECT) {
            key = j_parse_string (self);
            j_skip (self);
            if (!key || *self->at++ != ':') {
                free (key);
                j_destroy (container);
                return NULL;
            }
        }
        j_value_t *item = j_parse_value (self);
        if (!item) {
            free (key);
            j_destroy (container);
            return NULL;
        }
        j_append (container, item, key);
        j_skip (self);
        char c = *self->at++;
        if (c == close)
            return container;
        if (c != ',') {
            j_destroy (container);
            return NULL;
        }
    }
}

static j_value_t *
j_parse_value (j_parser_t *self)
{
    j_skip (self);
    char c = *self->at;
    if (c == '{' || c == '[') {
        self->at++;
        return j_parse_container (self, c == '{' ? J_OBJECT : J_ARRAY,
                                  c == '{' ? '}' : ']');
    }
    if (c == '"') {
        char *text = j_parse_string (self);
        if (!text)
            return NULL;
        j_value_t *value = j_new (J_STRING);
        value->string = text;
        return value;
    }
    const char *words[] = {"null", "true", "false"};
    for (size_t i = 0; i < 3; i++)
        if (!strncmp (self->at, words[i], strlen (words[i]))) {
            self->at += strlen (words[i]);
            j_value_t *value = j_new (i ? J_BOOL : J_NULL);
            value->number = i == 1;
            return value;
        }
    return j_parse_number (self);
}

//  Parses a whole document; NULL if it is not exactly one JSON value.
static j_value_t *
j_parse (const char *text)
{
    j_parser_t parser = {text};
    j_value_t *value = j_parse_value (&parser);
    j_skip (&parser);
    if (value && *parser.at) {
        j_destroy (value);
        return NULL;
    }
    return value;
}

static j_value_t *
j_get (const j_value_t *object, const char *key)
{
    if (!object || object->type != J_OBJECT)
        return NULL;
    for (size_t i = 0; i < object->count; i++)
        if (!strcmp (object->keys[i], key))
            return object->items[i];
    return NULL;
}

//  --------------------------------------------------------------------------
//  Running the bench

typedef struct {
    int status; //  exit status
    char *out;  //  stdout
    char *err;  //  stderr
} s_run_t;

static s_run_t
s_bench (const char *arguments)
{
    char *out = procs_path ("out");
    char *err = procs_path ("err");
    s_run_t run;
    run.status = procs_run (RUN_MS, "%s bench %s > %s 2> %s", procs_drover (),
                            arguments, out, err);
    run.out = procs_read (out, NULL);
    run.err = procs_read (err, NULL);
    free (out);
    free (err);
    return run;
}

static void
s_run_free (s_run_t *run)
{
    free (run->out);
    free (run->err);
}

static size_t
s_lines (const char *text)
{
    size_t count = 0;
    for (; *text; text++)
        count += *text == '\n';
    return count;
}

//  --------------------------------------------------------------------------
//  Checking the JSON

//  Asserts that object has key, a number > 0.
static double
s_positive (const j_value_t *object, const char *key)
{
    const j_value_t *value = j_get (object, key);
    cr_assert_not_null (value, "no \"%s\"", key);
    cr_assert_eq (value->type, J_NUMBER, "\"%s\" is not a number", key);
    cr_assert_gt (value->number, 0, "\"%s\" is %g, not > 0", key,
                  value->number);
    return value->number;
}

static const char *
s_string (const j_value_t *object, const char *key)
{
    const j_value_t *value = j_get (object, key);
    cr_assert_not_null (value, "no \"%s\"", key);
    cr_assert_eq (value->type, J_STRING, "\"%s\" is not a string", key);
    return value->string;
}

//  Asserts that a result row has the keys of its scenario, numbers > 0.
static void
s_check_row (const j_value_t *row)
{
    const char *scenario = s_string (row, "scenario");
    if (!strcmp (scenario, "memory")) {
        const char *what = s_string (row, "what");
        if (!strcmp (what, "broker")) {
            s_positive (row, "queued_tasks");
            s_positive (row, "octets_per_task");
            s_positive (row, "rss_growth_kb");
        }
        else {
            cr_assert_str_eq (what, "map");
            s_positive (row, "lines");
            s_positive (row, "peak_rss_kb");
            s_positive (row, "per_second");
        }
        return;
    }
    const char *positive[7][8] = {
        {"throughput", "payload", "tasks", "seconds", "per_second"},
        {"chunked", "payload", "items", "seconds", "per_second"},
        {"latency", "samples", "p50_us", "p90_us", "p99_us", "p999_us"},
        {"dispatch", "tasks", "children", "sleep_ms", "seconds",
         "ideal_seconds", "efficiency", "sleep_us"},
        {"payload", "payload", "tasks", "seconds", "per_second",
         "mb_per_second"},
        {"durable", "tasks", "seconds", "per_second"},
        {"ceiling", "payload", "messages", "seconds", "per_second"}};
    bool known = false;
    for (size_t i = 0; i < 7; i++) {
        if (strcmp (positive[i][0], scenario))
            continue;
        known = true;
        for (size_t j = 1; j < 8 && positive[i][j]; j++)
            s_positive (row, positive[i][j]);
    }
    cr_assert (known, "unknown scenario '%s'", scenario);
    if (!strcmp (scenario, "throughput") || !strcmp (scenario, "ceiling")) {
        const char *transport = s_string (row, "transport");
        cr_assert (!strcmp (transport, "ipc") || !strcmp (transport, "tcp"));
    }
    if (!strcmp (scenario, "ceiling")) {
        const char *pattern = s_string (row, "pattern");
        cr_assert (!strcmp (pattern, "push-pull")
                   || !strcmp (pattern, "router-credit"));
    }
    if (!strcmp (scenario, "durable")) {
        const char *fsync = s_string (row, "fsync");
        cr_assert (strstr ("memory never batch always", fsync));
    }
    if (!strcmp (scenario, "chunked"))
        s_string (row, "chunksize");
}

//  Parses the output, checks the keys every run has, and returns the
//  document; counts[i] gets the rows of each scenario.
static j_value_t *
s_check_document (const char *text, size_t counts[S_SCENARIOS])
{
    j_value_t *document = j_parse (text);
    cr_assert_not_null (document, "not one JSON document:\n%s", text);
    cr_assert_str_eq (s_string (document, "tool"), "drover bench");
    cr_assert (*s_string (document, "version"));
    const j_value_t *machine = j_get (document, "machine");
    s_positive (machine, "cores");
    cr_assert (*s_string (machine, "kernel"));
    s_string (machine, "host");
    const j_value_t *settings = j_get (document, "settings");
    cr_assert_str_eq (s_string (settings, "mode"), "local");
    cr_assert_eq (s_positive (settings, "children"), 2);
    cr_assert_not_null (j_get (settings, "endpoint"));
    const j_value_t *results = j_get (document, "results");
    cr_assert (results && results->type == J_ARRAY);
    const char *names[S_SCENARIOS] = {"throughput", "chunked", "latency",
                                      "dispatch",   "payload", "durable",
                                      "memory",     "ceiling"};
    memset (counts, 0, S_SCENARIOS * sizeof (size_t));
    for (size_t i = 0; i < results->count; i++) {
        s_check_row (results->items[i]);
        for (size_t j = 0; j < S_SCENARIOS; j++)
            counts[j] +=
                !strcmp (s_string (results->items[i], "scenario"), names[j]);
    }
    return document;
}

//  --------------------------------------------------------------------------
//  The tests

Test (bench, all_scenarios_tiny)
{
    s_run_t run = s_bench ("-j 2 --tasks 200 --samples 50 --items 3000 "
                           "--queued 2000 --map-lines 3000 --json");
    cr_assert_eq (run.status, 0, "exit %d: %s", run.status, run.err);
    size_t counts[S_SCENARIOS];
    j_value_t *document = s_check_document (run.out, counts);
    cr_assert_eq (counts[S_THROUGHPUT], 1);
    cr_assert_eq (counts[S_CHUNKED], 1);
    cr_assert_eq (counts[S_LATENCY], 1);
    cr_assert_eq (counts[S_DISPATCH], 1);
    cr_assert_eq (counts[S_PAYLOAD], 4);     //  16 B, 1 KiB, 64 KiB, 1 MiB
    cr_assert_eq (counts[S_DURABLE], 4);     //  memory, never, batch, always
    cr_assert_eq (counts[S_MEMORY], 2);      //  the broker, a map process
    cr_assert_eq (counts[S_CEILING], 4 + 3); //  2 x 2, and 3 payload sizes
    //  With the ceiling measured, every throughput has its fraction
    const j_value_t *results = j_get (document, "results");
    for (size_t i = 0; i < results->count; i++) {
        const char *scenario = s_string (results->items[i], "scenario");
        if (!strcmp (scenario, "throughput") || !strcmp (scenario, "payload")
            || !strcmp (scenario, "durable"))
            s_positive (results->items[i], "ceiling_fraction");
    }
    j_destroy (document);
    s_run_free (&run);
}

//  Each scenario alone, with tiny sizes: only its rows.
static void
s_one_scenario (const char *arguments, size_t index, size_t rows)
{
    s_run_t run = s_bench (arguments);
    cr_assert_eq (run.status, 0, "exit %d: %s", run.status, run.err);
    size_t counts[S_SCENARIOS];
    j_value_t *document = s_check_document (run.out, counts);
    for (size_t i = 0; i < S_SCENARIOS; i++)
        cr_assert_eq (counts[i], i == index ? rows : 0, "%s: scenario %zu",
                      arguments, i);
    j_destroy (document);
    s_run_free (&run);
}

Test (bench, throughput_alone)
{
    s_one_scenario ("-j 2 --json -q -s throughput --tasks 100", S_THROUGHPUT,
                    1);
}

Test (bench, chunked_alone)
{
    s_one_scenario ("-j 2 --json -q -s chunked --items 5000", S_CHUNKED, 1);
    s_one_scenario ("-j 2 --json -q -s chunked --items 500 --chunksize 7",
                    S_CHUNKED, 1);
}

Test (bench, memory_alone)
{
    s_one_scenario ("-j 2 --json -q -s memory --queued 5000 --map-lines 2000",
                    S_MEMORY, 2);
}

Test (bench, latency_alone)
{
    s_one_scenario ("-j 2 --json -q -s latency --samples 20 --warmup 5",
                    S_LATENCY, 1);
}

Test (bench, dispatch_alone)
{
    s_one_scenario ("-j 2 --json -q -s dispatch --dispatch-tasks 40 "
                    "--dispatch-children 2",
                    S_DISPATCH, 1);
}

Test (bench, payload_alone)
{
    s_one_scenario ("-j 2 --json -q -s payload --tasks 20 --payload-sizes "
                    "16,1K,1M --payload-mb 2",
                    S_PAYLOAD, 3);
}

Test (bench, durable_alone)
{
    s_one_scenario ("-j 2 --json -q -s durable --tasks 50 --fsync-modes "
                    "memory,always",
                    S_DURABLE, 2);
}

Test (bench, ceiling_alone)
{
    s_one_scenario ("-j 2 --json -q -s ceiling --messages 100", S_CEILING, 4);
}

Test (bench, table)
{
    s_run_t run = s_bench ("-j 1 -q -s latency,throughput --samples 10 "
                           "--tasks 50");
    cr_assert_eq (run.status, 0, "exit %d: %s", run.status, run.err);
    cr_assert (strstr (run.out, "drover bench "), "%s", run.out);
    cr_assert (strstr (run.out, "cores"));
    cr_assert (strstr (run.out, "p99.9 us"));
    cr_assert (strstr (run.out, "tasks/s"));
    cr_assert_null (strstr (run.err, "drover bench: "), "--quiet: %s", run.err);
    s_run_free (&run);
}

Test (bench, help_names_every_scenario)
{
    s_run_t run = s_bench ("--help");
    cr_assert_eq (run.status, 0);
    const char *words[] = {
        "throughput",  "chunked",     "latency",  "dispatch",
        "payload",     "durable",     "memory",   "ceiling",
        "--connect",   "--json",      "--tasks",  "--samples",
        "--scenarios", "--chunksize", "--queued", "--map-lines"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        cr_assert (strstr (run.out, words[i]), "--help lacks %s", words[i]);
    s_run_free (&run);
}

Test (bench, usage_errors_exit_2_with_one_line)
{
    const char *bad[] = {"--bogus",
                         "--scenarios nope",
                         "--tasks 0",
                         "--payload-sizes 1G",
                         "--fsync-modes sometimes",
                         "--chunksize 0",
                         "--chunksize lots",
                         "extra-argument"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_run_t run = s_bench (bad[i]);
        cr_assert_eq (run.status, 2, "%s: exit %d", bad[i], run.status);
        cr_assert_eq (s_lines (run.err), 1, "%s: %s", bad[i], run.err);
        cr_assert (!strncmp (run.err, "drover bench: ", 14), "%s", run.err);
        cr_assert_str_eq (run.out, "");
        s_run_free (&run);
    }
}

Test (bench, connect_to_nobody_fails_clearly)
{
    char *arguments = zsys_sprintf ("--connect tcp://127.0.0.1:%d "
                                    "--connect-timeout 500 -s throughput "
                                    "--tasks 10",
                                    procs_free_port ());
    cr_assert_not_null (arguments);
    s_run_t run = s_bench (arguments);
    cr_assert_eq (run.status, 1, "exit %d: %s", run.status, run.err);
    cr_assert_eq (s_lines (run.err), 1, "%s", run.err);
    cr_assert (strstr (run.err, "drover bench: "), "%s", run.err);
    cr_assert (strstr (run.err, "tcp://127.0.0.1:"), "%s", run.err);
    cr_assert_str_eq (run.out, "");
    free (arguments);
    s_run_free (&run);
}
