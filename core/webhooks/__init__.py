"""Outbound webhooks: the channel events the relay sees, delivered to the application's backend.

    sink.py          the process's one sink: `emit` enqueues and returns (no I/O on a socket's path)
    config.py        RELAY_WEBHOOK_* as one value
    filters.py       which channels and kinds go out
    schedule.py      member_removed and channel_vacated held, cancelled by a quick return;
                     each channel's events in order; batches
    formats.py       Pusher's body and signature (the default), or Standard Webhooks
    delivery.py      the POST to each URL, retried with backoff on timeouts and 5xx
    dispatcher.py    the delivery loop over a schedule
    memory.py        the bounded in-memory queue (lost on a crash)
    redis_stream.py  a Redis stream, one delivering process at a time (RELAY_STORE or
                     RELAY_BACKPLANE redis)
    sqs.py           SQS on Lambda: the handlers send, a consumer function delivers
    rejoins.py       on Lambda, a return queued after the consumer took the leave, through the
                     relay's store

Only sink.py is imported on a socket's path; the rest, and httpx, when webhooks are configured.
"""
