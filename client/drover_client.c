/*  drover_client.c - a client session with a Drover cluster (SPEC.md: the
    client role).

    One DEALER socket talks to the broker (HELLO, SUBMIT, CANCEL, STATUS,
    STATS, DEAD, RETRY), another to the sink (WATCH, STATUS, HEARTBEAT). Everything is
    asynchronous underneath: requests carry a ref and wait in a table until
    their reply comes; watched task ids wait in another until their RESULT
    comes. The blocking calls of drover_client.h send requests and pump the
    sockets until their replies are in; drover_map uses the same core
    without blocking (drover_client_internal.h).

    Liveness (SPEC.md 6): while it watches tasks the client heartbeats the
    sink when it has sent nothing for heartbeat_ms, and takes a sink that
    stays silent for heartbeat_ms * liveness for dead: it asks the broker
    where the sink is and watches everything again. A client that was not
    called for that long (the caller was busy) watches everything again
    too, because the sink may have forgotten its watches meanwhile; so
    does a client the sink answers BYE (a restarted sink, which holds no
    watches of ours). The broker keeps no client sessions; a BYE from it
    means it forgot us, and the next request starts a new session (new
    socket, HELLO).

    Broker restarts (SPEC.md 7.6): the broker sends clients nothing
    unasked, so the client probes it with HELLO when a request stays
    unanswered, or watched tasks bring no result, for heartbeat_ms *
    liveness (or half the request timeout, if that is shorter). A WELCOME
    with a new instance means the broker restarted and lost what it held:
    requests sent before that HELLO fail with DROVER_ESTALE, the sink is
    asked for every watched task again, and drover_client_broker_restarts
    counts one more, so that drover_map (or the caller) resubmits the
    tasks it still waits for under their ids.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_client_internal.h"
#include "id_map.h"

#include <errno.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

static void s_hello (drover_client_t *self);

//  A request waiting for its reply.
typedef struct {
    bool to_sink;            //  sent to the sink, else to the broker
    uint64_t ref;            //  its ref
    drover_command_t expect; //  the command of a good reply
    drover_reply_fn *fn;     //  gets the reply
    void *arg;               //  fn's argument
    zmsg_t *encoded;         //  SUBMIT: the message, to send again after a
                             //  broker restart (same token: SPEC.md 7.6)
    char token[DROVER_MAX_TOKEN + 1]; //  SUBMIT: its token
} s_request_t;

static void
s_request_free (s_request_t **request_p)
{
    if (*request_p)
        zmsg_destroy (&(*request_p)->encoded);
    free (*request_p);
    *request_p = NULL;
}

//  A task whose result the client waits for.
typedef struct {
    bool release;         //  the sink may forget the result once sent
    drover_result_fn *fn; //  gets the result; NULL: keep it for wait
    void *arg;            //  fn's argument
} s_watch_t;

struct drover_client_t {
    char name[DROVER_MAX_NAME + 1]; //  our name in HELLO: host:pid
    char token_prefix[17];          //  random: SUBMIT tokens are prefix:ref
    char *endpoint;                 //  the broker's; NULL before connect
    int timeout_ms;                 //  handshake and request timeout
    zsock_t *broker;                //  DEALER to the broker
    zsock_t *sink;                  //  DEALER to the sink; NULL until known
    char *sink_endpoint;            //  what sink is connected to
    char *sink_override;            //  reach the sink here, whatever the
                                    //  broker names; NULL: what it names
    char *instance;                 //  the broker run, from WELCOME
    bool welcomed;                  //  WELCOME came on this session
    int session_error;              //  why the handshake failed, or 0
    bool session_lost;              //  BYE came, or HELLO failed: start a
                                    //  new session before the next request
    bool pumping;                   //  inside drover_client_pump
    uint32_t heartbeat_ms;          //  sink heartbeat interval
    uint32_t liveness;              //  silent intervals before death
    uint32_t max_batch;             //  most items in one message
    uint64_t max_payload;           //  largest payload accepted
    uint64_t next_ref;              //  ref of the next request
    id_map_t *requests;             //  ref -> s_request_t
    id_map_t *watches;              //  task id -> s_watch_t
    id_map_t *results;              //  task id -> drover_result_t, for wait
    int64_t sink_sent;              //  when we last sent to the sink
    int64_t sink_heard;             //  when it last sent to us (or when we
                                    //  began to expect it to)
    int64_t rewatch_at;             //  when to WATCH all again; 0: no need
    int64_t hello_sent;             //  when we last said HELLO
    uint32_t hello_ivl;             //  ms between HELLOs to learn a sink
    uint32_t rewatch_backoff;       //  ms to wait after a refused WATCH
    uint64_t malformed;             //  malformed messages received
    uint64_t restarts;              //  broker instance changes seen
    uint64_t hello_ref;             //  next_ref when we last said HELLO:
                                    //  requests below it were sent before
    size_t broker_pending;          //  requests the broker has to answer
    int64_t broker_owed;            //  since when it owes them and sent
                                    //  nothing; 0 when it owes nothing
    int64_t probe_sent;             //  when we last said HELLO to see
                                    //  whether the broker restarted
    int64_t result_heard;           //  when a RESULT last came, or when
                                    //  we began to wait for one
    char reason[1024];              //  why the last call failed
};

//  How many messages one pump reads from a socket before looking at the
//  other one, so neither starves.
#define CLIENT_DRAIN_MAX 256

//  Messages a socket may queue for us (ZMQ_RCVHWM): more than a map's
//  largest window (drover map --window allows 10^6).
#define CLIENT_RCVHWM 2000000

//  A client that watches tasks but knows no sink says HELLO again to
//  learn one: first after this many ms, then twice as late each time, up
//  to CLIENT_HELLO_MAX (a sink registers with the broker just after it
//  starts, so the first tries should be quick).
#define CLIENT_HELLO_MIN 20
#define CLIENT_HELLO_MAX 1000

static void s_sink_watch_all (drover_client_t *self);
static int s_send_watch (drover_client_t *self, const uint64_t *ids,
                         size_t count, bool release);

//  --------------------------------------------------------------------------
//  Small helpers

int
drover_client_fail (drover_client_t *self, int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->reason, sizeof self->reason, format, args);
    va_end (args);
    return code;
}

void
drover_client_copy (char *target, size_t size, const char *text)
{
    assert (size);
    size_t length = text ? strnlen (text, size - 1) : 0;
    if (length)
        memcpy (target, text, length);
    target[length] = 0;
}

int64_t
drover_client_deadline (int timeout_ms)
{
    return timeout_ms < 0 ? -1 : zclock_mono () + timeout_ms;
}

bool
drover_name_valid (const char *name)
{
    if (!name)
        return false;
    size_t size = strlen (name);
    if (size == 0 || size > DROVER_MAX_NAME)
        return false;
    for (size_t i = 0; i < size; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return false;
    return true;
}

//  Copies text into a block being filled, returns the copy (or NULL for
//  NULL) and advances *cursor.
static const char *
s_place (char **cursor, const char *text)
{
    if (!text)
        return NULL;
    size_t size = strlen (text) + 1;
    char *copy = *cursor;
    memcpy (copy, text, size);
    *cursor += size;
    return copy;
}

static size_t
s_size (const char *text)
{
    return text ? strlen (text) + 1 : 0;
}

//  --------------------------------------------------------------------------
//  Results

static drover_result_t *
s_result_new (const drover_task_t *item, zframe_t *frame)
{
    size_t size =
        sizeof (drover_result_t) + s_size (item->reason) + s_size (item->node);
    drover_result_t *self = (drover_result_t *)calloc (1, size);
    if (!self) {
        zframe_destroy (&frame);
        return NULL;
    }
    char *cursor = (char *)(self + 1);
    self->id = item->id;
    self->code = item->code;
    self->reason = s_place (&cursor, item->reason);
    self->attempt = item->attempt;
    self->node = s_place (&cursor, item->node);
    self->elapsed_us = item->elapsed_us;
    self->signal = item->signal;
    self->exit_status = item->exit_status;
    self->max_rss_kb = item->max_rss_kb;
    self->cpu_us = item->cpu_us;
    self->private_frame_ = frame;
    if (frame && zframe_size (frame)) {
        self->payload = zframe_data (frame);
        self->payload_size = zframe_size (frame);
    }
    return self;
}

drover_result_t *
drover_result_new_local (uint64_t id, int code, const char *reason)
{
    drover_task_t item = {.id = id, .code = code, .reason = reason};
    return s_result_new (&item, NULL);
}

drover_result_t *
drover_result_new_item (const drover_result_t *chunk, int code,
                        const void *data, size_t size)
{
    bool failed_input = code < 0 && data;
    size_t reason_size = failed_input ? size + 1 : s_size (chunk->reason);
    size_t payload_size = code == 0 ? size : 0;
    drover_result_t *self =
        (drover_result_t *)malloc (sizeof (drover_result_t) + reason_size
                                   + s_size (chunk->node) + payload_size);
    if (!self)
        return NULL;
    *self = *chunk;
    self->private_frame_ = NULL;
    self->code = code;
    char *cursor = (char *)(self + 1);
    if (failed_input) {
        memcpy (cursor, data, size);
        cursor[size] = 0;
        self->reason = cursor;
        cursor += size + 1;
    }
    else
        self->reason = s_place (&cursor, chunk->reason);
    self->node = s_place (&cursor, chunk->node);
    self->payload = NULL;
    self->payload_size = 0;
    if (payload_size) {
        memcpy (cursor, data, payload_size);
        self->payload = cursor;
        self->payload_size = payload_size;
    }
    return self;
}

void
drover_result_destroy (drover_result_t **self_p)
{
    assert (self_p);
    drover_result_t *self = *self_p;
    if (!self)
        return;
    zframe_t *frame = (zframe_t *)self->private_frame_;
    zframe_destroy (&frame);
    free (self);
    *self_p = NULL;
}

const char *
drover_task_state_name (int state)
{
    return drover_state_name (state);
}

void
drover_status_destroy (drover_status_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

void
drover_stats_destroy (drover_stats_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

void
drover_dead_list_destroy (drover_dead_list_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Task options

//  The retry_on bits that stand for a code: 1 to -DROVER_ELAST.
#define RETRY_ON_CODES (((1ull << (unsigned)(-DROVER_ELAST + 1)) - 1) & ~1ull)

bool
drover_retry_on_valid (uint64_t retry_on)
{
    return (retry_on & ~RETRY_ON_CODES) == 0;
}

void
drover_task_options_apply (const drover_task_options_t *options,
                           drover_task_t *task)
{
    if (!options)
        return;
    task->queue = options->queue;
    task->timeout_ms = options->timeout_ms;
    task->max_attempts = options->max_attempts;
    task->soft_timeout_ms = options->soft_timeout_ms;
    task->retry_delay_ms = options->retry_delay_ms;
    task->retry_max_delay_ms = options->retry_max_delay_ms;
    task->retry_on = options->retry_on;
}

//  The retry_on bits of one name of drover_retry_on_parse, or 0.
static uint64_t
s_retry_on_name (const char *name, size_t size)
{
    if (size == 7 && strncasecmp (name, "default", size) == 0)
        return DROVER_RETRY_ON_DEFAULT;
    if (size == 7 && strncasecmp (name, "timeout", size) == 0)
        return DROVER_RETRY_BIT (DROVER_ETIMELIMIT);
    for (int code = -1; size && code >= DROVER_ELAST; code--) {
        const char *full = drover_strcode (code); //  "DROVER_EFAILED"
        assert (strncmp (full, "DROVER_E", 8) == 0);
        const char *plain = full + 8; //  "FAILED"
        if ((strlen (full) == size && strncasecmp (full, name, size) == 0)
            || (strlen (plain) == size && strncasecmp (plain, name, size) == 0))
            return DROVER_RETRY_BIT (code);
    }
    return 0;
}

int
drover_retry_on_parse (const char *text, uint64_t *retry_on_p,
                       const char **bad_p)
{
    assert (retry_on_p);
    if (bad_p)
        *bad_p = text;
    if (!text)
        return DROVER_EINVAL;
    uint64_t set = 0;
    for (const char *at = text;;) {
        while (*at == ' ' || *at == '\t')
            at++;
        size_t size = strcspn (at, ",");
        const char *next = at + size;
        while (size && (at[size - 1] == ' ' || at[size - 1] == '\t'))
            size--;
        uint64_t bits = s_retry_on_name (at, size);
        if (!bits) {
            if (bad_p)
                *bad_p = at;
            return DROVER_EINVAL;
        }
        set |= bits;
        if (*next == 0)
            break;
        at = next + 1;
    }
    *retry_on_p = set;
    return 0;
}

//  --------------------------------------------------------------------------
//  Constructor and destructor

drover_client_t *
drover_client_new (void)
{
    drover_client_t *self = (drover_client_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->requests = id_map_new ();
    self->watches = id_map_new ();
    self->results = id_map_new ();
    if (!self->requests || !self->watches || !self->results) {
        drover_client_destroy (&self);
        return NULL;
    }
    char host[128] = "localhost";
    gethostname (host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    snprintf (self->name, sizeof self->name, "%.100s:%ld", host,
              (long)getpid ());
    for (char *c = self->name; *c; c++)
        if (*c <= ' ' || *c > '~')
            *c = '_';
    self->next_ref = 1;
    //  Tokens unique among all clients: 64 random bits, then the ref
    uint64_t bits;
    if (getrandom (&bits, sizeof bits, 0) != (ssize_t)sizeof bits)
        bits = (uint64_t)zclock_usecs () ^ ((uint64_t)getpid () << 40);
    snprintf (self->token_prefix, sizeof self->token_prefix, "%016llx",
              (unsigned long long)bits);
    return self;
}

//  Frees every entry of a table of malloc'd values.
static void
s_free_all (id_map_t *map, bool results)
{
    if (!map)
        return;
    size_t count = id_map_size (map);
    uint64_t *keys = (uint64_t *)malloc ((count + 1) * sizeof (uint64_t));
    assert (keys);
    count = id_map_keys (map, keys, count);
    for (size_t i = 0; i < count; i++) {
        void *value = id_map_remove (map, keys[i]);
        if (results) {
            drover_result_t *result = (drover_result_t *)value;
            drover_result_destroy (&result);
        }
        else
            free (value);
    }
    free (keys);
}

void
drover_client_destroy (drover_client_t **self_p)
{
    assert (self_p);
    drover_client_t *self = *self_p;
    if (!self)
        return;
    s_free_all (self->requests, false);
    s_free_all (self->watches, false);
    s_free_all (self->results, true);
    id_map_destroy (&self->requests);
    id_map_destroy (&self->watches);
    id_map_destroy (&self->results);
    zsock_destroy (&self->broker);
    zsock_destroy (&self->sink);
    free (self->endpoint);
    free (self->sink_endpoint);
    free (self->sink_override);
    free (self->instance);
    free (self);
    *self_p = NULL;
}

const char *
drover_client_reason (drover_client_t *self)
{
    assert (self);
    return self->reason;
}

size_t
drover_client_max_batch (drover_client_t *self)
{
    assert (self);
    return self->max_batch;
}

uint64_t
drover_client_max_payload (drover_client_t *self)
{
    assert (self);
    return self->max_payload;
}

int
drover_client_timeout (drover_client_t *self)
{
    assert (self);
    return self->timeout_ms;
}

//  --------------------------------------------------------------------------
//  Requests

//  Takes a request out of the table; NULL if none has that ref.
static s_request_t *
s_request_take (drover_client_t *self, uint64_t ref)
{
    s_request_t *request = (s_request_t *)id_map_remove (self->requests, ref);
    if (request && !request->to_sink) {
        assert (self->broker_pending > 0);
        if (--self->broker_pending == 0)
            self->broker_owed = 0;
    }
    return request;
}

//  Calls back every request sent to the broker (or the sink) with a ref
//  below before_ref (UINT64_MAX: all) with an error.
static void
s_fail_requests (drover_client_t *self, bool to_sink, uint64_t before_ref,
                 int code, const char *reason)
{
    char copy[sizeof self->reason];
    drover_client_copy (copy, sizeof copy, reason);
    size_t count = id_map_size (self->requests);
    if (count == 0)
        return;
    uint64_t *refs = (uint64_t *)malloc (count * sizeof (uint64_t));
    assert (refs);
    count = id_map_keys (self->requests, refs, count);
    for (size_t i = 0; i < count; i++) {
        s_request_t *request =
            (s_request_t *)id_map_lookup (self->requests, refs[i]);
        if (!request || request->to_sink != to_sink || refs[i] >= before_ref)
            continue;
        s_request_take (self, refs[i]);
        drover_client_fail (self, code, "%s", copy);
        request->fn (request->arg, code, copy, NULL);
        s_request_free (&request);
    }
    free (refs);
}

//  Gives a reply (or an ERROR) to the request it answers; drops it when
//  no request waits for its ref.
static void
s_answer (drover_client_t *self, bool from_sink, drover_packet_t **packet_p)
{
    drover_msg_t *msg = drover_packet_msg (*packet_p);
    s_request_t *request =
        (s_request_t *)id_map_lookup (self->requests, msg->ref);
    if (!request || request->to_sink != from_sink)
        return; //  late reply to a forgotten request
    s_request_take (self, msg->ref);
    const char *peer = from_sink ? "sink" : "broker";
    if (msg->command == DROVER_ERROR) {
        //  An ERROR must say what failed: code 0 is no answer at all
        int code = msg->code ? msg->code : DROVER_EPROTO;
        drover_client_fail (self, code, "%s", msg->reason);
        request->fn (request->arg, code, self->reason, NULL);
    }
    else if (msg->command != request->expect) {
        drover_client_fail (self, DROVER_EPROTO,
                            "the %s answered %s where %s was due", peer,
                            drover_command_name (msg->command),
                            drover_command_name (request->expect));
        request->fn (request->arg, DROVER_EPROTO, self->reason, NULL);
    }
    else
        request->fn (request->arg, 0, NULL, packet_p);
    s_request_free (&request);
}

static zsock_t *
s_dealer_new (drover_client_t *self, const char *endpoint, const char *peer)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock) {
        drover_client_fail (self, DROVER_ESYSTEM, "cannot create a socket: %s",
                            zmq_strerror (errno));
        return NULL;
    }
    //  ZeroMQ itself refuses frames over the largest payload (SPEC.md 10)
    zsock_set_maxmsgsize (sock, (int64_t)DROVER_MAX_PAYLOAD);
    zsock_set_linger (sock, 0);
    //  What an honest peer sends us is bounded by what we asked (a reply
    //  per request, a RESULT per watched task), and at the high-water mark
    //  a ROUTER peer drops messages: a result whose watch said release
    //  could not be had again. So the mark is far above what we ask.
    zsock_set_rcvhwm (sock, CLIENT_RCVHWM);
    if (zsock_connect (sock, "%s", endpoint) == -1) {
        drover_client_fail (self, DROVER_EINVAL,
                            "cannot connect to the %s at '%s': %s; endpoints "
                            "look like tcp://HOST:PORT or ipc://PATH",
                            peer, endpoint, zmq_strerror (errno));
        zsock_destroy (&sock);
    }
    return sock;
}

//  Opens a new session with the broker: new socket, HELLO, WELCOME.
static int
s_session_start (drover_client_t *self, int64_t deadline)
{
    zsock_destroy (&self->broker);
    self->welcomed = false;
    self->session_error = 0;
    self->session_lost = false;
    self->broker = s_dealer_new (self, self->endpoint, "broker");
    if (!self->broker)
        return DROVER_EINVAL;
    drover_msg_t hello;
    drover_msg_init (&hello, DROVER_HELLO);
    hello.role = "client";
    hello.name = self->name;
    self->hello_ref = self->next_ref;
    int rc = 0;
    if (drover_wire_send (self->broker, NULL, &hello, NULL))
        rc = drover_client_fail (self, DROVER_ECONNECT,
                                 "cannot send HELLO to the broker at %s",
                                 self->endpoint);
    while (rc == 0 && !self->welcomed && !self->session_error) {
        rc = drover_client_pump (self, deadline, -1, NULL);
        if (rc == DROVER_ETIMEDOUT && !self->welcomed && !self->session_error)
            rc = drover_client_fail (
                self, DROVER_ECONNECT,
                "no answer from the broker at %s within %d ms: is 'drover "
                "broker' running there?",
                self->endpoint, self->timeout_ms);
        else if (rc == DROVER_ETIMEDOUT)
            rc = 0;
    }
    if (rc == 0 && !self->welcomed)
        rc = self->session_error;
    //  The next request tries again
    self->session_lost = rc != 0;
    return rc;
}

int
drover_client_request (drover_client_t *self, bool to_sink, drover_msg_t *msg,
                       zframe_t **payloads, drover_reply_fn *fn, void *arg,
                       uint64_t *ref_p)
{
    assert (self);
    assert (msg);
    assert (fn);
    assert (!self->pumping);
    if (!self->endpoint)
        return drover_client_fail (self, DROVER_EINVAL,
                                   "the client is not connected");
    if (!to_sink && self->session_lost) {
        int rc =
            s_session_start (self, drover_client_deadline (self->timeout_ms));
        if (rc)
            return rc;
    }
    if (to_sink && !self->sink) {
        //  Its WELCOME names the sink once one registered: ask again (the
        //  sink liveness check does so only while tasks are watched)
        if (!self->session_lost
            && zclock_mono () - self->hello_sent >= self->hello_ivl)
            s_hello (self);
        return drover_client_fail (self, DROVER_ECONNECT,
                                   "the broker at %s names no sink yet",
                                   self->endpoint);
    }
    s_request_t *request = (s_request_t *)calloc (1, sizeof *request);
    if (!request)
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    request->to_sink = to_sink;
    switch (msg->command) {
        case DROVER_SUBMIT:
        case DROVER_RETRY: request->expect = DROVER_SUBMITTED; break;
        case DROVER_STATS: request->expect = DROVER_STATS_REPLY; break;
        case DROVER_DEAD: request->expect = DROVER_DEAD_REPLY; break;
        default: request->expect = DROVER_STATUS_REPLY;
    }
    request->fn = fn;
    request->arg = arg;
    msg->ref = self->next_ref++;
    request->ref = msg->ref;
    if (id_map_try_set (self->requests, msg->ref, request)) {
        free (request);
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    }
    zsock_t *sock = to_sink ? self->sink : self->broker;
    const char *peer = to_sink ? "sink" : "broker";
    int rc;
    if (msg->command == DROVER_SUBMIT) {
        //  Kept, to be sent again as it was if the broker restarts
        snprintf (request->token, sizeof request->token, "%s:%llu",
                  self->token_prefix, (unsigned long long)msg->ref);
        msg->token = request->token;
        request->encoded = drover_wire_encode (msg, payloads);
        rc = request->encoded
                 ? drover_wire_send_encoded (sock, request->encoded)
                 : DROVER_EINVAL;
    }
    else
        rc = drover_wire_send (sock, NULL, msg, payloads);
    if (rc) {
        request = (s_request_t *)id_map_remove (self->requests, msg->ref);
        s_request_free (&request);
        if (rc == DROVER_EIO)
            return drover_client_fail (
                self, rc, "the %s's queue is full: retry later", peer);
        return drover_client_fail (self, rc, "cannot encode %s for the %s: %s",
                                   drover_command_name (msg->command), peer,
                                   drover_msg_error (msg));
    }
    if (to_sink)
        self->sink_sent = zclock_mono ();
    else if (self->broker_pending++ == 0)
        self->broker_owed = zclock_mono ();
    *ref_p = msg->ref;
    return 0;
}

void
drover_client_forget (drover_client_t *self, uint64_t ref)
{
    assert (self);
    s_request_t *request = s_request_take (self, ref);
    s_request_free (&request);
}

uint64_t
drover_client_broker_restarts (drover_client_t *self)
{
    assert (self);
    return self->restarts;
}

//  --------------------------------------------------------------------------
//  The sink

//  The sink set by drover_client_set_sink_endpoint, if any; else the one
//  the broker names, where a sink that bound a wildcard (tcp://*:5556) is
//  reached at the broker's host. Returns the endpoint to connect to; caller frees.
static char *
s_sink_address (drover_client_t *self, const char *endpoint)
{
    if (self->sink_override)
        return strdup (self->sink_override);
    static const char *wildcards[] = {
        "tcp://*:", "tcp://0.0.0.0:", "tcp://[::]:"};
    for (size_t i = 0; i < sizeof wildcards / sizeof wildcards[0]; i++) {
        size_t prefix = strlen (wildcards[i]);
        if (strncmp (endpoint, wildcards[i], prefix))
            continue;
        const char *colon = strrchr (self->endpoint, ':');
        if (strncmp (self->endpoint, "tcp://", 6) || !colon
            || colon < self->endpoint + 6)
            break;
        return zsys_sprintf ("%.*s:%s", (int)(colon - self->endpoint),
                             self->endpoint, endpoint + prefix);
    }
    return strdup (endpoint);
}

//  Connects to the sink at self->sink_endpoint with a new socket and
//  watches everything again; requests waiting on the old socket fail.
static void
s_sink_connect (drover_client_t *self)
{
    zsock_destroy (&self->sink);
    s_fail_requests (self, true, UINT64_MAX, DROVER_ECONNECT,
                     "the broker named another sink");
    self->sink = s_dealer_new (self, self->sink_endpoint, "sink");
    self->sink_sent = self->sink_heard = zclock_mono ();
    self->hello_ivl = 0;
    if (self->sink)
        s_sink_watch_all (self);
}

//  Sends WATCH for ids, max_batch at a time. On failure (the socket's
//  queue is full) tries again later.
static int
s_send_watch (drover_client_t *self, const uint64_t *ids, size_t count,
              bool release)
{
    if (!self->sink)
        return 0; //  sent when the sink becomes known
    for (size_t done = 0; done < count;) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_WATCH);
        msg.ids = (uint64_t *)ids + done;
        msg.id_count =
            count - done < self->max_batch ? count - done : self->max_batch;
        msg.release = release;
        if (drover_wire_send (self->sink, NULL, &msg, NULL)) {
            self->rewatch_at = zclock_mono () + 100;
            return DROVER_EIO;
        }
        done += msg.id_count;
    }
    self->sink_sent = zclock_mono ();
    return 0;
}

//  Watches every watched task again: after a new sink connection, a long
//  silence, or a refused WATCH.
static void
s_sink_watch_all (drover_client_t *self)
{
    self->rewatch_at = 0;
    size_t count = id_map_size (self->watches);
    if (count == 0 || !self->sink)
        return;
    uint64_t *ids = (uint64_t *)malloc (count * sizeof (uint64_t));
    uint64_t *released = (uint64_t *)malloc (count * sizeof (uint64_t));
    assert (ids && released);
    count = id_map_keys (self->watches, ids, count);
    size_t kept = 0, released_count = 0;
    for (size_t i = 0; i < count; i++) {
        s_watch_t *watch = (s_watch_t *)id_map_lookup (self->watches, ids[i]);
        if (watch->release)
            released[released_count++] = ids[i];
        else
            ids[kept++] = ids[i];
    }
    if (s_send_watch (self, ids, kept, false) == 0)
        s_send_watch (self, released, released_count, true);
    self->sink_heard = zclock_mono ();
    free (ids);
    free (released);
}

int
drover_client_watch (drover_client_t *self, const uint64_t *ids, size_t count,
                     bool release, drover_result_fn *fn, void *const *args)
{
    assert (self);
    for (size_t i = 0; i < count; i++) {
        if (ids[i] == 0)
            return drover_client_fail (self, DROVER_EINVAL,
                                       "0 is not a task id");
        s_watch_t *watch = (s_watch_t *)id_map_lookup (self->watches, ids[i]);
        //  One result comes per task: a second callback for it would
        //  wait for ever
        if (watch && (watch->fn != fn || fn))
            return drover_client_fail (self, DROVER_EINVAL,
                                       "task %llu is watched already",
                                       (unsigned long long)ids[i]);
    }
    if (id_map_size (self->watches) == 0)
        //  From now on we expect life, and results
        self->sink_heard = self->result_heard = zclock_mono ();
    for (size_t i = 0; i < count; i++) {
        s_watch_t *watch = (s_watch_t *)id_map_lookup (self->watches, ids[i]);
        if (watch && fn) {
            //  The same id twice in ids: undo the ones added here
            drover_client_unwatch (self, ids, i);
            return drover_client_fail (self, DROVER_EINVAL,
                                       "task %llu is given twice",
                                       (unsigned long long)ids[i]);
        }
        if (!watch) {
            watch = (s_watch_t *)calloc (1, sizeof *watch);
            if (!watch || id_map_try_set (self->watches, ids[i], watch)) {
                free (watch);
                drover_client_unwatch (self, ids, i);
                return drover_client_fail (self, DROVER_ENOMEM,
                                           "out of memory");
            }
        }
        watch->release = release;
        watch->fn = fn;
        watch->arg = args ? args[i] : NULL;
    }
    s_send_watch (self, ids, count, release);
    return 0;
}

void
drover_client_unwatch (drover_client_t *self, const uint64_t *ids, size_t count)
{
    assert (self);
    for (size_t i = 0; i < count; i++)
        free (id_map_remove (self->watches, ids[i]));
}

//  --------------------------------------------------------------------------
//  Receiving

//  The broker restarted (SPEC.md 7.6): it lost the requests it had not
//  answered, those sent before the HELLO this WELCOME answers. They fail
//  with DROVER_ESTALE; drover_map and other callers resubmit.
static void
s_broker_restarted (drover_client_t *self, const char *previous)
{
    self->restarts++;
    char reason[DROVER_MAX_NAME * 2 + 256];
    snprintf (reason, sizeof reason,
              "the broker at %s restarted (instance %s, was %s) and lost the "
              "request: send it again",
              self->endpoint, self->instance, previous);
    //  SUBMITs go again as they were: a broker that journaled one knows
    //  its token and answers with the ids it gave; one that lost it queues
    //  its tasks now. Either way each task exists once.
    size_t count = id_map_size (self->requests);
    uint64_t *refs = (uint64_t *)malloc ((count ? count : 1) * sizeof *refs);
    s_request_t **resent =
        (s_request_t **)malloc ((count ? count : 1) * sizeof *resent);
    assert (refs && resent);
    count = id_map_keys (self->requests, refs, count);
    //  (out of the table while the others fail)
    size_t resent_count = 0;
    for (size_t i = 0; i < count; i++) {
        s_request_t *request =
            (s_request_t *)id_map_lookup (self->requests, refs[i]);
        if (request && !request->to_sink && request->encoded
            && refs[i] < self->hello_ref
            && drover_wire_send_encoded (self->broker, request->encoded) == 0)
            resent[resent_count++] =
                (s_request_t *)id_map_remove (self->requests, refs[i]);
    }
    s_fail_requests (self, false, self->hello_ref, DROVER_ESTALE, reason);
    for (size_t i = 0; i < resent_count; i++) {
        int rc = id_map_try_set (self->requests, resent[i]->ref, resent[i]);
        assert (rc == 0);
    }
    free (resent);
    free (refs);
    if (resent_count)
        self->broker_owed = zclock_mono ();
}

static void
s_handle_welcome (drover_client_t *self, drover_msg_t *msg)
{
    if (msg->max_batch == 0 || msg->max_payload == 0) {
        self->malformed++;
        drover_client_fail (self, DROVER_EPROTO,
                            "the broker's WELCOME allows %u tasks per message "
                            "and payloads of %llu octets",
                            msg->max_batch,
                            (unsigned long long)msg->max_payload);
        if (!self->welcomed)
            self->session_error = DROVER_EPROTO;
        return;
    }
    //  Bounded, so that heartbeat_ms * liveness stays a sane time
    self->heartbeat_ms = msg->heartbeat_ms == 0        ? 1000
                         : msg->heartbeat_ms > 3600000 ? 3600000
                                                       : msg->heartbeat_ms;
    self->liveness = msg->liveness == 0     ? 5
                     : msg->liveness > 1000 ? 1000
                                            : msg->liveness;
    self->max_batch = msg->max_batch;
    self->max_payload = msg->max_payload < DROVER_MAX_PAYLOAD
                            ? msg->max_payload
                            : DROVER_MAX_PAYLOAD;
    char *previous = self->instance;
    self->instance = strdup (msg->instance);
    self->welcomed = true;
    bool restarted =
        previous && self->instance && !streq (previous, self->instance);
    if (restarted)
        s_broker_restarted (self, previous);
    free (previous);
    if (!msg->endpoint || !*msg->endpoint)
        return; //  no sink registered yet: we say HELLO again later
    char *address = s_sink_address (self, msg->endpoint);
    if (!address)
        return;
    if (self->sink && self->sink_endpoint
        && streq (address, self->sink_endpoint)) {
        free (address);
        //  A sink embedded in the broker restarted with it; a sink of its
        //  own may have lost the results the broker sent it. Either way,
        //  ask again for every result we wait for (a second one of a
        //  result is dropped).
        if (restarted)
            s_sink_watch_all (self);
        return;
    }
    free (self->sink_endpoint);
    self->sink_endpoint = address;
    s_sink_connect (self);
}

static void
s_handle_broker (drover_client_t *self)
{
    drover_packet_t *packet;
    int rc = drover_packet_recv (self->broker, false, &packet);
    if (!packet)
        return;
    drover_msg_t *msg = drover_packet_msg (packet);
    if (rc) {
        //  We cannot tell which request it answers: all of them fail
        self->malformed++;
        char reason[256];
        snprintf (reason, sizeof reason,
                  "the broker sent a malformed message (%s): %s",
                  drover_strcode (rc), drover_packet_error (packet));
        drover_client_fail (self, DROVER_EPROTO, "%s", reason);
        if (!self->welcomed)
            self->session_error = DROVER_EPROTO;
        s_fail_requests (self, false, UINT64_MAX, DROVER_EPROTO, reason);
        drover_packet_destroy (&packet);
        return;
    }
    switch (msg->command) {
        case DROVER_WELCOME: s_handle_welcome (self, msg); break;
        case DROVER_HEARTBEAT: break;
        case DROVER_BYE: {
            int code = msg->code ? msg->code : DROVER_ESTALE;
            char reason[DROVER_MAX_TEXT + 64];
            snprintf (reason, sizeof reason, "the broker ended the session: %s",
                      msg->reason ? msg->reason : drover_strerror (code));
            self->session_lost = true;
            if (!self->welcomed)
                self->session_error = code;
            drover_client_fail (self, code, "%s", reason);
            s_fail_requests (self, false, UINT64_MAX, code, reason);
            break;
        }
        case DROVER_ERROR:
            if (msg->ref)
                s_answer (self, false, &packet);
            else {
                int code = msg->code ? msg->code : DROVER_EPROTO;
                drover_client_fail (self, code, "the broker says: %s",
                                    msg->reason);
                if (!self->welcomed)
                    self->session_error = code;
            }
            break;
        case DROVER_SUBMITTED:
        case DROVER_STATUS_REPLY:
        case DROVER_STATS_REPLY:
        case DROVER_DEAD_REPLY: s_answer (self, false, &packet); break;
        default: self->malformed++; //  not for clients: dropped
    }
    drover_packet_destroy (&packet);
    //  The broker lives: what it owes us is not overdue yet
    if (self->broker_pending)
        self->broker_owed = zclock_mono ();
}

static void
s_handle_results (drover_client_t *self, drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    for (size_t i = 0; i < msg->task_count; i++) {
        const drover_task_t *item = &msg->tasks[i];
        s_watch_t *watch = (s_watch_t *)id_map_remove (self->watches, item->id);
        if (!watch)
            continue; //  not watched (any more), or a duplicate
        drover_result_t *result =
            s_result_new (item, drover_packet_take_payload (packet, i));
        if (!result) {
            //  Out of memory: watch it again, maybe it fits later
            id_map_try_set (self->watches, item->id, watch);
            self->rewatch_at = zclock_mono () + 1000;
            continue;
        }
        if (watch->fn)
            watch->fn (watch->arg, result);
        else if (id_map_try_set (self->results, item->id, result))
            drover_result_destroy (&result);
        free (watch);
    }
    //  Results flow again: a later refusal starts over with a short backoff
    self->rewatch_backoff = 0;
    self->result_heard = zclock_mono ();
}

static void
s_handle_sink (drover_client_t *self)
{
    drover_packet_t *packet;
    int rc = drover_packet_recv (self->sink, false, &packet);
    if (!packet)
        return;
    self->sink_heard = zclock_mono ();
    drover_msg_t *msg = drover_packet_msg (packet);
    if (rc) {
        self->malformed++;
        char reason[256];
        snprintf (reason, sizeof reason,
                  "the sink sent a malformed message (%s): %s",
                  drover_strcode (rc), drover_packet_error (packet));
        drover_client_fail (self, DROVER_EPROTO, "%s", reason);
        s_fail_requests (self, true, UINT64_MAX, DROVER_EPROTO, reason);
        drover_packet_destroy (&packet);
        return;
    }
    switch (msg->command) {
        case DROVER_RESULT: s_handle_results (self, packet); break;
        case DROVER_HEARTBEAT: break;
        case DROVER_BYE:
            //  The sink holds no watches of ours (SPEC.md 6): it restarted,
            //  or forgot us. Watch everything again, unless a refused
            //  WATCH waits for its backoff.
            if (!self->rewatch_at || zclock_mono () >= self->rewatch_at)
                s_sink_watch_all (self);
            break;
        case DROVER_STATUS_REPLY: s_answer (self, true, &packet); break;
        case DROVER_ERROR:
            if (msg->ref)
                s_answer (self, true, &packet);
            else {
                //  WATCH has no ref: a refused WATCH (DROVER_EFULL) is
                //  tried again, everything at once, after a backoff
                drover_client_fail (self, msg->code, "the sink says: %s",
                                    msg->reason);
                self->rewatch_backoff =
                    self->rewatch_backoff ? self->rewatch_backoff * 2 : 100;
                if (self->rewatch_backoff > 5000)
                    self->rewatch_backoff = 5000;
                self->rewatch_at = zclock_mono () + self->rewatch_backoff;
            }
            break;
        default: self->malformed++;
    }
    drover_packet_destroy (&packet);
}

//  --------------------------------------------------------------------------
//  Liveness

static int64_t
s_expiry (drover_client_t *self)
{
    return (int64_t)self->heartbeat_ms * self->liveness;
}

//  Says HELLO again on the current session, to get a WELCOME that names
//  the sink (the broker keeps no client sessions, so it cannot tell us
//  when the sink changes).
static void
s_hello (drover_client_t *self)
{
    drover_msg_t hello;
    drover_msg_init (&hello, DROVER_HELLO);
    hello.role = "client";
    hello.name = self->name;
    self->hello_ref = self->next_ref;
    drover_wire_send (self->broker, NULL, &hello, NULL);
    self->hello_sent = self->probe_sent = zclock_mono ();
    self->hello_ivl = self->hello_ivl < CLIENT_HELLO_MIN ? CLIENT_HELLO_MIN
                      : self->hello_ivl * 2 > CLIENT_HELLO_MAX
                          ? CLIENT_HELLO_MAX
                          : self->hello_ivl * 2;
}

//  Heartbeats the sink or watches everything again, as due; only while
//  tasks are watched.
static void
s_sink_liveness (drover_client_t *self)
{
    if (id_map_size (self->watches) == 0)
        return;
    int64_t now = zclock_mono ();
    if (!self->sink) {
        if (!self->session_lost && now - self->hello_sent >= self->hello_ivl)
            s_hello (self);
        return;
    }
    bool away = now - self->sink_sent >= s_expiry (self);
    bool silent =
        now - self->sink_heard >= s_expiry (self) + self->heartbeat_ms;
    if (silent && !away && !self->session_lost
        && now - self->hello_sent >= self->hello_ivl)
        s_hello (self); //  the sink may have moved: ask the broker
    if (away || silent || (self->rewatch_at && now >= self->rewatch_at)) {
        //  We were away so long that the sink may have forgotten our
        //  watches, or it is silent though we heartbeat it (restarted?),
        //  or it refused a WATCH. The socket stays: results already on
        //  their way to it must not be lost.
        s_sink_watch_all (self);
        return;
    }
    if (now - self->sink_sent >= self->heartbeat_ms) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HEARTBEAT);
        if (drover_wire_send (self->sink, NULL, &msg, NULL) == 0)
            self->sink_sent = now;
    }
}

//  How long the broker may owe an answer, or watched tasks bring no
//  result, before we ask the broker whether it restarted.
static int64_t
s_probe_after (drover_client_t *self)
{
    int64_t after = s_expiry (self);
    if (self->timeout_ms > 0 && self->timeout_ms / 2 < after)
        after = self->timeout_ms / 2;
    return after > 0 ? after : 1;
}

//  When to probe the broker next, or -1.
static int64_t
s_probe_timer (drover_client_t *self)
{
    if (self->session_lost || !self->broker)
        return -1; //  the next request starts a new session anyway
    int64_t after = s_probe_after (self), next = -1;
    if (self->broker_pending)
        next = self->broker_owed + after;
    if (id_map_size (self->watches)) {
        int64_t quiet = self->result_heard + s_expiry (self);
        if (next < 0 || quiet < next)
            next = quiet;
    }
    if (next >= 0 && next < self->probe_sent + after)
        next = self->probe_sent + after;
    return next;
}

//  Says HELLO when the broker owes answers, or results do not come, for
//  too long: a WELCOME with a new instance tells that it restarted.
static void
s_broker_liveness (drover_client_t *self)
{
    int64_t when = s_probe_timer (self);
    if (when >= 0 && zclock_mono () >= when)
        s_hello (self);
}

//  When s_sink_liveness has something to do next, or -1.
static int64_t
s_sink_timer (drover_client_t *self)
{
    if (id_map_size (self->watches) == 0)
        return -1;
    if (!self->sink)
        return self->session_lost ? -1 : self->hello_sent + self->hello_ivl;
    int64_t next = self->sink_sent + self->heartbeat_ms;
    int64_t dead = self->sink_heard + s_expiry (self) + self->heartbeat_ms;
    if (dead < next)
        next = dead;
    if (self->rewatch_at && self->rewatch_at < next)
        next = self->rewatch_at;
    return next;
}

//  Handles what waits on both sockets. A handler may replace the sink's
//  socket, so this asks the sockets, not poll items.
static bool
s_drain (drover_client_t *self)
{
    bool handled = false;
    for (int i = 0;
         i < CLIENT_DRAIN_MAX && (zsock_events (self->broker) & ZMQ_POLLIN);
         i++) {
        s_handle_broker (self);
        handled = true;
    }
    for (int i = 0; i < CLIENT_DRAIN_MAX && self->sink
                    && (zsock_events (self->sink) & ZMQ_POLLIN);
         i++) {
        s_handle_sink (self);
        handled = true;
    }
    return handled;
}

int
drover_client_pump (drover_client_t *self, int64_t deadline, int fd,
                    bool *fd_ready)
{
    assert (self);
    assert (!self->pumping);
    if (fd_ready)
        *fd_ready = false;
    if (!self->broker)
        return drover_client_fail (self, DROVER_EINVAL,
                                   "the client is not connected");
    self->pumping = true;
    int rc = DROVER_ETIMEDOUT;
    bool fd_readable = false;
    while (true) {
        //  Read what came before deciding anything about liveness
        bool handled = s_drain (self) || fd_readable;
        s_sink_liveness (self);
        s_broker_liveness (self);
        int64_t now = zclock_mono ();
        if (handled) {
            //  A peer that never stops talking must not hold the caller
            //  past its deadline
            rc = deadline >= 0 && now > deadline ? DROVER_ETIMEDOUT : 0;
            break;
        }
        if (deadline >= 0 && now >= deadline)
            break;
        int64_t wake = s_sink_timer (self);
        int64_t probe = s_probe_timer (self);
        if (probe >= 0 && (wake < 0 || probe < wake))
            wake = probe;
        if (deadline >= 0 && (wake < 0 || deadline < wake))
            wake = deadline;
        long timeout = wake < 0 ? -1 : wake > now ? (long)(wake - now) : 0;
        zmq_pollitem_t items[3];
        int count = 0;
        items[count++] =
            (zmq_pollitem_t){zsock_resolve (self->broker), 0, ZMQ_POLLIN, 0};
        if (self->sink)
            items[count++] =
                (zmq_pollitem_t){zsock_resolve (self->sink), 0, ZMQ_POLLIN, 0};
        if (fd >= 0)
            items[count++] = (zmq_pollitem_t){NULL, fd, ZMQ_POLLIN, 0};
        if (zmq_poll (items, count, timeout) == -1) {
            if (errno != EINTR)
                rc =
                    drover_client_fail (self, DROVER_ESYSTEM, "cannot poll: %s",
                                        zmq_strerror (errno));
            break;
        }
        if (fd >= 0 && (items[count - 1].revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
            fd_readable = true;
    }
    if (fd_ready)
        *fd_ready = fd_readable;
    self->pumping = false;
    return rc;
}

//  --------------------------------------------------------------------------
//  Connecting

int
drover_client_set_sink_endpoint (drover_client_t *self, const char *endpoint)
{
    assert (self);
    if (!endpoint || !*endpoint)
        return drover_client_fail (self, DROVER_EINVAL,
                                   "no sink endpoint given");
    if (self->endpoint)
        return drover_client_fail (
            self, DROVER_EINVAL,
            "the sink endpoint is set before drover_client_connect");
    char *copy = strdup (endpoint);
    if (!copy)
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    free (self->sink_override);
    self->sink_override = copy;
    return 0;
}

int
drover_client_connect (drover_client_t *self, const char *endpoint,
                       int timeout_ms)
{
    assert (self);
    if (!endpoint || !*endpoint)
        return drover_client_fail (self, DROVER_EINVAL,
                                   "no broker endpoint given");
    if (self->endpoint)
        return drover_client_fail (self, DROVER_EINVAL,
                                   "the client is connected already");
    self->endpoint = strdup (endpoint);
    if (!self->endpoint)
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    self->timeout_ms = timeout_ms;
    int rc = s_session_start (self, drover_client_deadline (timeout_ms));
    if (rc) {
        zsock_destroy (&self->broker);
        zsock_destroy (&self->sink);
        free (self->endpoint);
        self->endpoint = NULL;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Blocking requests

//  One blocking request's outcome.
typedef struct {
    bool done;               //  answered (or failed)
    int code;                //  0, or why it failed
    drover_packet_t *packet; //  the reply, when code is 0
    char reason[256];        //  why it failed, in words
} s_sync_t;

static void
s_sync_reply (void *arg, int code, const char *reason,
              drover_packet_t **reply_p)
{
    s_sync_t *sync = (s_sync_t *)arg;
    sync->done = true;
    sync->code = code;
    drover_client_copy (sync->reason, sizeof sync->reason, reason);
    if (code == 0) {
        sync->packet = *reply_p;
        *reply_p = NULL;
    }
}

static void
s_sync_fail (s_sync_t *sync, int code, const char *reason)
{
    sync->done = true;
    sync->code = code;
    drover_client_copy (sync->reason, sizeof sync->reason, reason);
}

//  Pumps until every request is answered or the deadline passes; then
//  forgets the unanswered ones (they fail with DROVER_ETIMEDOUT).
static void
s_sync_wait (drover_client_t *self, s_sync_t *syncs, const uint64_t *refs,
             size_t count, int64_t deadline)
{
    for (size_t i = 0; i < count;) {
        if (syncs[i].done) {
            i++;
            continue;
        }
        if (drover_client_pump (self, deadline, -1, NULL) == 0)
            continue;
        for (size_t j = i; j < count; j++)
            if (!syncs[j].done) {
                drover_client_forget (self, refs[j]);
                drover_client_fail (self, DROVER_ETIMEDOUT,
                                    "no answer from the %s within %d ms",
                                    self->sink ? "broker or sink" : "broker",
                                    self->timeout_ms);
                s_sync_fail (&syncs[j], DROVER_ETIMEDOUT, self->reason);
            }
    }
}

static void
s_sync_free (s_sync_t *syncs, size_t count)
{
    for (size_t i = 0; i < count; i++)
        drover_packet_destroy (&syncs[i].packet);
    free (syncs);
}

static int
s_check_connected (drover_client_t *self)
{
    if (!self->endpoint)
        return drover_client_fail (self, DROVER_EINVAL,
                                   "the client is not connected: call "
                                   "drover_client_connect first");
    return 0;
}

//  Checks the options of submitted tasks.
static int
s_check_task (drover_client_t *self, const char *handler,
              const drover_task_options_t *options)
{
    if (!drover_name_valid (handler))
        return drover_client_fail (self, DROVER_EINVAL,
                                   "'%.64s' is not a handler name (1-255 "
                                   "printable characters, no space)",
                                   handler ? handler : "(null)");
    if (options && options->queue && !drover_name_valid (options->queue))
        return drover_client_fail (self, DROVER_EINVAL,
                                   "'%.64s' is not a queue name (1-255 "
                                   "printable characters, no space)",
                                   options->queue);
    if (options && !drover_retry_on_valid (options->retry_on))
        return drover_client_fail (
            self, DROVER_EINVAL,
            "retry_on 0x%llx has bits for no failure code: bit N stands for "
            "code -N, from 1 to %d (drover_retry_on_parse makes a set)",
            (unsigned long long)options->retry_on, -DROVER_ELAST);
    return 0;
}

int
drover_client_submit (drover_client_t *self, const char *handler,
                      const void *payload, size_t size,
                      const drover_task_options_t *options, uint64_t *id_p)
{
    assert (self);
    assert (id_p);
    drover_payload_t input = {payload, size};
    return drover_client_submit_batch (self, handler, &input, 1, options, id_p);
}

//  Submits count tasks in messages of at most max_batch; with again,
//  under the ids in ids (SPEC.md 7.6), else as new tasks.
static int
s_submit (drover_client_t *self, const char *handler,
          const drover_payload_t *payloads, size_t count,
          const drover_task_options_t *options, uint64_t *ids, bool again)
{
    assert (self);
    assert (payloads || count == 0);
    assert (ids || count == 0);
    int rc = s_check_connected (self);
    if (rc == 0)
        rc = s_check_task (self, handler, options);
    if (rc)
        return rc;
    for (size_t i = 0; i < count; i++) {
        if (again && ids[i] == 0)
            return drover_client_fail (self, DROVER_EINVAL,
                                       "task %zu to submit again has id 0", i);
        if (!again)
            ids[i] = 0;
        if (payloads[i].size > self->max_payload)
            return drover_client_fail (
                self, DROVER_ETOOBIG,
                "payload %zu has %zu octets; the cluster accepts at most %llu",
                i, payloads[i].size, (unsigned long long)self->max_payload);
    }
    if (count == 0)
        return 0;
    size_t batch = self->max_batch;
    size_t batches = (count + batch - 1) / batch;
    s_sync_t *syncs = (s_sync_t *)calloc (batches, sizeof (s_sync_t));
    uint64_t *refs = (uint64_t *)calloc (batches, sizeof (uint64_t));
    //  As many as one message takes, not max_batch: a single submit
    //  cleared 4096 of them (some 700 KB) before each round trip
    drover_task_t *tasks =
        (drover_task_t *)calloc (count < batch ? count : batch, sizeof *tasks);
    if (!syncs || !refs || !tasks) {
        free (syncs);
        free (refs);
        free (tasks);
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    }
    for (size_t b = 0; b < batches; b++) {
        size_t first = b * batch;
        size_t size = count - first < batch ? count - first : batch;
        for (size_t i = 0; i < size; i++) {
            const drover_payload_t *payload = &payloads[first + i];
            tasks[i] = (drover_task_t){
                .id = again ? ids[first + i] : 0,
                .handler = handler,
                .payload = {payload->size ? payload->data : NULL,
                            payload->size}};
            drover_task_options_apply (options, &tasks[i]);
        }
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_SUBMIT);
        msg.tasks = tasks;
        msg.task_count = size;
        rc = drover_client_request (self, false, &msg, NULL, s_sync_reply,
                                    &syncs[b], &refs[b]);
        if (rc) //  the rest are not sent
            for (size_t rest = b; rest < batches; rest++)
                s_sync_fail (&syncs[rest], rc, self->reason);
        if (rc)
            break;
    }
    free (tasks);
    s_sync_wait (self, syncs, refs, batches,
                 drover_client_deadline (self->timeout_ms));
    int first_error = 0;
    char reason[sizeof self->reason] = "";
    for (size_t b = 0; b < batches; b++) {
        size_t first = b * batch;
        size_t size = count - first < batch ? count - first : batch;
        rc = syncs[b].code;
        if (rc == 0) {
            drover_msg_t *reply = drover_packet_msg (syncs[b].packet);
            if (reply->id_count == size)
                memcpy (ids + first, reply->ids, size * sizeof (uint64_t));
            else {
                rc = DROVER_EPROTO;
                snprintf (syncs[b].reason, sizeof syncs[b].reason,
                          "the broker gave %zu ids for %zu tasks",
                          reply->id_count, size);
            }
        }
        if (rc && !first_error) {
            first_error = rc;
            drover_client_copy (reason, sizeof reason, syncs[b].reason);
        }
    }
    s_sync_free (syncs, batches);
    free (refs);
    if (first_error)
        drover_client_copy (self->reason, sizeof self->reason, reason);
    return first_error;
}

int
drover_client_submit_batch (drover_client_t *self, const char *handler,
                            const drover_payload_t *payloads, size_t count,
                            const drover_task_options_t *options, uint64_t *ids)
{
    return s_submit (self, handler, payloads, count, options, ids, false);
}

int
drover_client_resubmit (drover_client_t *self, const char *handler,
                        const drover_payload_t *payloads, size_t count,
                        const drover_task_options_t *options, uint64_t *ids)
{
    return s_submit (self, handler, payloads, count, options, ids, true);
}

int
drover_client_wait (drover_client_t *self, const uint64_t *ids, size_t count,
                    int timeout_ms, bool release, drover_result_t **results)
{
    assert (self);
    assert (ids || count == 0);
    assert (results || count == 0);
    for (size_t i = 0; i < count; i++)
        results[i] = NULL;
    int rc = s_check_connected (self);
    if (rc)
        return rc;
    //  Distinct ids only: a result comes once
    id_map_t *seen = id_map_new ();
    uint64_t *watch = (uint64_t *)malloc ((count + 1) * sizeof (uint64_t));
    if (!seen || !watch) {
        id_map_destroy (&seen);
        free (watch);
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    }
    size_t watch_count = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        if (ids[i] == 0)
            rc = drover_client_fail (self, DROVER_EINVAL, "0 is not a task id");
        else if (id_map_lookup (seen, ids[i]))
            rc = drover_client_fail (self, DROVER_EINVAL,
                                     "task %llu is asked for twice",
                                     (unsigned long long)ids[i]);
        else if (id_map_try_set (seen, ids[i], (void *)&ids[i]))
            rc = drover_client_fail (self, DROVER_ENOMEM, "out of memory");
        else if (!id_map_lookup (self->results, ids[i]))
            watch[watch_count++] = ids[i];
    }
    id_map_destroy (&seen);
    if (rc == 0)
        rc =
            drover_client_watch (self, watch, watch_count, release, NULL, NULL);
    free (watch);
    if (rc)
        return rc;

    int64_t deadline = drover_client_deadline (timeout_ms);
    while (true) {
        size_t missing = 0;
        for (size_t i = 0; i < count; i++) {
            if (!results[i])
                results[i] =
                    (drover_result_t *)id_map_remove (self->results, ids[i]);
            if (!results[i])
                missing++;
        }
        if (missing == 0)
            return 0;
        if (rc == DROVER_ETIMEDOUT)
            return drover_client_fail (
                self, DROVER_ETIMEDOUT,
                "%zu of %zu results did not come within %d ms", missing, count,
                timeout_ms);
        rc = drover_client_pump (self, deadline, -1, NULL);
        if (rc && rc != DROVER_ETIMEDOUT)
            return rc;
    }
}

//  --------------------------------------------------------------------------
//  Status, cancel, stats

//  Sends one request per max_batch ids of command to the broker or sink,
//  and waits for the replies. On success *syncs_p holds the replies, each
//  checked to answer its ids in order.
static int
s_ask_ids (drover_client_t *self, bool to_sink, drover_command_t command,
           const uint64_t *ids, size_t count, int64_t deadline,
           s_sync_t **syncs_p, size_t *batch_p)
{
    //  A WELCOME that comes while we wait may change max_batch: the
    //  replies are laid out by the batch size they were asked with
    size_t batch = self->max_batch;
    size_t batches = (count + batch - 1) / batch;
    s_sync_t *syncs = (s_sync_t *)calloc (batches + 1, sizeof (s_sync_t));
    uint64_t *refs = (uint64_t *)calloc (batches + 1, sizeof (uint64_t));
    if (!syncs || !refs) {
        free (syncs);
        free (refs);
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    }
    int rc = 0;
    for (size_t b = 0; b < batches && rc == 0; b++) {
        drover_msg_t msg;
        drover_msg_init (&msg, command);
        msg.ids = (uint64_t *)ids + b * batch;
        msg.id_count = count - b * batch < batch ? count - b * batch : batch;
        rc = drover_client_request (self, to_sink, &msg, NULL, s_sync_reply,
                                    &syncs[b], &refs[b]);
        if (rc)
            for (size_t rest = b; rest < batches; rest++)
                s_sync_fail (&syncs[rest], rc, self->reason);
    }
    s_sync_wait (self, syncs, refs, batches, deadline);
    char reason[sizeof self->reason] = "";
    rc = 0;
    for (size_t b = 0; b < batches && rc == 0; b++) {
        rc = syncs[b].code;
        if (rc) {
            drover_client_copy (reason, sizeof reason, syncs[b].reason);
            break;
        }
        drover_msg_t *reply = drover_packet_msg (syncs[b].packet);
        size_t size = count - b * batch < batch ? count - b * batch : batch;
        bool good = reply->task_count == size;
        for (size_t i = 0; good && i < size; i++)
            good = reply->tasks[i].id == ids[b * batch + i];
        if (!good) {
            rc = DROVER_EPROTO;
            snprintf (reason, sizeof reason,
                      "the %s answered %s for other tasks than asked",
                      to_sink ? "sink" : "broker",
                      drover_command_name (command));
        }
    }
    free (refs);
    if (rc) {
        s_sync_free (syncs, batches);
        drover_client_copy (self->reason, sizeof self->reason, reason);
        return rc;
    }
    *syncs_p = syncs;
    *batch_p = batch;
    return 0;
}

//  The item of the i-th id in a set of replies of s_ask_ids, asked in
//  batches of batch ids.
static const drover_task_t *
s_item (s_sync_t *syncs, size_t batch, size_t i)
{
    drover_msg_t *reply = drover_packet_msg (syncs[i / batch].packet);
    return &reply->tasks[i % batch];
}

static int
s_status (drover_client_t *self, drover_command_t command, const uint64_t *ids,
          size_t count, drover_status_t **statuses_p)
{
    assert (self);
    assert (ids || count == 0);
    assert (statuses_p);
    *statuses_p = NULL;
    int rc = s_check_connected (self);
    if (rc)
        return rc;
    for (size_t i = 0; i < count; i++)
        if (ids[i] == 0)
            return drover_client_fail (self, DROVER_EINVAL,
                                       "0 is not a task id");
    if (count == 0)
        return 0;
    int64_t deadline = drover_client_deadline (self->timeout_ms);
    s_sync_t *broker = NULL, *sink = NULL;
    size_t broker_batch = 0, sink_batch = 0, sink_batches = 0;
    rc = s_ask_ids (self, false, command, ids, count, deadline, &broker,
                    &broker_batch);
    if (rc)
        return rc;
    size_t batches = (count + broker_batch - 1) / broker_batch;

    //  The broker forgets tasks once their result is stored: ask the sink
    uint64_t *unknown = (uint64_t *)malloc (count * sizeof (uint64_t));
    size_t *unknown_at = (size_t *)malloc (count * sizeof (size_t));
    const drover_task_t **items =
        (const drover_task_t **)malloc (count * sizeof (drover_task_t *));
    if (!unknown || !unknown_at || !items) {
        rc = drover_client_fail (self, DROVER_ENOMEM, "out of memory");
        goto done;
    }
    size_t unknown_count = 0;
    for (size_t i = 0; i < count; i++) {
        items[i] = s_item (broker, broker_batch, i);
        if (items[i]->state == DROVER_STATE_UNKNOWN) {
            unknown_at[unknown_count] = i;
            unknown[unknown_count++] = ids[i];
        }
    }
    if (unknown_count && !self->sink && !self->session_lost
        && zclock_mono () - self->hello_sent >= self->hello_ivl)
        s_hello (self); //  learn the sink for the next time
    if (unknown_count && self->sink) {
        rc = s_ask_ids (self, true, DROVER_STATUS, unknown, unknown_count,
                        deadline, &sink, &sink_batch);
        if (rc)
            goto done;
        sink_batches = (unknown_count + sink_batch - 1) / sink_batch;
        for (size_t i = 0; i < unknown_count; i++)
            items[unknown_at[i]] = s_item (sink, sink_batch, i);
    }

    size_t size = count * sizeof (drover_status_t);
    for (size_t i = 0; i < count; i++)
        size += s_size (items[i]->handler) + s_size (items[i]->queue)
                + s_size (items[i]->node) + s_size (items[i]->reason);
    drover_status_t *statuses = (drover_status_t *)calloc (1, size);
    if (!statuses) {
        rc = drover_client_fail (self, DROVER_ENOMEM, "out of memory");
        goto done;
    }
    char *cursor = (char *)(statuses + count);
    for (size_t i = 0; i < count; i++) {
        const drover_task_t *item = items[i];
        statuses[i] = (drover_status_t){
            .id = ids[i],
            .state = (int)item->state,
            .state_name = drover_state_name ((int)item->state),
            .attempt = item->attempt,
            .max_attempts = item->max_attempts,
            .handler = s_place (&cursor, item->handler),
            .queue = s_place (&cursor, item->queue),
            .node = s_place (&cursor, item->node),
            .code = item->code,
            .reason = s_place (&cursor, item->reason)};
    }
    *statuses_p = statuses;
done:
    free (unknown);
    free (unknown_at);
    free (items);
    s_sync_free (broker, batches);
    if (sink)
        s_sync_free (sink, sink_batches);
    return rc;
}

int
drover_client_status (drover_client_t *self, const uint64_t *ids, size_t count,
                      drover_status_t **statuses_p)
{
    return s_status (self, DROVER_STATUS, ids, count, statuses_p);
}

int
drover_client_cancel (drover_client_t *self, const uint64_t *ids, size_t count,
                      drover_status_t **statuses_p)
{
    return s_status (self, DROVER_CANCEL, ids, count, statuses_p);
}

int
drover_client_stats (drover_client_t *self, drover_stats_t **stats_p)
{
    assert (self);
    assert (stats_p);
    *stats_p = NULL;
    int rc = s_check_connected (self);
    if (rc)
        return rc;
    s_sync_t sync = {.done = false};
    uint64_t ref = 0;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_STATS);
    rc = drover_client_request (self, false, &msg, NULL, s_sync_reply, &sync,
                                &ref);
    if (rc)
        return rc;
    s_sync_wait (self, &sync, &ref, 1,
                 drover_client_deadline (self->timeout_ms));
    if (sync.code)
        return drover_client_fail (self, sync.code, "%s", sync.reason);
    drover_msg_t *reply = drover_packet_msg (sync.packet);
    size_t size = sizeof (drover_stats_t)
                  + reply->queue_info_count * sizeof (drover_stats_queue_t)
                  + reply->node_info_count * sizeof (drover_stats_node_t)
                  + reply->counter_count * sizeof (drover_stats_counter_t);
    for (size_t i = 0; i < reply->queue_info_count; i++)
        size += s_size (reply->queue_infos[i].name);
    for (size_t i = 0; i < reply->node_info_count; i++)
        size += s_size (reply->node_infos[i].name);
    for (size_t i = 0; i < reply->counter_count; i++)
        size += s_size (reply->counters[i].name);
    drover_stats_t *stats = (drover_stats_t *)calloc (1, size);
    if (!stats) {
        drover_packet_destroy (&sync.packet);
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    }
    //  The arrays first (aligned), then the names
    stats->queues = (drover_stats_queue_t *)(stats + 1);
    stats->queue_count = reply->queue_info_count;
    stats->nodes = (drover_stats_node_t *)(stats->queues + stats->queue_count);
    stats->node_count = reply->node_info_count;
    stats->counters =
        (drover_stats_counter_t *)(stats->nodes + stats->node_count);
    stats->counter_count = reply->counter_count;
    char *cursor = (char *)(stats->counters + stats->counter_count);
    for (size_t i = 0; i < stats->queue_count; i++) {
        const drover_queue_info_t *info = &reply->queue_infos[i];
        stats->queues[i] = (drover_stats_queue_t){s_place (&cursor, info->name),
                                                  info->queued, info->leased};
    }
    for (size_t i = 0; i < stats->node_count; i++) {
        const drover_node_info_t *info = &reply->node_infos[i];
        stats->nodes[i] =
            (drover_stats_node_t){s_place (&cursor, info->name), info->children,
                                  info->credit, info->leased, info->done};
    }
    for (size_t i = 0; i < stats->counter_count; i++) {
        const drover_counter_t *info = &reply->counters[i];
        stats->counters[i] = (drover_stats_counter_t){
            s_place (&cursor, info->name), info->value};
    }
    if (stats->queue_count == 0)
        stats->queues = NULL;
    if (stats->node_count == 0)
        stats->nodes = NULL;
    if (stats->counter_count == 0)
        stats->counters = NULL;
    drover_packet_destroy (&sync.packet);
    *stats_p = stats;
    return 0;
}

//  --------------------------------------------------------------------------
//  Dead letters

//  One attempt of a DEAD_REPLY, for sorting by task, then attempt.
typedef struct {
    size_t task;               //  index of its task, in order of first sight
    const drover_task_t *item; //  the attempt's item in its reply
} s_dead_item_t;

static int
s_dead_item_compare (const void *a, const void *b)
{
    const s_dead_item_t *x = (const s_dead_item_t *)a;
    const s_dead_item_t *y = (const s_dead_item_t *)b;
    if (x->task != y->task)
        return x->task < y->task ? -1 : 1;
    if (x->item->attempt != y->item->attempt)
        return x->item->attempt < y->item->attempt ? -1 : 1;
    return 0;
}

//  Builds the list of dead letters from the replies to DEAD, grouping the
//  attempts by task (in order of first sight) and ordering each task's by
//  attempt. asked (may be NULL) holds the ids asked for: any other task is
//  a broken reply, as is one attempt given twice.
static int
s_dead_list_new (drover_client_t *self, s_sync_t *syncs, size_t replies,
                 id_map_t *asked, drover_dead_list_t **list_p)
{
    size_t count = 0;
    for (size_t r = 0; r < replies; r++)
        count += drover_packet_msg (syncs[r].packet)->task_count;
    s_dead_item_t *items =
        (s_dead_item_t *)calloc (count + 1, sizeof (s_dead_item_t));
    id_map_t *tasks = id_map_new (); //  id -> task index + 1
    if (!items || !tasks) {
        free (items);
        id_map_destroy (&tasks);
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    }
    int rc = 0;
    size_t task_count = 0;
    for (size_t r = 0, at = 0; r < replies && rc == 0; r++) {
        drover_msg_t *reply = drover_packet_msg (syncs[r].packet);
        for (size_t i = 0; i < reply->task_count && rc == 0; i++, at++) {
            const drover_task_t *item = &reply->tasks[i];
            if (asked && !id_map_lookup (asked, item->id)) {
                rc = drover_client_fail (
                    self, DROVER_EPROTO,
                    "the broker's DEAD_REPLY lists task %llu, which was not "
                    "asked for",
                    (unsigned long long)item->id);
                break;
            }
            uintptr_t task = (uintptr_t)id_map_lookup (tasks, item->id);
            if (!task) {
                task = ++task_count;
                if (id_map_try_set (tasks, item->id, (void *)task))
                    rc = drover_client_fail (self, DROVER_ENOMEM,
                                             "out of memory");
            }
            items[at] = (s_dead_item_t){(size_t)task - 1, item};
        }
    }
    id_map_destroy (&tasks);
    if (count)
        qsort (items, count, sizeof *items, s_dead_item_compare);
    for (size_t i = 1; i < count && rc == 0; i++)
        if (s_dead_item_compare (&items[i - 1], &items[i]) == 0)
            rc = drover_client_fail (
                self, DROVER_EPROTO,
                "the broker's DEAD_REPLY gives attempt %u of task %llu twice",
                items[i].item->attempt, (unsigned long long)items[i].item->id);
    if (rc) {
        free (items);
        return rc;
    }
    //  One block: the list, its tasks, their attempts, then the texts
    size_t size = sizeof (drover_dead_list_t)
                  + task_count * sizeof (drover_dead_t)
                  + count * sizeof (drover_attempt_t);
    for (size_t i = 0; i < count; i++)
        size += s_size (items[i].item->handler) + s_size (items[i].item->queue)
                + s_size (items[i].item->reason) + s_size (items[i].item->node);
    drover_dead_list_t *list = (drover_dead_list_t *)calloc (1, size);
    if (!list) {
        free (items);
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    }
    list->tasks = task_count ? (drover_dead_t *)(list + 1) : NULL;
    list->task_count = task_count;
    drover_attempt_t *attempts =
        (drover_attempt_t *)((drover_dead_t *)(list + 1) + task_count);
    char *cursor = (char *)(attempts + count);
    drover_dead_t *dead = NULL;
    for (size_t i = 0; i < count; i++) {
        const drover_task_t *item = items[i].item;
        if (i == 0 || items[i].task != items[i - 1].task) {
            dead = &list->tasks[items[i].task];
            dead->id = item->id;
            dead->attempts = &attempts[i];
        }
        //  Task fields may come with any of its attempts
        if (!dead->handler)
            dead->handler = s_place (&cursor, item->handler);
        if (!dead->queue)
            dead->queue = s_place (&cursor, item->queue);
        if (item->max_attempts)
            dead->max_attempts = item->max_attempts;
        drover_attempt_t *attempt = &attempts[i];
        *attempt = (drover_attempt_t){.attempt = item->attempt,
                                      .code = item->code,
                                      .reason = s_place (&cursor, item->reason),
                                      .node = s_place (&cursor, item->node),
                                      .elapsed_us = item->elapsed_us,
                                      .cpu_us = item->cpu_us,
                                      .signal = item->signal,
                                      .exit_status = item->exit_status,
                                      .max_rss_kb = item->max_rss_kb};
        dead->attempt_count++;
        dead->code = attempt->code; //  the last one wins
        dead->reason = attempt->reason;
    }
    free (items);
    *list_p = list;
    return 0;
}

int
drover_client_dead (drover_client_t *self, const uint64_t *ids, size_t count,
                    drover_dead_list_t **list_p)
{
    assert (self);
    assert (ids || count == 0);
    assert (list_p);
    *list_p = NULL;
    int rc = s_check_connected (self);
    if (rc)
        return rc;
    id_map_t *asked = count ? id_map_new () : NULL;
    if (count && !asked)
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    for (size_t i = 0; i < count && rc == 0; i++) {
        if (ids[i] == 0)
            rc = drover_client_fail (self, DROVER_EINVAL, "0 is not a task id");
        else if (id_map_try_set (asked, ids[i], (void *)&ids[i]))
            rc = drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    }
    size_t batch = self->max_batch;
    size_t batches = count ? (count + batch - 1) / batch : 1;
    s_sync_t *syncs = (s_sync_t *)calloc (batches, sizeof (s_sync_t));
    uint64_t *refs = (uint64_t *)calloc (batches, sizeof (uint64_t));
    if (rc == 0 && (!syncs || !refs))
        rc = drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    if (rc) {
        free (syncs);
        free (refs);
        id_map_destroy (&asked);
        return rc;
    }
    for (size_t b = 0; b < batches; b++) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_DEAD);
        if (count) {
            msg.ids = (uint64_t *)ids + b * batch;
            msg.id_count =
                count - b * batch < batch ? count - b * batch : batch;
        }
        rc = drover_client_request (self, false, &msg, NULL, s_sync_reply,
                                    &syncs[b], &refs[b]);
        if (rc) { //  the rest are not sent
            for (size_t rest = b; rest < batches; rest++)
                s_sync_fail (&syncs[rest], rc, self->reason);
            break;
        }
    }
    s_sync_wait (self, syncs, refs, batches,
                 drover_client_deadline (self->timeout_ms));
    rc = 0;
    for (size_t b = 0; b < batches && rc == 0; b++)
        if (syncs[b].code)
            rc =
                drover_client_fail (self, syncs[b].code, "%s", syncs[b].reason);
    if (rc == 0)
        rc = s_dead_list_new (self, syncs, batches, asked, list_p);
    s_sync_free (syncs, batches);
    free (refs);
    id_map_destroy (&asked);
    return rc;
}

int
drover_client_retry (drover_client_t *self, const uint64_t *ids, size_t count,
                     bool all, uint64_t **new_ids_p, size_t *new_count_p)
{
    assert (self);
    assert (ids || count == 0);
    assert (new_ids_p);
    assert (new_count_p);
    *new_ids_p = NULL;
    *new_count_p = 0;
    int rc = s_check_connected (self);
    if (rc)
        return rc;
    if (all && count)
        return drover_client_fail (self, DROVER_EINVAL,
                                   "give the ids of dead letters to retry, "
                                   "or all, not both");
    if (!all && count == 0)
        return drover_client_fail (self, DROVER_EINVAL,
                                   "give the ids of dead letters to retry, "
                                   "or all");
    if (count > self->max_batch)
        return drover_client_fail (
            self, DROVER_ETOOBIG,
            "%zu tasks to retry: the broker takes at most %u at once (or all)",
            count, self->max_batch);
    id_map_t *seen = id_map_new ();
    if (!seen)
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    for (size_t i = 0; i < count && rc == 0; i++) {
        if (ids[i] == 0)
            rc = drover_client_fail (self, DROVER_EINVAL, "0 is not a task id");
        else if (id_map_lookup (seen, ids[i]))
            rc = drover_client_fail (self, DROVER_EINVAL,
                                     "task %llu is given twice",
                                     (unsigned long long)ids[i]);
        else if (id_map_try_set (seen, ids[i], (void *)&ids[i]))
            rc = drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    }
    id_map_destroy (&seen);
    if (rc)
        return rc;
    s_sync_t sync = {.done = false};
    uint64_t ref = 0;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_RETRY);
    msg.ids = (uint64_t *)ids;
    msg.id_count = count;
    msg.all = all;
    rc = drover_client_request (self, false, &msg, NULL, s_sync_reply, &sync,
                                &ref);
    if (rc)
        return rc;
    s_sync_wait (self, &sync, &ref, 1,
                 drover_client_deadline (self->timeout_ms));
    if (sync.code)
        return drover_client_fail (self, sync.code, "%s", sync.reason);
    drover_msg_t *reply = drover_packet_msg (sync.packet);
    if (!all && reply->id_count != count) {
        size_t got = reply->id_count;
        drover_packet_destroy (&sync.packet);
        return drover_client_fail (
            self, DROVER_EPROTO,
            "the broker gave %zu new ids for %zu retried tasks", got, count);
    }
    uint64_t *new_ids =
        (uint64_t *)malloc ((reply->id_count + 1) * sizeof (uint64_t));
    if (!new_ids) {
        drover_packet_destroy (&sync.packet);
        return drover_client_fail (self, DROVER_ENOMEM, "out of memory");
    }
    if (reply->id_count)
        memcpy (new_ids, reply->ids, reply->id_count * sizeof (uint64_t));
    *new_ids_p = new_ids;
    *new_count_p = reply->id_count;
    drover_packet_destroy (&sync.packet);
    return 0;
}
