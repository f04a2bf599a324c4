/*  id_index.c - items looked up by the uint64_t id they hold: linear
    probing over a power-of-two array of item pointers.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "id_index.h"
#include "id_hash.h"

#include <czmq.h>

//  Slots of an empty index; it never shrinks below.
#define S_MIN_SLOTS 16

struct id_index_t {
    size_t id_offset; //  where an item holds its id
    void **slots;     //  items, NULL for a free slot
    size_t mask;      //  slots - 1 (their count is a power of two)
    size_t size;      //  items held
    size_t cursor;    //  next slot id_index_next looks at
};

static uint64_t
s_id (id_index_t *self, const void *item)
{
    uint64_t id;
    memcpy (&id, (const char *)item + self->id_offset, sizeof id);
    return id;
}

static size_t
s_home (id_index_t *self, uint64_t id)
{
    return id_hash (id) & self->mask;
}

//  Puts every item in a new array of slot_count slots.
static void
s_resize (id_index_t *self, size_t slot_count)
{
    void **old = self->slots;
    size_t old_count = self->mask + 1;
    self->slots = (void **)calloc (slot_count, sizeof (void *));
    assert (self->slots);
    self->mask = slot_count - 1;
    for (size_t i = 0; i < old_count; i++)
        if (old[i]) {
            size_t slot = s_home (self, s_id (self, old[i]));
            while (self->slots[slot])
                slot = (slot + 1) & self->mask;
            self->slots[slot] = old[i];
        }
    free (old);
}

id_index_t *
id_index_new (size_t id_offset)
{
    id_index_t *self = (id_index_t *)zmalloc (sizeof *self);
    assert (self);
    self->id_offset = id_offset;
    self->slots = (void **)calloc (S_MIN_SLOTS, sizeof (void *));
    assert (self->slots);
    self->mask = S_MIN_SLOTS - 1;
    return self;
}

void
id_index_destroy (id_index_t **self_p)
{
    assert (self_p);
    id_index_t *self = *self_p;
    if (!self)
        return;
    free (self->slots);
    free (self);
    *self_p = NULL;
}

//  The slot holding id, or the free slot that ends its probe sequence.
static size_t
s_find (id_index_t *self, uint64_t id)
{
    size_t slot = s_home (self, id);
    while (self->slots[slot] && s_id (self, self->slots[slot]) != id)
        slot = (slot + 1) & self->mask;
    return slot;
}

void
id_index_insert (id_index_t *self, void *item)
{
    assert (item);
    //  Linear probing stays short up to a load of 3/4
    if (4 * (self->size + 1) > 3 * (self->mask + 1))
        s_resize (self, 2 * (self->mask + 1));
    size_t slot = s_find (self, s_id (self, item));
    assert (!self->slots[slot]);
    self->slots[slot] = item;
    self->size++;
}

void *
id_index_lookup (id_index_t *self, uint64_t id)
{
    return self->slots[s_find (self, id)];
}

void *
id_index_remove (id_index_t *self, uint64_t id)
{
    size_t hole = s_find (self, id);
    void *item = self->slots[hole];
    if (!item)
        return NULL;
    //  Backward shift: items after the hole that may not probe past it move
    //  into it, so lookups need no tombstones
    for (size_t slot = (hole + 1) & self->mask; self->slots[slot];
         slot = (slot + 1) & self->mask) {
        size_t home = s_home (self, s_id (self, self->slots[slot]));
        //  Its probe from home reaches slot without passing hole: it stays
        if (((slot - home) & self->mask) < ((slot - hole) & self->mask))
            continue;
        self->slots[hole] = self->slots[slot];
        hole = slot;
    }
    self->slots[hole] = NULL;
    self->size--;
    //  Give memory back after a burst, with room to grow again
    if (self->mask + 1 > S_MIN_SLOTS && 8 * self->size < self->mask + 1)
        s_resize (self, (self->mask + 1) / 2);
    return item;
}

size_t
id_index_size (id_index_t *self)
{
    return self->size;
}

void *
id_index_first (id_index_t *self)
{
    self->cursor = 0;
    return id_index_next (self);
}

void *
id_index_next (id_index_t *self)
{
    while (self->cursor <= self->mask) {
        void *item = self->slots[self->cursor++];
        if (item)
            return item;
    }
    return NULL;
}
