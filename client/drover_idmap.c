/*  drover_idmap.c - a hash table from 64-bit numbers to pointers.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_idmap.h"
#include "drover_error.h"

#include <assert.h>
#include <stdlib.h>

typedef struct {
    uint64_t key; //  0 when the slot is free
    void *value;  //  what the key maps to
} s_entry_t;

struct drover_idmap_t {
    s_entry_t *entries; //  the slots; capacity is a power of two
    size_t capacity;    //  number of slots
    size_t size;        //  slots in use
};

#define IDMAP_MIN_CAPACITY 16

//  Spreads sequential ids over the table (the finaliser of splitmix64).
static size_t
s_hash (uint64_t key, size_t capacity)
{
    key ^= key >> 30;
    key *= 0xbf58476d1ce4e5b9ULL;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebULL;
    key ^= key >> 31;
    return (size_t)key & (capacity - 1);
}

drover_idmap_t *
drover_idmap_new (void)
{
    drover_idmap_t *self = (drover_idmap_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->entries =
        (s_entry_t *)calloc (IDMAP_MIN_CAPACITY, sizeof (s_entry_t));
    if (!self->entries) {
        free (self);
        return NULL;
    }
    self->capacity = IDMAP_MIN_CAPACITY;
    return self;
}

void
drover_idmap_destroy (drover_idmap_t **self_p)
{
    assert (self_p);
    drover_idmap_t *self = *self_p;
    if (!self)
        return;
    free (self->entries);
    free (self);
    *self_p = NULL;
}

//  Returns the slot holding key, or the free slot where it would go.
static s_entry_t *
s_find (drover_idmap_t *self, uint64_t key)
{
    size_t index = s_hash (key, self->capacity);
    while (self->entries[index].key && self->entries[index].key != key)
        index = (index + 1) & (self->capacity - 1);
    return &self->entries[index];
}

static int
s_resize (drover_idmap_t *self, size_t capacity)
{
    s_entry_t *entries = (s_entry_t *)calloc (capacity, sizeof (s_entry_t));
    if (!entries)
        return DROVER_ENOMEM;
    s_entry_t *old = self->entries;
    size_t old_capacity = self->capacity;
    self->entries = entries;
    self->capacity = capacity;
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i].key)
            *s_find (self, old[i].key) = old[i];
    free (old);
    return 0;
}

int
drover_idmap_set (drover_idmap_t *self, uint64_t key, void *value)
{
    assert (self);
    assert (key);
    assert (value);
    s_entry_t *entry = s_find (self, key);
    if (entry->key) {
        entry->value = value;
        return 0;
    }
    //  Keep the load under 3/4 so probes stay short
    if ((self->size + 1) * 4 > self->capacity * 3) {
        if (self->capacity > SIZE_MAX / 2 / sizeof (s_entry_t)
            || s_resize (self, self->capacity * 2))
            return DROVER_ENOMEM;
        entry = s_find (self, key);
    }
    entry->key = key;
    entry->value = value;
    self->size++;
    return 0;
}

void *
drover_idmap_get (drover_idmap_t *self, uint64_t key)
{
    assert (self);
    if (!key)
        return NULL;
    s_entry_t *entry = s_find (self, key);
    return entry->key ? entry->value : NULL;
}

void *
drover_idmap_take (drover_idmap_t *self, uint64_t key)
{
    assert (self);
    if (!key)
        return NULL;
    s_entry_t *entry = s_find (self, key);
    if (!entry->key)
        return NULL;
    void *value = entry->value;
    //  Backward-shift deletion: move later entries of the probe run into
    //  the hole when their home slot allows it.
    size_t mask = self->capacity - 1;
    size_t hole = (size_t)(entry - self->entries);
    size_t index = (hole + 1) & mask;
    while (self->entries[index].key) {
        size_t home = s_hash (self->entries[index].key, self->capacity);
        //  The entry may move to the hole if its home is not in (hole,
        //  index], cyclically.
        bool stays = hole <= index ? (home > hole && home <= index)
                                   : (home > hole || home <= index);
        if (!stays) {
            self->entries[hole] = self->entries[index];
            hole = index;
        }
        index = (index + 1) & mask;
    }
    self->entries[hole].key = 0;
    self->entries[hole].value = NULL;
    self->size--;
    if (self->capacity > IDMAP_MIN_CAPACITY && self->size * 8 < self->capacity)
        s_resize (self, self->capacity / 2); //  on failure it just stays big
    return value;
}

size_t
drover_idmap_size (drover_idmap_t *self)
{
    assert (self);
    return self->size;
}

size_t
drover_idmap_keys (drover_idmap_t *self, uint64_t *keys, size_t max)
{
    assert (self);
    size_t count = 0;
    for (size_t i = 0; i < self->capacity && count < max; i++)
        if (self->entries[i].key)
            keys[count++] = self->entries[i].key;
    return count;
}
