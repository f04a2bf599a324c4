/*  drover_client_internal.h - the asynchronous core of drover_client_t,
    for the other classes of client/ (drover_map). Not installed.

    Requests are sent at once and answered through a callback, matched by
    ref; results of watched tasks are handed to a callback per task, or
    kept for drover_client_wait. Callbacks run inside drover_client_pump,
    on the client's thread; they may watch and unwatch tasks, but must not
    send requests or pump.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CLIENT_INTERNAL_H_INCLUDED
#define DROVER_CLIENT_INTERNAL_H_INCLUDED

#include "drover_client.h"
#include "drover_wire.h"

/*  Called once per request: with code 0 and the reply (whose command the
    caller checks), or with a negative code, a reason and no reply when the
    peer refused (ERROR), the session was lost, or the reply was malformed.
    The callback may take the packet (set *reply_p to NULL); else the
    client destroys it afterwards. */
typedef void (drover_reply_fn) (void *arg, int code, const char *reason,
                                drover_packet_t **reply_p);

/*  Called with the result of a watched task; the callback owns it. */
typedef void (drover_result_fn) (void *arg, drover_result_t *result);

/*  Sends msg (its ref is set here) to the broker, or to the sink when
    to_sink, with payload frames from payloads (kept by the caller) when
    not NULL. Starts a new session first if the broker said BYE. On success
    *ref_p is the request's ref and fn will be called exactly once, unless
    drover_client_forget is called first. */
int drover_client_request (drover_client_t *self, bool to_sink,
                           drover_msg_t *msg, zframe_t **payloads,
                           drover_reply_fn *fn, void *arg, uint64_t *ref_p);

/*  Forgets a request: its callback will not be called. */
void drover_client_forget (drover_client_t *self, uint64_t ref);

/*  Watches count tasks: their results go to fn with args[i] (args may be
    NULL), or, when fn is NULL, are kept for drover_client_wait. Sends
    WATCH now if the sink is known, else when it becomes known. Returns
    DROVER_EINVAL if a task is already watched by another callback, or,
    when fn is not NULL, if a task is already watched at all or is in ids
    twice (one result comes per task: a second callback would wait for
    ever); then nothing is watched. */
int drover_client_watch (drover_client_t *self, const uint64_t *ids,
                         size_t count, bool release, drover_result_fn *fn,
                         void *const *args);

/*  Stops watching tasks: their results, if they come, are dropped. */
void drover_client_unwatch (drover_client_t *self, const uint64_t *ids,
                            size_t count);

/*  Waits until the deadline (a zclock_mono time; -1 for ever) for input
    on the client's sockets, or for fd to become readable when fd >= 0,
    handles every message that came (calling callbacks) and sends the
    heartbeats that are due. Returns 0 when something happened (and sets
    *fd_ready when fd became readable), DROVER_ETIMEDOUT at the deadline
    (also when something happened after it: a peer that never stops
    sending cannot hold a caller past its deadline)
    or on a signal, DROVER_ESYSTEM if polling failed. */
int drover_client_pump (drover_client_t *self, int64_t deadline, int fd,
                        bool *fd_ready);

/*  The request timeout given to drover_client_connect. */
int drover_client_timeout (drover_client_t *self);

/*  Sets the reason drover_client_reason returns, printf-style; returns
    code, so callers can write return drover_client_fail (self, code, ...). */
int drover_client_fail (drover_client_t *self, int code, const char *format,
                        ...) __attribute__ ((format (printf, 3, 4)));

/*  Makes a result that did not come from the sink (a task the broker
    refused, an input too large): id may be 0; reason is copied. Returns
    NULL when out of memory. */
drover_result_t *drover_result_new_local (uint64_t id, int code,
                                          const char *reason);

/*  Makes the result of one input of a chunk (SPEC.md 7.7) from the
    chunk's result: its id, attempt, node and times, with code and either
    the output (code 0) or the reason (data, size; not NUL-terminated),
    copied into the one block drover_result_destroy frees. A failed
    chunk's result (code < 0) gives each input a copy: pass its code and
    NULL data. Returns NULL when out of memory. */
drover_result_t *drover_result_new_item (const drover_result_t *chunk, int code,
                                         const void *data, size_t size);

/*  True when name is a valid handler or queue name: 1-255 octets from
    0x21 to 0x7E (SPEC.md 4). */
bool drover_name_valid (const char *name);

/*  Copies text (NULL: "") into target of size octets, cut to fit. */
void drover_client_copy (char *target, size_t size, const char *text);

/*  Copies the options (NULL: none) into a SUBMIT task item. */
void drover_task_options_apply (const drover_task_options_t *options,
                                drover_task_t *task);

/*  True when every bit of retry_on stands for a DROVER_E* code. */
bool drover_retry_on_valid (uint64_t retry_on);

/*  Computes the deadline of a timeout from now: -1 stays -1 (for ever). */
int64_t drover_client_deadline (int timeout_ms);

#endif
