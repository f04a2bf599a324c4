/*  drover_json.c - task results as JSON.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_json.h"

#include <inttypes.h>
#include <string.h>

//  Length of the valid UTF-8 sequence at text (left octets remain), or 0
//  when the octet there does not start one (RFC 3629, table 3-7 of The
//  Unicode Standard).
static size_t
s_utf8_length (const uint8_t *text, size_t left)
{
    uint8_t first = text[0];
    if (first < 0x80)
        return 1;
    size_t length;
    uint8_t low = 0x80, high = 0xBF; //  bounds of the second octet
    if (first >= 0xC2 && first <= 0xDF)
        length = 2;
    else if (first >= 0xE0 && first <= 0xEF) {
        length = 3;
        if (first == 0xE0)
            low = 0xA0; //  no overlong forms
        else if (first == 0xED)
            high = 0x9F; //  no surrogates
    }
    else if (first >= 0xF0 && first <= 0xF4) {
        length = 4;
        if (first == 0xF0)
            low = 0x90; //  no overlong forms
        else if (first == 0xF4)
            high = 0x8F; //  nothing over U+10FFFF
    }
    else
        return 0;
    if (left < length || text[1] < low || text[1] > high)
        return 0;
    for (size_t i = 2; i < length; i++)
        if (text[i] < 0x80 || text[i] > 0xBF)
            return 0;
    return length;
}

bool
drover_json_utf8_valid (const void *data, size_t size)
{
    const uint8_t *text = (const uint8_t *)data;
    for (size_t at = 0; at < size;) {
        size_t length = s_utf8_length (text + at, size - at);
        if (length == 0)
            return false;
        at += length;
    }
    return true;
}

int
drover_json_write_string (FILE *out, const void *data, size_t size)
{
    const uint8_t *text = (const uint8_t *)data;
    bool ok = fputc ('"', out) != EOF;
    size_t run = 0; //  start of octets that go out as they are
    size_t at = 0;
    while (ok && at < size) {
        uint8_t octet = text[at];
        size_t length = s_utf8_length (text + at, size - at);
        const char *escape = NULL;
        char buffer[8];
        if (length == 0)
            escape = "\\ufffd";
        else if (octet == '"')
            escape = "\\\"";
        else if (octet == '\\')
            escape = "\\\\";
        else if (octet == '\n')
            escape = "\\n";
        else if (octet == '\r')
            escape = "\\r";
        else if (octet == '\t')
            escape = "\\t";
        else if (octet == '\b')
            escape = "\\b";
        else if (octet == '\f')
            escape = "\\f";
        else if (octet < 0x20 || octet == 0x7F) {
            snprintf (buffer, sizeof buffer, "\\u%04x", octet);
            escape = buffer;
        }
        else if (length == 3 && octet == 0xE2 && text[at + 1] == 0x80
                 && (text[at + 2] == 0xA8 || text[at + 2] == 0xA9))
            escape = text[at + 2] == 0xA8 ? "\\u2028" : "\\u2029";
        if (!escape) {
            at += length;
            continue;
        }
        if (at > run)
            ok = fwrite (text + run, 1, at - run, out) == at - run;
        ok = ok && fputs (escape, out) != EOF;
        at += length ? length : 1;
        run = at;
    }
    if (ok && at > run)
        ok = fwrite (text + run, 1, at - run, out) == at - run;
    ok = ok && fputc ('"', out) != EOF;
    return ok ? 0 : DROVER_EIO;
}

int
drover_json_write_base64 (FILE *out, const void *data, size_t size)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *octets = (const uint8_t *)data;
    bool ok = fputc ('"', out) != EOF;
    char chunk[4 * 256];
    size_t used = 0;
    for (size_t at = 0; ok && at < size; at += 3) {
        uint32_t group = (uint32_t)octets[at] << 16;
        if (at + 1 < size)
            group |= (uint32_t)octets[at + 1] << 8;
        if (at + 2 < size)
            group |= octets[at + 2];
        chunk[used++] = digits[(group >> 18) & 63];
        chunk[used++] = digits[(group >> 12) & 63];
        chunk[used++] = at + 1 < size ? digits[(group >> 6) & 63] : '=';
        chunk[used++] = at + 2 < size ? digits[group & 63] : '=';
        if (used == sizeof chunk) {
            ok = fwrite (chunk, 1, used, out) == used;
            used = 0;
        }
    }
    if (ok && used)
        ok = fwrite (chunk, 1, used, out) == used;
    ok = ok && fputc ('"', out) != EOF;
    return ok ? 0 : DROVER_EIO;
}

const char *
drover_json_status (int code)
{
    switch (code) {
        case 0: return "ok";
        case DROVER_ECRASHED: return "crashed";
        case DROVER_ETIMELIMIT: return "timeout";
        case DROVER_EMEMLIMIT: return "memlimit";
        case DROVER_ECANCELLED: return "cancelled";
        case DROVER_ELOST: return "lost";
        default: return "failed";
    }
}

static int
s_write_text (FILE *out, const char *text)
{
    if (!text)
        return fputs ("null", out) == EOF ? DROVER_EIO : 0;
    return drover_json_write_string (out, text, strlen (text));
}

//  Writes the text of a failure: its reason, or the code's description.
static int
s_write_error (FILE *out, int code, const char *reason)
{
    return s_write_text (out,
                         reason && *reason ? reason : drover_strerror (code));
}

int
drover_json_write_result (FILE *out, const drover_result_t *result)
{
    bool ok =
        fprintf (out, "{\"index\":%" PRIu64 ",\"id\":", result->index) > 0;
    if (result->id)
        ok = ok && fprintf (out, "%" PRIu64, result->id) > 0;
    else
        ok = ok && fputs ("null", out) != EOF;
    ok = ok
         && fprintf (out,
                     ",\"status\":\"%s\",\"attempts\":%" PRIu32 ",\"node\":",
                     drover_json_status (result->code), result->attempt)
                > 0;
    ok = ok && s_write_text (out, result->node) == 0;
    ok = ok
         && fprintf (out,
                     ",\"elapsed\":%.6f,\"cpu\":%.6f,\"max_rss_kb\":%" PRIu64
                     ",\"result\":",
                     (double)result->elapsed_us / 1e6,
                     (double)result->cpu_us / 1e6, result->max_rss_kb)
                > 0;
    ok =
        ok
        && drover_json_write_string (out, result->payload, result->payload_size)
               == 0;
    if (ok && !drover_json_utf8_valid (result->payload, result->payload_size))
        ok = fputs (",\"result_base64\":", out) != EOF
             && drover_json_write_base64 (out, result->payload,
                                          result->payload_size)
                    == 0;
    if (ok && result->code)
        ok = fprintf (out, ",\"code\":\"%s\",\"error\":",
                      drover_strcode (result->code))
                 > 0
             && s_write_error (out, result->code, result->reason) == 0;
    //  A failure always says how the child ended
    if (ok && (result->code || result->signal))
        ok = fprintf (out, ",\"signal\":%d", result->signal) > 0;
    if (ok && (result->code || result->exit_status))
        ok = fprintf (out, ",\"exit_status\":%d", result->exit_status) > 0;
    ok = ok && fputs ("}\n", out) != EOF;
    return ok ? 0 : DROVER_EIO;
}

int
drover_json_write_dead (FILE *out, const drover_dead_t *dead)
{
    bool ok = fprintf (out, "{\"id\":%" PRIu64 ",\"handler\":", dead->id) > 0
              && s_write_text (out, dead->handler) == 0
              && fputs (",\"queue\":", out) != EOF
              && s_write_text (out, dead->queue) == 0;
    if (ok && dead->max_attempts)
        ok =
            fprintf (out, ",\"max_attempts\":%" PRIu32, dead->max_attempts) > 0;
    else if (ok)
        ok = fputs (",\"max_attempts\":null", out) != EOF;
    ok = ok
         && fprintf (out, ",\"status\":\"%s\",\"code\":\"%s\",\"error\":",
                     drover_json_status (dead->code),
                     drover_strcode (dead->code))
                > 0
         && s_write_error (out, dead->code, dead->reason) == 0
         && fputs (",\"history\":[", out) != EOF;
    for (size_t i = 0; ok && i < dead->attempt_count; i++) {
        const drover_attempt_t *attempt = &dead->attempts[i];
        ok = fprintf (out, "%s{\"attempt\":%" PRIu32 ",\"node\":", i ? "," : "",
                      attempt->attempt)
                 > 0
             && s_write_text (out, attempt->node) == 0
             && fprintf (out, ",\"status\":\"%s\",\"code\":\"%s\",\"error\":",
                         drover_json_status (attempt->code),
                         drover_strcode (attempt->code))
                    > 0
             && s_write_error (out, attempt->code, attempt->reason) == 0
             && fprintf (out,
                         ",\"signal\":%d,\"exit_status\":%d,\"elapsed\":%.6f,"
                         "\"cpu\":%.6f,\"max_rss_kb\":%" PRIu64 "}",
                         attempt->signal, attempt->exit_status,
                         (double)attempt->elapsed_us / 1e6,
                         (double)attempt->cpu_us / 1e6, attempt->max_rss_kb)
                    > 0;
    }
    ok = ok && fputs ("]}\n", out) != EOF;
    return ok ? 0 : DROVER_EIO;
}
