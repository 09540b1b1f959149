"""A queue with one periodic schedule (`gq worker app_periodic:q`): a `tick` job
every $GQ_TEST_EVERY seconds (default 0.5), whose handler returns its key."""

import os

import gq

q = gq.Queue(os.environ["GQ_TEST_DATA"])


@q.periodic(every=float(os.environ.get("GQ_TEST_EVERY", "0.5")), type="tick")
def tick(job):
    return job.key
