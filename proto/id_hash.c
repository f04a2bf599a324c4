/*  id_hash.c - the hash of a task id.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "id_hash.h"

size_t
id_hash (uint64_t id)
{
    //  The finaliser of MurmurHash3: ids are sequential, buckets must not be
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)id;
}
