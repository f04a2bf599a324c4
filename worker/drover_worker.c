/*  drover_worker.c - the public worker API: a node's settings and handler
    table, the output buffer of handlers, and drover_worker_run.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_worker.h"

#include "drover_msg.h"
#include "handlers.h"
#include "node.h"
#include "worker_private.h"
#include <czmq.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_DEFAULT_ENDPOINT      "tcp://127.0.0.1:5555"
#define S_DEFAULT_DRAIN_TIMEOUT 60000
#define S_DEFAULT_KILL_GRACE    5000
#define S_MAX_ENDPOINT          1024

struct drover_worker_t {
    worker_config_t config; //  settings and handlers, given to the node
};

bool
worker_name_valid (const char *name)
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

drover_worker_t *
drover_worker_new (void)
{
    drover_worker_t *self = (drover_worker_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config.endpoint = strdup (S_DEFAULT_ENDPOINT);
    if (!self->config.endpoint) {
        free (self);
        return NULL;
    }
    long cpus = sysconf (_SC_NPROCESSORS_ONLN);
    self->config.children = cpus < 1 ? 1
                            : cpus > DROVER_WORKER_MAX_CHILDREN
                                ? DROVER_WORKER_MAX_CHILDREN
                                : (uint32_t)cpus;
    self->config.lookahead_auto = true;
    self->config.batch_children = true;
    self->config.drain_timeout_ms = S_DEFAULT_DRAIN_TIMEOUT;
    self->config.kill_grace_ms = S_DEFAULT_KILL_GRACE;
    return self;
}

void
drover_worker_destroy (drover_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    drover_worker_t *self = *self_p;
    worker_config_t *config = &self->config;
    for (size_t i = 0; i < config->handler_count; i++) {
        free (config->handlers[i].name);
        free (config->handlers[i].command);
    }
    free (config->handlers);
    for (size_t i = 0; i < config->queue_count; i++)
        free (config->queues[i]);
    free (config->queues);
    free (config->endpoint);
    free (config->name);
    free (self);
    *self_p = NULL;
}

int
drover_worker_set_endpoint (drover_worker_t *self, const char *endpoint)
{
    if (!self || !endpoint)
        return DROVER_EINVAL;
    const char *separator = strstr (endpoint, "://");
    size_t size = strlen (endpoint);
    if (!separator || separator == endpoint || !separator[3]
        || size > S_MAX_ENDPOINT)
        return DROVER_EINVAL;
    char *copy = strdup (endpoint);
    if (!copy)
        return DROVER_ENOMEM;
    free (self->config.endpoint);
    self->config.endpoint = copy;
    return 0;
}

int
drover_worker_set_children (drover_worker_t *self, unsigned children)
{
    if (!self || children < 1 || children > DROVER_WORKER_MAX_CHILDREN)
        return DROVER_EINVAL;
    self->config.children = children;
    return 0;
}

int
drover_worker_set_lookahead (drover_worker_t *self, unsigned lookahead)
{
    if (!self
        || (lookahead > DROVER_WORKER_MAX_LOOKAHEAD
            && lookahead != DROVER_WORKER_LOOKAHEAD_AUTO))
        return DROVER_EINVAL;
    self->config.lookahead_auto = lookahead == DROVER_WORKER_LOOKAHEAD_AUTO;
    self->config.lookahead = self->config.lookahead_auto ? 0 : lookahead;
    return 0;
}

int
drover_worker_set_max_tasks_per_child (drover_worker_t *self, unsigned tasks)
{
    if (!self)
        return DROVER_EINVAL;
    self->config.max_tasks_per_child = tasks;
    return 0;
}

int
drover_worker_set_batch_children (drover_worker_t *self, bool batch)
{
    if (!self)
        return DROVER_EINVAL;
    self->config.batch_children = batch;
    return 0;
}

int
drover_worker_set_drain_timeout (drover_worker_t *self, unsigned msecs)
{
    if (!self)
        return DROVER_EINVAL;
    self->config.drain_timeout_ms = msecs;
    return 0;
}

int
drover_worker_set_kill_grace (drover_worker_t *self, unsigned msecs)
{
    if (!self)
        return DROVER_EINVAL;
    self->config.kill_grace_ms = msecs;
    return 0;
}

int
drover_worker_set_max_memory_per_child (drover_worker_t *self,
                                        unsigned long long kbytes)
{
    if (!self || kbytes > UINT64_MAX / 1024)
        return DROVER_EINVAL;
    self->config.max_memory_kb = (uint64_t)kbytes;
    return 0;
}

int
drover_worker_set_name (drover_worker_t *self, const char *name)
{
    if (!self || !worker_name_valid (name))
        return DROVER_EINVAL;
    char *copy = strdup (name);
    if (!copy)
        return DROVER_ENOMEM;
    free (self->config.name);
    self->config.name = copy;
    return 0;
}

int
drover_worker_add_queue (drover_worker_t *self, const char *queue)
{
    if (!self || !worker_name_valid (queue))
        return DROVER_EINVAL;
    worker_config_t *config = &self->config;
    for (size_t i = 0; i < config->queue_count; i++)
        if (!strcmp (config->queues[i], queue))
            return 0;
    if (config->queue_count >= DROVER_WORKER_MAX_QUEUES)
        return DROVER_ETOOBIG;
    char **queues = (char **)realloc (config->queues, (config->queue_count + 1)
                                                          * sizeof (char *));
    if (!queues)
        return DROVER_ENOMEM;
    config->queues = queues;
    config->queues[config->queue_count] = strdup (queue);
    if (!config->queues[config->queue_count])
        return DROVER_ENOMEM;
    config->queue_count++;
    return 0;
}

void
drover_worker_set_verbose (drover_worker_t *self, bool verbose)
{
    if (self)
        self->config.verbose = verbose;
}

static bool
s_handler_taken (drover_worker_t *self, const char *name)
{
    for (size_t i = 0; i < self->config.handler_count; i++)
        if (!strcmp (self->config.handlers[i].name, name))
            return true;
    return false;
}

//  Appends a handler; takes nothing, copies name and command.
static int
s_handler_add (drover_worker_t *self, const char *name, handler_kind_t kind,
               drover_handler_fn *fn, void *arg, const char *command)
{
    if (!self || !worker_name_valid (name) || s_handler_taken (self, name))
        return DROVER_EINVAL;
    worker_config_t *config = &self->config;
    if (config->handler_count >= DROVER_WORKER_MAX_HANDLERS)
        return DROVER_ETOOBIG;
    handler_t *handlers = (handler_t *)realloc (
        config->handlers, (config->handler_count + 1) * sizeof (handler_t));
    if (!handlers)
        return DROVER_ENOMEM;
    config->handlers = handlers;
    handler_t *handler = &handlers[config->handler_count];
    memset (handler, 0, sizeof *handler);
    handler->name = strdup (name);
    handler->kind = kind;
    handler->fn = fn;
    handler->arg = arg;
    if (command)
        handler->command = strdup (command);
    if (!handler->name || (command && !handler->command)) {
        free (handler->name);
        free (handler->command);
        return DROVER_ENOMEM;
    }
    config->handler_count++;
    return 0;
}

int
drover_worker_add_handler (drover_worker_t *self, const char *name,
                           drover_handler_fn *fn, void *arg)
{
    if (!fn)
        return DROVER_EINVAL;
    return s_handler_add (self, name, HANDLER_FUNCTION, fn, arg, NULL);
}

int
drover_worker_add_exec (drover_worker_t *self, const char *name,
                        const char *command)
{
    if (!command || !*command)
        return DROVER_EINVAL;
    return s_handler_add (self, name, HANDLER_EXEC, NULL, NULL, command);
}

int
drover_worker_add_builtin (drover_worker_t *self, const char *name,
                           const char *builtin)
{
    drover_handler_fn *fn = builtin ? handlers_builtin (builtin) : NULL;
    if (!fn)
        return DROVER_EHANDLER;
    return s_handler_add (self, name, HANDLER_FUNCTION, fn, NULL, NULL);
}

int
drover_worker_add_builtins (drover_worker_t *self)
{
    if (!self)
        return DROVER_EINVAL;
    const char *name;
    for (size_t i = 0; (name = handlers_builtin_name (i)); i++)
        if (!s_handler_taken (self, name)) {
            int rc = drover_worker_add_builtin (self, name, name);
            if (rc)
                return rc;
        }
    return 0;
}

//  The default node name: host:pid, with the host name cut to a valid name.
static char *
s_default_name (void)
{
    char host[256] = "";
    if (gethostname (host, sizeof host - 1))
        host[0] = 0;
    host[sizeof host - 1] = 0;
    for (char *c = host; *c; c++)
        if (*c <= ' ' || *c > '~')
            *c = '_';
    char name[DROVER_MAX_NAME + 1];
    snprintf (name, sizeof name, "%.200s:%d", host[0] ? host : "localhost",
              (int)getpid ());
    return strdup (name);
}

int
drover_worker_run (drover_worker_t *self)
{
    if (!self)
        return DROVER_EINVAL;
    worker_config_t *config = &self->config;
    if (config->handler_count == 0) {
        zsys_error ("worker: no handlers registered; add one before running");
        return DROVER_EINVAL;
    }
    if (sodium_init () < 0)
        return DROVER_ESYSTEM;
    //  The default name names this process, which may not be the one that
    //  created the worker
    bool default_name = config->name == NULL;
    if (default_name && !(config->name = s_default_name ()))
        return DROVER_ENOMEM;
    node_t *node = node_new (config);
    int rc = node ? node_run (node) : DROVER_ENOMEM;
    node_destroy (&node);
    if (default_name) {
        free (config->name);
        config->name = NULL;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Output of handlers

void
output_init (drover_output_t *self, size_t limit)
{
    assert (self);
    memset (self, 0, sizeof *self);
    self->limit = limit;
}

void
output_clear (drover_output_t *self)
{
    assert (self);
    free (self->message);
    self->message = NULL;
    self->size = 0;
    self->error = 0;
}

void
output_reset (drover_output_t *self)
{
    assert (self);
    free (self->data);
    free (self->message);
    size_t limit = self->limit;
    memset (self, 0, sizeof *self);
    self->limit = limit;
}

int
drover_output_write (drover_output_t *self, const void *data, size_t size)
{
    if (!self || (!data && size))
        return DROVER_EINVAL;
    if (self->error)
        return self->error;
    if (size > self->limit - self->size) {
        self->error = DROVER_ETOOBIG;
        return DROVER_ETOOBIG;
    }
    if (self->size + size > self->capacity) {
        size_t capacity = self->capacity ? self->capacity : 4096;
        while (capacity < self->size + size)
            capacity =
                capacity > SIZE_MAX / 2 ? self->size + size : capacity * 2;
        uint8_t *grown = (uint8_t *)realloc (self->data, capacity);
        if (!grown) {
            self->error = DROVER_ENOMEM;
            return DROVER_ENOMEM;
        }
        self->data = grown;
        self->capacity = capacity;
    }
    if (size)
        memcpy (self->data + self->size, data, size);
    self->size += size;
    return 0;
}

int
drover_output_fail (drover_output_t *self, const char *format, ...)
{
    if (!self || !format)
        return DROVER_EFAILED;
    char *message = (char *)malloc (DROVER_MAX_TEXT + 1);
    if (message) {
        va_list args;
        va_start (args, format);
        vsnprintf (message, DROVER_MAX_TEXT + 1, format, args);
        va_end (args);
        free (self->message);
        self->message = message;
    }
    return DROVER_EFAILED;
}
