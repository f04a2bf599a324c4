/*  drover_wire.h - sending and receiving Drover messages on CZMQ sockets.

    A packet is one received message: its routing id (on ROUTER sockets),
    its frames, and the decoded header. Payload pointers in the decoded
    message point into the packet's frames, which stay alive until the
    packet is destroyed or a frame is taken out with drover_packet_take.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_WIRE_H_INCLUDED
#define DROVER_WIRE_H_INCLUDED

#include "drover_msg.h"
#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drover_packet_t drover_packet_t;

/*  Receives one message from sock; routed is true for ROUTER sockets. On
    success returns 0 and *packet_p, which the caller destroys. A message
    that does not decode gives DROVER_EPROTO (or the decoder's code) with
    *packet_p still set, so the caller can reply to its routing id and
    read drover_packet_error; DROVER_EIO when nothing could be read (the
    socket was interrupted); then *packet_p is NULL. */
int drover_packet_recv (zsock_t *sock, bool routed, drover_packet_t **packet_p);

/*  Receives one message on a server's ROUTER socket (broker, sink). A
    malformed message is answered with ERROR (SPEC.md section 10), counted
    in *malformed, logged under the name who (the first ten, then every
    thousandth), and dropped. Returns a well-formed packet, which the caller
    destroys, or NULL (malformed, or nothing could be read). */
drover_packet_t *drover_wire_serve (zsock_t *router, const char *who,
                                    uint64_t *malformed);

/*  Destroys a packet and NULLs the pointer. NULL-safe. */
void drover_packet_destroy (drover_packet_t **self_p);

/*  The decoded message. Valid only after a successful receive. */
drover_msg_t *drover_packet_msg (drover_packet_t *self);

/*  The routing id of the sender on a ROUTER socket, or NULL. The packet
    keeps ownership. */
zframe_t *drover_packet_routing_id (drover_packet_t *self);

/*  Why the packet failed to decode. */
const char *drover_packet_error (drover_packet_t *self);

/*  Takes the payload frame of task index out of the packet: the caller
    owns the frame (zero-copy). The decoded payload pointer stays valid as
    long as the caller keeps the frame. Returns NULL if already taken. */
zframe_t *drover_packet_take_payload (drover_packet_t *self, size_t index);

/*  Sends msg on sock, after routing_id if it is not NULL (ROUTER sockets).
    Payload frames come from payloads[i] when payloads is not NULL (sent
    without copying; the caller keeps them), else are copied from
    msg->tasks[i].payload. Returns 0, or the encoder's error (logged), or
    DROVER_EIO when the socket would not take the message. Never blocks:
    a peer whose queue is full loses the message (DROVER_EIO). */
int drover_wire_send (zsock_t *sock, zframe_t *routing_id, drover_msg_t *msg,
                      zframe_t **payloads);

/*  Encodes msg into the frames it travels as (signature, command, header,
    payloads: copies of payloads[i] when payloads is not NULL, else of
    msg->tasks[i].payload), for a request that may have to be sent again.
    Returns NULL (logged) if msg breaks the spec. */
zmsg_t *drover_wire_encode (drover_msg_t *msg, zframe_t **payloads);

/*  Sends the frames of an encoded message (drover_wire_encode) on a
    DEALER socket and keeps them. Returns 0, or DROVER_EIO when the socket
    would not take the message. Never blocks. */
int drover_wire_send_encoded (zsock_t *sock, zmsg_t *encoded);

/*  Sends an ERROR reply with code, ref and a formatted reason. */
int drover_wire_send_error (zsock_t *sock, zframe_t *routing_id, uint64_t ref,
                            int code, const char *format, ...)
    __attribute__ ((format (printf, 5, 6)));

#ifdef __cplusplus
}
#endif

#endif
