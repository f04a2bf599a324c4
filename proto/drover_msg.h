/*  drover_msg.h - the Drover wire codec: every message of proto/SPEC.md as
    a plain C struct, and its encoding to and from ZeroMQ frames.

    A message travels as these frames (after any ROUTER routing id):
        0: signature  4 octets: 'D' 'R' 'V' and the major version (1)
        1: command    1 octet, one of drover_command_t
        2: header     a msgpack map; its keys are named in SPEC.md
        3..: payload  one opaque frame per task item, for commands whose
                      items carry payloads (SUBMIT, DISPATCH, RESULT)

    This module is the only code in Drover that includes msgpack headers.
    Decoding validates every key, type, size and count, never allocates more
    than the header's own size justifies, and ignores unknown keys.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_MSG_H_INCLUDED
#define DROVER_MSG_H_INCLUDED

#include "drover_error.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DROVER_VERSION_MAJOR  1
#define DROVER_SIGNATURE      "DRV\x01"
#define DROVER_SIGNATURE_SIZE 4

/*  Limits every decoder enforces (SPEC.md "Limits"). */
#define DROVER_MAX_HEADER  (1u << 20) /* octets in the header frame */
#define DROVER_MAX_PAYLOAD (1u << 28) /* octets in one payload frame */
#define DROVER_MAX_BATCH   4096       /* items, ids or names in one array */
#define DROVER_MAX_NAME    255        /* octets in a name */
#define DROVER_MAX_TEXT    4096       /* octets in a free-text field */
#define DROVER_MAX_DEPTH   16         /* nesting of arrays and maps */
#define DROVER_MAX_CREDIT  65535      /* tasks one CREDIT may ask for */
#define DROVER_MAX_TOKEN   64         /* octets in a SUBMIT token */
#define DROVER_MAX_ITEMS   1048576    /* inputs in one chunk (SPEC 7.7) */

/*  A retry_on set: bit N stands for code -N. */
#define DROVER_RETRY_BIT(code) (1ull << (unsigned)-(code))
#define DROVER_RETRY_ON_DEFAULT                                                \
    (DROVER_RETRY_BIT (DROVER_EFAILED) | DROVER_RETRY_BIT (DROVER_ECRASHED)    \
     | DROVER_RETRY_BIT (DROVER_ETIMELIMIT)                                    \
     | DROVER_RETRY_BIT (DROVER_EMEMLIMIT))

typedef enum {
    DROVER_HELLO = 0x01,        /* any peer -> broker: who I am */
    DROVER_WELCOME = 0x02,      /* broker -> peer: settings, sink endpoint */
    DROVER_HEARTBEAT = 0x03,    /* either way: I am alive */
    DROVER_BYE = 0x04,          /* either way: I am leaving / forget me */
    DROVER_ERROR = 0x05,        /* reply: a request was refused */
    DROVER_SUBMIT = 0x10,       /* client -> broker: queue tasks */
    DROVER_SUBMITTED = 0x11,    /* broker -> client: task ids assigned */
    DROVER_CANCEL = 0x12,       /* client -> broker: cancel tasks */
    DROVER_STATUS = 0x13,       /* client -> broker|sink: ask task states */
    DROVER_STATUS_REPLY = 0x14, /* broker|sink -> client: task states */
    DROVER_STATS = 0x15,        /* client -> broker: ask counters */
    DROVER_STATS_REPLY = 0x16,  /* broker -> client: queues, nodes, counters */
    DROVER_DEAD = 0x17,         /* client -> broker: list dead letters */
    DROVER_DEAD_REPLY = 0x18,   /* broker -> client: dead letters, history */
    DROVER_RETRY = 0x19,        /* client -> broker: resubmit dead letters */
    DROVER_CREDIT = 0x20,       /* node -> broker: send me N more tasks */
    DROVER_DISPATCH = 0x21,     /* broker -> node: run these tasks */
    DROVER_FAIL = 0x22,         /* node -> broker: these attempts failed */
    DROVER_REVOKE = 0x23,       /* broker -> node: stop these attempts */
    DROVER_DRAIN = 0x24,        /* node <-> broker: no new tasks, finish */
    DROVER_RESULT = 0x30,       /* node|broker -> sink -> client: outcomes */
    DROVER_STORED = 0x31,       /* sink -> node|broker: results kept */
    DROVER_DONE = 0x32,         /* sink -> broker: tasks have a result */
    DROVER_WATCH = 0x33,        /* client -> sink: stream me these results */
} drover_command_t;

