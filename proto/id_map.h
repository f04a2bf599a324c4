/*  id_map.h - task ids mapped to pointers.

    An open-addressing hash table of (id, value) pairs held in its own
    array: mapping an id allocates nothing, where a zhashx allocates an
    entry per id (and a copy of the id unless it lives in the value), and a
    lookup reads no value, where id_index reads each item it probes. The
    array grows at 3/4 full and shrinks only when told (id_map_trim), so a
    map whose size swings by the turn does not resize at every swing.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_ID_MAP_H_INCLUDED
#define DROVER_ID_MAP_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct id_map_t id_map_t;

//  A new, empty map.
id_map_t *id_map_new (void);
void id_map_destroy (id_map_t **self_p);

//  The value of id, or NULL.
void *id_map_lookup (id_map_t *self, uint64_t id);

//  Maps id to value (not NULL); returns the value it replaces, or NULL.
void *id_map_set (id_map_t *self, uint64_t id, void *value);

//  Unmaps id; returns its value, or NULL if it had none.
void *id_map_remove (id_map_t *self, uint64_t id);

//  Gives memory back after a burst: a map less than 1/8 full shrinks to
//  at most 1/2 full. Call it now and then, not after every removal.
void id_map_trim (id_map_t *self);

//  Ids mapped.
size_t id_map_size (id_map_t *self);

//  Iterates the pairs in no particular order: returns a value and sets
//  *id_p to its id; NULL at the end. Do not change the map while
//  iterating.
void *id_map_first (id_map_t *self, uint64_t *id_p);
void *id_map_next (id_map_t *self, uint64_t *id_p);

#endif
