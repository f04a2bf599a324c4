/*  id_map.c - task ids mapped to pointers: linear probing over a
    power-of-two array of (id, value) pairs.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "id_map.h"
#include "id_hash.h"

#include "drover_error.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>

//  Slots of an empty map; it never shrinks below.
#define S_MIN_SLOTS 16

//  One slot: free when value is NULL.
typedef struct {
    uint64_t id;
    void *value;
} s_slot_t;

struct id_map_t {
    s_slot_t *slots; //  the pairs
    size_t mask;     //  slots - 1 (their count is a power of two)
    size_t size;     //  pairs held
    size_t cursor;   //  next slot id_map_next looks at
};

static size_t
s_home (id_map_t *self, uint64_t id)
{
    return id_hash (id) & self->mask;
}

//  Puts every pair in a new array of slot_count slots; false, with the map
//  unchanged, when out of memory.
static bool
s_resize (id_map_t *self, size_t slot_count)
{
    s_slot_t *slots = (s_slot_t *)calloc (slot_count, sizeof (s_slot_t));
    if (!slots)
        return false;
    s_slot_t *old = self->slots;
    size_t old_count = self->mask + 1;
    self->slots = slots;
    self->mask = slot_count - 1;
    for (size_t i = 0; i < old_count; i++)
        if (old[i].value) {
            size_t slot = s_home (self, old[i].id);
            while (self->slots[slot].value)
                slot = (slot + 1) & self->mask;
            self->slots[slot] = old[i];
        }
    free (old);
    return true;
}

id_map_t *
id_map_new (void)
{
    id_map_t *self = (id_map_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->slots = (s_slot_t *)calloc (S_MIN_SLOTS, sizeof (s_slot_t));
    if (!self->slots) {
        free (self);
        return NULL;
    }
    self->mask = S_MIN_SLOTS - 1;
    return self;
}

void
id_map_destroy (id_map_t **self_p)
{
    assert (self_p);
    id_map_t *self = *self_p;
    if (!self)
        return;
    free (self->slots);
    free (self);
    *self_p = NULL;
}

//  The slot holding id, or the free slot that ends its probe sequence.
static size_t
s_find (id_map_t *self, uint64_t id)
{
    size_t slot = s_home (self, id);
    while (self->slots[slot].value && self->slots[slot].id != id)
        slot = (slot + 1) & self->mask;
    return slot;
}

void *
id_map_lookup (id_map_t *self, uint64_t id)
{
    return self->slots[s_find (self, id)].value;
}

int
id_map_try_set (id_map_t *self, uint64_t id, void *value)
{
    assert (value);
    size_t slot = s_find (self, id);
    if (self->slots[slot].value) {
        self->slots[slot].value = value;
        return 0;
    }
    //  Linear probing stays short up to a load of 3/4
    if (4 * (self->size + 1) > 3 * (self->mask + 1)) {
        if (self->mask + 1 > SIZE_MAX / 2 / sizeof (s_slot_t)
            || !s_resize (self, 2 * (self->mask + 1)))
            return DROVER_ENOMEM;
        slot = s_find (self, id);
    }
    self->slots[slot] = (s_slot_t){id, value};
    self->size++;
    return 0;
}

void *
id_map_set (id_map_t *self, uint64_t id, void *value)
{
    void *old = id_map_lookup (self, id);
    int rc = id_map_try_set (self, id, value);
    assert (rc == 0);
    (void)rc;
    return old;
}

void *
id_map_remove (id_map_t *self, uint64_t id)
{
    size_t hole = s_find (self, id);
    void *value = self->slots[hole].value;
    if (!value)
        return NULL;
    //  Backward shift: pairs after the hole that may not probe past it move
    //  into it, so lookups need no tombstones
    for (size_t slot = (hole + 1) & self->mask; self->slots[slot].value;
         slot = (slot + 1) & self->mask) {
        size_t home = s_home (self, self->slots[slot].id);
        //  Its probe from home reaches slot without passing hole: it stays
        if (((slot - home) & self->mask) < ((slot - hole) & self->mask))
            continue;
        self->slots[hole] = self->slots[slot];
        hole = slot;
    }
    self->slots[hole] = (s_slot_t){0, NULL};
    self->size--;
    //  Below 1/8 full, half the slots (out of memory, it stays as it is)
    size_t slot_count = self->mask + 1;
    if (slot_count > S_MIN_SLOTS && 8 * self->size < slot_count)
        s_resize (self, slot_count / 2);
    return value;
}

size_t
id_map_keys (id_map_t *self, uint64_t *ids, size_t max)
{
    size_t count = 0;
    for (size_t slot = 0; slot <= self->mask && count < max; slot++)
        if (self->slots[slot].value)
            ids[count++] = self->slots[slot].id;
    return count;
}

size_t
id_map_size (id_map_t *self)
{
    return self->size;
}

void *
id_map_first (id_map_t *self, uint64_t *id_p)
{
    self->cursor = 0;
    return id_map_next (self, id_p);
}

void *
id_map_next (id_map_t *self, uint64_t *id_p)
{
    while (self->cursor <= self->mask) {
        s_slot_t *slot = &self->slots[self->cursor++];
        if (slot->value) {
            *id_p = slot->id;
            return slot->value;
        }
    }
    return NULL;
}
