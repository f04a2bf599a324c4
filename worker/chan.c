/*  chan.c - blocking reads and writes for the child's end of the channel.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "chan.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

//  Moves what is buffered to the front, to make room at the end.
static void
s_compact (chan_reader_t *self)
{
    if (self->start == 0)
        return;
    memmove (self->data, self->data + self->start, self->end - self->start);
    self->end -= self->start;
    self->start = 0;
}

//  One read into the free room (the fd is non-blocking), waiting for
//  something to read or not. Returns its result.
static ssize_t
s_fill (chan_reader_t *self, bool wait)
{
    s_compact (self);
    while (true) {
        ssize_t got = read (self->fd, self->data + self->end,
                            sizeof self->data - self->end);
        if (got > 0)
            self->end += (size_t)got;
        if (got >= 0 || (errno != EINTR && errno != EAGAIN))
            return got;
        if (errno == EAGAIN) {
            if (!wait)
                return -1;
            struct pollfd ready = {self->fd, POLLIN, 0};
            poll (&ready, 1, -1);
        }
    }
}

int
chan_reader_read (chan_reader_t *self, void *data, size_t size)
{
    uint8_t *cursor = (uint8_t *)data;
    while (size > 0) {
        size_t buffered = self->end - self->start;
        if (buffered == 0) {
            if (s_fill (self, true) <= 0)
                return -1;
            continue;
        }
        size_t take = buffered < size ? buffered : size;
        memcpy (cursor, self->data + self->start, take);
        self->start += take;
        cursor += take;
        size -= take;
    }
    return 0;
}

bool
chan_reader_peek (chan_reader_t *self, size_t size, const void **peek_p)
{
    if (self->end - self->start < size)
        s_fill (self, false);
    if (self->end - self->start < size)
        return false;
    *peek_p = self->data + self->start;
    return true;
}

int
chan_writev_all (int fd, struct iovec *parts, size_t count)
{
    while (count > 0) {
        ssize_t put = writev (fd, parts, (int)count);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0)
            return -1;
        size_t left = (size_t)put;
        while (count > 0 && left >= parts->iov_len) {
            left -= parts->iov_len;
            parts++;
            count--;
        }
        if (count > 0) {
            parts->iov_base = (char *)parts->iov_base + left;
            parts->iov_len -= left;
        }
        if (put == 0 && count > 0 && parts->iov_len > 0)
            return -1;
    }
    return 0;
}

int
chan_write_all (int fd, const void *data, size_t size)
{
    const char *cursor = (const char *)data;
    while (size > 0) {
        ssize_t put = write (fd, cursor, size);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return -1;
        cursor += put;
        size -= (size_t)put;
    }
    return 0;
}
