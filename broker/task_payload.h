/*  task_payload.h - a task's input, as the broker keeps it until the task
    ends.

    A received frame costs some 370 octets besides its data (czmq's
    zframe_t holds a zmq_msg_t and a group name): a queue of small tasks
    would be mostly frames. So a small payload is copied into a block of
    its own and its frame dropped. A large one keeps the frame it came in
    and leaves in it again without a copy (SPEC.md 1: the broker SHOULD
    forward payloads without copying; ZeroMQ shares the buffer of a large
    message sent twice).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_TASK_PAYLOAD_H_INCLUDED
#define DROVER_TASK_PAYLOAD_H_INCLUDED

#include <czmq.h>

//  Largest payload copied out of its frame, in octets.
#define TASK_PAYLOAD_COPY_MAX 1024

typedef struct task_payload_t task_payload_t;

//  The payload of a received frame, which it takes: a small one is
//  copied and the frame destroyed, a large one keeps the frame.
task_payload_t *task_payload_take (zframe_t **frame_p);

//  A payload holding a copy of size octets at data.
task_payload_t *task_payload_new (const void *data, size_t size);

void task_payload_destroy (task_payload_t **self_p);

const void *task_payload_data (task_payload_t *self);
size_t task_payload_size (task_payload_t *self);

//  A frame holding the payload, to send with ZFRAME_REUSE: a large
//  payload's own frame, or a new one holding a copy of a small one. Give
//  it back with task_payload_unlend once sent.
zframe_t *task_payload_lend (task_payload_t *self);
void task_payload_unlend (task_payload_t *self, zframe_t **frame_p);

#endif
