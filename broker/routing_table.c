/*  routing_table.c - zhashx tables keyed by routing ids, as octets.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "routing_table.h"

routing_key_t
routing_key (zframe_t *routing_id)
{
    return (routing_key_t){zframe_data (routing_id), zframe_size (routing_id)};
}

//  FNV-1a: routing ids are short (ZeroMQ makes 5-octet ones)
static size_t
s_hash (const void *key)
{
    const routing_key_t *routing = (const routing_key_t *)key;
    const uint8_t *octet = (const uint8_t *)routing->data;
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < routing->size; i++) {
        hash ^= octet[i];
        hash *= 0x100000001b3ULL;
    }
    return (size_t)hash;
}

static int
s_compare (const void *a, const void *b)
{
    const routing_key_t *x = (const routing_key_t *)a,
                        *y = (const routing_key_t *)b;
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    return x->size ? memcmp (x->data, y->data, x->size) : 0;
}

zhashx_t *
routing_table_new (void)
{
    zhashx_t *table = zhashx_new ();
    assert (table);
    zhashx_set_key_hasher (table, s_hash);
    zhashx_set_key_comparator (table, s_compare);
    zhashx_set_key_duplicator (table, NULL);
    zhashx_set_key_destructor (table, NULL);
    return table;
}
