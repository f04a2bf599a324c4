/*  fuzz_decode.c - libFuzzer target for the Drover decoder.

    The input is split into frames: octet 0 is the frame count, then each
    frame is a 2-octet big-endian length and that many octets (cut short
    where the input ends; frames past the end are empty). So the fuzzer
    varies the signature, the command, the header and the payload frames
    independently. Each frame is copied to a buffer of its exact size, so
    that ASan sees a read past any frame's end.

    Oracles, besides the sanitizers:
    * a failed decode returns a decoder error code, says why, and leaves
      the message owning nothing;
    * a message that decodes encodes again, the encoding decodes to an
      equal message, and encoding that gives the same octets (round trip).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_msg.h"
#include "msg_fixtures.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRAMES 256

//  Fails the run, saying why
#define CHECK(condition, ...)                                                  \
    do {                                                                       \
        if (!(condition)) {                                                    \
            fprintf (stderr, "fuzz_decode: " __VA_ARGS__);                     \
            fprintf (stderr, "\n");                                            \
            abort ();                                                          \
        }                                                                      \
    } while (0)

//  Splits the input into frames, each in its own malloc'd buffer. Returns
//  the frame count.
static size_t
s_split (const uint8_t *data, size_t size, drover_frame_t *frames)
{
    size_t count = size ? data[0] : 0;
    size_t offset = size ? 1 : 0;
    for (size_t i = 0; i < count; i++) {
        size_t length = 0;
        if (size - offset >= 2) {
            length = (size_t)data[offset] << 8 | data[offset + 1];
            offset += 2;
        }
        else
            offset = size;
        if (length > size - offset)
            length = size - offset;
        void *copy = malloc (length ? length : 1);
        CHECK (copy, "out of memory");
        if (length)
            memcpy (copy, data + offset, length);
        offset += length;
        frames[i].data = copy;
        frames[i].size = length;
    }
    return count;
}

static bool
s_decode_error (int rc)
{
    return rc == DROVER_EPROTO || rc == DROVER_EVERSION || rc == DROVER_ECOMMAND
           || rc == DROVER_ETOOBIG || rc == DROVER_ENOMEM;
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    drover_frame_t frames[MAX_FRAMES];
    size_t count = s_split (data, size, frames);

    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    int rc = drover_msg_decode (&msg, frames, count);
    if (rc) {
        CHECK (s_decode_error (rc), "decode returned %d", rc);
        CHECK (drover_msg_error (&msg)[0], "decode failed (%d) saying nothing",
               rc);
        CHECK (fx_msg_owns_nothing (&msg), "failed decode owns memory");
    }
    else {
        CHECK (drover_msg_error (&msg)[0] == 0, "success with an error: %s",
               drover_msg_error (&msg));
        //  What decodes, encodes: the decoder accepts nothing the encoder
        //  would refuse
        fx_wire_t wire;
        rc = fx_encode (&msg, &wire);
        CHECK (rc == 0, "decoded %s does not encode: %s",
               drover_command_name (msg.command), drover_msg_error (&msg));
        drover_msg_t again;
        drover_msg_init (&again, DROVER_HELLO);
        rc = drover_msg_decode (&again, wire.frames, wire.frame_count);
        CHECK (rc == 0, "re-encoded %s does not decode: %s",
               drover_command_name (msg.command), drover_msg_error (&again));
        char why[256];
        CHECK (fx_msg_equal (&msg, &again, why, sizeof why),
               "round trip of %s differs: %s",
               drover_command_name (msg.command), why);
        fx_wire_t canonical;
        rc = fx_encode (&again, &canonical);
        CHECK (rc == 0 && canonical.header_size == wire.header_size
                   && memcmp (canonical.header, wire.header, wire.header_size)
                          == 0,
               "encoding of %s is not canonical",
               drover_command_name (msg.command));
        fx_wire_free (&canonical);
        drover_msg_reset (&again);
        fx_wire_free (&wire);
        drover_msg_reset (&msg);
    }
    for (size_t i = 0; i < count; i++)
        free ((void *)frames[i].data);
    return 0;
}
