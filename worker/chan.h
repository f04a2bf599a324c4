/*  chan.h - the framing on the two pipes between the node's supervisor
    and one of its children (tasks in, outcomes out). Private to worker/:
    both ends are the same binary on the same machine, so the header is a
    native C struct.

    Supervisor to child: a CHAN_TASK header, then payload_size octets of
    input; or a CHAN_SKIP header alone (do not start that task if you have
    not). Child to supervisor: a CHAN_OUTCOME header, then reason_size
    octets of failure message, then payload_size octets of result; or a
    CHAN_SKIPPED header alone (that task was not started).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CHAN_H_INCLUDED
#define DROVER_CHAN_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

//  Internal to libdrover: not exported from the shared library
#pragma GCC visibility push(hidden)

#define CHAN_TASK    0x5441534bu //  "TASK": run this
#define CHAN_OUTCOME 0x4f555443u //  "OUTC": this is how it went
#define CHAN_SKIP    0x534b4950u //  "SKIP": do not start that one
#define CHAN_SKIPPED 0x534b4944u //  "SKID": it was not started

typedef struct {
    uint32_t type;             //  CHAN_TASK, CHAN_OUTCOME, CHAN_SKIP...
    uint32_t handler;          //  task: index in the handler table
    uint64_t id;               //  task id
    uint32_t attempt;          //  attempt number
    int32_t code;              //  outcome: 0 or a DROVER_E* code
    int32_t signal;            //  outcome: signal that killed an exec command
    int32_t exit_status;       //  outcome: exit status of an exec command
    uint64_t max_rss_kb;       //  outcome: peak memory of the child or command
    uint64_t max_result;       //  task: largest result the supervisor accepts
    uint32_t reason_size;      //  outcome: octets of reason after the header
    uint32_t items;            //  task: inputs in its chunk (SPEC.md 7.7);
                               //  0: one input
    uint64_t cpu_us;           //  outcome: CPU time of the task, user + system,
                               //  the child's and its waited-for commands'
    uint64_t cpu_total_us;     //  outcome: CPU time of the child so far
    uint64_t child_max_rss_kb; //  outcome: peak memory of the child itself
    uint64_t payload_size;     //  octets of input or result after the reason
} chan_header_t;

//  A buffered reader of a non-blocking fd, for the child: one system call
//  brings a task's header, its input and often the next task's header,
//  so a stream of tiny tasks costs about one read each.
#define CHAN_READER_BUFFER 65536
typedef struct {
    int fd;                           //  the channel
    size_t start;                     //  first octet not consumed
    size_t end;                       //  one past the last octet read
    uint8_t data[CHAN_READER_BUFFER]; //  what was read
} chan_reader_t;

//  Reads exactly size octets, waiting for them. Returns 0, or -1 at end
//  of file or on an error.
int chan_reader_read (chan_reader_t *self, void *data, size_t size);

//  True when size octets are buffered, after at most one read that does
//  not wait; *peek_p then points at them (they stay unread).
bool chan_reader_peek (chan_reader_t *self, size_t size, const void **peek_p);

//  Writes exactly size octets to a blocking fd. Returns 0 or -1.
int chan_write_all (int fd, const void *data, size_t size);

//  Writes the count parts (their iov_base may be NULL when iov_len is 0)
//  to a blocking fd, in one system call when the socket takes them all;
//  the parts are consumed. Returns 0 or -1.
int chan_writev_all (int fd, struct iovec *parts, size_t count);

#pragma GCC visibility pop

#endif
