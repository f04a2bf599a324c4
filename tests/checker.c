/*  checker.c - a delivery checker for the fault suite: lost, duplicated
    and unexpected results (see checker.h).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "checker.h"
#include <assert.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

//  Inputs beyond this index are not given a record: their results are
//  unexpected (a test never submits that many).
#define CHECKER_MAX_INDEX 100000000u

typedef struct {
    checker_entry_t public; //  what checker_entry shows
    char *expected;         //  expected result octets, or NULL
    size_t expected_size;   //  how many
} s_entry_t;

typedef struct {
    uint64_t id;    //  task id; 0: empty slot
    uint64_t index; //  its input
} s_slot_t;

struct checker_t {
    s_entry_t *entries;   //  one per input index seen
    size_t entry_count;   //  how many entries are in use (highest index + 1)
    size_t entry_size;    //  entries allocated
    s_slot_t *ids;        //  task id -> input index, open addressing
    size_t id_count;      //  ids in use
    size_t id_size;       //  slots allocated, a power of two
    size_t results;       //  results received
    size_t unexpected;    //  results that named no submitted input or id
    size_t malformed;     //  JSON lines that did not parse
    uint64_t first_stray; //  index of the first stray result, for the print
};

//  --------------------------------------------------------------------------
//  Records

checker_t *
checker_new (void)
{
    checker_t *self = (checker_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->id_size = 1024;
    self->ids = (s_slot_t *)calloc (self->id_size, sizeof (s_slot_t));
    if (!self->ids) {
        free (self);
        return NULL;
    }
    return self;
}

void
checker_destroy (checker_t **self_p)
{
    assert (self_p);
    checker_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->entry_count; i++) {
        free ((char *)self->entries[i].public.status);
        free ((char *)self->entries[i].public.node);
        free ((char *)self->entries[i].public.result);
        free (self->entries[i].expected);
    }
    free (self->entries);
    free (self->ids);
    free (self);
    *self_p = NULL;
}

//  The entry of index, created (zeroed) if needed; NULL past the limit.
static s_entry_t *
s_entry (checker_t *self, uint64_t index)
{
    if (index >= CHECKER_MAX_INDEX)
        return NULL;
    if (index >= self->entry_size) {
        size_t size = self->entry_size ? self->entry_size : 1024;
        while (size <= index)
            size *= 2;
        s_entry_t *entries =
            (s_entry_t *)realloc (self->entries, size * sizeof (s_entry_t));
        assert (entries);
        memset (entries + self->entry_size, 0,
                (size - self->entry_size) * sizeof (s_entry_t));
        self->entries = entries;
        self->entry_size = size;
    }
    if (index >= self->entry_count)
        self->entry_count = (size_t)index + 1;
    return &self->entries[index];
}

static size_t
s_hash (uint64_t id, size_t size)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)id & (size - 1);
}

//  The slot of id: its own, or the empty one where it would go.
static s_slot_t *
s_id_slot (checker_t *self, uint64_t id)
{
    size_t at = s_hash (id, self->id_size);
    while (self->ids[at].id && self->ids[at].id != id)
        at = (at + 1) & (self->id_size - 1);
    return &self->ids[at];
}

static void
s_id_insert (checker_t *self, uint64_t id, uint64_t index)
{
    if (2 * (self->id_count + 1) > self->id_size) {
        s_slot_t *old = self->ids;
        size_t old_size = self->id_size;
        self->id_size *= 2;
        self->ids = (s_slot_t *)calloc (self->id_size, sizeof (s_slot_t));
        assert (self->ids);
        for (size_t i = 0; i < old_size; i++)
            if (old[i].id)
                *s_id_slot (self, old[i].id) = old[i];
        free (old);
    }
    s_slot_t *slot = s_id_slot (self, id);
    assert (slot->id == 0);
    slot->id = id;
    slot->index = index;
    self->id_count++;
}

int
checker_submit (checker_t *self, uint64_t index, uint64_t id)
{
    assert (self);
    s_entry_t *entry = s_entry (self, index);
    if (!entry || entry->public.submitted)
        return -1;
    if (id) {
        if (s_id_slot (self, id)->id)
            return -1;
        s_id_insert (self, id, index);
    }
    entry->public.submitted = true;
    entry->public.id = id;
    return 0;
}

void
checker_expect (checker_t *self, uint64_t index, const void *data, size_t size)
{
    assert (self);
    s_entry_t *entry = s_entry (self, index);
    assert (entry);
    free (entry->expected);
    entry->expected = (char *)malloc (size + 1);
    assert (entry->expected);
    if (size)
        memcpy (entry->expected, data, size);
    entry->expected[size] = 0;
    entry->expected_size = size;
}

size_t
checker_submit_lines (checker_t *self, const char *text,
                      const char *echo_suffix)
{
    assert (self && text);
    size_t count = 0;
    while (*text) {
        const char *end = strchr (text, '\n');
        size_t size = end ? (size_t)(end - text) : strlen (text);
        int rc = checker_submit (self, count, 0);
        assert (rc == 0);
        (void)rc;
        if (echo_suffix) {
            size_t suffix_size = strlen (echo_suffix);
            char *expected = (char *)malloc (size + suffix_size);
            assert (expected);
            memcpy (expected, text, size);
            memcpy (expected + size, echo_suffix, suffix_size);
            checker_expect (self, count, expected, size + suffix_size);
            free (expected);
        }
        count++;
        text += size + (end ? 1 : 0);
    }
    return count;
}

static char *
s_copy (const void *data, size_t size)
{
    char *copy = (char *)malloc (size + 1);
    assert (copy);
    if (size)
        memcpy (copy, data, size);
    copy[size] = 0;
    return copy;
}

void
checker_result (checker_t *self, uint64_t index, uint64_t id,
                const char *status, uint32_t attempts, const char *node,
                const void *data, size_t size)
{
    assert (self && status);
    self->results++;
    s_entry_t *entry = s_entry (self, index);
    bool stray = !entry || !entry->public.submitted;
    if (!stray && id) {
        //  The id must be the input's own: the one it was submitted as, or
        //  (when not known at submit) the one its first result named
        s_slot_t *slot = s_id_slot (self, id);
        if (slot->id && slot->index != index)
            stray = true;
        else if (entry->public.id && entry->public.id != id)
            stray = true;
        else if (!slot->id) {
            s_id_insert (self, id, index);
            entry->public.id = id;
        }
    }
    if (stray) {
        if (self->unexpected++ == 0)
            self->first_stray = index;
        return;
    }
    if (entry->public.results++ == 0) {
        entry->public.status = s_copy (status, strlen (status));
        entry->public.attempts = attempts;
        entry->public.node = node ? s_copy (node, strlen (node)) : NULL;
        entry->public.result = s_copy (data, size);
        entry->public.result_size = size;
    }
}

//  --------------------------------------------------------------------------
//  `drover map --json`: one flat JSON object per line

typedef struct {
    const char *at;  //  next octet to read
    const char *end; //  end of the line
} s_reader_t;

static void
s_skip_space (s_reader_t *reader)
{
    while (reader->at < reader->end && isspace ((unsigned char)*reader->at))
        reader->at++;
}

static bool
s_take (s_reader_t *reader, char c)
{
    s_skip_space (reader);
    if (reader->at < reader->end && *reader->at == c) {
        reader->at++;
        return true;
    }
    return false;
}

static void
s_put_utf8 (char *out, size_t *size, uint32_t code)
{
    if (code < 0x80)
        out[(*size)++] = (char)code;
    else if (code < 0x800) {
        out[(*size)++] = (char)(0xC0 | (code >> 6));
        out[(*size)++] = (char)(0x80 | (code & 0x3F));
    }
    else if (code < 0x10000) {
        out[(*size)++] = (char)(0xE0 | (code >> 12));
        out[(*size)++] = (char)(0x80 | ((code >> 6) & 0x3F));
        out[(*size)++] = (char)(0x80 | (code & 0x3F));
    }
    else {
        out[(*size)++] = (char)(0xF0 | (code >> 18));
        out[(*size)++] = (char)(0x80 | ((code >> 12) & 0x3F));
        out[(*size)++] = (char)(0x80 | ((code >> 6) & 0x3F));
        out[(*size)++] = (char)(0x80 | (code & 0x3F));
    }
}

static bool
s_hex4 (s_reader_t *reader, uint32_t *code)
{
    if (reader->end - reader->at < 4)
        return false;
    char digits[5] = {0};
    memcpy (digits, reader->at, 4);
    for (int i = 0; i < 4; i++)
        if (!isxdigit ((unsigned char)digits[i]))
            return false;
    *code = (uint32_t)strtoul (digits, NULL, 16);
    reader->at += 4;
    return true;
}

//  Reads a JSON string; returns it (caller frees) and its size, or NULL.
static char *
s_string (s_reader_t *reader, size_t *size_p)
{
    if (!s_take (reader, '"'))
        return NULL;
    //  Unescaped text is never longer than its escaped form
    char *out = (char *)malloc ((size_t)(reader->end - reader->at) + 1);
    assert (out);
    size_t size = 0;
    while (reader->at < reader->end && *reader->at != '"') {
        char c = *reader->at++;
        if ((unsigned char)c < 0x20)
            break;
        if (c != '\\') {
            out[size++] = c;
            continue;
        }
        if (reader->at == reader->end)
            break;
        c = *reader->at++;
        const char *plain = strchr ("\"\\/bfnrt", c);
        if (plain && c) {
            out[size++] = "\"\\/\b\f\n\r\t"[plain - "\"\\/bfnrt"];
            continue;
        }
        uint32_t code, low;
        if (c != 'u' || !s_hex4 (reader, &code))
            goto malformed;
        if (code >= 0xD800 && code < 0xDC00) {
            if (reader->end - reader->at < 2 || reader->at[0] != '\\'
                || reader->at[1] != 'u')
                goto malformed;
            reader->at += 2;
            if (!s_hex4 (reader, &low) || low < 0xDC00 || low > 0xDFFF)
                goto malformed;
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        s_put_utf8 (out, &size, code);
    }
    if (reader->at == reader->end || *reader->at != '"')
        goto malformed;
    reader->at++;
    out[size] = 0;
    *size_p = size;
    return out;
malformed:
    free (out);
    return NULL;
}

//  Decodes padded base64 in place; returns the size, or -1.
static long
s_base64_decode (char *text, size_t size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (size % 4)
        return -1;
    size_t out = 0;
    for (size_t i = 0; i < size; i += 4) {
        uint32_t bits = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = text[i + k];
            const char *at = c ? strchr (alphabet, c) : NULL;
            if (c == '=' && i + 4 == size && k >= 2)
                pad++;
            else if (!at || pad)
                return -1;
            bits = bits << 6 | (at ? (uint32_t)(at - alphabet) : 0);
        }
        text[out++] = (char)(bits >> 16);
        if (pad < 2)
            text[out++] = (char)(bits >> 8);
        if (pad < 1)
            text[out++] = (char)bits;
    }
    return (long)out;
}

typedef struct {
    bool has_index;     //  index was present
    uint64_t index;     //  input index
    uint64_t id;        //  task id, 0 for null
    uint32_t attempts;  //  attempts
    char *status;       //  status word
    char *node;         //  node name or NULL
    char *result;       //  result text or NULL
    size_t result_size; //  its size
    char *base64;       //  result_base64 or NULL
    size_t base64_size; //  its size
} s_line_t;

//  Reads a number, true, false or null; a number goes to *number (0 for
//  the others). Returns false when it is none of them.
static bool
s_scalar (s_reader_t *reader, double *number, bool *is_number)
{
    s_skip_space (reader);
    *number = 0;
    *is_number = false;
    static const char *words[] = {"null", "true", "false"};
    for (size_t i = 0; i < 3; i++) {
        size_t length = strlen (words[i]);
        if ((size_t)(reader->end - reader->at) >= length
            && memcmp (reader->at, words[i], length) == 0) {
            reader->at += length;
            return true;
        }
    }
    char buffer[64];
    size_t length = 0;
    while (reader->at + length < reader->end && length < sizeof buffer - 1
           && strchr ("+-.0123456789eE", reader->at[length]))
        length++;
    if (length == 0)
        return false;
    memcpy (buffer, reader->at, length);
    buffer[length] = 0;
    char *end;
    *number = strtod (buffer, &end);
    if (end != buffer + length)
        return false;
    reader->at += length;
    *is_number = true;
    return true;
}

static bool
s_parse_line (s_reader_t *reader, s_line_t *line)
{
    if (!s_take (reader, '{'))
        return false;
    if (s_take (reader, '}'))
        return false; //  no keys at all
    do {
        size_t key_size;
        char *key = s_string (reader, &key_size);
        if (!key)
            return false;
        if (!s_take (reader, ':')) {
            free (key);
            return false;
        }
        s_skip_space (reader);
        bool ok = true;
        if (reader->at < reader->end && *reader->at == '"') {
            size_t size;
            char *value = s_string (reader, &size);
            char **slot = NULL;
            size_t *slot_size = NULL;
            if (strcmp (key, "status") == 0)
                slot = &line->status;
            else if (strcmp (key, "node") == 0)
                slot = &line->node;
            else if (strcmp (key, "result") == 0) {
                slot = &line->result;
                slot_size = &line->result_size;
            }
            else if (strcmp (key, "result_base64") == 0) {
                slot = &line->base64;
                slot_size = &line->base64_size;
            }
            else if (strcmp (key, "index") == 0 || strcmp (key, "id") == 0
                     || strcmp (key, "attempts") == 0)
                ok = false; //  numbers, not strings
            if (!value || !ok || (slot && *slot)) {
                free (value);
                ok = false;
            }
            else if (slot) {
                *slot = value;
                if (slot_size)
                    *slot_size = size;
            }
            else
                free (value);
        }
        else {
            double number;
            bool is_number;
            ok = s_scalar (reader, &number, &is_number);
            bool whole = is_number && number >= 0 && number < 1e18
                         && number == (double)(uint64_t)number;
            if (ok && strcmp (key, "index") == 0) {
                ok = whole;
                line->has_index = true;
                line->index = whole ? (uint64_t)number : 0;
            }
            else if (ok && strcmp (key, "id") == 0)
                line->id = whole ? (uint64_t)number : 0;
            else if (ok && strcmp (key, "attempts") == 0)
                line->attempts = whole ? (uint32_t)number : 0;
        }
        free (key);
        if (!ok)
            return false;
    } while (s_take (reader, ','));
    if (!s_take (reader, '}'))
        return false;
    s_skip_space (reader);
    return reader->at == reader->end && line->has_index && line->status;
}

size_t
checker_feed_json (checker_t *self, const char *text)
{
    assert (self && text);
    size_t count = 0;
    while (*text) {
        const char *end = strchr (text, '\n');
        size_t size = end ? (size_t)(end - text) : strlen (text);
        s_reader_t reader = {text, text + size};
        s_line_t line = {0};
        bool parsed = s_parse_line (&reader, &line);
        if (parsed && line.base64) {
            long decoded = s_base64_decode (line.base64, line.base64_size);
            parsed = decoded >= 0;
            if (parsed) {
                free (line.result);
                line.result = line.base64;
                line.result_size = (size_t)decoded;
                line.base64 = NULL;
            }
        }
        if (parsed) {
            checker_result (self, line.index, line.id, line.status,
                            line.attempts, line.node, line.result,
                            line.result ? line.result_size : 0);
            count++;
        }
        else if (size > 0)
            self->malformed++;
        free (line.status);
        free (line.node);
        free (line.result);
        free (line.base64);
        text += size + (end ? 1 : 0);
    }
    return count;
}

//  --------------------------------------------------------------------------
//  Reports

static bool
s_mismatched (const s_entry_t *entry)
{
    return entry->expected && entry->public.results
           && strcmp (entry->public.status, "ok") == 0
           && (entry->public.result_size != entry->expected_size
               || memcmp (entry->public.result, entry->expected,
                          entry->expected_size)
                      != 0);
}

checker_report_t
checker_report (checker_t *self)
{
    assert (self);
    checker_report_t report = {0};
    report.results = self->results;
    report.unexpected = self->unexpected;
    report.malformed = self->malformed;
    for (size_t i = 0; i < self->entry_count; i++) {
        const s_entry_t *entry = &self->entries[i];
        if (!entry->public.submitted)
            continue;
        report.submitted++;
        if (entry->public.results == 0)
            report.lost++;
        else if (strcmp (entry->public.status, "ok") == 0)
            report.ok++;
        else
            report.failed++;
        if (entry->public.results > 1)
            report.duplicated++;
        if (s_mismatched (entry))
            report.mismatched++;
    }
    return report;
}

bool
checker_ok (const checker_report_t *report)
{
    return report->lost == 0 && report->duplicated == 0
           && report->unexpected == 0 && report->mismatched == 0
           && report->malformed == 0;
}

const checker_entry_t *
checker_entry (checker_t *self, uint64_t index)
{
    assert (self);
    if (index >= self->entry_count)
        return NULL;
    const s_entry_t *entry = &self->entries[index];
    if (!entry->public.submitted && entry->public.results == 0)
        return NULL;
    return &entry->public;
}

size_t
checker_count_status (checker_t *self, const char *status)
{
    assert (self && status);
    size_t count = 0;
    for (size_t i = 0; i < self->entry_count; i++)
        if (self->entries[i].public.status
            && strcmp (self->entries[i].public.status, status) == 0)
            count++;
    return count;
}

size_t
checker_count_attempts (checker_t *self, uint32_t attempts)
{
    assert (self);
    size_t count = 0;
    for (size_t i = 0; i < self->entry_count; i++)
        if (self->entries[i].public.results
            && self->entries[i].public.attempts >= attempts)
            count++;
    return count;
}

//  Prints up to 10 inputs for which problem holds.
static void
s_print_some (checker_t *self, FILE *out, const char *name,
              bool (*problem) (const s_entry_t *))
{
    size_t shown = 0;
    for (size_t i = 0; i < self->entry_count && shown < 10; i++) {
        const s_entry_t *entry = &self->entries[i];
        if (!entry->public.submitted || !problem (entry))
            continue;
        fprintf (out, "%s  %s: input %zu (task %llu, %zu results)",
                 "checker:", name, i, (unsigned long long)entry->public.id,
                 entry->public.results);
        if (entry->public.results)
            fprintf (out, ", first %s after %u attempts: %.60s",
                     entry->public.status, entry->public.attempts,
                     entry->public.result);
        fputc ('\n', out);
        shown++;
    }
}

static bool
s_lost (const s_entry_t *entry)
{
    return entry->public.results == 0;
}

static bool
s_duplicated (const s_entry_t *entry)
{
    return entry->public.results > 1;
}

void
checker_print (checker_t *self, FILE *out)
{
    assert (self && out);
    checker_report_t report = checker_report (self);
    fprintf (out,
             "checker: %zu submitted, %zu results: %zu ok, %zu failed; "
             "lost %zu, duplicated %zu, unexpected %zu, mismatched %zu, "
             "malformed %zu\n",
             report.submitted, report.results, report.ok, report.failed,
             report.lost, report.duplicated, report.unexpected,
             report.mismatched, report.malformed);
    s_print_some (self, out, "lost", s_lost);
    s_print_some (self, out, "duplicated", s_duplicated);
    s_print_some (self, out, "mismatched", s_mismatched);
    if (report.unexpected)
        fprintf (out, "checker:  unexpected: first for input %llu\n",
                 (unsigned long long)self->first_stray);
}
