/*  routing_table.h - zhashx tables keyed by the routing ids of a ROUTER
    socket's peers, compared as octets: finding a peer costs no hex string
    per message.

    The key is a pointer to a routing_key_t that lives in the item itself
    and points at the item's own copy of the routing id, so a table stores
    no copy of it; the key of a lookup may point into a received frame.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_ROUTING_TABLE_H_INCLUDED
#define DROVER_ROUTING_TABLE_H_INCLUDED

#include <czmq.h>

typedef struct {
    const void *data; //  the routing id's octets (ZeroMQ: 1 to 255)
    size_t size;      //  how many
} routing_key_t;

//  The key of a routing id; it points into the frame.
routing_key_t routing_key (zframe_t *routing_id);

/*  Returns a new table keyed by pointers to routing_key_t. Caller destroys
    it with zhashx_destroy. */
zhashx_t *routing_table_new (void);

#endif