/*  Task states, as STATUS_REPLY carries them. */
typedef enum {
    DROVER_STATE_UNKNOWN = 0,   /* the peer holds no such task */
    DROVER_STATE_QUEUED = 1,    /* waiting for a node */
    DROVER_STATE_LEASED = 2,    /* an attempt runs on a node */
    DROVER_STATE_RETRY = 3,     /* failed; waiting out its backoff */
    DROVER_STATE_REPORTING = 4, /* final outcome sent, sink not yet told */
    DROVER_STATE_DONE = 5,      /* result stored, code 0 */
    DROVER_STATE_FAILED = 6,    /* outcome stored, code < 0 */
    DROVER_STATE_CANCELLED = 7, /* cancelled before it finished */
} drover_state_t;
#define DROVER_STATE_LAST DROVER_STATE_CANCELLED

/*  An opaque payload: points into a received frame, or at the sender's
    data when encoding. */
typedef struct {
    const void *data; /* payload octets; NULL when size is 0 */
    size_t size;      /* payload size in octets */
} drover_bytes_t;

/*  One task item. Each command uses the subset of fields SPEC.md names;
    the others are zero or NULL. */
typedef struct {
    uint64_t id;           /* task id, assigned by the broker, never 0 */
    uint32_t attempt;      /* attempt number, 1 for the first dispatch */
    uint32_t max_attempts; /* attempts allowed for failures; 0: default */
    const char *handler;   /* handler name on the node */
    const char *queue;     /* queue name; NULL: "default" */
    const char *key;       /* user key (dedup, per-key limits); may be NULL */
    uint64_t timeout_ms;   /* time limit of one attempt; 0: none */
    uint64_t delay_ms;     /* do not dispatch before this delay */
    int64_t priority;      /* higher runs first within a queue */
    uint32_t state;        /* a drover_state_t */
    int32_t code;          /* outcome: 0, or a DROVER_E* code */
    const char *reason;    /* why it failed, e.g. stderr tail; may be NULL */
    const char *node;      /* name of the node that ran the attempt */
    uint64_t elapsed_us;   /* run time of the attempt */
    int32_t signal;        /* signal that killed the child, or 0 */
    int32_t exit_status;   /* exit status of an exec handler, or 0 */
    uint64_t max_rss_kb;   /* peak resident memory of the child */
    uint64_t cpu_us;       /* user + system CPU time of the attempt */
    uint64_t soft_timeout_ms; /* SIGTERM to the attempt after this; 0: none */
    uint64_t retry_delay_ms;  /* backoff before the first retry; 0: default */
    uint64_t retry_max_delay_ms; /* cap of the backoff; 0: default */
    uint64_t retry_on;           /* codes that retry: bit N for code -N; 0:
                               default (DROVER_RETRY_ON_DEFAULT) */
    uint32_t items;              /* SUBMIT, DISPATCH: inputs in the payload's
                               chunk (SPEC 7.7); 0: one input */
    drover_bytes_t payload; /* input (SUBMIT, DISPATCH) or result (RESULT) */
} drover_task_t;

/*  One queue, in STATS_REPLY. */
typedef struct {
    const char *name; /* queue name */
    uint64_t queued;  /* tasks waiting */
    uint64_t leased;  /* tasks running */
} drover_queue_info_t;

/*  One node, in STATS_REPLY. */
typedef struct {
    const char *name;  /* node name */
    uint32_t children; /* children it runs */
    uint64_t credit;   /* tasks it asked for and did not get yet */
    uint64_t leased;   /* tasks it runs */
    uint64_t done;     /* attempts it finished */
} drover_node_info_t;

/*  One named counter, in STATS_REPLY. */
typedef struct {
    const char *name; /* counter name */
    uint64_t value;   /* counter value */
} drover_counter_t;

/*  A message. Initialise with drover_msg_init; fill the fields its command
    uses (SPEC.md names them); a decoded message owns its strings and arrays
    until drover_msg_reset. Payload pointers of a decoded message point into
    the frames it was decoded from: keep those frames alive while you use
    them. */
