/*  task_list.h - a doubly linked list of tasks threaded through the tasks
    themselves (their prev and next), so that queuing, leasing or reporting
    a task allocates nothing. A task is in one such list at a time: its
    lane's queue, its node's leases, the reports or the claims.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_TASK_LIST_H_INCLUDED
#define DROVER_TASK_LIST_H_INCLUDED

#include "dispatcher.h"

//  Zero-initialised, a list is empty. Walk it from head along task->next,
//  or from tail along task->prev.
typedef struct {
    dispatcher_task_t *head; //  first task, or NULL
    dispatcher_task_t *tail; //  last task, or NULL
    size_t size;             //  tasks in the list
} task_list_t;

//  Adds a task that is in no list, at the end or at the start.
void task_list_add_end (task_list_t *self, dispatcher_task_t *task);
void task_list_add_start (task_list_t *self, dispatcher_task_t *task);

//  Takes a task out of the list, which holds it.
void task_list_remove (task_list_t *self, dispatcher_task_t *task);

//  Moves a task of the list to its end.
void task_list_move_end (task_list_t *self, dispatcher_task_t *task);

#endif
