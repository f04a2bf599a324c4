/*  cmd_broker.c - `drover broker` and `drover sink`.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "commands.h"
#include "drover_broker.h"
#include "drover_msg.h"
#include "drover_sink.h"
#include "options.h"

//  The embedded sink's default endpoint: the broker's port plus one, or a
//  path beside the broker's ipc socket. Caller frees.
static char *
s_default_sink_endpoint (const char *listen)
{
    const char *colon = strrchr (listen, ':');
    if (strncmp (listen, "tcp://", 6) == 0 && colon && colon[1] != '*') {
        char *end;
        long port = strtol (colon + 1, &end, 10);
        if (*end == 0 && port > 0 && port < 65535)
            return zsys_sprintf ("%.*s:%ld", (int)(colon - listen), listen,
                                 port + 1);
    }
    if (strncmp (listen, "ipc://", 6) == 0)
        return zsys_sprintf ("%s-sink", listen);
    if (strncmp (listen, "tcp://", 6) == 0 && colon)
        return zsys_sprintf ("%.*s:*", (int)(colon - listen), listen);
    return strdup ("tcp://127.0.0.1:*");
}

//  Runs until SIGINT or SIGTERM.
static void
s_wait_for_signal (zactor_t *actor)
{
    zpoller_t *poller = zpoller_new (actor, NULL);
    while (!zsys_interrupted) {
        void *which = zpoller_wait (poller, 1000);
        if (which == actor) { //  the actor never talks unasked: it died
            zsys_error ("drover: actor stopped");
            break;
        }
        if (zpoller_terminated (poller))
            break;
    }
    zpoller_destroy (&poller);
}

//  Parses --fsync for command; false (said on stderr) when it is no mode.
static bool
s_fsync_parse (const char *command, const char *text, drover_fsync_t *fsync)
{
    if (drover_journal_fsync_parse (text, fsync) == 0)
        return true;
    fprintf (stderr,
             "drover %s: --fsync: expected always, batch or never, not '%s'\n",
             command, text);
    return false;
}

int
drover_cmd_broker (int argc, char **argv)
{
    drover_broker_config_t config = drover_broker_config_default ();
    const char *sink_listen = NULL;
    bool no_sink = false, verbose = false;
    long heartbeat = 0, liveness = 0, max_payload = 0, max_queued = 0,
         max_attempts = 0, max_results = 0, retry_delay = 0,
         retry_max_delay = 0, max_dead = 0, sync_interval = 0, segment_size = 0,
         result_ttl = 0;
    const char *fsync = NULL;
    cli_option_t options[] = {
        {"listen", 'l', CLI_STRING, "DROVER_LISTEN", "tcp://127.0.0.1:5555", 0,
         0, "EP", "endpoint to bind for clients, nodes and sinks",
         &config.endpoint},
        {"sink-listen", 0, CLI_STRING, "DROVER_SINK_LISTEN", NULL, 0, 0, "EP",
         "endpoint of the embedded sink [default: the listen port + 1]",
         &sink_listen},
        {"sink-advertise", 0, CLI_STRING, "DROVER_SINK_ADVERTISE", NULL, 0, 0,
         "EP",
         "sink endpoint told to nodes and clients, if they must use "
         "another address than the bound one",
         &config.sink_advertise},
        {"no-sink", 0, CLI_FLAG, "DROVER_NO_SINK", NULL, 0, 0, NULL,
         "embed no sink: run 'drover sink' on its own", &no_sink},
        {"heartbeat-ms", 0, CLI_INT, "DROVER_HEARTBEAT_MS", "1000", 10, 60000,
         "MS", "heartbeat interval", &heartbeat},
        {"liveness", 0, CLI_INT, "DROVER_LIVENESS", "5", 2, 100, "N",
         "heartbeats missed before a node is lost", &liveness},
        {"max-payload", 0, CLI_INT, "DROVER_MAX_PAYLOAD", "67108864", 1,
         (long)DROVER_MAX_PAYLOAD, "OCTETS", "largest task payload accepted",
         &max_payload},
        {"max-queued", 0, CLI_INT, "DROVER_MAX_QUEUED", "1000000", 1,
         1000000000, "N", "tasks held at most; more get DROVER_EFULL",
         &max_queued},
        {"max-attempts", 0, CLI_INT, "DROVER_MAX_ATTEMPTS", "1", 1, 1000, "N",
         "default attempts of a failing task", &max_attempts},
        {"retry-delay-ms", 0, CLI_INT, "DROVER_RETRY_DELAY_MS", "1000", 1,
         604800000, "MS",
         "backoff before a failed task's first retry, doubling with each "
         "failure, unless the task sets its own",
         &retry_delay},
        {"retry-max-delay-ms", 0, CLI_INT, "DROVER_RETRY_MAX_DELAY_MS", "60000",
         1, 604800000, "MS",
         "cap of the retry backoff, unless the task sets its own",
         &retry_max_delay},
        {"max-dead", 0, CLI_INT, "DROVER_MAX_DEAD", "10000", 0, 100000000, "N",
         "dead letters (tasks failed for good) kept for 'drover dead'; past "
         "it the oldest is dropped",
         &max_dead},
        {"max-results", 0, CLI_INT, "DROVER_MAX_RESULTS", "1073741824", 1,
         LONG_MAX, "OCTETS", "result octets the embedded sink keeps",
         &max_results},
        {"data", 'd', CLI_STRING, "DROVER_DATA", NULL, 0, 0, "DIR",
         "durable mode: keep journals of tasks (DIR/broker) and results "
         "(DIR/sink) and restore them on start; a submit is acknowledged "
         "only once it is in the journal",
         &config.data_dir},
        {"fsync", 0, CLI_STRING, "DROVER_FSYNC", "batch", 0, 0, "MODE",
         "with --data: 'always' (fdatasync every write), 'batch' (fdatasync "
         "before acknowledging, one for all waiting submits, and every "
         "--sync-interval-ms) or 'never' (survives a killed broker, not a "
         "power cut)",
         &fsync},
        {"sync-interval-ms", 0, CLI_INT, "DROVER_SYNC_INTERVAL_MS", "200", 1,
         60000, "MS",
         "with --fsync batch: longest wait of a write for its "
         "fdatasync",
         &sync_interval},
        {"segment-size", 0, CLI_INT, "DROVER_SEGMENT_SIZE", "67108864", 4096,
         1L << 40, "OCTETS",
         "journal segment size: compaction frees whole "
         "segments",
         &segment_size},
        {"result-ttl-ms", 0, CLI_INT, "DROVER_RESULT_TTL_MS", "86400000", 0,
         LONG_MAX, "MS",
         "embedded sink: forget a result this long after it "
         "was stored, once it was delivered (an undelivered result is kept); "
         "0: keep delivered results too",
         &result_ttl},
        {"verbose", 'v', CLI_FLAG, "DROVER_VERBOSE", NULL, 0, 0, NULL,
         "log every message", &verbose},
    };
    cli_command_t command = {
        "broker", "drover broker [OPTIONS]",
        "Runs a broker: it queues tasks and leases them to worker nodes as "
        "they ask for work. It embeds a sink, which stores results and "
        "streams them to clients, unless --no-sink is given.",
        options, sizeof options / sizeof options[0]};
    int rc = cli_parse_no_args (&command, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    config.heartbeat_ms = (uint32_t)heartbeat;
    config.liveness = (uint32_t)liveness;
    config.max_payload = (uint64_t)max_payload;
    config.max_queued = (uint64_t)max_queued;
    config.max_attempts = (uint32_t)max_attempts;
    config.max_results = (uint64_t)max_results;
    config.retry_delay_ms = (uint64_t)retry_delay;
    config.retry_max_delay_ms = (uint64_t)retry_max_delay;
    config.max_dead = (uint64_t)max_dead;
    config.sync_interval_ms = (uint32_t)sync_interval;
    config.segment_size = (uint64_t)segment_size;
    config.result_ttl_ms = (uint64_t)result_ttl;
    config.verbose = verbose;
    if (!s_fsync_parse ("broker", fsync, &config.fsync))
        return 2;
    char *sink_endpoint = no_sink ? NULL
                          : sink_listen
                              ? strdup (sink_listen)
                              : s_default_sink_endpoint (config.endpoint);
    config.sink_endpoint = sink_endpoint;

    char *error = NULL;
    zactor_t *broker = drover_broker_new (&config, &error);
    free (sink_endpoint);
    if (!broker) {
        fprintf (stderr, "drover broker: %s\n", error);
        free (error);
        return 1;
    }
    s_wait_for_signal (broker);
    zactor_destroy (&broker);
    return 0;
}

int
drover_cmd_sink (int argc, char **argv)
{
    drover_sink_config_t config = drover_sink_config_default ();
    long max_results = 0, sync_interval = 0, segment_size = 0, result_ttl = 0;
    bool verbose = false;
    const char *fsync = NULL;
    cli_option_t options[] = {
        {"listen", 'l', CLI_STRING, "DROVER_SINK_LISTEN",
         "tcp://127.0.0.1:5556", 0, 0, "EP",
         "endpoint to bind for nodes and clients", &config.endpoint},
        {"broker", 'b', CLI_STRING, "DROVER_CONNECT", "tcp://127.0.0.1:5555", 0,
         0, "EP", "the broker to register with", &config.broker},
        {"advertise", 0, CLI_STRING, "DROVER_SINK_ADVERTISE", NULL, 0, 0, "EP",
         "endpoint told to nodes and clients, if not the bound one",
         &config.advertise},
        {"max-results", 0, CLI_INT, "DROVER_MAX_RESULTS", "1073741824", 1,
         LONG_MAX, "OCTETS", "result octets kept", &max_results},
        {"data", 'd', CLI_STRING, "DROVER_DATA", NULL, 0, 0, "DIR",
         "durable mode: keep a journal of results in DIR, restored on "
         "start; STORED is sent only once a result is in it",
         &config.data_dir},
        {"fsync", 0, CLI_STRING, "DROVER_FSYNC", "batch", 0, 0, "MODE",
         "with --data: always, batch or never (see drover broker --help)",
         &fsync},
        {"sync-interval-ms", 0, CLI_INT, "DROVER_SYNC_INTERVAL_MS", "200", 1,
         60000, "MS",
         "with --fsync batch: longest wait of a write for its "
         "fdatasync",
         &sync_interval},
        {"segment-size", 0, CLI_INT, "DROVER_SEGMENT_SIZE", "67108864", 4096,
         1L << 40, "OCTETS", "journal segment size", &segment_size},
        {"result-ttl-ms", 0, CLI_INT, "DROVER_RESULT_TTL_MS", "86400000", 0,
         LONG_MAX, "MS",
         "forget a result this long after it was stored, "
         "once it was delivered (an undelivered result is kept); 0: keep "
         "delivered results too",
         &result_ttl},
        {"verbose", 'v', CLI_FLAG, "DROVER_VERBOSE", NULL, 0, 0, NULL,
         "log every message", &verbose},
    };
    cli_command_t command = {
        "sink", "drover sink [OPTIONS]",
        "Runs a stand-alone sink: it stores the result of each task, tells "
        "the broker, and streams results to the clients that wait for them. "
        "Start the broker with --no-sink.",
        options, sizeof options / sizeof options[0]};
    int rc = cli_parse_no_args (&command, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    config.max_results = (uint64_t)max_results;
    config.sync_interval_ms = (uint32_t)sync_interval;
    config.segment_size = (uint64_t)segment_size;
    config.result_ttl_ms = (uint64_t)result_ttl;
    config.verbose = verbose;
    if (!s_fsync_parse ("sink", fsync, &config.fsync))
        return 2;
    char *error = NULL;
    zactor_t *sink = drover_sink_new (&config, &error);
    if (!sink) {
        fprintf (stderr, "drover sink: %s\n", error);
        free (error);
        return 1;
    }
    s_wait_for_signal (sink);
    zactor_destroy (&sink);
    return 0;
}
