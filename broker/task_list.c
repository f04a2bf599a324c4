/*  task_list.c - a doubly linked list of tasks threaded through the tasks.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "task_list.h"

#include <assert.h>

void
task_list_add_end (task_list_t *self, dispatcher_task_t *task)
{
    assert (!task->prev && !task->next && self->head != task);
    task->prev = self->tail;
    if (self->tail)
        self->tail->next = task;
    else
        self->head = task;
    self->tail = task;
    self->size++;
}

void
task_list_add_start (task_list_t *self, dispatcher_task_t *task)
{
    assert (!task->prev && !task->next && self->head != task);
    task->next = self->head;
    if (self->head)
        self->head->prev = task;
    else
        self->tail = task;
    self->head = task;
    self->size++;
}

void
task_list_remove (task_list_t *self, dispatcher_task_t *task)
{
    assert (self->size > 0);
    if (task->prev)
        task->prev->next = task->next;
    else {
        assert (self->head == task);
        self->head = task->next;
    }
    if (task->next)
        task->next->prev = task->prev;
    else {
        assert (self->tail == task);
        self->tail = task->prev;
    }
    task->prev = task->next = NULL;
    self->size--;
}

void
task_list_move_end (task_list_t *self, dispatcher_task_t *task)
{
    task_list_remove (self, task);
    task_list_add_end (self, task);
}
