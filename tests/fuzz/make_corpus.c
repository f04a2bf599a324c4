/*  make_corpus.c - writes the seed corpus of fuzz_decode: one valid
    message of every command (the samples of msg_fixtures.h), in the fuzz
    input format (frame count, then 2-octet length and octets per frame).

    Usage: make_corpus DIRECTORY

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_msg.h"
#include "msg_fixtures.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Writes the frames as one fuzz input to directory/name.bin
static int
s_write (const char *directory, const char *name, const fx_wire_t *wire)
{
    char path[512];
    snprintf (path, sizeof path, "%s/%s.bin", directory, name);
    for (char *c = path + strlen (directory) + 1; *c; c++)
        *c = (char)tolower ((unsigned char)*c);
    FILE *file = fopen (path, "wb");
    if (!file) {
        perror (path);
        return -1;
    }
    fputc ((int)wire->frame_count, file);
    for (size_t i = 0; i < wire->frame_count; i++) {
        size_t size = wire->frames[i].size;
        if (size > 0xffff) {
            fprintf (stderr, "%s: frame %zu too large\n", path, i);
            fclose (file);
            return -1;
        }
        fputc ((int)(size >> 8), file);
        fputc ((int)(size & 0xff), file);
        fwrite (wire->frames[i].data, 1, size, file);
    }
    return fclose (file);
}

int
main (int argc, char *argv[])
{
    if (argc != 2) {
        fprintf (stderr, "usage: %s DIRECTORY\n", argv[0]);
        return 2;
    }
    for (size_t c = 0; c < FX_COMMAND_COUNT; c++) {
        drover_msg_t msg;
        fx_sample (&msg, fx_command (c));
        fx_wire_t wire;
        int rc = fx_encode (&msg, &wire);
        if (rc) {
            fprintf (stderr, "%s: %s\n", drover_command_name (fx_command (c)),
                     drover_msg_error (&msg));
            return 1;
        }
        rc = s_write (argv[1], drover_command_name (fx_command (c)), &wire);
        fx_wire_free (&wire);
        if (rc)
            return 1;
    }
    return 0;
}
