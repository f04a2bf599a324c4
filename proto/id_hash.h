/*  id_hash.h - the hash of a task id, for the open-addressing tables of
    task ids (id_map; the broker's id_index).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_ID_HASH_H_INCLUDED
#define DROVER_ID_HASH_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

/*  The hash of a task id: ids are sequential, so their bits are mixed
    before they pick a slot. */
size_t id_hash (uint64_t id);

#endif
