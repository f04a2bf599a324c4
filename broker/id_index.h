/*  id_index.h - items looked up by the uint64_t id they hold.

    An open-addressing hash table of item pointers, kept between 1/8 and
    3/4 full: some 11 to 22 octets per item while it grows, where a zhashx
    allocates an entry of 48 octets per item besides its buckets. The index
    owns no item; an item keeps its id unchanged while it is indexed.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_ID_INDEX_H_INCLUDED
#define DROVER_ID_INDEX_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct id_index_t id_index_t;

//  A new, empty index of items whose id is the uint64_t at id_offset in
//  each of them (offsetof (item type, id field)).
id_index_t *id_index_new (size_t id_offset);
void id_index_destroy (id_index_t **self_p);

//  Adds an item, whose id the index must not hold already.
void id_index_insert (id_index_t *self, void *item);

//  The item with id, or NULL.
void *id_index_lookup (id_index_t *self, uint64_t id);

//  Removes the item with id; returns it, or NULL if there was none.
void *id_index_remove (id_index_t *self, uint64_t id);

//  Items held.
size_t id_index_size (id_index_t *self);

//  Iterates the items in no particular order; NULL at the end. Do not
//  insert or remove while iterating.
void *id_index_first (id_index_t *self);
void *id_index_next (id_index_t *self);

#endif
