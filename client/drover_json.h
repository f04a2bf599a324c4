/*  drover_json.h - task results and dead letters as JSON, one object per
    line, for `drover map --json`, `drover dead list --json` and programs
    that log results.

    Strings are escaped for any JSON parser: quotes, backslashes and
    control characters are escaped; valid UTF-8 passes as it is (U+2028
    and U+2029 escaped, for JavaScript); each octet that is not part of
    valid UTF-8 becomes U+FFFD. A result payload that is not valid UTF-8
    also goes out exactly, in base64, as "result_base64". Internal to
    libdrover's tools; not installed.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_JSON_H_INCLUDED
#define DROVER_JSON_H_INCLUDED

#include "drover_client.h"
#include <stdio.h>

/*  True when the size octets at data are valid UTF-8 (RFC 3629: no
    overlong forms, no surrogates, nothing over U+10FFFF). */
bool drover_json_utf8_valid (const void *data, size_t size);

/*  Writes the octets as one quoted JSON string. Returns 0, or DROVER_EIO
    when out would not take it. */
int drover_json_write_string (FILE *out, const void *data, size_t size);

/*  Writes the octets as one quoted base64 string (RFC 4648, padded).
    Returns 0 or DROVER_EIO. */
int drover_json_write_base64 (FILE *out, const void *data, size_t size);

/*  A task's outcome in one word: "ok", "failed", "crashed", "timeout",
    "memlimit", "cancelled" or "lost". Static text. */
const char *drover_json_status (int code);

/*  Writes a result as one JSON object and a newline:
        {"index":N,"id":ID|null,"status":"ok","attempts":N,"node":"..."|null,
         "elapsed":SECONDS,"cpu":SECONDS,"max_rss_kb":N,"result":"...",
         ["result_base64":"...",] (when the result is not valid UTF-8)
         ["code":"DROVER_E...","error":"...",] (when the task failed)
         ["signal":N,"exit_status":N]} (when the task failed, or not 0)
    "attempts" is the attempt that gave the result; "error" its reason.
    Returns 0 or DROVER_EIO. */
int drover_json_write_result (FILE *out, const drover_result_t *result);

/*  Writes a dead letter as one JSON object and a newline:
        {"id":ID,"handler":"..."|null,"queue":"..."|null,
         "max_attempts":N|null,"status":"crashed","code":"DROVER_E...",
         "error":"...","history":[{"attempt":N,"node":"..."|null,
         "status":"...","code":"DROVER_E...","error":"...","signal":N,
         "exit_status":N,"elapsed":SECONDS,"cpu":SECONDS,"max_rss_kb":N},
         ...]}
    Returns 0 or DROVER_EIO. */
int drover_json_write_dead (FILE *out, const drover_dead_t *dead);

#endif
