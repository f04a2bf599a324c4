/*  checker.h - a delivery checker for the fault suite, in the manner of
    Jepsen's set checkers: it records every task submitted (its input index
    and, when known, its task id) and every result received, and tells what
    went wrong:

    * lost: submitted, and no result came;
    * duplicated: more than one result came for one input;
    * unexpected: a result for an input or task id never submitted, or
      whose id is not the one the input was submitted as;
    * mismatched: a successful result whose octets differ from the result
      expected for its input (only for inputs given an expected result).

    Feed it the inputs and `drover map --json` output (checker_submit_lines,
    checker_feed_json), or submissions and results from libdrover
    (checker_submit, checker_result). Test code: it asserts nothing itself.

        checker_t *checker = checker_new ();
        checker_submit_lines (checker, inputs, "");
        checker_feed_json (checker, map_output);
        checker_report_t report = checker_report (checker);
        if (!checker_ok (&report))
            checker_print (checker, stderr);
        checker_destroy (&checker);

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef CHECKER_H_INCLUDED
#define CHECKER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct checker_t checker_t;

/*  What the checker found. Counts of inputs, except `unexpected` and
    `results`, which count results. */
typedef struct {
    size_t submitted;  /* inputs submitted */
    size_t results;    /* results received, all of them */
    size_t ok;         /* inputs whose first result succeeded */
    size_t failed;     /* inputs whose first result is a failure */
    size_t lost;       /* submitted, no result */
    size_t duplicated; /* inputs with more than one result */
    size_t unexpected; /* results for what was never submitted */
    size_t mismatched; /* successful results unlike the expected ones */
    size_t malformed;  /* lines of JSON output that did not parse */
} checker_report_t;

/*  The first result of an input, as the checker recorded it. The checker
    owns the strings; they are valid until it is destroyed. */
typedef struct {
    bool submitted;     /* the input was submitted */
    uint64_t id;        /* task id given at submit or by the result; 0: none */
    size_t results;     /* results received for it */
    const char *status; /* "ok", "failed", "crashed"...; NULL: no result */
    uint32_t attempts;  /* attempts of the first result */
    const char *node;   /* node of the first result, or NULL */
    const char *result; /* result octets of the first result, or NULL */
    size_t result_size; /* how many */
} checker_entry_t;

/*  Creates a checker. Returns NULL when out of memory. */
checker_t *checker_new (void);

/*  Destroys a checker and NULLs the pointer. NULL-safe. */
void checker_destroy (checker_t **self_p);

/*  Records that input index was submitted as task id (0: id not known, as
    with `drover map`). Returns 0, or -1 if index was already submitted or
    id already belongs to another input (both are errors of the test). */
int checker_submit (checker_t *self, uint64_t index, uint64_t id);

/*  Sets the result expected for input index when its task succeeds. */
void checker_expect (checker_t *self, uint64_t index, const void *data,
                     size_t size);

/*  Submits every line of text (without its newline) as inputs 0, 1, ...
    as `drover map` does. Unless echo_suffix is NULL, each line followed by
    echo_suffix is also the result expected: "" for the built-in echo, "\n"
    for a command that echoes its input line. Returns the number of lines. */
size_t checker_submit_lines (checker_t *self, const char *text,
                             const char *echo_suffix);

/*  Records one result. status is "ok" for a success (drover_json_status's
    words); node and data may be NULL. */
void checker_result (checker_t *self, uint64_t index, uint64_t id,
                     const char *status, uint32_t attempts, const char *node,
                     const void *data, size_t size);

/*  Records every line of `drover map --json` output as a result: keys
    index, id, status, attempts, node, result (result_base64 when present).
    A line that does not parse counts as malformed. Returns the number of
    results recorded. */
size_t checker_feed_json (checker_t *self, const char *text);

/*  Counts what the checker found so far. */
checker_report_t checker_report (checker_t *self);

/*  True when nothing was lost, duplicated, unexpected, mismatched or
    malformed. */
bool checker_ok (const checker_report_t *report);

/*  The record of input index, or NULL if nothing is known about it. */
const checker_entry_t *checker_entry (checker_t *self, uint64_t index);

/*  How many inputs' first result has this status ("ok", "crashed"...). */
size_t checker_count_status (checker_t *self, const char *status);

/*  How many inputs' first result took at least this many attempts. */
size_t checker_count_attempts (checker_t *self, uint32_t attempts);

/*  Prints the report and the first few inputs of each problem to out. */
void checker_print (checker_t *self, FILE *out);

#endif
