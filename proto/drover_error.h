/*  drover_error.h - Drover's error codes.

    Every public Drover function returns 0 for success or one of these
    negative codes. The same numbers travel on the wire: in ERROR replies and
    as the outcome code of a task (0 means the task succeeded).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_ERROR_H_INCLUDED
#define DROVER_ERROR_H_INCLUDED

#ifdef __cplusplus
extern "C" {
#endif

#define DROVER_OK         0
#define DROVER_EINVAL     (-1)  /* invalid argument */
#define DROVER_ENOMEM     (-2)  /* out of memory */
#define DROVER_EPROTO     (-3)  /* malformed message */
#define DROVER_EVERSION   (-4)  /* unsupported protocol version */
#define DROVER_ECOMMAND   (-5)  /* unknown or unexpected command */
#define DROVER_ETOOBIG    (-6)  /* message, field or payload over its limit */
#define DROVER_ETIMEDOUT  (-7)  /* the caller's wait timed out */
#define DROVER_EFULL      (-8)  /* queue or store full: slow down and retry */
#define DROVER_ENOTFOUND  (-9)  /* no such task */
#define DROVER_ESTALE     (-10) /* attempt superseded or result already stored */
#define DROVER_EHANDLER   (-11) /* no such handler on the node */
#define DROVER_EFAILED    (-12) /* the handler reported failure */
#define DROVER_ECRASHED   (-13) /* the child died while running the task */
#define DROVER_ECANCELLED (-14) /* the task was cancelled */
#define DROVER_EDENIED    (-15) /* the peer may not send this command */
#define DROVER_ECONNECT   (-16) /* cannot reach the peer */
#define DROVER_EIO        (-17) /* I/O error (socket, pipe, disk) */
#define DROVER_ESHUTDOWN  (-18) /* the peer is draining or shutting down */
#define DROVER_ETIMELIMIT (-19) /* the task exceeded its time limit */
#define DROVER_ELOST      (-20) /* the node running the task was lost */
#define DROVER_ESYSTEM    (-21) /* a system call failed (see errno) */
#define DROVER_EMEMLIMIT  (-22) /* the child passed its memory limit */
#define DROVER_ESTORAGE                                                        \
    (-23) /* the journal cannot be written: disk full
                                   or I/O error; retry later */

/*  The lowest error code; codes run from DROVER_ELAST to -1. */
#define DROVER_ELAST DROVER_ESTORAGE

/*  Returns a static, human-readable description of a Drover code. Unknown
    codes give "unknown error". Never returns NULL. */
const char *drover_strerror (int code);

/*  Returns the code's symbolic name ("DROVER_EPROTO"), or "DROVER_E?" for
    an unknown code. Never returns NULL. */
const char *drover_strcode (int code);

#ifdef __cplusplus
}
#endif

#endif
