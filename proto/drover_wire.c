/*  drover_wire.c - Drover messages on CZMQ sockets.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_wire.h"

#include <stdarg.h>

struct drover_packet_t {
    zframe_t *routing_id; //  sender on a ROUTER socket, or NULL
    zframe_t **frames;    //  signature, command, header, payloads
    size_t frame_count;   //  entries in frames
    drover_msg_t msg;     //  the decoded header
};

int
drover_packet_recv (zsock_t *sock, bool routed, drover_packet_t **packet_p)
{
    assert (sock);
    assert (packet_p);
    *packet_p = NULL;
    //  Frame by frame into an array (a zmsg_t would add a list node per
    //  frame, and then be popped)
    size_t count = 0, capacity = 8;
    zframe_t **frames = (zframe_t **)malloc (capacity * sizeof (zframe_t *));
    assert (frames);
    do {
        zframe_t *frame = zframe_recv (sock);
        if (!frame) {
            while (count > 0)
                zframe_destroy (&frames[--count]);
            free (frames);
            return DROVER_EIO;
        }
        if (count == capacity) {
            capacity *= 2;
            frames =
                (zframe_t **)realloc (frames, capacity * sizeof (zframe_t *));
            assert (frames);
        }
        frames[count++] = frame;
    } while (zframe_more (frames[count - 1]));
    drover_packet_t *self = (drover_packet_t *)zmalloc (sizeof *self);
    assert (self);
    drover_msg_init (&self->msg, (drover_command_t)0);
    size_t first = 0;
    if (routed)
        self->routing_id = frames[first++];
    count -= first;
    memmove (frames, frames + first, count * sizeof (zframe_t *));
    self->frames = frames;
    drover_frame_t *views =
        (drover_frame_t *)zmalloc ((count + 1) * sizeof (drover_frame_t));
    assert (views);
    for (size_t i = 0; i < count; i++) {
        views[i].data = zframe_data (self->frames[i]);
        views[i].size = zframe_size (self->frames[i]);
    }
    self->frame_count = count;
    //  A ROUTER's message always has its routing id frame: one with
    //  nothing after it fails to decode
    int rc = drover_msg_decode (&self->msg, views, count);
    free (views);
    *packet_p = self;
    return rc;
}

drover_packet_t *
drover_wire_serve (zsock_t *router, const char *who, uint64_t *malformed)
{
    assert (router && who && malformed);
    drover_packet_t *packet;
    int rc = drover_packet_recv (router, true, &packet);
    if (!packet || rc == 0)
        return packet;
    (*malformed)++;
    if (*malformed <= 10 || *malformed % 1000 == 0)
        zsys_warning ("%s: malformed message #%llu: %s", who,
                      (unsigned long long)*malformed,
                      drover_packet_error (packet));
    zframe_t *routing_id = drover_packet_routing_id (packet);
    if (routing_id && packet->msg.command != DROVER_ERROR)
        drover_wire_send_error (router, routing_id, 0, rc, "%s",
                                drover_packet_error (packet));
    drover_packet_destroy (&packet);
    return NULL;
}

void
drover_packet_destroy (drover_packet_t **self_p)
{
    assert (self_p);
    drover_packet_t *self = *self_p;
    if (!self)
        return;
    drover_msg_reset (&self->msg);
    for (size_t i = 0; i < self->frame_count; i++)
        zframe_destroy (&self->frames[i]);
    free (self->frames);
    zframe_destroy (&self->routing_id);
    free (self);
    *self_p = NULL;
}

drover_msg_t *
drover_packet_msg (drover_packet_t *self)
{
    assert (self);
    return &self->msg;
}

zframe_t *
drover_packet_routing_id (drover_packet_t *self)
{
    assert (self);
    return self->routing_id;
}

const char *
drover_packet_error (drover_packet_t *self)
{
    assert (self);
    return drover_msg_error (&self->msg);
}

zframe_t *
drover_packet_take_payload (drover_packet_t *self, size_t index)
{
    assert (self);
    assert (drover_command_has_payloads (self->msg.command));
    assert (index < self->msg.task_count);
    assert (3 + index < self->frame_count);
    zframe_t *frame = self->frames[3 + index];
    self->frames[3 + index] = NULL;
    return frame;
}

//  Sends one frame; the frame is the caller's when reuse is set, else it is
//  consumed whatever happens.
static int
s_send_frame (zsock_t *sock, zframe_t *frame, bool reuse, bool more)
{
    int flags =
        ZFRAME_DONTWAIT | (more ? ZFRAME_MORE : 0) | (reuse ? ZFRAME_REUSE : 0);
    int rc = zframe_send (&frame, sock, flags);
    if (!reuse)
        zframe_destroy (&frame);
    return rc;
}

//  Sends size octets as one frame, copied (small ones inline in the
//  message: no allocation, where a zframe_t costs one of 368 octets).
static int
s_send_copy (zsock_t *sock, const void *data, size_t size, bool more)
{
    int flags = ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0);
    return zmq_send (zsock_resolve (sock), size ? data : "", size, flags) < 0
               ? -1
               : 0;
}

static void
s_free_buffer (void *data, void *hint)
{
    (void)hint;
    free (data);
}

//  Sends a malloc'd buffer as one frame without copying it; ZeroMQ frees
//  it once sent, or at once if it cannot be sent.
static int
s_send_owned (zsock_t *sock, uint8_t *data, size_t size, bool more)
{
    zmq_msg_t message;
    if (zmq_msg_init_data (&message, data, size, s_free_buffer, NULL)) {
        free (data);
        return -1;
    }
    int flags = ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0);
    if (zmq_msg_send (&message, zsock_resolve (sock), flags) < 0) {
        zmq_msg_close (&message);
        return -1;
    }
    return 0;
}

int
drover_wire_send (zsock_t *sock, zframe_t *routing_id, drover_msg_t *msg,
                  zframe_t **payloads)
{
    assert (sock);
    assert (msg);
    uint8_t *header;
    size_t header_size;
    int rc = drover_msg_encode (msg, &header, &header_size);
    if (rc) {
        zsys_error ("drover: cannot encode %s: %s",
                    drover_command_name (msg->command), drover_msg_error (msg));
        return rc;
    }
    size_t payload_count =
        drover_command_has_payloads (msg->command) ? msg->task_count : 0;
    uint8_t command = (uint8_t)msg->command;
    //  Once the first frame is accepted, ZeroMQ takes the rest of the
    //  message: only the first send can fail for a full queue.
    if (routing_id && s_send_frame (sock, routing_id, true, true)) {
        free (header);
        return DROVER_EIO;
    }
    if (s_send_copy (sock, DROVER_SIGNATURE, DROVER_SIGNATURE_SIZE, true)) {
        free (header);
        return DROVER_EIO;
    }
    s_send_copy (sock, &command, 1, true);
    s_send_owned (sock, header, header_size, payload_count > 0);
    for (size_t i = 0; i < payload_count; i++) {
        bool more = i + 1 < payload_count;
        if (payloads)
            //  zmq_msg_copy shares a large message's buffer: no copy
            s_send_frame (sock, payloads[i], true, more);
        else
            s_send_copy (sock, msg->tasks[i].payload.data,
                         msg->tasks[i].payload.size, more);
    }
    return 0;
}

zmsg_t *
drover_wire_encode (drover_msg_t *msg, zframe_t **payloads)
{
    uint8_t *header;
    size_t header_size;
    if (drover_msg_encode (msg, &header, &header_size)) {
        zsys_error ("drover: cannot encode %s: %s",
                    drover_command_name (msg->command), drover_msg_error (msg));
        return NULL;
    }
    zmsg_t *encoded = zmsg_new ();
    uint8_t command = (uint8_t)msg->command;
    zmsg_addmem (encoded, DROVER_SIGNATURE, DROVER_SIGNATURE_SIZE);
    zmsg_addmem (encoded, &command, 1);
    zmsg_addmem (encoded, header, header_size);
    free (header);
    size_t payload_count =
        drover_command_has_payloads (msg->command) ? msg->task_count : 0;
    for (size_t i = 0; i < payload_count; i++) {
        if (payloads) {
            zframe_t *copy = zframe_dup (payloads[i]);
            zmsg_append (encoded, &copy);
        }
        else
            zmsg_addmem (encoded, msg->tasks[i].payload.data,
                         msg->tasks[i].payload.size);
    }
    return encoded;
}

int
drover_wire_send_encoded (zsock_t *sock, zmsg_t *encoded)
{
    size_t count = zmsg_size (encoded), index = 0;
    for (zframe_t *frame = zmsg_first (encoded); frame;
         frame = zmsg_next (encoded), index++)
        //  Only the first frame can fail: ZeroMQ takes the rest with it
        if (s_send_frame (sock, frame, true, index + 1 < count) && index == 0)
            return DROVER_EIO;
    return 0;
}

int
drover_wire_send_error (zsock_t *sock, zframe_t *routing_id, uint64_t ref,
                        int code, const char *format, ...)
{
    char reason[DROVER_MAX_TEXT / 4];
    va_list args;
    va_start (args, format);
    vsnprintf (reason, sizeof reason, format, args);
    va_end (args);
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_ERROR);
    msg.ref = ref;
    msg.code = code;
    msg.reason = reason;
    return drover_wire_send (sock, routing_id, &msg, NULL);
}
