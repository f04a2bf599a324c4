/*  name_table.c - interned names, counted by their holders.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "name_table.h"

#include <czmq.h>
#include <stddef.h>

//  One name: the string handed out is its text, so a holder finds the
//  entry (and its count) from the string alone.
typedef struct {
    size_t holders; //  who hold it
    char text[];    //  the name; the table key
} s_entry_t;

struct name_table_t {
    zhashx_t *entries; //  text -> s_entry_t, owned
};

static s_entry_t *
s_entry_of (const char *held)
{
    return (s_entry_t *)(held - offsetof (s_entry_t, text));
}

static void
s_entry_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

name_table_t *
name_table_new (void)
{
    name_table_t *self = (name_table_t *)zmalloc (sizeof *self);
    assert (self);
    self->entries = zhashx_new ();
    assert (self->entries);
    //  The key is the entry's own text
    zhashx_set_key_duplicator (self->entries, NULL);
    zhashx_set_key_destructor (self->entries, NULL);
    zhashx_set_destructor (self->entries, s_entry_destroy);
    return self;
}

void
name_table_destroy (name_table_t **self_p)
{
    assert (self_p);
    name_table_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->entries);
    free (self);
    *self_p = NULL;
}

const char *
name_table_hold (name_table_t *self, const char *name)
{
    if (!name)
        return NULL;
    s_entry_t *entry = (s_entry_t *)zhashx_lookup (self->entries, name);
    if (!entry) {
        size_t size = strlen (name) + 1;
        entry = (s_entry_t *)malloc (sizeof *entry + size);
        assert (entry);
        entry->holders = 0;
        memcpy (entry->text, name, size);
        zhashx_insert (self->entries, entry->text, entry);
    }
    entry->holders++;
    return entry->text;
}

const char *
name_table_hold_again (const char *held)
{
    if (held)
        s_entry_of (held)->holders++;
    return held;
}

void
name_table_release (name_table_t *self, const char *held)
{
    if (!held)
        return;
    s_entry_t *entry = s_entry_of (held);
    assert (entry->holders > 0);
    if (--entry->holders == 0)
        zhashx_delete (self->entries, entry->text);
}

size_t
name_table_size (name_table_t *self)
{
    return zhashx_size (self->entries);
}
