/*  name_table.h - interned names: each distinct name is held once, shared
    by all who hold it, and freed when the last one lets it go. The sink's
    results carry the names of the few nodes that ran them: a million
    results share a handful of copies.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_NAME_TABLE_H_INCLUDED
#define DROVER_NAME_TABLE_H_INCLUDED

#include <stddef.h>

typedef struct name_table_t name_table_t;

name_table_t *name_table_new (void);

//  Destroys the table and every name in it, held or not.
void name_table_destroy (name_table_t **self_p);

//  The table's copy of name, held once more; NULL for NULL. Equal names
//  give the same pointer.
const char *name_table_hold (name_table_t *self, const char *name);

//  Holds once more a name the table gave (NULL-safe), without a lookup;
//  returns it.
const char *name_table_hold_again (const char *held);

//  Lets go of a name the table gave (NULL-safe); the last holder frees it.
void name_table_release (name_table_t *self, const char *held);

//  Distinct names held.
size_t name_table_size (name_table_t *self);

#endif
