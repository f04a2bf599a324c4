/*  token_table.c - SUBMIT tokens and their ids, oldest forgotten first.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "token_table.h"

#include <czmq.h>

typedef struct {
    char *token;   //  the key (owned)
    uint64_t *ids; //  the ids it was answered with
    size_t count;
    void *handle; //  its place in the age list
} s_entry_t;

struct token_table_t {
    zhashx_t *entries; //  token -> s_entry_t, owned
    zlistx_t *ages;    //  s_entry_t, oldest first (not owned)
    size_t max;        //  entries kept at most
    size_t max_ids;    //  ids kept at most, in all entries
    size_t ids;        //  ids kept now
};

static void
s_entry_destroy (void **item)
{
    s_entry_t *entry = (s_entry_t *)*item;
    *item = NULL;
    free (entry->token);
    free (entry->ids);
    free (entry);
}

token_table_t *
token_table_new (size_t max, size_t max_ids)
{
    assert (max > 0 && max_ids > 0);
    token_table_t *self = (token_table_t *)zmalloc (sizeof *self);
    assert (self);
    self->entries = zhashx_new ();
    self->ages = zlistx_new ();
    assert (self->entries && self->ages);
    zhashx_set_destructor (self->entries, s_entry_destroy);
    self->max = max;
    self->max_ids = max_ids;
    return self;
}

void
token_table_destroy (token_table_t **self_p)
{
    token_table_t *self = *self_p;
    if (!self)
        return;
    zlistx_destroy (&self->ages);
    zhashx_destroy (&self->entries);
    free (self);
    *self_p = NULL;
}

const uint64_t *
token_table_lookup (token_table_t *self, const char *token, size_t *count_p)
{
    s_entry_t *entry = (s_entry_t *)zhashx_lookup (self->entries, token);
    if (!entry)
        return NULL;
    *count_p = entry->count;
    return entry->ids;
}

void
token_table_remove (token_table_t *self, const char *token)
{
    s_entry_t *entry = (s_entry_t *)zhashx_lookup (self->entries, token);
    if (!entry)
        return;
    zlistx_detach (self->ages, entry->handle);
    self->ids -= entry->count;
    zhashx_delete (self->entries, token);
}

void
token_table_insert (token_table_t *self, const char *token, const uint64_t *ids,
                    size_t count)
{
    token_table_remove (self, token);
    while (zlistx_size (self->ages)
           && (zlistx_size (self->ages) >= self->max
               || self->ids + count > self->max_ids)) {
        s_entry_t *oldest = (s_entry_t *)zlistx_first (self->ages);
        token_table_remove (self, oldest->token);
    }
    s_entry_t *entry = (s_entry_t *)zmalloc (sizeof *entry);
    assert (entry);
    entry->token = strdup (token);
    entry->ids = (uint64_t *)malloc ((count ? count : 1) * sizeof (uint64_t));
    assert (entry->token && entry->ids);
    memcpy (entry->ids, ids, count * sizeof (uint64_t));
    entry->count = count;
    self->ids += count;
    entry->handle = zlistx_add_end (self->ages, entry);
    //  The table's key is the entry's own copy
    zhashx_insert (self->entries, entry->token, entry);
}

size_t
token_table_size (token_table_t *self)
{
    return zhashx_size (self->entries);
}
