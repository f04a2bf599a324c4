/*  chan.c - blocking reads and writes for the child's end of the channel.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "chan.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int
chan_read_all (int fd, void *data, size_t size)
{
    char *cursor = (char *)data;
    while (size > 0) {
        ssize_t got = read (fd, cursor, size);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        cursor += got;
        size -= (size_t)got;
    }
    return 0;
}

int
chan_writev_all (int fd, struct iovec *parts, size_t count)
{
    while (count > 0) {
        struct msghdr message;
        memset (&message, 0, sizeof message);
        message.msg_iov = parts;
        message.msg_iovlen = count;
        //  MSG_NOSIGNAL: as chan_write_all
        ssize_t put = sendmsg (fd, &message, MSG_NOSIGNAL);
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
        //  MSG_NOSIGNAL: a dead supervisor must not kill us with SIGPIPE
        //  before PDEATHSIG does
        ssize_t put = send (fd, cursor, size, MSG_NOSIGNAL);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return -1;
        cursor += put;
        size -= (size_t)put;
    }
    return 0;
}
