/*  drover_idmap.h - a hash table from 64-bit numbers (task ids, request
    refs) to pointers, for the client's bookkeeping.

    Keys are never 0. Values are never NULL and are not owned: the table
    only stores pointers. Open addressing with linear probing and
    backward-shift deletion keeps it one allocation, with no tombstones.
    Internal to client/; not part of the installed API.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_IDMAP_H_INCLUDED
#define DROVER_IDMAP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct drover_idmap_t drover_idmap_t;

/*  Creates an empty table. Returns NULL when out of memory. */
drover_idmap_t *drover_idmap_new (void);

/*  Destroys the table (not the values it points to) and NULLs the
    pointer. NULL-safe. */
void drover_idmap_destroy (drover_idmap_t **self_p);

/*  Sets key to value, replacing any value it had. key must not be 0 and
    value not NULL. Returns 0, or DROVER_ENOMEM when the table cannot grow
    (the table is then unchanged). */
int drover_idmap_set (drover_idmap_t *self, uint64_t key, void *value);

/*  Returns the value of key, or NULL. */
void *drover_idmap_get (drover_idmap_t *self, uint64_t key);

/*  Removes key and returns its value, or NULL if it was not there. */
void *drover_idmap_take (drover_idmap_t *self, uint64_t key);

/*  How many keys the table holds. */
size_t drover_idmap_size (drover_idmap_t *self);

/*  Copies up to max keys into keys (in no order) and returns how many it
    copied. Use it to walk the table while changing it. */
size_t drover_idmap_keys (drover_idmap_t *self, uint64_t *keys, size_t max);

#endif