typedef struct {
    drover_command_t command; /* what this message is */
    uint64_t ref;             /* request number, echoed in the reply */
    const char *role;         /* HELLO: "client", "node" or "sink" */
    const char *name;         /* HELLO: peer name, for logs and stats */
    const char *endpoint;     /* HELLO(sink): where nodes reach it;
                                 WELCOME: the sink nodes and clients use */
    const char *instance;     /* WELCOME: id of this broker run */
    const char *token;        /* SUBMIT, SUBMITTED: the client's name for
                                 the request, unique to it (dedup) */
    uint32_t children;        /* HELLO(node): children it runs */
    uint32_t lookahead;       /* HELLO(node): extra tasks it may hold */
    uint32_t heartbeat_ms;    /* WELCOME: heartbeat interval */
    uint32_t liveness;        /* WELCOME: intervals missed before expiry */
    uint64_t max_payload;     /* WELCOME: largest payload accepted */
    uint32_t max_batch;       /* WELCOME: most items in one message */
    uint32_t credit;          /* CREDIT: more tasks wanted */
    int32_t code;             /* ERROR, BYE: a DROVER_E* code */
    const char *reason;       /* ERROR, BYE: what happened, what to do */
    bool release;             /* WATCH: forget results once delivered */
    bool chunks;              /* HELLO: the node runs chunks (SPEC 7.7) */
    bool all;                 /* DEAD, RETRY: every dead letter, not ids */
    const char **handlers;    /* HELLO(node): handlers it runs */
    size_t handler_count;
    const char **queues; /* HELLO(node): queues it serves */
    size_t queue_count;
    uint64_t *ids; /* SUBMITTED, CANCEL, STATUS, WATCH, DEAD, RETRY */
    size_t id_count;
    drover_task_t *tasks; /* SUBMIT, DISPATCH, FAIL, REVOKE, RESULT,
                             STORED, DONE, STATUS_REPLY, DEAD_REPLY */
    size_t task_count;
    drover_queue_info_t *queue_infos; /* STATS_REPLY */
    size_t queue_info_count;
    drover_node_info_t *node_infos; /* STATS_REPLY */
    size_t node_info_count;
    drover_counter_t *counters; /* STATS_REPLY */
    size_t counter_count;
    void *arena_;     /* private: memory of a decoded message */
    char error_[160]; /* private: why the last decode failed */
} drover_msg_t;

/*  Zeroes the message and sets its command. */
void drover_msg_init (drover_msg_t *self, drover_command_t command);

/*  Frees what a decoded message owns and zeroes it. Safe to call on an
    initialised message and more than once. */
void drover_msg_reset (drover_msg_t *self);

/*  Returns the command's name ("SUBMIT"), or NULL if it is not a command. */
const char *drover_command_name (int command);

/*  Returns the state's name ("queued"), or "unknown". */
const char *drover_state_name (int state);

/*  True when the command's task items each carry one payload frame. */
bool drover_command_has_payloads (int command);

/*  Encodes the header map of the message. On success *header is a malloc'd
    buffer the caller frees, and the payload frames to send after it are
    the tasks' payloads, in order, if drover_command_has_payloads. Returns
    DROVER_EINVAL (with the reason in drover_msg_error) if a field breaks
    the spec, e.g. a missing required field or a name too long. */
int drover_msg_encode (drover_msg_t *self, uint8_t **header,
                       size_t *header_size);

/*  One received frame. */
typedef struct {
    const void *data; /* frame octets */
    size_t size;      /* frame size */
} drover_frame_t;

/*  Decodes frames (signature, command, header, payloads...) into self,
    which must be initialised or reset. Returns 0, or DROVER_EVERSION,
    DROVER_ECOMMAND, DROVER_EPROTO or DROVER_ETOOBIG with the reason in
    drover_msg_error; on failure self owns nothing. */
int drover_msg_decode (drover_msg_t *self, const drover_frame_t *frames,
                       size_t frame_count);

/*  Says why the last encode or decode failed ("" after a success). */
const char *drover_msg_error (const drover_msg_t *self);

#ifdef __cplusplus
}
#endif

#endif
