/*  id_map.h - task ids (or other 64-bit numbers) mapped to pointers.

    An open-addressing hash table of (id, value) pairs held in its own
    array (linear probing, backward-shift deletion, no tombstones): mapping
    an id allocates nothing, where a zhashx allocates an entry per id (and
    a copy of the id unless it lives in the value), and a lookup reads no
    value, where the broker's id_index reads each item it probes. The array
    doubles at 3/4 full and halves below 1/8 full, so a map whose size
    swings by less than six times does not resize at every swing. Any id
    may be mapped, 0 too; values are never NULL and not owned.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_ID_MAP_H_INCLUDED
#define DROVER_ID_MAP_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct id_map_t id_map_t;

//  A new, empty map, or NULL when out of memory.
id_map_t *id_map_new (void);
void id_map_destroy (id_map_t **self_p);

//  The value of id, or NULL.
void *id_map_lookup (id_map_t *self, uint64_t id);

//  Maps id to value (not NULL); returns the value it replaces, or NULL.
//  Out of memory it aborts: for the broker and the node, which do so on
//  every allocation.
void *id_map_set (id_map_t *self, uint64_t id, void *value);

//  Maps id to value (not NULL), replacing any value it had: 0, or
//  DROVER_ENOMEM when the map cannot grow (it is then unchanged).
int id_map_try_set (id_map_t *self, uint64_t id, void *value);

//  Unmaps id; returns its value, or NULL if it had none.
void *id_map_remove (id_map_t *self, uint64_t id);

//  Ids mapped.
size_t id_map_size (id_map_t *self);

//  Copies up to max of the ids mapped into ids (in no order); returns how
//  many. Walks the map while it changes: change it after the copy.
size_t id_map_keys (id_map_t *self, uint64_t *ids, size_t max);

//  Iterates the pairs in no particular order: returns a value and sets
//  *id_p to its id; NULL at the end. Do not change the map while
//  iterating.
void *id_map_first (id_map_t *self, uint64_t *id_p);
void *id_map_next (id_map_t *self, uint64_t *id_p);

#endif
