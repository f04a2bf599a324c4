/*  id_map.c - task ids mapped to pointers: linear probing over a
    power-of-two array of (id, value) pairs.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "id_map.h"
#include "id_hash.h"

#include <czmq.h>

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

//  Puts every pair in a new array of slot_count slots.
static void
s_resize (id_map_t *self, size_t slot_count)
{
    s_slot_t *old = self->slots;
    size_t old_count = self->mask + 1;
    self->slots = (s_slot_t *)calloc (slot_count, sizeof (s_slot_t));
    assert (self->slots);
    self->mask = slot_count - 1;
    for (size_t i = 0; i < old_count; i++)
        if (old[i].value) {
            size_t slot = s_home (self, old[i].id);
            while (self->slots[slot].value)
                slot = (slot + 1) & self->mask;
            self->slots[slot] = old[i];
        }
    free (old);
}

id_map_t *
id_map_new (void)
{
    id_map_t *self = (id_map_t *)zmalloc (sizeof *self);
    assert (self);
    self->slots = (s_slot_t *)calloc (S_MIN_SLOTS, sizeof (s_slot_t));
    assert (self->slots);
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

void *
id_map_set (id_map_t *self, uint64_t id, void *value)
{
    assert (value);
    size_t slot = s_find (self, id);
    void *old = self->slots[slot].value;
    if (old) {
        self->slots[slot].value = value;
        return old;
    }
    //  Linear probing stays short up to a load of 3/4
    if (4 * (self->size + 1) > 3 * (self->mask + 1)) {
        s_resize (self, 2 * (self->mask + 1));
        slot = s_find (self, id);
    }
    self->slots[slot] = (s_slot_t){id, value};
    self->size++;
    return NULL;
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
    return value;
}

void
id_map_trim (id_map_t *self)
{
    size_t slot_count = self->mask + 1;
    if (slot_count == S_MIN_SLOTS || 8 * self->size >= slot_count)
        return;
    while (slot_count > S_MIN_SLOTS && 4 * self->size < slot_count)
        slot_count /= 2;
    s_resize (self, slot_count);
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
