/*  id_table.h - zhashx tables keyed by task ids.

    The key is a pointer to a uint64_t id that lives in the item itself, so
    a table stores no copy of it; the caller keeps the id alive while the
    item is in the table.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_ID_TABLE_H_INCLUDED
#define DROVER_ID_TABLE_H_INCLUDED

#include <czmq.h>

/*  Returns a new table keyed by pointers to task ids. Caller destroys it
    with zhashx_destroy. */
zhashx_t *id_table_new (void);

/*  The hash of a task id, for tables with composite keys. */
size_t id_table_hash (uint64_t id);

#endif
